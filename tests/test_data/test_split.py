"""Splits: hand-computed part sizes, row bookkeeping by brute force, seeded order; temporal and
per-user splits against plain-Python per-user loops, on synthetic data and MovieLens 100K."""

from __future__ import annotations

import datetime
import math
from collections import defaultdict
from fractions import Fraction

import numpy as np
import pyarrow as pa
import pytest

from torchrs_fn.data import leave_last_n_out, per_user_temporal_split, random_split, temporal_split


def _table(n: int) -> pa.Table:
    return pa.table({"row": np.arange(n), "label": [f"r{i}" for i in range(n)]})


def _rows(part: pa.Table) -> list[int]:
    return part.column("row").to_pylist()


def test_sizes_floor_with_remainder_last():
    assert [p.num_rows for p in random_split(_table(10), (0.8, 0.2), seed=0)] == [8, 2]
    # 11 rows: floor(5.5) = 5, floor(3.3) = 3, the rest 3
    assert [p.num_rows for p in random_split(_table(11), (0.5, 0.3, 0.2), seed=0)] == [5, 3, 3]
    # 7 rows: floor(7/3) = 2 twice, then 3
    assert [p.num_rows for p in random_split(_table(7), (1 / 3, 1 / 3, 1 / 3), seed=0)] == [2, 2, 3]


def test_every_row_exactly_once():
    for n, fractions in ((1000, (0.8, 0.1, 0.1)), (997, (0.25, 0.25, 0.5)), (5, (0.9, 0.1))):
        parts = random_split(_table(n), fractions, seed=3)
        rows = [r for p in parts for r in _rows(p)]
        assert sorted(rows) == list(range(n))
        assert len(rows) == n


def test_columns_stay_aligned_and_schema_kept():
    table = _table(50)
    for part in random_split(table, (0.6, 0.4), seed=1):
        assert part.schema == table.schema
        assert part.column("label").to_pylist() == [f"r{r}" for r in _rows(part)]


def test_parts_follow_the_seeded_permutation():
    n = 40
    parts = random_split(_table(n), (0.75, 0.25), seed=9)
    perm = np.random.default_rng(9).permutation(n).tolist()
    assert _rows(parts[0]) == perm[:30]
    assert _rows(parts[1]) == perm[30:]


def test_deterministic_per_seed():
    a = random_split(_table(100), (0.5, 0.5), seed=5)
    b = random_split(_table(100), (0.5, 0.5), seed=5)
    c = random_split(_table(100), (0.5, 0.5), seed=6)
    assert [_rows(p) for p in a] == [_rows(p) for p in b]
    assert _rows(a[0]) != _rows(c[0])


def test_integer_counts():
    parts = random_split(_table(10), (6, 4), seed=2)
    assert [p.num_rows for p in parts] == [6, 4]
    assert sorted(_rows(parts[0]) + _rows(parts[1])) == list(range(10))
    assert [p.num_rows for p in random_split(_table(10), (np.int64(10), 0), seed=2)] == [10, 0]
    with pytest.raises(ValueError, match="sum to 9"):
        random_split(_table(10), (6, 3), seed=2)
    with pytest.raises(ValueError, match=">= 0"):
        random_split(_table(10), (11, -1), seed=2)


def test_bad_fractions():
    with pytest.raises(ValueError, match="sum to 1"):
        random_split(_table(10), (0.8, 0.3), seed=0)
    with pytest.raises(ValueError, match="sum to 1"):
        random_split(_table(10), (0.5, 0.4999), seed=0)
    with pytest.raises(ValueError, match="positive"):
        random_split(_table(10), (1.0, 0.0), seed=0)
    with pytest.raises(ValueError, match="positive"):
        random_split(_table(10), (1.2, -0.2), seed=0)
    with pytest.raises(ValueError, match="empty"):
        random_split(_table(10), (), seed=0)
    with pytest.raises(TypeError, match="fractions"):
        random_split(_table(10), 0.5, seed=0)
    # within the 1e-6 tolerance
    assert sum(p.num_rows for p in random_split(_table(10), (0.8, 0.2000001), seed=0)) == 10


def test_bad_table_and_seed():
    with pytest.raises(TypeError, match="pyarrow.Table"):
        random_split({"row": [1, 2]}, (0.5, 0.5), seed=0)
    with pytest.raises(ValueError, match="empty"):
        random_split(_table(0), (0.5, 0.5), seed=0)
    with pytest.raises(ValueError, match="seed"):
        random_split(_table(10), (0.5, 0.5), seed=-1)
    with pytest.raises(TypeError):
        random_split(_table(10), (0.5, 0.5))  # seed is required


