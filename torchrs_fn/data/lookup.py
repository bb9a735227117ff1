"""Vocabularies that map strings or integers to ids: ``StringLookup`` and ``IntegerLookup``.

They follow Keras's ``StringLookup`` / ``IntegerLookup`` layers with ``mask_token=None`` (the form
the TFRS tutorials use), as plain objects instead of layers:

* ids ``0 .. num_oov_indices - 1`` are out-of-vocabulary (OOV) buckets, the vocabulary terms follow,
  so ``vocabulary_size() == len(terms) + num_oov_indices`` and ``get_vocabulary()`` starts with
  ``num_oov_indices`` copies of the OOV token (``"[UNK]"`` for strings, ``-1`` for integers);
* ``fit`` (Keras ``adapt``) orders terms by count, most frequent first, and breaks ties by the term
  itself in *descending* order (bytewise for strings, numerically for integers) — what Keras's
  ``IndexLookup.finalize_state`` does with ``np.lexsort((tokens, counts))[::-1]``. ``max_tokens``
  counts the OOV buckets, as in Keras. ``min_frequency`` (drop terms seen fewer times) is an
  addition; the default 1 keeps everything, as Keras does. The OOV token itself is never learned;
* an unknown term goes to bucket 0 when ``num_oov_indices == 1``. With more buckets, integers go
  to ``value mod num_oov_indices`` (floor modulo, Keras's default ``oov_method``); strings go to
  ``fnv1a_64(utf8 bytes) mod num_oov_indices`` — FNV-1a, 64-bit (offset basis 0xcbf29ce484222325,
  prime 0x100000001b3). Keras uses FarmHash64 there, so string OOV buckets differ from Keras's;
  known terms get the same ids. With ``num_oov_indices == 0`` an unknown term raises ``KeyError``;
* a vocabulary passed in may start with the OOV tokens (as ``get_vocabulary()`` returns it); they
  are stripped, as in Keras.

Differences from Keras on purpose: nulls in the input raise ``ValueError`` (nothing is silently
mapped), ``invert`` of an id outside ``[0, vocabulary_size())`` raises ``ValueError`` naming it, and
the OOV token may not appear among the terms.

Lookups run vectorised in Arrow (``pyarrow.compute.index_in``); each call builds a hash table of the
vocabulary, so map whole columns at once rather than one batch at a time.
"""

from __future__ import annotations

import concurrent.futures
import itertools
import os
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from . import _lists

__all__ = ["IntegerLookup", "StringLookup", "fnv1a_64"]

ArrowLike = pa.Array | pa.ChunkedArray
Values = pa.Array | pa.ChunkedArray | np.ndarray | Sequence[Any]

_FNV_PRIME = np.uint64(0x100000001B3)
_SHOW = 5  # how many offending values an error message lists


def fnv1a_64(strings: pa.Array, basis: int = 0xCBF29CE484222325) -> np.ndarray:
    """64-bit FNV-1a hash of the UTF-8 bytes of each string: ``[N]`` strings -> ``[N]`` uint64.

    Vectorised over strings: one numpy pass per byte position, so the cost is
    ``O(total bytes + N * max length)`` in numpy, with no per-string Python work. ``basis`` is the
    starting value (FNV's offset basis by default; ``preprocessing.Hashing`` mixes its salt in here).
    """
    strings = pc.cast(strings, pa.large_string())
    n = len(strings)
    h = np.full(n, np.uint64(basis), dtype=np.uint64)
    if n == 0:
        return h
    _, offsets_buf, data_buf = strings.buffers()
    offsets = np.frombuffer(offsets_buf, dtype=np.int64)[strings.offset : strings.offset + n + 1]
    data = (
        np.frombuffer(data_buf, dtype=np.uint8) if data_buf is not None else np.empty(0, np.uint8)
    )
    starts = offsets[:-1]
    lengths = offsets[1:] - starts
    by_length = np.argsort(lengths, kind="stable")[::-1]  # longest first
    sorted_lengths = np.sort(lengths)
    for j in range(int(sorted_lengths[-1])):
        still = n - int(np.searchsorted(sorted_lengths, j, side="right"))  # strings longer than j
        active = by_length[:still]
        h[active] = (h[active] ^ data[starts[active] + j].astype(np.uint64)) * _FNV_PRIME
    return h


_PARALLEL_MIN_ROWS = 1 << 18
_POOL: concurrent.futures.ThreadPoolExecutor | None = None


