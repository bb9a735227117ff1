"""Arrow list arrays taken apart and put back together, vectorised (private).

A list array is handled as its flat values plus ``[N + 1]`` int64 row offsets, so any per-value
mapping (a lookup, a hash, a normalisation) runs once over the flat values and the lists are then
rebuilt around the results, with no per-row Python work. Used by the lookups and by
``preprocessing``.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["is_list_type", "list_parts", "rebuild_lists", "map_list_values", "split_like"]


def is_list_type(t: pa.DataType) -> bool:
    """``list``, ``large_list`` or ``fixed_size_list``."""
    return pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)


def list_parts(lists: pa.Array, what: str) -> tuple[pa.Array, np.ndarray]:
    """``[N]`` lists -> (flat values ``[M]``, int64 offsets ``[N + 1]``); null lists raise.

    Slices are honoured: the flat values are only those of the rows in view.
    """
    if lists.null_count:
        first = int(np.flatnonzero(pc.is_null(lists).to_numpy(zero_copy_only=False))[0])
        raise ValueError(
            f"{what} has {lists.null_count} null list(s) (the first at row {first}); give an "
            "empty list instead, or fill / drop those rows first"
        )
    lengths = pc.list_value_length(lists).to_numpy(zero_copy_only=False).astype(np.int64)
    offsets = np.zeros(len(lists) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return pc.list_flatten(lists), offsets


def rebuild_lists(like: pa.DataType, offsets: np.ndarray, values: pa.Array) -> pa.Array:
    """Lists of ``values`` cut at ``offsets``, of the same list kind as ``like``.

    ``fixed_size_list`` stays fixed-size; ``list`` becomes ``large_list`` only if the offsets
    overflow int32.
    """
    if pa.types.is_fixed_size_list(like):
        return pa.FixedSizeListArray.from_arrays(values, like.list_size)
    if pa.types.is_large_list(like) or (len(offsets) and offsets[-1] > np.iinfo(np.int32).max):
        return pa.LargeListArray.from_arrays(pa.array(offsets, pa.int64()), values)
    return pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)), values)


def split_like(result: pa.Array, chunked: pa.ChunkedArray) -> pa.ChunkedArray:
    """``result`` (one row per row of ``chunked``) cut into ``chunked``'s chunk lengths."""
    bounds = np.cumsum([0] + [len(c) for c in chunked.chunks])
    return pa.chunked_array(
        [result.slice(a, b - a) for a, b in itertools.pairwise(bounds)], type=result.type
    )


def map_list_values(
    lists: pa.Array | pa.ChunkedArray, fn: Callable[[pa.Array], Any], what: str
) -> pa.Array | pa.ChunkedArray:
    """Applies ``fn`` (``[M]`` values -> ``[M]`` Arrow array) to the values of list arrays.

    One call of ``fn`` covers every chunk of a ChunkedArray; the result has the input's chunks and
    list kind, with ``fn``'s value type.
    """
    combined = lists.combine_chunks() if isinstance(lists, pa.ChunkedArray) else lists
    flat, offsets = list_parts(combined, what)
    mapped = fn(flat)
    if not isinstance(mapped, pa.Array):
        mapped = pa.array(mapped)
    result = rebuild_lists(combined.type, offsets, mapped)
    if isinstance(lists, pa.ChunkedArray):
        return split_like(result, lists)
    return result