# -- temporal splits -----------------------------------------------------------------------------
# References are plain-Python loops over rows: sorted() on (timestamp, row) keys, dicts of lists.


def _events(n: int, seed: int, num_users: int = 7, num_times: int = 12) -> pa.Table:
    """Synthetic interactions with many timestamp ties, users in scrambled order."""
    rng = np.random.default_rng(seed)
    users = rng.integers(0, num_users, n)
    return pa.table(
        {
            "user_id": pa.array([f"u{u}" for u in users]),
            "timestamp": rng.integers(0, num_times, n),
            "row": np.arange(n),
        }
    )


def _time_order(table: pa.Table) -> list[int]:
    ts = table.column("timestamp").to_pylist()
    return sorted(range(table.num_rows), key=lambda r: (ts[r], r))


def _timelines(table: pa.Table, user: str = "user_id") -> dict[object, list[int]]:
    """user -> that user's rows in (timestamp, row) order."""
    out: dict[object, list[int]] = defaultdict(list)
    users = table.column(user).to_pylist()
    for r in _time_order(table):
        out[users[r]].append(r)
    return out


def _assert_partition(parts, n: int) -> None:
    rows = np.concatenate([p.column("row").to_numpy() for p in parts])
    assert len(rows) == n
    np.testing.assert_array_equal(np.sort(rows), np.arange(n))


def test_temporal_split_fractions_by_brute_force():
    for n, seed, fractions in ((50, 0, (0.8, 0.2)), (101, 1, (0.5, 0.3, 0.2)), (7, 2, (6, 1))):
        table = _events(n, seed, num_times=5)  # heavy ties at every cut
        parts = temporal_split(table, fractions)
        order = _time_order(table)
        if all(isinstance(f, int) for f in fractions):
            sizes = list(fractions)
        else:
            sizes = [math.floor(f * n) for f in fractions[:-1]]
            sizes.append(n - sum(sizes))
        start = 0
        for part, size in zip(parts, sizes, strict=True):
            assert part.column("row").to_pylist() == order[start : start + size]
            assert part.schema == table.schema
            start += size
        _assert_partition(parts, n)


def test_temporal_split_ties_at_the_cut_hand_computed():
    table = pa.table({"timestamp": [5, 1, 5, 5, 0], "row": [0, 1, 2, 3, 4]})
    # time order (timestamp, row): 4, 1, 0, 2, 3; floor(0.6 * 5) = 3 rows first
    train, test = temporal_split(table, (0.6, 0.4))
    assert train.column("row").to_pylist() == [4, 1, 0]
    assert test.column("row").to_pylist() == [2, 3]
    # with a cut-off, equal timestamps stay together
    before, after = temporal_split(table, cutoffs=5)
    assert before.column("row").to_pylist() == [4, 1]
    assert after.column("row").to_pylist() == [0, 2, 3]


def test_temporal_split_cutoffs_by_brute_force():
    table = _events(200, 3, num_times=20)
    ts = table.column("timestamp").to_pylist()
    for cutoffs in ([7], (3, 10, 15), [-5], [100], np.array([4.5, 12.0])):
        parts = temporal_split(table, cutoffs=cutoffs)
        cuts = list(np.atleast_1d(cutoffs))
        assert len(parts) == len(cuts) + 1
        for i, part in enumerate(parts):
            lo = -math.inf if i == 0 else cuts[i - 1]
            hi = math.inf if i == len(cuts) else cuts[i]
            expected = [r for r in _time_order(table) if lo <= ts[r] < hi]
            assert part.column("row").to_pylist() == expected
        _assert_partition(parts, table.num_rows)
    assert [p.num_rows for p in temporal_split(table, cutoffs=7)] == [
        sum(t < 7 for t in ts),
        sum(t >= 7 for t in ts),
    ]


def test_temporal_split_arrow_time_types():
    base = datetime.datetime(2020, 1, 1)
    stamps = [base + datetime.timedelta(days=d) for d in (3, 0, 2, 1)]
    table = pa.table({"when": pa.array(stamps, type=pa.timestamp("s")), "row": [0, 1, 2, 3]})
    early, late = temporal_split(table, cutoffs=base + datetime.timedelta(days=2), timestamp="when")
    assert early.column("row").to_pylist() == [1, 3]
    assert late.column("row").to_pylist() == [2, 0]
    dates = table.set_column(0, "when", pa.array([s.date() for s in stamps], type=pa.date32()))
    early, late = temporal_split(dates, cutoffs=[datetime.date(2020, 1, 2)], timestamp="when")
    assert early.column("row").to_pylist() == [1]
    assert temporal_split(dates, (0.5, 0.5), timestamp="when")[1].column("row").to_pylist() == [
        2,
        0,
    ]
    floats = pa.table({"timestamp": [0.5, -1.0, 2.25], "row": [0, 1, 2]})
    assert [p.column("row").to_pylist() for p in temporal_split(floats, cutoffs=0.5)] == [
        [1],
        [0, 2],
    ]


