"""``TextVectorization``: strings to token ids, vectorised with ``pyarrow.compute``.

Keras's ``TextVectorization`` (``output_mode="int"``) as a plain object: standardise
(``ascii_lower``, ``replace_substring_regex`` with Keras's punctuation pattern), split
(``ascii_split_whitespace``, or UTF-8 characters straight from the string buffers), optional
n-grams (``binary_join_element_wise``), and a vocabulary fitted with ``value_counts`` and applied
with ``index_in`` (through ``StringLookup``). Every step runs over whole columns; there is no per-row
Python work.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .. import _lists
from ..lookup import StringLookup
from ._common import check_int, check_state, finish_rows, padded_out, scatter_rows, unpack

__all__ = ["TextVectorization", "DEFAULT_STRIP_REGEX"]

DEFAULT_STRIP_REGEX = r'[!"#$%&()\*\+,-\./:;<=>?@\[\\\]^_`{|}~\']'
"""Keras's punctuation pattern for ``standardize="lower_and_strip_punctuation"`` (ASCII
punctuation only; ``,-\\.`` is a range that also covers ``-``)."""

MASK_TOKEN = ""
OOV_TOKEN = "[UNK]"
_STANDARDIZE = ("lower_and_strip_punctuation", "lower", "strip_punctuation")
_SPLIT = ("whitespace", "character")

Standardize = str | Callable[[pa.Array], pa.Array] | None
Split = str | Callable[[pa.Array], pa.Array] | None


def _is_string_type(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t)


def _standardize(strings: pa.Array, standardize: Standardize) -> pa.Array:
    if standardize is None:
        return strings
    if callable(standardize):
        out = standardize(strings)
        if (
            not isinstance(out, pa.Array)
            or not _is_string_type(out.type)
            or len(out) != len(strings)
        ):
            raise TypeError(
                "a callable standardize must return a pyarrow string Array of the same length, "
                f"got {type(out).__name__}"
            )
        return out
    if standardize in ("lower", "lower_and_strip_punctuation"):
        # Keras calls tf.strings.lower without an encoding: ASCII letters only.
        strings = pc.ascii_lower(strings)
    if standardize in ("strip_punctuation", "lower_and_strip_punctuation"):
        strings = pc.replace_substring_regex(strings, pattern=DEFAULT_STRIP_REGEX, replacement="")
    return strings


def _split_characters(strings: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """UTF-8 code points, read off the string buffers: a byte starts a code point unless it is a
    continuation byte (``0b10xxxxxx``)."""
    strings = pc.cast(strings, pa.large_string())
    n = len(strings)
    _, offsets_buf, data_buf = strings.buffers()
    offsets = np.frombuffer(offsets_buf, dtype=np.int64)[strings.offset : strings.offset + n + 1]
    if n == 0 or data_buf is None or offsets[-1] == offsets[0]:
        return pa.array([], pa.large_string()), np.zeros(n + 1, dtype=np.int64)
    lo, hi = int(offsets[0]), int(offsets[-1])
    data = np.frombuffer(data_buf, dtype=np.uint8)[lo:hi]
    starts = np.flatnonzero((data & 0xC0) != 0x80).astype(np.int64) + lo
    bounds = np.append(starts, hi)
    chars = pa.LargeStringArray.from_buffers(len(starts), pa.py_buffer(bounds), data_buf)
    row_offsets = np.searchsorted(starts, offsets, side="left").astype(np.int64)
    return chars, row_offsets


def _split(strings: pa.Array, split: Split) -> tuple[pa.Array, np.ndarray]:
    """Strings -> (flat tokens, ``[N + 1]`` offsets); empty tokens are dropped."""
    n = len(strings)
    if split is None:
        nonempty = pc.greater(pc.binary_length(strings), 0).to_numpy(zero_copy_only=False)
        offsets = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(nonempty, out=offsets[1:])
        return strings.filter(pa.array(nonempty)), offsets
    if split == "character":
        return _split_characters(strings)
    if split == "whitespace":
        lists = pc.ascii_split_whitespace(strings)
    else:
        lists = split(strings)
        if (
            not isinstance(lists, pa.Array)
            or not _lists.is_list_type(lists.type)
            or not _is_string_type(lists.type.value_type)
            or len(lists) != n
        ):
            raise TypeError(
                "a callable split must return a pyarrow list-of-strings Array of the same length, "
                f"got {getattr(lists, 'type', type(lists).__name__)}"
            )
    flat, offsets = _lists.list_parts(lists, "split tokens")
    keep = pc.greater(pc.binary_length(flat), 0).to_numpy(zero_copy_only=False)
    if keep.all():
        return flat, offsets
    parent = np.repeat(np.arange(n), np.diff(offsets))
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(parent[keep], minlength=n), out=offsets[1:])
    return flat.filter(pa.array(keep)), offsets


def _ngrams(
    tokens: pa.Array, offsets: np.ndarray, widths: tuple[int, ...]
) -> tuple[pa.Array, np.ndarray]:
    """Per row: all n-grams of the first width in order, then of the next width, ... (Keras's
    ``tf.strings.ngrams`` order), joined with single spaces."""
    n_rows = len(offsets) - 1
    lengths = np.diff(offsets)
    parent = np.repeat(np.arange(n_rows), lengths)
    pos = np.arange(len(tokens)) - offsets[:-1][parent]
    strings, parents, kinds, positions = [], [], [], []
    for k, width in enumerate(widths):
        starts = np.flatnonzero(pos + width <= lengths[parent])
        if width == 1:
            gram = tokens.take(pa.array(starts))
        else:
            parts = [tokens.take(pa.array(starts + j)) for j in range(width)]
            gram = pc.binary_join_element_wise(*parts, pa.scalar(" ", tokens.type))
        strings.append(pc.cast(gram, pa.large_string()))
        parents.append(parent[starts])
        kinds.append(np.full(len(starts), k))
        positions.append(pos[starts])
    all_parents = np.concatenate(parents)
    order = np.lexsort((np.concatenate(positions), np.concatenate(kinds), all_parents))
    grams = pa.concat_arrays(strings).take(pa.array(order))
    new_offsets = np.zeros(n_rows + 1, dtype=np.int64)
    np.cumsum(np.bincount(all_parents, minlength=n_rows), out=new_offsets[1:])
    return grams, new_offsets


def _check_options(standardize: Any, split: Any, ngrams: Any) -> tuple[int, ...] | None:
    if not (standardize is None or callable(standardize) or standardize in _STANDARDIZE):
        raise ValueError(
            f"standardize must be one of {list(_STANDARDIZE)}, None or a callable, got {standardize!r}"
        )
    if not (split is None or callable(split) or split in _SPLIT):
        raise ValueError(f"split must be one of {list(_SPLIT)}, None or a callable, got {split!r}")
    if ngrams is None:
        return None
    if isinstance(ngrams, (int, np.integer)) and not isinstance(ngrams, bool):
        return tuple(range(1, check_int(ngrams, "ngrams", 1) + 1))
    if isinstance(ngrams, (tuple, list)) and ngrams:
        return tuple(check_int(w, "each ngrams width", 1) for w in ngrams)
    raise ValueError(f"ngrams must be None, an int >= 1 or a tuple of ints >= 1, got {ngrams!r}")


class TextVectorization:
    """Maps text to token ids: Keras ``TextVectorization(output_mode="int")`` semantics.

    Each string is standardised, split into tokens (and n-grams), and each token mapped to an id:
    id 0 is the mask / padding token ``""``, id 1 the OOV token ``"[UNK]"``, the vocabulary terms
    follow from id 2, most frequent first (ties broken by the term in descending order, as Keras
    does). ``vocabulary_size()`` is ``len(terms) + 2``, the rows an ``Embedding(mask_zero=True)``
    over the ids needs.

    Args:
        vocabulary: the terms in id order. It may start with ``""`` and ``"[UNK]"`` (as
            ``get_vocabulary()`` returns it); they are stripped. No duplicates, no other ``""``.
        standardize: ``"lower_and_strip_punctuation"`` (default), ``"lower"``,
            ``"strip_punctuation"``, None, or a callable from a pyarrow string Array to one of the
            same length. Lowercasing is ASCII only and the punctuation stripped is ASCII
            punctuation (``DEFAULT_STRIP_REGEX``), exactly as in Keras.
        split: ``"whitespace"`` (default; runs of ASCII whitespace, as Keras's
            ``tf.strings.split``), ``"character"`` (Unicode code points), None (the whole string is
            one token; an empty string gives no token), or a callable from a string Array to a
            list-of-strings Array of the same length.
        ngrams: None, an int ``n`` (all n-grams of widths ``1..n``) or a tuple of widths. Per
            string, all n-grams of the first width come first, in position order, then the next
            width's, joined by single spaces, as in Keras.
        output_sequence_length: pad with 0 or truncate (keeping the first tokens) every row to
            this length. None pads to the longest row of each call, as Keras pads to the longest
            row of each batch.
        ragged: return ragged rows (an Arrow ``list<int64>`` array) instead of padded ones.

    Use ``TextVectorization.fit(column, max_tokens=...)`` to learn the vocabulary (Keras
    ``adapt``). Applying it is a pure function of the vocabulary and options.

    Differences from Keras, on purpose: nulls raise ``ValueError``; without
    ``output_sequence_length`` padded rows are at least one id long (``[N, 1]`` when every string
    is empty, where Keras gives ``[N, 0]``), since Arrow fixed-size lists cannot be empty; with
    ``split=None`` rows are one-token sequences (``[N, 1]``), where Keras returns ``[N]``; only
    ``output_mode="int"`` is provided (``MultiHot`` covers multi-hot and count encodings of ids).
    """

    def __init__(
        self,
        vocabulary: Sequence[str] | pa.Array,
        *,
        standardize: Standardize = "lower_and_strip_punctuation",
        split: Split = "whitespace",
        ngrams: int | tuple[int, ...] | None = None,
        output_sequence_length: int | None = None,
        ragged: bool = False,
    ) -> None:
        self._widths = _check_options(standardize, split, ngrams)
        if output_sequence_length is not None:
            check_int(output_sequence_length, "output_sequence_length", 1)
            if ragged:
                raise ValueError("output_sequence_length cannot be combined with ragged=True")
        if not isinstance(ragged, bool):
            raise TypeError(f"ragged must be a bool, got {type(ragged).__name__}")
        vocab = (
            vocabulary
            if isinstance(vocabulary, pa.Array)
            else pa.array(list(vocabulary), pa.string())
        )
        if not _is_string_type(vocab.type):
            raise TypeError(f"vocabulary must hold strings, got type {vocab.type}")
        if len(vocab) and vocab[0].as_py() == MASK_TOKEN:
            vocab = vocab.slice(1)
        if vocab.null_count:
            raise ValueError(f"vocabulary has {vocab.null_count} null entries")
        if pc.any(pc.equal(vocab, MASK_TOKEN)).as_py():
            raise ValueError(
                'vocabulary holds the mask token "" among its terms; it may only be the first entry'
            )
        self._lookup = StringLookup(vocab, num_oov_indices=1)
        self.standardize = standardize
        self.split = split
        self.ngrams = ngrams if not isinstance(ngrams, list) else tuple(ngrams)
        self.output_sequence_length = output_sequence_length
        self.ragged = ragged

    @classmethod
    def fit(
        cls,
        column: Any,
        *,
        max_tokens: int | None = None,
        standardize: Standardize = "lower_and_strip_punctuation",
        split: Split = "whitespace",
        ngrams: int | tuple[int, ...] | None = None,
        output_sequence_length: int | None = None,
        ragged: bool = False,
    ) -> TextVectorization:
        """Learns the vocabulary from a column of strings (Keras ``adapt``).

        Tokens (and n-grams) are counted with ``value_counts`` and ordered by count, most frequent
        first, ties by the token in descending order. ``max_tokens`` caps ``vocabulary_size()``,
        the mask and OOV ids included (as in Keras), so it keeps ``max_tokens - 2`` terms. The
        other arguments are the constructor's.

        Args:
            column: ``[N]`` strings: a pyarrow Array/ChunkedArray, a numpy array or a list.
            max_tokens: None (no cap) or an int >= 3.
        """
        widths = _check_options(standardize, split, ngrams)
        if max_tokens is not None:
            check_int(max_tokens, "max_tokens", 3)
        tokens, _, _ = _tokens(column, "column", standardize, split, widths)
        tokens = tokens.filter(pc.not_equal(tokens, OOV_TOKEN))
        if len(tokens) == 0:
            raise ValueError("column holds no tokens to learn a vocabulary from")
        lookup = StringLookup.fit(
            tokens, num_oov_indices=1, max_tokens=None if max_tokens is None else max_tokens - 1
        )
        return cls(
            lookup.get_vocabulary(include_special_tokens=False),
            standardize=standardize,
            split=split,
            ngrams=ngrams,
            output_sequence_length=output_sequence_length,
            ragged=ragged,
        )

    def tokenize(self, texts: Any) -> pa.Array | pa.ChunkedArray:
        """Standardised tokens (and n-grams) of each string, as an Arrow ``list<string>`` array
        (a ChunkedArray for ChunkedArray input)."""
        tokens, offsets, layout = _tokens(
            texts, "texts", self.standardize, self.split, self._widths
        )
        return finish_rows(_lists.rebuild_lists(pa.list_(pa.string()), offsets, tokens), layout)

    def __call__(self, texts: Any) -> Any:
        """Token ids (int64) of each string.

        Args:
            texts: ``[N]`` strings: a pyarrow Array/ChunkedArray, a numpy array (``[N]`` or
                ``[N, 1]``) or a list.

        Returns:
            Padded (the default): ``[N, L]`` ids, 0 after each row's tokens, as an Arrow
            ``fixed_size_list<int64>[L]`` array for Arrow input (a column the ``Loader`` turns into
            ``[B, L]`` tensors) or a numpy ``[N, L]`` array otherwise. ``ragged=True``: an Arrow
            ``list<int64>`` array. Unknown tokens get the OOV id 1, never a term's id.
        """
        tokens, offsets, layout = _tokens(
            texts, "texts", self.standardize, self.split, self._widths
        )
        ids = self._lookup(tokens).to_numpy(zero_copy_only=False) + 1
        if self.ragged:
            return finish_rows(
                _lists.rebuild_lists(pa.list_(pa.int64()), offsets, pa.array(ids)), layout
            )
        lengths = np.diff(offsets)
        length = self.output_sequence_length or max(int(lengths.max(initial=0)), 1)
        return padded_out(scatter_rows(ids, offsets, length, 0), layout)

    def vocabulary_size(self) -> int:
        """Number of ids: ``len(terms) + 2`` (mask and OOV), Keras's ``vocabulary_size()``."""
        return self._lookup.vocabulary_size() + 1

    def get_vocabulary(self, include_special_tokens: bool = True) -> list[str]:
        """Token of every id in id order, ``["", "[UNK]", ...terms]`` (Keras ``get_vocabulary``)."""
        terms = self._lookup.get_vocabulary(include_special_tokens=False)
        return [MASK_TOKEN, OOV_TOKEN, *terms] if include_special_tokens else terms

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-able state (terms and options). Raises ``ValueError`` when
        ``standardize`` or ``split`` is a callable, which plain data cannot hold."""
        for name in ("standardize", "split"):
            if callable(getattr(self, name)):
                raise ValueError(
                    f"cannot save a TextVectorization whose {name} is a callable; save "
                    "get_vocabulary() and rebuild it with the same callable"
                )
        return {
            "type": "TextVectorization",
            "vocabulary": self.get_vocabulary(include_special_tokens=False),
            "standardize": self.standardize,
            "split": self.split,
            "ngrams": list(self.ngrams) if isinstance(self.ngrams, tuple) else self.ngrams,
            "output_sequence_length": self.output_sequence_length,
            "ragged": self.ragged,
        }

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> TextVectorization:
        """Rebuilds a ``TextVectorization`` from ``to_dict()`` output."""
        keys = {
            "type",
            "vocabulary",
            "standardize",
            "split",
            "ngrams",
            "output_sequence_length",
            "ragged",
        }
        check_state(state, cls.__name__, keys)
        ngrams = state["ngrams"]
        return cls(
            state["vocabulary"],
            standardize=state["standardize"],
            split=state["split"],
            ngrams=tuple(ngrams) if isinstance(ngrams, list) else ngrams,
            output_sequence_length=state["output_sequence_length"],
            ragged=state["ragged"],
        )

    def __repr__(self) -> str:
        terms = self.get_vocabulary(include_special_tokens=False)
        head = terms[:3] + (["..."] if len(terms) > 3 else [])
        options = [f"standardize={_name(self.standardize)}", f"split={_name(self.split)}"]
        if self.ngrams is not None:
            options.append(f"ngrams={self.ngrams!r}")
        if self.output_sequence_length is not None:
            options.append(f"output_sequence_length={self.output_sequence_length}")
        if self.ragged:
            options.append("ragged=True")
        return (
            f"TextVectorization(vocabulary_size={self.vocabulary_size()}, terms={head}, "
            + ", ".join(options)
            + ")"
        )


def _name(option: Any) -> str:
    return getattr(option, "__name__", "<callable>") if callable(option) else repr(option)


def _tokens(
    texts: Any, what: str, standardize: Standardize, split: Split, widths: tuple[int, ...] | None
) -> tuple[pa.Array, np.ndarray, Any]:
    """Strings -> (flat tokens, ``[N + 1]`` offsets, input Layout)."""
    if isinstance(texts, np.ndarray) and not (
        texts.ndim == 1 or (texts.ndim == 2 and texts.shape[1] == 1)
    ):
        raise ValueError(f"{what} must be [N] or [N, 1] strings, got shape {texts.shape}")
    flat, layout = unpack(texts, what, lists=False)
    if not _is_string_type(flat.type):
        raise TypeError(f"{what} must hold strings, got type {flat.type}")
    tokens, offsets = _split(_standardize(flat, standardize), split)
    if widths is not None and widths != (1,):
        tokens, offsets = _ngrams(tokens, offsets, widths)
    return tokens, offsets, layout
