"""Seeded random splits of an Arrow table (train / validation / test).

``random_split(ratings, (0.8, 0.2), seed=42)`` is the torchrs_fn form of the TFRS tutorials'
``shuffled = ratings.shuffle(100_000, seed=42); train = shuffled.take(80_000);
test = shuffled.skip(80_000)``: one uniform permutation of the rows, cut into consecutive parts.
Each part keeps the rows in permutation order (like ``torch.utils.data.random_split``).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np
import pyarrow as pa

__all__ = ["random_split"]

_SUM_TOLERANCE = 1e-6


def _is_int(x: object) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, bool)


def _part_sizes(num_rows: int, fractions: Sequence[float | int]) -> list[int]:
    """Rows per part: integer counts as given, or floor(fraction * num_rows) with the remainder
    going to the last part."""
    if isinstance(fractions, (str, bytes)) or not isinstance(fractions, Sequence):
        raise TypeError(
            f"fractions must be a sequence of numbers such as (0.8, 0.2) or (80_000, 20_000), "
            f"got {fractions!r}"
        )
    if len(fractions) == 0:
        raise ValueError("fractions is empty: give at least one part")
    if all(_is_int(f) for f in fractions):
        counts = [int(f) for f in fractions]
        if any(c < 0 for c in counts):
            raise ValueError(f"counts in fractions must be >= 0, got {counts}")
        if sum(counts) != num_rows:
            raise ValueError(
                f"counts in fractions sum to {sum(counts)}, but the table has {num_rows} rows; "
                "integer counts must add up to the number of rows"
            )
        return counts
    values = []
    for f in fractions:
        if isinstance(f, bool) or not isinstance(f, (int, float, np.integer, np.floating)):
            raise TypeError(f"fractions must be numbers, got {f!r} in {fractions!r}")
        values.append(float(f))
    if any(not math.isfinite(f) or f <= 0 for f in values):
        raise ValueError(f"fractions must be positive and finite, got {values}")
    total = math.fsum(values)
    if abs(total - 1.0) > _SUM_TOLERANCE:
        raise ValueError(
            f"fractions must sum to 1 (within {_SUM_TOLERANCE}), got {values} summing to {total}"
        )
    sizes = [math.floor(f * num_rows) for f in values[:-1]]
    sizes.append(num_rows - sum(sizes))
    if sizes[-1] < 0:  # possible only when the fractions sum to a hair over 1
        sizes[-2] += sizes[-1]
        sizes[-1] = 0
    return sizes


def random_split(
    table: pa.Table, fractions: Sequence[float | int], *, seed: int
) -> tuple[pa.Table, ...]:
    """Splits ``table`` at random into ``len(fractions)`` disjoint tables covering every row.

    Args:
        table: the ``pa.Table`` of ``N`` rows to split.
        fractions: positive fractions summing to 1 (within 1e-6), e.g. ``(0.8, 0.2)``: part ``i``
            gets ``floor(fractions[i] * N)`` rows and the last part the rest, so no row is lost
            or duplicated. Or integer row counts summing to ``N``, e.g. ``(80_000, 20_000)``.
        seed: non-negative int; the permutation is ``np.random.default_rng(seed).permutation(N)``
            and part ``i`` is the next ``size_i`` rows of it, in that order.

    Returns:
        a tuple of tables with the schema of ``table``.
    """
    if not isinstance(table, pa.Table):
        raise TypeError(f"table must be a pyarrow.Table, got {type(table).__name__}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    if table.num_rows == 0:
        raise ValueError("table is empty (0 rows): nothing to split")
    sizes = _part_sizes(table.num_rows, fractions)
    permutation = np.random.default_rng(int(seed)).permutation(table.num_rows)
    bounds = np.cumsum([0, *sizes])
    return tuple(table.take(pa.array(permutation[a:b])) for a, b in itertools.pairwise(bounds))