def test_temporal_split_errors():
    table = _events(10, 0)
    with pytest.raises(ValueError, match="exactly one"):
        temporal_split(table)
    with pytest.raises(ValueError, match="exactly one"):
        temporal_split(table, (0.5, 0.5), cutoffs=3)
    with pytest.raises(ValueError, match="sum to 1"):
        temporal_split(table, (0.5, 0.6))
    with pytest.raises(ValueError, match="positive"):
        temporal_split(table, (1.0, 0.0))
    with pytest.raises(ValueError, match="strictly increasing"):
        temporal_split(table, cutoffs=[5, 5])
    with pytest.raises(ValueError, match="empty"):
        temporal_split(table, cutoffs=[])
    with pytest.raises(ValueError, match="finite"):
        temporal_split(table, cutoffs=[float("nan")])
    with pytest.raises(TypeError, match="cutoffs"):
        temporal_split(table, cutoffs="2020-01-01")
    with pytest.raises(ValueError, match="'time'"):
        temporal_split(table, (0.5, 0.5), timestamp="time")
    with pytest.raises(ValueError, match="empty"):
        temporal_split(table.slice(0, 0), (0.5, 0.5))
    with pytest.raises(TypeError, match="pyarrow.Table"):
        temporal_split({"timestamp": [1]}, (0.5, 0.5))
    nulls = pa.table({"timestamp": pa.array([1, None, 3]), "row": [0, 1, 2]})
    with pytest.raises(ValueError, match="1 null"):
        temporal_split(nulls, (0.5, 0.5))
    nan = pa.table({"timestamp": [1.0, float("nan")]})
    with pytest.raises(ValueError, match="NaN"):
        temporal_split(nan, (0.5, 0.5))
    with pytest.raises(TypeError, match="timestamp"):
        temporal_split(pa.table({"timestamp": ["a", "b"]}), (0.5, 0.5))


@pytest.mark.parametrize("n, min_train", [(1, 1), (2, 1), (3, 0), (1, 0), (2, 4)])
def test_leave_last_n_out_by_brute_force(n, min_train):
    table = _events(300, 4, num_users=25, num_times=8)
    train, test = leave_last_n_out(table, n, min_train=min_train)
    expected_test = set()
    for rows in _timelines(table).values():
        if len(rows) >= n + min_train:
            expected_test.update(rows[-n:])
    expected_train = [r for r in range(table.num_rows) if r not in expected_test]
    assert test.column("row").to_pylist() == sorted(expected_test)  # table order
    assert train.column("row").to_pylist() == expected_train
    _assert_partition((train, test), table.num_rows)
    assert train.schema == test.schema == table.schema


def test_leave_last_n_out_hand_computed():
    table = pa.table(
        {
            "user_id": [1, 2, 1, 1, 2, 3, 1],
            "timestamp": [3, 1, 1, 3, 2, 5, 2],
            "row": [0, 1, 2, 3, 4, 5, 6],
        }
    )
    # user 1: rows by (timestamp, row) 2, 6, 0, 3 -> row 3 is the latest (ties: later row)
    # user 2: rows 1, 4 -> 4; user 3: a single row stays in train (min_train=1)
    train, test = leave_last_n_out(table)
    assert test.column("row").to_pylist() == [3, 4]
    assert train.column("row").to_pylist() == [0, 1, 2, 5, 6]
    train, test = leave_last_n_out(table, 2)
    assert test.column("row").to_pylist() == [0, 3]  # user 2 has only 2 <= n rows
    train, test = leave_last_n_out(table, 2, min_train=0)
    assert test.column("row").to_pylist() == [0, 1, 3, 4]


def test_per_user_temporal_split_by_brute_force():
    table = _events(400, 5, num_users=30, num_times=10)
    for fraction in (0.8, 0.5, 0.7, 0.29, 0.1, 0.999):
        train, test = per_user_temporal_split(table, fraction)
        expected_test = set()
        for rows in _timelines(table).values():
            # exact decimal arithmetic: ceil(fraction * n_u) rows to train
            keep = math.ceil(Fraction(str(fraction)) * len(rows))
            expected_test.update(rows[keep:])
        assert test.column("row").to_pylist() == sorted(expected_test)
        assert train.column("row").to_pylist() == [
            r for r in range(table.num_rows) if r not in expected_test
        ]
        _assert_partition((train, test), table.num_rows)


