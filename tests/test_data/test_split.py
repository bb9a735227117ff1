"""random_split: hand-computed part sizes, row bookkeeping by brute force, seeded order."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from torchrs_fn.data import random_split


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
