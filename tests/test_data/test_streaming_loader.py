"""ParquetLoader: streaming row groups, bounded shuffle buffer, rank shards, resuming, errors.

References are independent of the loader: the ids written to the files (every row exactly once,
file order), ``np.random.default_rng([seed, epoch]).permutation(num_row_groups)`` (the documented
row-group order) and the subprocess's peak resident memory read from ``/proc``.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest
import torch

from torchrs_fn.data import ParquetLoader


def _write(path, files=3, rows=500, row_group_size=64, uneven=False):
    """``files`` Parquet files of ``rows`` rows each: ``id`` = 0.. in file order, ``x`` = id / 2,
    ``v`` = [id, -id] (a list column), ``flag`` = id is even. Returns the number of rows."""
    path.mkdir(parents=True, exist_ok=True)
    start = 0
    for f in range(files):
        ids = np.arange(start, start + rows, dtype=np.int64)
        table = pa.table(
            {
                "id": ids,
                "x": (ids / 2).astype(np.float32),
                "v": pa.FixedSizeListArray.from_arrays(
                    pa.array(np.stack([ids, -ids], 1).ravel()), 2
                ),
                "flag": ids % 2 == 0,
            }
        )
        size = row_group_size + 17 * f if uneven else row_group_size
        pq.write_table(table, path / f"part-{f}.parquet", row_group_size=size)
        start += rows
    return start


def _ids(batches) -> np.ndarray:
    return np.concatenate([b["id"].numpy() for b in batches])


def _same(a, b) -> bool:
    return len(a) == len(b) and all(
        x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x) for x, y in zip(a, b)
    )


@pytest.mark.parametrize(
    ("files", "batch_size", "shuffle_buffer"),
    [(1, 32, 1), (3, 50, 100), (3, 7, 10_000), (2, 1000, 64), (3, 64, 129)],
)
def test_every_row_exactly_once_per_epoch_and_columns_stay_aligned(
    tmp_path, files, batch_size, shuffle_buffer
):
    n = _write(tmp_path, files=files)
    loader = ParquetLoader(tmp_path, batch_size, shuffle_buffer=shuffle_buffer, seed=1)
    assert loader.num_rows == n and len(loader) == -(-n // batch_size)
    for _ in range(2):
        batches = list(loader)
        assert len(batches) == -(-n // batch_size)
        assert [len(b["id"]) for b in batches[:-1]] == [batch_size] * (len(batches) - 1)
        ids = _ids(batches)
        assert sorted(ids.tolist()) == list(range(n))
        assert ids.tolist() != list(range(n))  # shuffled
        np.testing.assert_array_equal(np.concatenate([b["x"].numpy() for b in batches]), ids / 2)
        v = np.concatenate([b["v"].numpy() for b in batches])
        np.testing.assert_array_equal(v, np.stack([ids, -ids], 1))
        np.testing.assert_array_equal(
            np.concatenate([b["flag"].numpy() for b in batches]), ids % 2 == 0
        )
    b = batches[0]
    assert b["id"].dtype == torch.int64 and b["x"].dtype == torch.float32
    assert b["flag"].dtype == torch.bool and b["v"].shape == (batch_size, 2)


def test_row_groups_are_read_in_the_seeded_order(tmp_path):
    """With a buffer of one row group and batches of a row group, batch k is row group
    order[k] (shuffled within itself)."""
    n = _write(tmp_path, files=2, rows=320, row_group_size=64)
    groups = np.arange(n).reshape(-1, 64)  # row groups in file order
    seed = 5
    loader = ParquetLoader(tmp_path, 64, shuffle_buffer=1, seed=seed)
    for epoch in range(3):
        order = np.random.default_rng([seed, epoch]).permutation(len(groups))
        batches = list(loader)
        assert [sorted(b["id"].tolist()) for b in batches] == groups[order].tolist()
        np.testing.assert_array_equal(loader.row_group_order(epoch), order)


def test_epochs_differ_and_the_same_seed_gives_the_same_order(tmp_path):
    _write(tmp_path)
    a = ParquetLoader(tmp_path, 40, shuffle_buffer=200, seed=3)
    b = ParquetLoader(tmp_path, 40, shuffle_buffer=200, seed=3)
    c = ParquetLoader(tmp_path, 40, shuffle_buffer=200, seed=4)
    epochs_a = [list(a) for _ in range(2)]
    assert not np.array_equal(_ids(epochs_a[0]), _ids(epochs_a[1]))
    assert _same(epochs_a[0], list(b)) and _same(epochs_a[1], list(b))
    assert not np.array_equal(_ids(epochs_a[0]), _ids(c.epoch_batches(0)))
    b.set_epoch(1)
    assert _same(list(b), epochs_a[1]) and b.epoch == 2


def test_shuffle_does_not_touch_global_rng(tmp_path):
    _write(tmp_path, files=1)
    np.random.seed(0)
    torch.manual_seed(0)
    expected = (np.random.rand(), torch.rand(1))
    np.random.seed(0)
    torch.manual_seed(0)
    list(ParquetLoader(tmp_path, 16, shuffle_buffer=50))
    assert (np.random.rand(), torch.rand(1)) == expected


@pytest.mark.parametrize("world_size", [2, 3])
@pytest.mark.parametrize("shuffle", [True, False])
def test_rank_shards_are_disjoint_and_complete(tmp_path, world_size, shuffle):
    n = _write(tmp_path, uneven=True)
    for epoch in range(2):
        shards = []
        for rank in range(world_size):
            loader = ParquetLoader(
                tmp_path, 30, shuffle=shuffle, shuffle_buffer=100, rank=rank, world_size=world_size
            )
            batches = list(loader.epoch_batches(epoch))
            assert len(batches) == loader.num_batches(epoch)
            assert loader.shard_rows(epoch)[rank] == sum(len(b["id"]) for b in batches)
            shards.append(set(_ids(batches).tolist()))
        assert sum(len(s) for s in shards) == n
        assert set().union(*shards) == set(range(n))


def test_shards_follow_the_row_group_order_round_robin(tmp_path):
    n = _write(tmp_path, files=1, rows=640, row_group_size=64)
    groups = np.arange(n).reshape(-1, 64)
    order = np.random.default_rng([0, 2]).permutation(len(groups))
    for rank in range(3):
        loader = ParquetLoader(tmp_path, 64, shuffle_buffer=1, rank=rank, world_size=3)
        got = [sorted(b["id"].tolist()) for b in loader.epoch_batches(2)]
        assert got == groups[order[rank::3]].tolist()


def test_drop_last_gives_every_rank_the_same_number_of_full_batches(tmp_path):
    n = _write(tmp_path, uneven=True)  # row groups of 64, 81 and 98 rows: uneven shards
    for epoch in range(3):
        counts, seen = [], []
        for rank in range(3):
            loader = ParquetLoader(
                tmp_path, 25, shuffle_buffer=80, rank=rank, world_size=3, drop_last=True
            )
            batches = list(loader.epoch_batches(epoch))
            assert all(len(b["id"]) == 25 for b in batches)
            counts.append(len(batches))
            seen.append(_ids(batches))
        rows = ParquetLoader(tmp_path, 25, rank=0, world_size=3).shard_rows(epoch)
        assert counts == [rows.min() // 25] * 3
        ids = np.concatenate(seen)
        assert len(np.unique(ids)) == len(ids) and ids.max() < n
    plain = [ParquetLoader(tmp_path, 25, rank=r, world_size=3).num_batches(0) for r in range(3)]
    assert len(set(plain)) > 1  # without drop_last these shards differ


def test_len_comes_from_the_footers_without_reading_rows(tmp_path, monkeypatch):
    _write(tmp_path, uneven=True)
    loader = ParquetLoader(tmp_path, 30, rank=1, world_size=2)

    def no_read(*args, **kwargs):
        raise AssertionError("read a row group")

    monkeypatch.setattr(ParquetLoader, "_read", no_read)
    expected = [loader.num_batches(e) for e in range(4)]
    loader.set_epoch(2)
    assert len(loader) == expected[2]
    monkeypatch.undo()
    assert [len(list(loader.epoch_batches(e))) for e in range(4)] == expected


@pytest.mark.parametrize(("batch_size", "shuffle_buffer"), [(20, 70), (64, 1), (7, 1000)])
@pytest.mark.parametrize("shuffle", [True, False])
def test_epoch_batches_from_start_equal_the_full_epoch_tail(
    tmp_path, batch_size, shuffle_buffer, shuffle
):
    _write(tmp_path, rows=300)
    loader = ParquetLoader(
        tmp_path,
        batch_size,
        shuffle=shuffle,
        shuffle_buffer=shuffle_buffer,
        seed=2,
        rank=1,
        world_size=2,
    )
    full = list(loader.epoch_batches(3))
    assert loader.epoch == 0
    for start in sorted({1, 2, 5, len(full) // 2, len(full) - 1, len(full)}):
        assert _same(list(loader.epoch_batches(3, start=start)), full[start:]), start
    with pytest.raises(ValueError, match="start"):
        loader.epoch_batches(3, start=len(full) + 1)


def test_resuming_late_in_an_epoch_reads_only_the_buffered_row_groups(tmp_path, monkeypatch):
    _write(tmp_path, files=2, rows=640, row_group_size=64)  # 20 row groups
    loader = ParquetLoader(tmp_path, 32, shuffle_buffer=128, seed=1)
    reads = []
    original = ParquetLoader._read

    def counting(self, group):
        reads.append(group)
        return original(self, group)

    monkeypatch.setattr(ParquetLoader, "_read", counting)
    full = list(loader.epoch_batches(0))
    assert sorted(reads) == list(range(20))
    reads.clear()
    tail = list(loader.epoch_batches(0, start=len(full) - 2))
    assert _same(tail, full[-2:])
    assert len(reads) < 10  # of 20: the row groups still holding rows of the buffer


def test_shuffle_false_keeps_file_order(tmp_path):
    n = _write(tmp_path, uneven=True)
    loader = ParquetLoader(tmp_path, 33, shuffle=False, shuffle_buffer=50)
    for _ in range(2):
        assert _ids(loader).tolist() == list(range(n))
    one_file = ParquetLoader(tmp_path / "part-1.parquet", 100, shuffle=False)
    assert _ids(one_file).tolist() == list(range(500, 1000))


def test_paths_list_and_dataset_sources(tmp_path):
    n = _write(tmp_path)
    files = sorted(tmp_path.glob("*.parquet"))
    by_list = ParquetLoader(files, 100, shuffle=False, columns=["x", "id"])
    by_dataset = ParquetLoader(pads.dataset(tmp_path, format="parquet"), 100, shuffle=False)
    batches = list(by_list)
    assert list(batches[0]) == ["x", "id"]
    assert _ids(batches).tolist() == _ids(by_dataset).tolist() == list(range(n))


def test_rank_and_world_size_default_to_torch_distributed(tmp_path, monkeypatch):
    n = _write(tmp_path, files=1)
    assert ParquetLoader(tmp_path, 10).world_size == 1
    dist = torch.distributed
    monkeypatch.setattr(dist, "is_available", lambda: True)
    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "get_rank", lambda: 1)
    monkeypatch.setattr(dist, "get_world_size", lambda: 2)
    loader = ParquetLoader(tmp_path, 10)
    assert (loader.rank, loader.world_size) == (1, 2)
    other = ParquetLoader(tmp_path, 10, rank=0)
    assert set(_ids(loader).tolist()).isdisjoint(_ids(other).tolist())
    assert len(_ids(loader)) + len(_ids(other)) == n


def test_errors_name_what_is_wrong(tmp_path):
    _write(tmp_path, files=1, rows=100, row_group_size=50)
    with pytest.raises(FileNotFoundError, match="nope"):
        ParquetLoader(tmp_path / "nope", 10)
    with pytest.raises(ValueError, match=r"\['missing'\].*available columns"):
        ParquetLoader(tmp_path, 10, columns=["id", "missing"])
    for bad in (0, -3):
        with pytest.raises(ValueError, match="batch_size"):
            ParquetLoader(tmp_path, bad)
    with pytest.raises(ValueError, match=r"rank must be in 0\.\.1 \(world_size=2\), got 2"):
        ParquetLoader(tmp_path, 10, rank=2, world_size=2)
    with pytest.raises(ValueError, match="world_size"):
        ParquetLoader(tmp_path, 10, rank=0, world_size=0)
    with pytest.raises(ValueError, match="2 row group.*world_size=3"):
        ParquetLoader(tmp_path, 10, rank=0, world_size=3)
    with pytest.raises(ValueError, match="shuffle_buffer"):
        ParquetLoader(tmp_path, 10, shuffle_buffer=0)
    with pytest.raises(ValueError, match="drop_last"):
        ParquetLoader(tmp_path, 60, rank=0, world_size=2, drop_last=True)
    with pytest.raises(TypeError, match="source"):
        ParquetLoader(pa.table({"id": [1]}), 10)


def test_unsupported_and_bad_values_are_named(tmp_path):
    pq.write_table(pa.table({"id": [1, 2], "name": ["a", "b"]}), tmp_path / "s.parquet")
    with pytest.raises(TypeError, match="'name'.*StringLookup"):
        ParquetLoader(tmp_path, 1)
    assert _ids(ParquetLoader(tmp_path, 1, columns=["id"], shuffle=False)).tolist() == [1, 2]
    nan = tmp_path / "nan"
    nan.mkdir()
    pq.write_table(pa.table({"y": [1.0, float("nan")]}), nan / "n.parquet")
    with pytest.raises(ValueError, match=r"'y'.*NaN.*n\.parquet.*row group 0"):
        list(ParquetLoader(nan, 2))
    assert len(list(ParquetLoader(nan, 2, allow_nan=True))) == 1


_MEMORY_SCRIPT = textwrap.dedent(
    """
    import gc, sys
    from torchrs_fn.data import ParquetLoader

    def status(key):
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key):
                    return int(line.split()[1]) * 1024

    path, buffer_rows = sys.argv[1], int(sys.argv[2])
    # Warm up on one row group: the first read pages in Arrow's Parquet code and its allocator,
    # which is a fixed cost of the process, not memory that grows with the data.
    next(iter(ParquetLoader(path, 256, shuffle_buffer=1)))
    gc.collect()
    loader = ParquetLoader(path, 1024, shuffle_buffer=buffer_rows, seed=0)
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM to the current RSS
    except OSError:
        pass  # then VmHWM may include older peaks: the growth below can only be overstated
    before = status("VmRSS")
    rows = total = 0
    for batch in loader:
        rows += len(batch["id"])
        total += int(batch["id"].sum())
    print(rows, total, status("VmHWM") - before)
    """
)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_memory_is_bounded_by_the_buffer_not_the_dataset(tmp_path):
    """A 400 MB dataset streams through a 16 MB buffer with under 100 MB of peak RSS growth.

    Why peak RSS and not a hard limit: ``resource.setrlimit(RLIMIT_AS)`` caps *virtual* memory,
    and torch and Arrow reserve large virtual ranges (allocator arenas, thread stacks) that are
    never touched, so a limit low enough to matter makes the import fail and one high enough to
    import proves nothing. The kernel's peak resident set (``VmHWM`` in /proc/self/status, reset
    with /proc/self/clear_refs) measures the memory actually used. It is read in a fresh
    subprocess so that nothing the test process allocated counts, after a warm-up read so that
    paging in Arrow's code does not count either. An in-memory ``Loader`` would need the whole
    400 MB.
    """
    width, group_rows, groups = 64, 8192, 200  # 264 bytes a row, 2.1 MB a row group, 430 MB
    features = pa.FixedSizeListArray.from_arrays(
        pa.array(np.zeros(group_rows * width, dtype=np.float32)), width
    )
    schema = pa.schema([("id", pa.int64()), ("features", features.type)])
    for f in range(4):  # zeros compress to almost nothing: the files are small, the rows are not
        with pq.ParquetWriter(
            tmp_path / f"part-{f}.parquet", schema, use_dictionary=False, write_statistics=False
        ) as writer:
            for g in range(groups // 4):
                start = (f * groups // 4 + g) * group_rows
                ids = pa.array(np.arange(start, start + group_rows, dtype=np.int64))
                writer.write_table(pa.Table.from_arrays([ids, features], schema=schema))
    rows = groups * group_rows
    row_bytes = 8 + 4 * width
    limit = 100 * 2**20
    assert rows * row_bytes >= 4 * limit  # the data is several times the limit
    buffer_rows = 16 * 2**20 // row_bytes

    result = subprocess.run(
        [sys.executable, "-c", _MEMORY_SCRIPT, str(tmp_path), str(buffer_rows)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    seen, total, growth = map(int, result.stdout.split())
    assert seen == rows and total == rows * (rows - 1) // 2
    print(f"peak RSS growth: {growth / 2**20:.0f} MB")
    assert growth < limit, f"peak RSS grew by {growth / 2**20:.0f} MB"


def test_device_cpu_and_batches_are_owned_copies(tmp_path):
    _write(tmp_path, files=1)
    batches = list(ParquetLoader(tmp_path, 64, shuffle=False, device="cpu"))
    assert batches[0]["id"].device.type == "cpu"
    batches[0]["id"] += 1000  # writable, and shared with nothing the loader reuses
    assert _ids(batches[1:2]).tolist() == list(range(64, 128))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_device_cuda(tmp_path):
    n = _write(tmp_path, files=1)
    batches = list(ParquetLoader(tmp_path, 64, device="cuda"))
    assert batches[0]["v"].is_cuda
    assert sorted(torch.cat([b["id"] for b in batches]).cpu().tolist()) == list(range(n))