def test_per_user_temporal_split_rounding_hand_computed():
    # one user with 10 rows at times 0..9 (reversed in the table)
    table = pa.table({"user_id": [0] * 10, "timestamp": list(range(9, -1, -1)), "row": range(10)})
    train, test = per_user_temporal_split(table, 0.7)  # 0.7 * 10 is 7.000000000000001 in floats
    assert train.num_rows == 7 and test.num_rows == 3
    assert sorted(test.column("timestamp").to_pylist()) == [7, 8, 9]
    train, test = per_user_temporal_split(table, 0.25)  # ceil(2.5) = 3
    assert train.num_rows == 3
    single = pa.table({"user_id": [0], "timestamp": [1], "row": [0]})
    train, test = per_user_temporal_split(single, 0.5)
    assert train.num_rows == 1 and test.num_rows == 0


def test_per_user_splits_errors():
    table = _events(20, 0)
    for bad in (0, 1, 1.5, -0.2, "0.5", True):
        with pytest.raises(ValueError, match="fraction"):
            per_user_temporal_split(table, bad)
    for bad in (0, -1, 1.5):
        with pytest.raises(ValueError, match="n must"):
            leave_last_n_out(table, bad)
    with pytest.raises(ValueError, match="min_train"):
        leave_last_n_out(table, 1, min_train=-1)
    with pytest.raises(ValueError, match="user='uid'"):
        leave_last_n_out(table, user="uid")
    with pytest.raises(ValueError, match="timestamp='ts'"):
        per_user_temporal_split(table, timestamp="ts")
    with pytest.raises(ValueError, match="empty"):
        leave_last_n_out(table.slice(0, 0))
    null_users = pa.table({"user_id": ["a", None], "timestamp": [1, 2]})
    with pytest.raises(ValueError, match="'user_id'.*null"):
        leave_last_n_out(null_users)
    null_times = pa.table({"user_id": ["a", "b"], "timestamp": pa.array([1, None])})
    with pytest.raises(ValueError, match="'timestamp'.*null"):
        per_user_temporal_split(null_times)


def test_splits_conserve_rows_on_movielens_100k(ml100k_dir):
    from torchrs_fn.data.datasets import movielens

    ratings = movielens.load("100k", data_dir=ml100k_dir).ratings
    n = ratings.num_rows
    ratings = ratings.append_column("row", pa.array(np.arange(n)))
    splits = {
        "temporal fractions": temporal_split(ratings, (0.8, 0.1, 0.1)),
        "temporal cutoffs": temporal_split(ratings, cutoffs=[880_000_000, 890_000_000]),
        "leave last 1": leave_last_n_out(ratings),
        "leave last 5": leave_last_n_out(ratings, 5),
        "per user 0.8": per_user_temporal_split(ratings, 0.8),
    }
    for name, parts in splits.items():
        _assert_partition(parts, n)
        assert all(p.schema == ratings.schema for p in parts), name
    assert [p.num_rows for p in splits["temporal fractions"]] == [80_000, 10_000, 10_000]
    # every MovieLens 100K user has >= 20 ratings, so every user is held out
    assert splits["leave last 1"][1].num_rows == 943
    assert splits["leave last 5"][1].num_rows == 5 * 943
    # no test interaction of a user is earlier than any of their train interactions
    for train, test in (splits["leave last 1"], splits["per user 0.8"]):
        last_train = _max_time_by_user(train)
        first_test = _min_time_by_user(test)
        assert all(last_train[u] <= t for u, t in first_test.items())
    times = [p.column("timestamp").to_numpy() for p in splits["temporal fractions"]]
    assert times[0].max() <= times[1].min() and times[1].max() <= times[2].min()


def _max_time_by_user(table: pa.Table) -> dict[str, int]:
    out: dict[str, int] = {}
    for u, t in zip(table.column("user_id").to_pylist(), table.column("timestamp").to_pylist()):
        out[u] = max(out.get(u, t), t)
    return out


def _min_time_by_user(table: pa.Table) -> dict[str, int]:
    out: dict[str, int] = {}
    for u, t in zip(table.column("user_id").to_pylist(), table.column("timestamp").to_pylist()):
        out[u] = min(out.get(u, t), t)
    return out
