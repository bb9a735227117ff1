"""Loader: batching, seeded shuffling, column handling, zero-copy and errors.

References are plain numpy: hand-written batches, ``np.random.default_rng([seed, epoch])``
permutations (the documented contract) and brute-force row bookkeeping.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest
import torch

from torchrs_fn.data import Loader


def _table(n: int = 10) -> pa.Table:
    return pa.table(
        {
            "id": pa.array(np.arange(n, dtype=np.int64)),
            "x": pa.array(np.arange(n, dtype=np.float32) * 0.5),
            "small": pa.array(np.arange(n, dtype=np.int32) % 3),
        }
    )


def _epoch(loader: Loader) -> list[dict[str, torch.Tensor]]:
    return list(loader)


def test_unshuffled_batches_are_consecutive_rows_and_keep_last_partial_batch():
    loader = Loader(_table(10), 3)
    assert len(loader) == 4
    batches = _epoch(loader)
    assert [b["id"].tolist() for b in batches] == [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9]]
    assert batches[1]["x"].tolist() == [1.5, 2.0, 2.5]
    assert batches[0]["id"].dtype == torch.int64
    assert batches[0]["x"].dtype == torch.float32
    assert batches[0]["small"].dtype == torch.int32
    assert list(batches[0]) == ["id", "x", "small"]


def test_drop_remainder_drops_only_the_short_last_batch():
    loader = Loader(_table(10), 3, drop_remainder=True)
    assert len(loader) == 3
    assert [b["id"].tolist() for b in loader] == [[0, 1, 2], [3, 4, 5], [6, 7, 8]]
    exact = Loader(_table(9), 3, drop_remainder=True)
    assert len(exact) == 3 and len(list(exact)) == 3


def test_batch_larger_than_table_gives_one_batch():
    assert [b["id"].tolist() for b in Loader(_table(4), 100)] == [[0, 1, 2, 3]]


def test_shuffle_epoch_order_is_rng_of_seed_and_epoch():
    n, bs, seed = 103, 10, 7
    loader = Loader(_table(n), bs, shuffle=True, seed=seed)
    for epoch in range(3):
        expected = np.random.default_rng([seed, epoch]).permutation(n)
        got = np.concatenate([b["id"].numpy() for b in loader])
        np.testing.assert_array_equal(got, expected)
    assert loader.epoch == 3


def test_shuffle_visits_every_row_exactly_once_per_epoch_and_reshuffles():
    n = 1000
    loader = Loader(_table(n), 64, shuffle=True, seed=3)
    orders = []
    for _ in range(3):
        batches = _epoch(loader)
        assert len(batches) == len(loader) == 16
        assert [len(b["id"]) for b in batches] == [64] * 15 + [n - 15 * 64]
        ids = np.concatenate([b["id"].numpy() for b in batches])
        assert sorted(ids.tolist()) == list(range(n))
        # columns stay aligned row by row
        np.testing.assert_allclose(
            np.concatenate([b["x"].numpy() for b in batches]), ids.astype(np.float32) * 0.5
        )
        orders.append(ids)
    assert not np.array_equal(orders[0], orders[1])
    assert not np.array_equal(orders[1], orders[2])
    assert not np.array_equal(orders[0], np.arange(n))


def test_shuffle_is_deterministic_per_seed_and_differs_across_seeds():
    def first_epoch(seed: int) -> np.ndarray:
        return np.concatenate(
            [b["id"].numpy() for b in Loader(_table(200), 16, shuffle=True, seed=seed)]
        )

    np.testing.assert_array_equal(first_epoch(11), first_epoch(11))
    assert not np.array_equal(first_epoch(11), first_epoch(12))


def test_shuffle_does_not_touch_global_rng():
    torch.manual_seed(0)
    np.random.seed(0)
    expected_torch, expected_np = torch.rand(3), np.random.rand(3)
    torch.manual_seed(0)
    np.random.seed(0)
    list(Loader(_table(50), 8, shuffle=True, seed=5))
    assert torch.equal(torch.rand(3), expected_torch)
    np.testing.assert_array_equal(np.random.rand(3), expected_np)


def test_set_epoch_replays_an_epoch():
    n, seed = 57, 2
    loader = Loader(_table(n), 8, shuffle=True, seed=seed)
    loader.set_epoch(5)
    assert loader.epoch == 5
    got = np.concatenate([b["id"].numpy() for b in loader])
    np.testing.assert_array_equal(got, np.random.default_rng([seed, 5]).permutation(n))
    assert loader.epoch == 6
    loader.set_epoch(5)
    again = np.concatenate([b["id"].numpy() for b in loader])
    np.testing.assert_array_equal(again, got)
    with pytest.raises(ValueError, match="epoch"):
        loader.set_epoch(-1)


def test_columns_selects_and_orders():
    batches = _epoch(Loader(_table(5), 2, columns=["small", "id"]))
    assert list(batches[0]) == ["small", "id"]
    assert batches[2]["id"].tolist() == [4]
    assert batches[0]["small"].tolist() == [0, 1]


def test_missing_column_is_named_with_available_ones():
    with pytest.raises(ValueError, match=r"'nope'.*available columns: \['id', 'x', 'small'\]"):
        Loader(_table(), 2, columns=["id", "nope"])


def test_columns_must_be_a_list_not_a_string():
    with pytest.raises(TypeError, match="columns"):
        Loader(_table(), 2, columns="id")


def test_transform_result_is_yielded():
    def double(batch):
        return {"id2": batch["id"] * 2, "n": len(batch["id"])}

    out = list(Loader(_table(5), 2, transform=double))
    assert [o["id2"].tolist() for o in out] == [[0, 2], [4, 6], [8]]
    assert [o["n"] for o in out] == [2, 2, 1]


def test_unshuffled_numeric_batches_are_zero_copy_views_of_arrow():
    table = _table(100)
    arrow_ids = table.column("id").chunk(0).to_numpy(zero_copy_only=True)
    arrow_x = table.column("x").chunk(0).to_numpy(zero_copy_only=True)
    batches = _epoch(Loader(table, 32))
    for b in batches:
        assert np.shares_memory(b["id"].numpy(), arrow_ids)
        assert np.shares_memory(b["x"].numpy(), arrow_x)


def test_shuffled_batches_are_copies():
    table = _table(100)
    arrow_ids = table.column("id").chunk(0).to_numpy(zero_copy_only=True)
    for b in Loader(table, 32, shuffle=True):
        assert not np.shares_memory(b["id"].numpy(), arrow_ids)


def test_multi_chunk_columns():
    table = pa.concat_tables([_table(4), _table(3)])
    assert table.column("id").num_chunks == 2
    ids = [b["id"].tolist() for b in Loader(table, 3)]
    assert ids == [[0, 1, 2], [3, 0, 1], [2]]


def test_bool_and_list_columns():
    table = pa.table(
        {
            "flag": pa.array([True, False, True, True]),
            "vec": pa.array(
                [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0], [7.0, 8.0]], type=pa.list_(pa.float32(), 2)
            ),
            "hist": pa.array([[1, 2, 3], [4, 5, 6], [7, 8, 9], [10, 11, 12]]),
        }
    )
    first, second = _epoch(Loader(table, 2))
    assert first["flag"].dtype == torch.bool and first["flag"].tolist() == [True, False]
    assert first["vec"].shape == (2, 2) and first["vec"].dtype == torch.float32
    assert second["vec"].tolist() == [[5.0, 6.0], [7.0, 8.0]]
    assert first["hist"].shape == (2, 3) and first["hist"].dtype == torch.int64
    assert second["hist"].tolist() == [[7, 8, 9], [10, 11, 12]]
    shuffled = _epoch(Loader(table, 4, shuffle=True, seed=1))[0]
    order = np.random.default_rng([1, 0]).permutation(4)
    rows = np.array([[1, 2, 3], [4, 5, 6], [7, 8, 9], [10, 11, 12]])
    assert shuffled["hist"].tolist() == rows[order].tolist()


def test_sliced_fixed_size_list_column():
    values = pa.array(np.arange(12, dtype=np.int64))
    table = pa.table({"v": pa.FixedSizeListArray.from_arrays(values, 3)}).slice(1, 2)
    (batch,) = _epoch(Loader(table, 5))
    assert batch["v"].tolist() == [[3, 4, 5], [6, 7, 8]]


def test_ragged_list_column_is_rejected_by_name():
    table = pa.table({"hist": pa.array([[1, 2], [3], [4, 5]])})
    with pytest.raises(ValueError, match=r"'hist'.*ragged.*row 1 has 1"):
        Loader(table, 2)


def test_string_column_is_rejected_with_advice():
    table = pa.table({"id": [1, 2], "title": ["a", "b"]})
    with pytest.raises(TypeError, match=r"'title'.*string.*StringLookup.*columns="):
        Loader(table, 2)
    assert len(Loader(table, 2, columns=["id"])) == 1


def test_other_unsupported_types_are_rejected_by_name():
    for column in (
        pa.array([b"a", b"b"]),
        pa.array([[[1]], [[2]]]),
        pa.array(["a", "b"]).dictionary_encode(),
        pa.array([1, 2], type=pa.timestamp("s")),
    ):
        with pytest.raises(TypeError, match=r"'c'"):
            Loader(pa.table({"c": column}), 1)


def test_nulls_are_rejected_by_name():
    with pytest.raises(ValueError, match=r"'r'.*1 null"):
        Loader(pa.table({"r": pa.array([1.0, None, 3.0])}), 2)
    with pytest.raises(ValueError, match=r"'h'.*null"):
        Loader(pa.table({"h": pa.array([[1, None], [2, 3]])}), 2)


@pytest.mark.parametrize("bad", [0, -3, 2.5, True, "8", None])
def test_bad_batch_size(bad):
    with pytest.raises(ValueError, match="batch_size"):
        Loader(_table(), bad)


def test_numpy_integer_batch_size_is_fine():
    assert len(Loader(_table(10), np.int64(5))) == 2


def test_empty_table():
    with pytest.raises(ValueError, match="empty"):
        Loader(_table(0), 4)


def test_drop_remainder_with_too_few_rows():
    with pytest.raises(ValueError, match="no batch"):
        Loader(_table(3), 4, drop_remainder=True)


def test_wrong_source_type():
    with pytest.raises(TypeError, match="source"):
        Loader({"id": [1, 2]}, 1)
    with pytest.raises(TypeError, match="source"):
        Loader(np.arange(3), 1)


def test_bad_seed():
    with pytest.raises(ValueError, match="seed"):
        Loader(_table(), 2, shuffle=True, seed=-1)


def test_parquet_path_list_and_dataset_sources(tmp_path):
    pq.write_table(_table(6), tmp_path / "a.parquet")
    part2 = _table(4).set_column(0, "id", pa.array(np.arange(6, 10, dtype=np.int64)))
    pq.write_table(part2, tmp_path / "b.parquet")

    one = [b["id"].tolist() for b in Loader(tmp_path / "a.parquet", 4)]
    assert one == [[0, 1, 2, 3], [4, 5]]
    one_str = [b["id"].tolist() for b in Loader(str(tmp_path / "a.parquet"), 4)]
    assert one_str == one

    both = Loader([tmp_path / "a.parquet", tmp_path / "b.parquet"], 4, columns=["id"])
    assert list(both.columns) == ["id"]
    assert [b["id"].tolist() for b in both] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]

    dataset = pads.dataset([str(tmp_path / "a.parquet"), str(tmp_path / "b.parquet")])
    got = np.concatenate([b["id"].numpy() for b in Loader(dataset, 3, shuffle=True, seed=4)])
    assert sorted(got.tolist()) == list(range(10))
    with pytest.raises(ValueError, match=r"'zzz'.*available"):
        Loader(dataset, 3, columns=["zzz"])


def test_record_batch_source():
    batch = pa.RecordBatch.from_pydict({"a": [1, 2, 3]})
    assert [b["a"].tolist() for b in Loader(batch, 2)] == [[1, 2], [3]]


def test_device_cpu_and_pin_memory_default():
    loader = Loader(_table(5), 2, device="cpu")
    assert loader.pin_memory is False
    for b in loader:
        assert b["id"].device.type == "cpu"
    assert Loader(_table(5), 2, device="cuda").pin_memory is True  # CUDA default, even if absent


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize("pin_memory", [None, False])
def test_device_cuda(shuffle, pin_memory):
    n = 10
    table = _table(n).append_column("flag", pa.array(np.arange(n) % 2 == 0))
    table = table.append_column(
        "vec", pa.FixedSizeListArray.from_arrays(pa.array(np.arange(2 * n, dtype=np.int64)), 2)
    )
    loader = Loader(table, 4, device="cuda", shuffle=shuffle, seed=1, pin_memory=pin_memory)
    assert loader.pin_memory is (pin_memory is None)
    batches = list(loader)
    torch.cuda.synchronize()
    order = np.random.default_rng([1, 0]).permutation(n) if shuffle else np.arange(n)
    assert all(t.device.type == "cuda" for b in batches for t in b.values())
    np.testing.assert_array_equal(torch.cat([b["id"] for b in batches]).cpu().numpy(), order)
    flags = torch.cat([b["flag"] for b in batches]).cpu().numpy()
    np.testing.assert_array_equal(flags, order % 2 == 0)
    vec = torch.cat([b["vec"] for b in batches]).cpu().numpy()
    np.testing.assert_array_equal(vec, np.stack([2 * order, 2 * order + 1], axis=1))


def test_nan_in_a_float_column_is_named_unless_allowed():
    table = pa.table({"user_id": [1, 2, 3], "user_rating": [4.0, float("nan"), 3.0]})
    with pytest.raises(ValueError, match=r"'user_rating' has 1 row.*first at row 1.*allow_nan"):
        Loader(table, batch_size=2)
    batches = list(Loader(table, batch_size=3, allow_nan=True))
    assert torch.isnan(batches[0]["user_rating"][1])
    inf_lists = pa.table({"x": pa.array([[1.0, 2.0], [float("inf"), 0.0]])})
    with pytest.raises(ValueError, match=r"'x'.*first at row 1"):
        Loader(inf_lists, batch_size=1)
