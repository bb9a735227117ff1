"""Splits of an Arrow table into train / validation / test parts.

* ``random_split(ratings, (0.8, 0.2), seed=42)`` is the torchrs_fn form of the TFRS tutorials'
  ``shuffled = ratings.shuffle(100_000, seed=42); train = shuffled.take(80_000);
  test = shuffled.skip(80_000)``: one uniform permutation of the rows, cut into consecutive parts.
  Each part keeps the rows in permutation order (like ``torch.utils.data.random_split``).
* ``temporal_split`` cuts the rows by time, globally: by fractions of the time-ordered rows or at
  explicit cut-off times.
* ``leave_last_n_out`` and ``per_user_temporal_split`` cut each user's own timeline.

Every split returns disjoint tables whose rows together are exactly the input's rows, each once.
Time order is always ``(timestamp, row index)``: rows with equal timestamps count as happening in
the order they appear in the table (a stable sort), so every result is deterministic.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from ._columns import (
    Groups,
    check_int,
    check_table,
    cutoff_values,
    group_codes,
    require_columns,
    sorted_groups,
    time_values,
)

__all__ = ["leave_last_n_out", "per_user_temporal_split", "random_split", "temporal_split"]

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


def temporal_split(
    table: pa.Table,
    fractions: Sequence[float | int] | None = None,
    *,
    cutoffs: object = None,
    timestamp: str = "timestamp",
) -> tuple[pa.Table, ...]:
    """Splits ``table`` by time, globally: earlier rows in earlier parts.

    Give exactly one of:

    * ``fractions``, as for ``random_split`` (positive fractions summing to 1, or integer row
      counts summing to ``N``): the rows are ordered by ``(timestamp, row index)`` (a stable sort)
      and cut into consecutive parts of ``floor(fractions[i] * N)`` rows, the last part taking the
      rest. Rows with equal timestamps may fall on both sides of a cut; the ones earlier in the
      table go to the earlier part.
    * ``cutoffs``: one time or an increasing sequence of times ``c_1 < ... < c_m``, giving
      ``m + 1`` parts: ``t < c_1``, ``c_1 <= t < c_2``, ..., ``t >= c_m``. Rows with equal
      timestamps always land in the same part. Parts may be empty. For Arrow ``timestamp`` /
      ``date`` columns the cut-offs may be ``datetime`` / ``date`` / ``numpy.datetime64`` values.

    Args:
        table: the ``pa.Table`` of ``N`` rows to split.
        fractions: see above.
        cutoffs: see above.
        timestamp: the time column: integer, float (finite), or Arrow ``timestamp`` / ``date`` /
            ``duration``; no nulls.

    Returns:
        a tuple of tables with the schema of ``table``; each part's rows in
        ``(timestamp, row index)`` order.

    Raises:
        ValueError: a missing column, an empty table, null or NaN timestamps, bad fractions or
            cut-offs, or both / neither of ``fractions`` and ``cutoffs``.
    """
    check_table(table)
    require_columns(table, {"timestamp": timestamp})
    if (fractions is None) == (cutoffs is None):
        raise ValueError(
            "give exactly one of fractions (e.g. (0.8, 0.2)) and cutoffs (timestamp values)"
        )
    times = time_values(table.column(timestamp), timestamp)
    order = np.argsort(times, kind="stable")
    if fractions is not None:
        sizes = _part_sizes(table.num_rows, fractions)
    else:
        cuts = cutoff_values(cutoffs, table.column(timestamp), timestamp)
        part = np.searchsorted(cuts, times[order], side="right")
        sizes = np.bincount(part, minlength=len(cuts) + 1).tolist()
    bounds = np.cumsum([0, *sizes])
    return tuple(table.take(pa.array(order[a:b])) for a, b in itertools.pairwise(bounds))


def leave_last_n_out(
    table: pa.Table,
    n: int = 1,
    *,
    user: str = "user_id",
    timestamp: str = "timestamp",
    min_train: int = 1,
) -> tuple[pa.Table, pa.Table]:
    """Holds out each user's ``n`` latest interactions: ``(train, test)``.

    Each user's rows are ordered by ``(timestamp, row index)``; the last ``n`` of that order go to
    ``test``. So among rows with the same timestamp, the one later in the table counts as later.
    A user with fewer than ``n + min_train`` rows is not held out at all: all of their rows stay in
    ``train`` (by default, with ``min_train=1``, every user in ``test`` keeps at least one row in
    ``train``, and users with ``<= n`` rows are train-only). ``min_train=0`` holds out users with
    exactly ``n`` rows too, leaving them nothing in ``train``.

    Args:
        table: the interactions, one row each.
        n: rows held out per user, ``>= 1``.
        user: the user column (any type; no nulls).
        timestamp: the time column (see ``temporal_split``).
        min_train: rows a held-out user must keep in ``train``, ``>= 0``.

    Returns:
        ``(train, test)`` with the schema of ``table``, each keeping the rows in table order.
        ``test`` has exactly ``n`` rows for every held-out user.
    """
    check_table(table)
    n = check_int(n, "n", 1)
    min_train = check_int(min_train, "min_train", 0)
    require_columns(table, {"user": user, "timestamp": timestamp})
    groups = _user_groups(table, user, timestamp)
    held_out = (groups.rank >= groups.size - n) & (groups.size >= n + min_train)
    return _by_mask(table, groups.order, held_out)


def per_user_temporal_split(
    table: pa.Table,
    fraction: float = 0.8,
    *,
    user: str = "user_id",
    timestamp: str = "timestamp",
) -> tuple[pa.Table, pa.Table]:
    """Each user's earliest ``fraction`` of interactions to ``train``, the rest to ``test``.

    A user with ``n_u`` rows keeps ``ceil(fraction * n_u)`` of them, the earliest by
    ``(timestamp, row index)``, in ``train`` (a product within ``1e-9`` of an integer counts as
    that integer, so ``0.7 * 10`` gives 7 despite floating point). Rounding up means every user
    has at least one row in ``train``; a user with a single row is train-only.

    Args:
        table: the interactions, one row each.
        fraction: the share of each user's rows for ``train``, ``0 < fraction < 1``.
        user: the user column (any type; no nulls).
        timestamp: the time column (see ``temporal_split``).

    Returns:
        ``(train, test)`` with the schema of ``table``, each keeping the rows in table order.
    """
    check_table(table)
    if (
        isinstance(fraction, bool)
        or not isinstance(fraction, (int, float, np.integer, np.floating))
        or not 0 < fraction < 1
    ):
        raise ValueError(f"fraction must be a number with 0 < fraction < 1, got {fraction!r}")
    require_columns(table, {"user": user, "timestamp": timestamp})
    groups = _user_groups(table, user, timestamp)
    num_train = np.ceil(np.round(float(fraction) * groups.size, 9)).astype(np.int64)
    return _by_mask(table, groups.order, groups.rank >= num_train)


def _user_groups(table: pa.Table, user: str, timestamp: str) -> Groups:
    times = time_values(table.column(timestamp), timestamp)
    codes, num_users = group_codes(table.column(user), user)
    return sorted_groups(codes, num_users, times)


def _by_mask(
    table: pa.Table, order: np.ndarray, second_sorted: np.ndarray
) -> tuple[pa.Table, pa.Table]:
    """(rows not in the second part, rows in it), both in table order; ``second_sorted`` is
    indexed by sorted position and scattered back to rows through ``order``."""
    second = np.empty(len(order), dtype=bool)
    second[order] = second_sorted
    return table.filter(pa.array(~second)), table.filter(pa.array(second))