def _lookup_workers() -> int:
    return max(
        1,
        min(
            8,
            len(os.sched_getaffinity(0))
            if hasattr(os, "sched_getaffinity")
            else (os.cpu_count() or 1),
        ),
    )


def _pool() -> concurrent.futures.ThreadPoolExecutor:
    global _POOL
    if _POOL is None:
        _POOL = concurrent.futures.ThreadPoolExecutor(
            _lookup_workers(), thread_name_prefix="lookup"
        )
    return _POOL


def _count(n: Any, name: str, minimum: int) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {n!r}")
    return int(n)


def _preview(values: pa.Array) -> list[Any]:
    return values.slice(0, _SHOW).to_pylist()


class _IndexLookup:
    """Shared logic of StringLookup and IntegerLookup (not public)."""

    oov_token: ClassVar[Any]
    _value_type: ClassVar[pa.DataType]

    def __init__(self, vocabulary: Values, num_oov_indices: int = 1) -> None:
        self.num_oov_indices = _count(num_oov_indices, "num_oov_indices", 0)
        vocab = self._to_arrow(vocabulary, "vocabulary")
        if isinstance(vocab, pa.ChunkedArray):
            vocab = vocab.combine_chunks()
        if vocab.null_count:
            raise ValueError(f"vocabulary has {vocab.null_count} null entries")
        k = self.num_oov_indices
        if k and len(vocab) >= k and vocab.slice(0, k).to_pylist() == [self.oov_token] * k:
            vocab = vocab.slice(k)  # Keras: a vocabulary may start with its special tokens
        if len(vocab) == 0:
            raise ValueError("vocabulary is empty: give at least one term")
        if pc.any(pc.equal(vocab, pa.scalar(self.oov_token, self._value_type))).as_py():
            raise ValueError(
                f"vocabulary holds the OOV token {self.oov_token!r} among its terms; it may only "
                f"appear as the first num_oov_indices={k} entries"
            )
        counts = pc.value_counts(vocab)
        repeated = counts.field("values").filter(pc.greater(counts.field("counts"), 1))
        if len(repeated):
            raise ValueError(
                f"vocabulary has {len(repeated)} repeated term(s), e.g. {_preview(repeated)}; "
                "each term must appear once"
            )
        self._vocab: pa.Array = vocab
        specials = pa.array([self.oov_token] * k, type=self._value_type)
        self._inverse_table: pa.Array = pa.concat_arrays([specials, vocab])

    # -- construction -----------------------------------------------------------------------

    @classmethod
    def fit(
        cls,
        column: Values,
        *,
        num_oov_indices: int = 1,
        max_tokens: int | None = None,
        min_frequency: int = 1,
    ) -> Any:
        """Builds the vocabulary from a column of values (Keras ``adapt``).

        Terms are ordered by count, most frequent first, ties broken by the term in descending
        order (as Keras does). ``max_tokens`` caps ``vocabulary_size()``, OOV buckets included;
        terms seen fewer than ``min_frequency`` times are left out.

        Args:
            column: ``[N]`` values: a pyarrow Array/ChunkedArray, a numpy array or a list.
            num_oov_indices: number of OOV buckets (ids ``0 .. num_oov_indices - 1``).
            max_tokens: None (no cap) or an int > ``num_oov_indices``.
            min_frequency: int >= 1.
        """
        num_oov = _count(num_oov_indices, "num_oov_indices", 0)
        freq = _count(min_frequency, "min_frequency", 1)
        if max_tokens is not None:
            _count(max_tokens, "max_tokens", num_oov + 1)
        values = cls._checked_input(column, "column")
        if len(values) == 0:
            raise ValueError("cannot fit a vocabulary on an empty column")
        counts = pc.value_counts(values)
        table = pa.table({"term": counts.field("values"), "count": counts.field("counts")})
        keep = pc.and_(
            pc.not_equal(table["term"], pa.scalar(cls.oov_token, cls._value_type)),
            pc.greater_equal(table["count"], freq),
        )
        table = table.filter(keep)
        order = pc.sort_indices(table, sort_keys=[("count", "descending"), ("term", "descending")])
        if max_tokens is not None:
            order = order.slice(0, max_tokens - num_oov)
        vocab = table["term"].take(order)
        if len(vocab) == 0:
            raise ValueError(
                f"no term occurs at least min_frequency={freq} times in the column; "
                "lower min_frequency"
            )
        return cls(vocab, num_oov_indices=num_oov)

    # -- input handling ---------------------------------------------------------------------

    @classmethod
    def _to_arrow(cls, values: Any, what: str) -> ArrowLike:
        """Values -> an Arrow array of this lookup's value type (type-checked, not null-checked)."""
        if isinstance(values, (pa.Array, pa.ChunkedArray)):
            arr = values
        elif isinstance(values, np.ndarray):
            arr = cls._from_numpy(values.reshape(-1), what)
        elif isinstance(values, (list, tuple)):
            try:
                arr = pa.array(values)
            except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
                raise TypeError(f"{what} must hold {cls._what()} only: {e}") from None
            except OverflowError:
                raise ValueError(
                    f"{what} holds an integer outside the 64-bit range, which no id can stand for"
                ) from None
        else:
            raise TypeError(
                f"{what} must be a pyarrow Array/ChunkedArray, a numpy array or a list, got "
                f"{type(values).__name__}"
            )
        if pa.types.is_dictionary(arr.type):
            arr = pc.cast(arr, arr.type.value_type)
        if pa.types.is_null(arr.type):  # e.g. [None, None] or []
            return pc.cast(arr, cls._value_type)
        if not cls._accepts(arr.type):
            raise TypeError(
                f"{cls.__name__} takes {cls._what()}, but {what} has type {arr.type}"
                f"{cls._type_hint()}"
            )
        try:
            return pc.cast(arr, cls._value_type)
        except pa.ArrowInvalid as e:
            raise ValueError(f"{what} does not fit in {cls._value_type}: {e}") from None

    @classmethod
    def _checked_input(cls, values: Any, what: str) -> ArrowLike:
        arr = cls._to_arrow(values, what)
        if arr.null_count:
            first = int(np.flatnonzero(pc.is_null(arr).to_numpy(zero_copy_only=False))[0])
            raise ValueError(
                f"{what} has {arr.null_count} null value(s) (the first at position {first}); "
                "nulls are not mapped to any id: fill (pyarrow.compute.fill_null) or drop them first"
            )
        return arr

    # -- applying ---------------------------------------------------------------------------

    def __call__(self, values: Values) -> Any:
        """Maps values to int64 ids.

        Args:
            values: ``[N]`` pyarrow Array or ChunkedArray, or a numpy array (any shape) or list.
                An Arrow list array (``list`` / ``large_list`` / ``fixed_size_list``, e.g. a
                genres column) is mapped value by value.

        Returns:
            ids as ``pa.Int64Array`` for an Array, ``pa.ChunkedArray`` (same chunk lengths) for a
            ChunkedArray, and a numpy int64 array of the input's shape for numpy or list input.
            For list arrays, a list array of the same kind and row lengths holding int64 ids.
            Known terms get ``num_oov_indices + position``; unknown ones an OOV bucket.
        """
        if isinstance(values, (pa.Array, pa.ChunkedArray)) and _lists.is_list_type(values.type):
            # Lists of values -> lists of ids, one lookup over all the flat values.
            return _lists.map_list_values(values, self.__call__, "values")
        arr = self._checked_input(values, "values")
        flat = arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr
        ids, unknown = self._positions(flat)
        if unknown.any():
            unknown_values = flat.filter(pa.array(unknown))
            if self.num_oov_indices == 0:
                examples = _preview(pc.unique(unknown_values))
                raise KeyError(
                    f"{int(unknown.sum())} value(s) are not in the vocabulary, e.g. {examples}; "
                    "with num_oov_indices=0 every value must be known (use num_oov_indices >= 1 "
                    "to map unknown values to OOV buckets)"
                )
            ids[unknown] = self._oov_buckets(unknown_values)
        if isinstance(values, (pa.Array, pa.ChunkedArray)):
            if isinstance(values, pa.ChunkedArray):
                bounds = np.cumsum([0] + [len(c) for c in values.chunks])
                chunks = [pa.array(ids[a:b]) for a, b in itertools.pairwise(bounds)]
                return pa.chunked_array(chunks, type=pa.int64())
            return pa.array(ids)
        if isinstance(values, np.ndarray):
            return ids.reshape(values.shape)
        return ids

    def _positions(self, flat: pa.Array) -> tuple[np.ndarray, np.ndarray]:
        """``(ids, unknown)``: ``num_oov_indices + position`` per value (0 + offset where unknown)
        and a bool mask of the unknown values.

        Large inputs are probed in slices on a thread pool: ``pc.index_in`` releases the GIL, and
        the hash probe is nearly all of a lookup's time.
        """
        n = len(flat)
        ids = np.empty(n, dtype=np.int64)
        unknown = np.zeros(n, dtype=bool)

        def probe(lo: int, hi: int) -> None:
            positions = pc.index_in(flat.slice(lo, hi - lo), value_set=self._vocab)
            if positions.null_count:
                unknown[lo:hi] = positions.is_null().to_numpy(zero_copy_only=False)
                positions = pc.fill_null(positions, 0)
            np.add(positions.to_numpy(), self.num_oov_indices, out=ids[lo:hi], dtype=np.int64)

        workers = _lookup_workers()
        if n < _PARALLEL_MIN_ROWS or workers == 1:
            probe(0, n)
        else:
            bounds = np.linspace(0, n, workers + 1).astype(int)
            list(_pool().map(probe, bounds[:-1], bounds[1:]))
        return ids, unknown

    def _oov_buckets(self, unknown_values: pa.Array) -> np.ndarray:
        """``[M]`` unknown values -> ``[M]`` int64 ids in ``[0, num_oov_indices)``."""
        raise NotImplementedError

    def invert(self, ids: Any) -> ArrowLike:
        """Maps ids back to terms (Keras ``invert=True``); OOV ids give the OOV token.

        Args:
            ids: ``[N]`` integer ids: a pyarrow Array/ChunkedArray, a numpy array, a list or a
                1-D torch tensor.

        Returns:
            ``[N]`` terms as a pyarrow Array (ChunkedArray for ChunkedArray input).

        Raises:
            ValueError: an id is outside ``[0, vocabulary_size())`` (the message names it), an id
                is null, or the input is not 1-D.
        """
        if isinstance(ids, torch.Tensor):
            ids = ids.detach().cpu().numpy()
        if isinstance(ids, np.ndarray) and ids.ndim != 1:
            raise ValueError(f"invert takes 1-D ids, got shape {ids.shape}; reshape(-1) first")
        if isinstance(ids, (pa.Array, pa.ChunkedArray)):
            arr = ids
        else:
            try:
                arr = pa.array(ids)
            except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
                raise TypeError(f"ids must be integers: {e}") from None
            except OverflowError:
                raise ValueError("ids holds an integer outside the 64-bit range") from None
        if not (pa.types.is_integer(arr.type) or pa.types.is_null(arr.type)):
            raise TypeError(f"ids must be integers, got type {arr.type}")
        if arr.null_count:
            raise ValueError(f"ids has {arr.null_count} null value(s); every id must be given")
        flat = arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr
        as_numpy = pc.cast(flat, pa.int64()).to_numpy(zero_copy_only=False)
        size = self.vocabulary_size()
        bad = (as_numpy < 0) | (as_numpy >= size)
        if bad.any():
            examples = np.unique(as_numpy[bad])[:_SHOW].tolist()
            raise ValueError(
                f"{int(bad.sum())} id(s) outside [0, {size}) for this vocabulary of "
                f"vocabulary_size()={size}, e.g. {examples}"
            )
        terms = self._inverse_table.take(pa.array(as_numpy))
        if isinstance(arr, pa.ChunkedArray):
            bounds = np.cumsum([0] + [len(c) for c in arr.chunks])
            return pa.chunked_array(
                [terms.slice(a, b - a) for a, b in itertools.pairwise(bounds)],
                type=terms.type,
            )
        return terms

    # -- vocabulary and state ---------------------------------------------------------------

    def vocabulary_size(self) -> int:
        """Number of ids: ``len(terms) + num_oov_indices`` (Keras ``vocabulary_size``)."""
        return len(self._vocab) + self.num_oov_indices

    def get_vocabulary(self, include_special_tokens: bool = True) -> list[Any]:
        """Term of every id, in id order; OOV ids show the OOV token (Keras ``get_vocabulary``)."""
        table = self._inverse_table if include_special_tokens else self._vocab
        return table.to_pylist()

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-able state: ``{"type", "num_oov_indices", "vocabulary"}`` (terms only)."""
        return {
            "type": type(self).__name__,
            "num_oov_indices": self.num_oov_indices,
            "vocabulary": self._vocab.to_pylist(),
        }

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> Any:
        """Rebuilds a lookup from ``to_dict()`` output."""
        expected = {"type", "num_oov_indices", "vocabulary"}
        if not isinstance(state, dict) or set(state) != expected:
            got = sorted(state) if isinstance(state, dict) else type(state).__name__
            raise ValueError(f"state must be a dict with keys {sorted(expected)}, got {got}")
        if state["type"] != cls.__name__:
            raise ValueError(f"state is of a {state['type']!r}, not a {cls.__name__!r}")
        return cls(state["vocabulary"], num_oov_indices=state["num_oov_indices"])

    def __repr__(self) -> str:
        head = self._vocab.slice(0, 3).to_pylist()
        more = ", ..." if len(self._vocab) > 3 else ""
        return (
            f"{type(self).__name__}(vocabulary_size={self.vocabulary_size()}, "
            f"num_oov_indices={self.num_oov_indices}, terms={head}{more})"
        )

    # -- per-type hooks ---------------------------------------------------------------------

    @classmethod
    def _from_numpy(cls, values: np.ndarray, what: str) -> pa.Array:
        try:
            return pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
            raise TypeError(f"{what} must hold {cls._what()} only: {e}") from None

    @classmethod
    def _accepts(cls, t: pa.DataType) -> bool:
        raise NotImplementedError

    @classmethod
    def _what(cls) -> str:
        raise NotImplementedError

    @classmethod
    def _type_hint(cls) -> str:
        return ""


class StringLookup(_IndexLookup):
    """Maps strings to int64 ids: Keras ``StringLookup(mask_token=None)`` semantics.

    Args:
        vocabulary: the terms, in id order (``[V]`` strings; list, numpy or pyarrow). It may start
            with ``num_oov_indices`` copies of ``"[UNK]"``, which are stripped. No duplicates.
        num_oov_indices: OOV buckets (ids ``0 .. num_oov_indices - 1``); terms get ids from
            ``num_oov_indices`` on. 0 makes unknown strings raise ``KeyError``.

    ``lookup(values)`` maps ``[N]`` strings to ``[N]`` int64 ids (see ``__call__``), ``invert``
    maps ids back (OOV ids -> ``"[UNK]"``). ``StringLookup.fit(column)`` learns the vocabulary.
    """

    oov_token: ClassVar[str] = "[UNK]"
    _value_type: ClassVar[pa.DataType] = pa.string()

    @classmethod
    def _accepts(cls, t: pa.DataType) -> bool:
        return pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t)

    @classmethod
    def _what(cls) -> str:
        return "strings"

    @classmethod
    def _type_hint(cls) -> str:
        return "; use IntegerLookup for integer columns, or cast the column to string"

    def _oov_buckets(self, unknown_values: pa.Array) -> np.ndarray:
        if self.num_oov_indices == 1:
            return np.zeros(len(unknown_values), dtype=np.int64)
        # Hash each distinct unknown string once, then spread the buckets back to the rows.
        distinct = pc.unique(unknown_values)
        buckets = (fnv1a_64(distinct) % np.uint64(self.num_oov_indices)).astype(np.int64)
        where = pc.index_in(unknown_values, value_set=distinct).to_numpy(zero_copy_only=False)
        return buckets[where]


class IntegerLookup(_IndexLookup):
    """Maps integers to int64 ids: Keras ``IntegerLookup(mask_token=None)`` semantics.

    Args:
        vocabulary: the terms, in id order (``[V]`` integers; list, numpy or pyarrow). It may start
            with ``num_oov_indices`` copies of ``-1``, which are stripped. No duplicates, no -1.
        num_oov_indices: OOV buckets (ids ``0 .. num_oov_indices - 1``); unknown integers go to
            bucket ``value mod num_oov_indices`` (Keras's default). 0 makes them raise ``KeyError``.

    Any integer input type is accepted (values are compared as int64); ``invert`` gives int64
    terms with ``-1`` for OOV ids, like Keras's ``oov_token=-1``.
    """

    oov_token: ClassVar[int] = -1
    _value_type: ClassVar[pa.DataType] = pa.int64()

    @classmethod
    def _accepts(cls, t: pa.DataType) -> bool:
        return pa.types.is_integer(t)

    @classmethod
    def _what(cls) -> str:
        return "integers"

    @classmethod
    def _type_hint(cls) -> str:
        return "; use StringLookup for string columns"

    @classmethod
    def _from_numpy(cls, values: np.ndarray, what: str) -> pa.Array:
        if values.dtype.kind not in "iu":
            raise TypeError(f"IntegerLookup takes integers, but {what} has dtype {values.dtype}")
        return pa.array(values)

    def _oov_buckets(self, unknown_values: pa.Array) -> np.ndarray:
        values = unknown_values.to_numpy(zero_copy_only=False)
        return np.mod(values, self.num_oov_indices).astype(np.int64)
