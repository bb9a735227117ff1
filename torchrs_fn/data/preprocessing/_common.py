"""Taking inputs apart into flat Arrow values and giving results back in the input's form (private).

Every preprocessing class applies to whole columns the same way: the input (a pyarrow Array or
ChunkedArray, possibly of lists; a numpy array; a list; a torch tensor) is reduced to one flat Arrow
array of values plus a ``Layout`` describing where they came from; the class maps the flat values
in one vectorised pass; ``pack`` puts the results back into the same form (same chunks, same list
row lengths, same numpy shape, same torch device).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from .. import _lists

_SHOW = 5  # how many offending values an error message lists


@dataclass(frozen=True)
class Layout:
    """Where flat values came from: the container kind and, for lists, the row offsets."""

    kind: str  # "array" | "chunked" | "numpy" | "torch" | "pylist" (nested Python lists)
    num_rows: int
    shape: tuple[int, ...] | None = None  # numpy / torch input shape
    device: torch.device | None = None  # torch input device
    chunked: pa.ChunkedArray | None = None  # chunked input (for its chunk lengths)
    list_type: pa.DataType | None = None  # outer list type of Arrow list input
    offsets: np.ndarray | None = None  # [N + 1] int64 row offsets of list input

    @property
    def is_lists(self) -> bool:
        return self.list_type is not None

    def row_width(self) -> int | None:
        """Values per row when every row has the same count (scalars: None), else -1."""
        if self.kind in ("numpy", "torch"):
            return None if len(self.shape) <= 1 else int(self.shape[-1])
        if self.list_type is None:
            return None
        lengths = np.diff(self.offsets)
        if pa.types.is_fixed_size_list(self.list_type):
            return int(self.list_type.list_size)
        if len(lengths) == 0:
            return -1
        return int(lengths[0]) if (lengths == lengths[0]).all() else -1


def check_int(value: Any, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


def check_float(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    return value


def _decoded(arr: pa.Array) -> pa.Array:
    if pa.types.is_dictionary(arr.type):
        return pc.cast(arr, arr.type.value_type)
    return arr


def unpack(values: Any, what: str, *, lists: bool = True) -> tuple[pa.Array, Layout]:
    """``values`` -> (flat Arrow values without nulls, Layout).

    Accepts a pyarrow Array/ChunkedArray (of lists too when ``lists``), a numpy array (any shape),
    a list or tuple (nested lists become Arrow list input), or a torch tensor. Dictionary arrays
    are decoded. Nulls raise ``ValueError``; other containers raise ``TypeError``.
    """
    if isinstance(values, torch.Tensor):
        array = values.detach().cpu().numpy()
        flat = pa.array(array.reshape(-1))
        layout = Layout("torch", array.shape[0] if array.ndim else 1, array.shape, values.device)
    elif isinstance(values, np.ndarray):
        try:
            flat = pa.array(values.reshape(-1))
        except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
            raise TypeError(
                f"{what}: cannot read a numpy array of dtype {values.dtype}: {e}"
            ) from None
        layout = Layout("numpy", values.shape[0] if values.ndim else 1, values.shape)
    elif isinstance(values, (pa.Array, pa.ChunkedArray, list, tuple)):
        if isinstance(values, (list, tuple)):
            try:
                arrow: pa.Array | pa.ChunkedArray = pa.array(values)
            except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
                raise TypeError(f"{what}: cannot read the list as one Arrow type: {e}") from None
            if not _lists.is_list_type(arrow.type):
                flat = _decoded(arrow)
                layout = Layout("numpy", len(arrow), (len(arrow),))
                return _no_nulls(flat, what), layout
        else:
            arrow = values
        combined = arrow.combine_chunks() if isinstance(arrow, pa.ChunkedArray) else arrow
        chunked = arrow if isinstance(arrow, pa.ChunkedArray) else None
        kind = "chunked" if chunked is not None else "array"
        if isinstance(values, (list, tuple)):
            kind = "pylist"  # nested Python lists: ragged results as Arrow, padded as numpy
        if _lists.is_list_type(combined.type):
            if not lists:
                raise TypeError(
                    f"{what} must be a column of single values, got a list column ({combined.type})"
                )
            flat, offsets = _lists.list_parts(combined, what)
            if _lists.is_list_type(flat.type):
                raise TypeError(
                    f"{what} has type {combined.type}: lists of lists are not supported; "
                    "flatten one level first (pyarrow.compute.list_flatten)"
                )
            layout = Layout(
                kind, len(combined), chunked=chunked, list_type=combined.type, offsets=offsets
            )
        else:
            flat = combined
            layout = Layout(kind, len(combined), chunked=chunked)
        flat = _decoded(flat)
    else:
        raise TypeError(
            f"{what} must be a pyarrow Array/ChunkedArray, a numpy array, a list or a torch "
            f"tensor, got {type(values).__name__}"
        )
    return _no_nulls(flat, what), layout


def _no_nulls(flat: pa.Array, what: str) -> pa.Array:
    if flat.null_count:
        first = int(np.flatnonzero(pc.is_null(flat).to_numpy(zero_copy_only=False))[0])
        raise ValueError(
            f"{what} has {flat.null_count} null value(s) (the first at flat position {first}); "
            "nulls are not mapped to anything: fill (pyarrow.compute.fill_null) or drop them first"
        )
    return flat


def pack(result: np.ndarray | pa.Array, layout: Layout) -> Any:
    """Flat per-value results -> the input's form (Arrow with the same chunks and list rows, numpy
    of the input's shape, or a torch tensor on the input's device)."""
    if layout.kind == "numpy":
        array = result if isinstance(result, np.ndarray) else result.to_numpy(zero_copy_only=False)
        return array.reshape(layout.shape)
    if layout.kind == "torch":
        array = result if isinstance(result, np.ndarray) else result.to_numpy(zero_copy_only=False)
        return torch.from_numpy(np.ascontiguousarray(array).reshape(layout.shape)).to(layout.device)
    arrow = result if isinstance(result, pa.Array) else pa.array(result)
    if layout.is_lists:
        arrow = _lists.rebuild_lists(layout.list_type, layout.offsets, arrow)
    return finish_rows(arrow, layout)


def finish_rows(rows: pa.Array, layout: Layout) -> pa.Array | pa.ChunkedArray:
    """An Arrow array of one result per input row, re-chunked like a ChunkedArray input."""
    if layout.chunked is not None:
        return _lists.split_like(rows, layout.chunked)
    return rows


def numeric(flat: pa.Array, what: str) -> np.ndarray:
    """Integer or float Arrow values -> float64 numpy (``TypeError`` for anything else)."""
    t = flat.type
    if not (pa.types.is_integer(t) or pa.types.is_floating(t)):
        raise TypeError(f"{what} must hold integers or floats, got type {t}")
    return flat.to_numpy(zero_copy_only=False).astype(np.float64, copy=False)


def check_finite(x: np.ndarray, what: str) -> None:
    bad = ~np.isfinite(x)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"{what} holds {int(bad.sum())} NaN or infinite value(s) (the first at flat position "
            f"{first}, value {x[first]}); drop or fill them first"
        )


def fixed_size_rows(flat: np.ndarray, num_rows: int, width: int) -> pa.Array:
    """``[N * width]`` numpy values -> an ``[N]`` fixed_size_list<width> Arrow array."""
    return pa.FixedSizeListArray.from_arrays(pa.array(flat.reshape(-1)), width)


def padded_out(dense: np.ndarray, layout: Layout) -> Any:
    """``[N, L]`` numpy rows -> fixed-size lists for Arrow input, else numpy ``[N, L]``."""
    if layout.kind in ("array", "chunked"):
        return finish_rows(fixed_size_rows(dense, dense.shape[0], dense.shape[1]), layout)
    if layout.kind == "torch":
        return torch.from_numpy(dense).to(layout.device)
    return dense


def check_state(state: Any, name: str, keys: set[str]) -> None:
    """``from_dict`` input check: a dict with exactly ``keys`` whose ``"type"`` is ``name``."""
    if not isinstance(state, dict) or set(state) != keys:
        got = sorted(state) if isinstance(state, dict) else type(state).__name__
        raise ValueError(f"state must be a dict with keys {sorted(keys)}, got {got}")
    if state["type"] != name:
        raise ValueError(f"state is of a {state['type']!r}, not a {name!r}")


def scatter_rows(values: np.ndarray, offsets: np.ndarray, length: int, fill: Any) -> np.ndarray:
    """Ragged rows (flat ``values`` cut at ``[N + 1]`` ``offsets``) -> ``[N, length]``: each row's
    first ``length`` values, then ``fill``. One flat scatter, no per-row work."""
    n = len(offsets) - 1
    lengths = np.diff(offsets)
    dense = np.full(n * length, fill, dtype=values.dtype)
    parent = np.repeat(np.arange(n, dtype=np.int64), lengths)
    pos = np.arange(len(values), dtype=np.int64) - offsets[:-1][parent]
    target = parent * length + pos
    if lengths.max(initial=0) > length:
        keep = pos < length
        target, values = target[keep], values[keep]
    dense[target] = values
    return dense.reshape(n, length)
