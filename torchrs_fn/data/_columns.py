"""Column checks and per-user grouping shared by the splits and the samplers (private).

Grouping is done once, vectorised: users are coded ``0 .. U - 1`` in order of first appearance
(``pyarrow.compute.dictionary_encode``), rows are sorted by ``(user code, time, row index)`` with
``np.lexsort``, and each user's rows are then one contiguous run of the sorted order, described by
its start offset and size.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


def check_table(table: object) -> pa.Table:
    """``table`` as a non-empty ``pa.Table``, else ``TypeError`` / ``ValueError``."""
    if not isinstance(table, pa.Table):
        raise TypeError(f"table must be a pyarrow.Table, got {type(table).__name__}")
    if table.num_rows == 0:
        raise ValueError(f"table is empty (0 rows; columns {table.column_names})")
    return table


def require_columns(table: pa.Table, columns: Mapping[str, str]) -> None:
    """Checks that every ``{argument: column name}`` names a column of ``table``."""
    for argument, name in columns.items():
        if not isinstance(name, str):
            raise TypeError(f"{argument} must be a column name (str), got {name!r}")
    missing = {arg: name for arg, name in columns.items() if name not in table.column_names}
    if missing:
        said = ", ".join(f"{arg}={name!r}" for arg, name in missing.items())
        raise ValueError(
            f"column(s) not found in the table: {said}; available columns: {table.column_names}"
        )


def check_int(value: object, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


def check_no_nulls(column: pa.ChunkedArray | pa.Array, name: str, what: str) -> None:
    if column.null_count:
        raise ValueError(
            f"column {name!r} ({what}) has {column.null_count} null value(s); fill them "
            "(pyarrow.compute.fill_null) or drop those rows first"
        )


def _is_temporal(t: pa.DataType) -> bool:
    return pa.types.is_timestamp(t) or pa.types.is_date(t) or pa.types.is_duration(t)


def time_values(column: pa.ChunkedArray, name: str) -> np.ndarray:
    """A time column as numpy: integers as ``int64``, floats as ``float64``, and Arrow
    ``timestamp`` / ``date`` / ``duration`` as ``int64`` counts of their unit."""
    t = column.type
    check_no_nulls(column, name, "timestamp")
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if pa.types.is_integer(t):
        return array.to_numpy().astype(np.int64, copy=False)
    if pa.types.is_floating(t):
        values = array.to_numpy().astype(np.float64, copy=False)
        if not np.isfinite(values).all():
            raise ValueError(f"column {name!r} (timestamp) holds NaN or infinite values")
        return values
    if _is_temporal(t):
        return array.to_numpy(zero_copy_only=False).view(np.int64)
    raise TypeError(
        f"column {name!r} (timestamp) must be integer, float, timestamp, date or duration, got {t}"
    )


def cutoff_values(cutoffs: object, column: pa.ChunkedArray, name: str) -> np.ndarray:
    """Cut-off(s) comparable with ``time_values(column)``: strictly increasing, finite."""
    if isinstance(cutoffs, (str, bytes)):
        raise TypeError(f"cutoffs must be time values, got {cutoffs!r}")
    values = list(cutoffs) if isinstance(cutoffs, Sequence | np.ndarray) else [cutoffs]
    if not values:
        raise ValueError("cutoffs is empty: give at least one cut-off time")
    t = column.type
    try:
        if _is_temporal(t):
            out = pa.array(values, type=t).to_numpy(zero_copy_only=False).view(np.int64)
        else:
            out = np.asarray(values)
            if out.dtype.kind not in "iuf" or out.dtype == np.bool_:
                raise TypeError(f"got dtype {out.dtype}")
            out = out.astype(np.int64 if out.dtype.kind in "iu" else np.float64)
    except (TypeError, ValueError, pa.ArrowInvalid, pa.ArrowTypeError) as e:
        raise TypeError(
            f"cutoffs {cutoffs!r} cannot be compared with column {name!r} of type {t}: {e}"
        ) from None
    if out.dtype.kind == "f" and not np.isfinite(out).all():
        raise ValueError(f"cutoffs must be finite, got {values}")
    if len(out) > 1 and not (np.diff(out) > 0).all():
        raise ValueError(f"cutoffs must be strictly increasing, got {values}")
    return out


def group_codes(column: pa.ChunkedArray, name: str, what: str = "user") -> tuple[np.ndarray, int]:
    """Codes ``0 .. U - 1`` of a key column, in order of first appearance, and ``U``."""
    check_no_nulls(column, name, what)
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if pa.types.is_dictionary(array.type):
        array = array.dictionary_decode()
    encoded = pc.dictionary_encode(array)
    return encoded.indices.to_numpy().astype(np.int64, copy=False), len(encoded.dictionary)


class Groups(NamedTuple):
    """Rows sorted by ``(group code, time, row index)``; each group one contiguous run."""

    order: np.ndarray  # [N] row of the input at each sorted position
    starts: np.ndarray  # [U] first sorted position of each group
    sizes: np.ndarray  # [U] rows in each group
    rank: np.ndarray  # [N] position of each sorted row within its group (0 = earliest)
    size: np.ndarray  # [N] size of the group of each sorted row


def sorted_groups(codes: np.ndarray, num_groups: int, times: np.ndarray | None = None) -> Groups:
    """Groups the rows by ``codes``; inside a group rows follow ``times`` (ties: row order).

    ``np.lexsort`` is a stable sort, so rows with the same code and time keep their input order.
    """
    order = np.lexsort((codes,) if times is None else (times, codes))
    sizes = np.bincount(codes, minlength=num_groups)
    starts = np.zeros(num_groups, dtype=np.int64)
    np.cumsum(sizes[:-1], out=starts[1:])
    size = np.repeat(sizes, sizes)
    rank = np.arange(len(codes), dtype=np.int64) - np.repeat(starts, sizes)
    return Groups(order=order, starts=starts, sizes=sizes, rank=rank, size=size)
