"""Multi-valued (list) features: ``MultiHot`` encoding and ``pad_lists`` with a mask.

A list feature such as a movie's genres (``list<int64>``) or its tags (``list<string>``) is first
mapped value by value (``StringLookup`` / ``IntegerLookup`` / ``Hashing`` accept list arrays and
return list arrays of ids), then either encoded as one ``[N, num_tokens]`` multi-hot row per example
(``MultiHot``, Keras's ``CategoryEncoding`` / ``StringLookup(output_mode="multi_hot")``) or padded
to ``[N, L]`` ids with a mask (``pad_lists``) for ``layers.BagEmbedding``.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import pyarrow as pa

from ._common import check_int, check_state, padded_out, scatter_rows, unpack

__all__ = ["MultiHot", "Padded", "pad_lists"]

_MODES = ("multi_hot", "count")


def _ids(flat: pa.Array, what: str) -> np.ndarray:
    if not pa.types.is_integer(flat.type):
        raise TypeError(
            f"{what} must hold integer ids, got type {flat.type}; map strings to ids first "
            "(StringLookup, IntegerLookup or Hashing)"
        )
    return flat.to_numpy(zero_copy_only=False).astype(np.int64, copy=False)


def _rows(layout: Any, num_values: int) -> tuple[int, np.ndarray]:
    """(number of rows, row of each flat value) for list input, numpy ``[N, ...]`` or flat input."""
    if layout.is_lists:
        n = len(layout.offsets) - 1
        return n, np.repeat(np.arange(n), np.diff(layout.offsets))
    if layout.kind in ("numpy", "torch") and len(layout.shape) >= 2:
        n = layout.shape[0]
        return n, np.repeat(np.arange(n), num_values // max(n, 1))
    return num_values, np.arange(num_values)


class MultiHot:
    """Encodes lists of ids as ``[N, num_tokens]`` float32 rows: Keras ``CategoryEncoding``.

    ``output_mode="multi_hot"`` (default) sets entry ``[i, t]`` to 1.0 when id ``t`` occurs in row
    ``i``; ``"count"`` gives the number of occurrences. Rows may be Arrow lists (e.g. genre ids, or
    the output of a lookup applied to a list column), numpy ``[N, L]`` (every entry counts, as in
    Keras; padding ids count too) or single ids (``[N]``, one-hot). Keras's
    ``StringLookup(output_mode="multi_hot")`` is ``MultiHot(lookup.vocabulary_size())`` applied to
    ``lookup(lists)``.

    Args:
        num_tokens: ids must lie in ``[0, num_tokens)``.
        output_mode: ``"multi_hot"`` or ``"count"``.

    An id outside ``[0, num_tokens)`` raises ``ValueError`` naming it (Keras raises too).
    """

    def __init__(self, num_tokens: int, *, output_mode: str = "multi_hot") -> None:
        self.num_tokens = check_int(num_tokens, "num_tokens", 1)
        if output_mode not in _MODES:
            raise ValueError(f"output_mode must be one of {list(_MODES)}, got {output_mode!r}")
        self.output_mode = output_mode

    def __call__(self, lists: Any) -> Any:
        """``[N, num_tokens]`` float32 rows: an Arrow ``fixed_size_list<float>[num_tokens]`` array
        for Arrow input (same chunks), else a numpy array (a torch tensor for torch input)."""
        flat, layout = unpack(lists, "lists")
        ids = _ids(flat, "lists")
        bad = (ids < 0) | (ids >= self.num_tokens)
        if bad.any():
            raise ValueError(
                f"{int(bad.sum())} id(s) outside [0, {self.num_tokens}) (num_tokens), e.g. "
                f"{np.unique(ids[bad])[:5].tolist()}"
            )
        n, rows = _rows(layout, len(ids))
        counts = np.bincount(rows * self.num_tokens + ids, minlength=n * self.num_tokens)
        dense = counts.reshape(n, self.num_tokens).astype(np.float32)
        if self.output_mode == "multi_hot":
            np.minimum(dense, 1.0, out=dense)
        return padded_out(dense, layout)

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-able state: ``{"type", "num_tokens", "output_mode"}``."""
        return {"type": "MultiHot", "num_tokens": self.num_tokens, "output_mode": self.output_mode}

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> MultiHot:
        """Rebuilds a ``MultiHot`` from ``to_dict()`` output."""
        check_state(state, cls.__name__, {"type", "num_tokens", "output_mode"})
        return cls(state["num_tokens"], output_mode=state["output_mode"])

    def __repr__(self) -> str:
        return f"MultiHot(num_tokens={self.num_tokens}, output_mode={self.output_mode!r})"


class Padded(NamedTuple):
    """``pad_lists`` output: ``[N, L]`` values and the ``[N, L]`` bool mask of real entries."""

    values: Any
    mask: Any


def pad_lists(lists: Any, length: int | None = None, *, pad_value: int | float = 0) -> Padded:
    """Pads (or truncates) list rows to ``[N, L]`` and says which entries are real.

    Each row keeps its first ``L`` values, followed by ``pad_value`` (the way TextVectorization
    pads: "post" padding and truncation, unlike Keras's ``pad_sequences`` defaults of "pre").
    ``L`` is ``length``, or the longest row (at least 1) when ``length`` is None.

    Args:
        lists: an Arrow list array (``list`` / ``large_list`` / ``fixed_size_list``) of numbers or
            bools, a ChunkedArray of them, or a Python list of lists.
        length: the padded length ``L`` (>= 1), or None.
        pad_value: the value written after each row's end (0 by default, the id that
            ``layers.BagEmbedding`` masks by default).

    Returns:
        ``Padded(values, mask)``: for Arrow input, ``fixed_size_list[L]`` arrays (same chunks),
        which the ``Loader`` turns into ``[B, L]`` tensors; for a Python list, numpy ``[N, L]``
        arrays. ``mask`` is True for the entries that came from the input.
    """
    if length is not None:
        length = check_int(length, "length", 1)
    flat, layout = unpack(lists, "lists")
    if not layout.is_lists:
        raise TypeError(f"lists must be a list column (Arrow list array), got type {flat.type}")
    t = flat.type
    if not (pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t)):
        raise TypeError(f"lists must hold numbers or bools, got values of type {t}")
    values = flat.to_numpy(zero_copy_only=False)
    lengths = np.diff(layout.offsets)
    size = length or max(int(lengths.max(initial=0)), 1)
    dense = scatter_rows(values, layout.offsets, size, pad_value)
    mask = scatter_rows(np.ones(len(values), dtype=bool), layout.offsets, size, False)
    return Padded(padded_out(dense, layout), padded_out(mask, layout))
