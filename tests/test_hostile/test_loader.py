"""Hostile input to ``data.Loader``: every row exactly once per epoch, whatever the sizes."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pyarrow as pa
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from torchrs_fn.data import Loader

HOSTILE = settings.get_profile("hostile")


def _table(n: int, width: int, rng: np.random.Generator) -> pa.Table:
    """``row`` = 0..n-1 (to identify rows), plus int64 / float32 / bool / list columns."""
    return pa.table(
        {
            "row": pa.array(np.arange(n, dtype=np.int64)),
            "big": pa.array(rng.integers(-(2**63), 2**63 - 1, size=n, dtype=np.int64)),
            "x": pa.array(rng.standard_normal(n).astype(np.float32)),
            "flag": pa.array(rng.random(n) < 0.5),
            "tags": pa.array(
                rng.integers(0, 2**40, size=(n, width)).tolist(), type=pa.list_(pa.int64())
            ),
        }
    )


@settings(HOSTILE, max_examples=80)
@given(
    n=st.integers(1, 70),
    batch_size=st.integers(1, 80),
    width=st.integers(0, 3),
    shuffle=st.booleans(),
    drop_remainder=st.booleans(),
    seed=st.integers(0, 2**32),
    epoch=st.integers(0, 3),
    cuts=st.lists(st.integers(0, 70), max_size=4),
)
def test_every_row_once_per_epoch(n, batch_size, width, shuffle, drop_remainder, seed, epoch, cuts):
    table = _table(n, width, np.random.default_rng(seed))
    # Several Arrow chunks (empty ones too), as concatenated or streamed tables have.
    bounds = [0, *sorted(min(c, n) for c in cuts), n]
    table = pa.concat_tables([table.slice(a, b - a) for a, b in itertools.pairwise(bounds)])
    if drop_remainder and n < batch_size:
        with pytest.raises(ValueError, match="drop_remainder"):
            Loader(table, batch_size, shuffle=shuffle, seed=seed, drop_remainder=True)
        return
    loader = Loader(table, batch_size, shuffle=shuffle, seed=seed, drop_remainder=drop_remainder)
    loader.set_epoch(epoch)
    batches = list(loader)
    expected_batches = n // batch_size if drop_remainder else math.ceil(n / batch_size)
    assert len(batches) == len(loader) == expected_batches
    assert all(len(b["row"]) == batch_size for b in batches[:-1])
    rows = torch.cat([b["row"] for b in batches]).numpy()
    if drop_remainder:
        assert len(rows) == expected_batches * batch_size
        assert len(np.unique(rows)) == len(rows)  # no row twice; only the remainder is left out
    else:
        np.testing.assert_array_equal(np.sort(rows), np.arange(n))  # each row exactly once
    if not shuffle:
        np.testing.assert_array_equal(rows, np.arange(len(rows)))
    # Columns stay aligned with their row, values and dtypes unchanged.
    for name, dtype in (("big", torch.int64), ("x", torch.float32), ("flag", torch.bool)):
        got = torch.cat([b[name] for b in batches]).numpy()
        assert batches[0][name].dtype == dtype
        np.testing.assert_array_equal(got, table.column(name).to_numpy()[rows])
    tags = torch.cat([b["tags"] for b in batches])
    assert tags.shape == (len(rows), width)
    expected_tags = np.asarray(table.column("tags").to_pylist(), dtype=np.int64).reshape(n, width)
    np.testing.assert_array_equal(tags.numpy(), expected_tags[rows])
    # An epoch replays exactly, from any batch.
    start = expected_batches // 2
    replay = list(loader.epoch_batches(epoch, start=start))
    assert [b["row"].tolist() for b in replay] == [b["row"].tolist() for b in batches[start:]]


@settings(HOSTILE, max_examples=20)
@given(batch_size=st.integers(1, 5), shuffle=st.booleans())
def test_empty_table_is_a_clear_error(batch_size, shuffle):
    with pytest.raises(ValueError, match="empty"):
        Loader(pa.table({"a": pa.array([], pa.int64())}), batch_size, shuffle=shuffle)


bad_float = st.sampled_from([math.nan, math.inf, -math.inf])


@settings(HOSTILE, max_examples=50)
@given(
    values=st.lists(st.floats(allow_nan=False, allow_infinity=False, width=32), min_size=1),
    bad=bad_float,
    where=st.integers(0, 10**6),
    as_list=st.booleans(),
)
def test_nan_or_inf_floats_raise_unless_allowed(values, bad, where, as_list):
    where %= len(values)
    values = list(values)
    values[where] = bad
    column = pa.array([[v] for v in values]) if as_list else pa.array(values, pa.float32())
    table = pa.table({"x": column})
    with pytest.raises(ValueError, match=rf"'x'.*NaN or infinite.*first at row {where}\b"):
        Loader(table, 4)
    loaded = torch.cat([b["x"] for b in Loader(table, 4, allow_nan=True)]).reshape(-1)
    np.testing.assert_array_equal(loaded.numpy(), np.asarray(values, dtype=loaded.numpy().dtype))


@settings(HOSTILE, max_examples=50)
@given(
    n=st.integers(1, 20),
    kind=st.sampled_from(["string", "null_int", "ragged", "nested", "binary", "null_in_list"]),
    text=st.text(max_size=50),
)
def test_unloadable_columns_name_the_column(n, kind, text):
    if kind == "string":
        column = pa.array([text] * n)
    elif kind == "null_int":
        column = pa.array([1] * (n - 1) + [None], pa.int64())
    elif kind == "ragged":
        column = pa.array([[1, 2]] * n + [[3]])
    elif kind == "nested":
        column = pa.array([[[1]]] * n)
    elif kind == "binary":
        column = pa.array([text.encode("utf-8", "surrogatepass")] * n, pa.binary())
    else:
        column = pa.array([[1, None]] * n, pa.list_(pa.int64()))
    with pytest.raises((TypeError, ValueError), match="'bad'"):
        Loader(pa.table({"ok": pa.array(range(len(column))), "bad": column}), 3)
    # Leaving the column out loads the rest.
    loader = Loader(
        pa.table({"ok": pa.array(range(len(column))), "bad": column}), 3, columns=["ok"]
    )
    assert torch.cat([b["ok"] for b in loader]).tolist() == list(range(len(column)))


@settings(HOSTILE, max_examples=40)
@given(
    batch_size=st.one_of(
        st.integers(-(2**70), 0), st.floats(), st.text(max_size=3), st.booleans(), st.none()
    )
)
def test_bad_batch_size_is_a_value_error(batch_size):
    with pytest.raises(ValueError, match="batch_size"):
        Loader(pa.table({"a": [1, 2, 3]}), batch_size)


@settings(HOSTILE, max_examples=40)
@given(columns=st.lists(st.text(max_size=20), max_size=4))
def test_missing_or_odd_columns_are_named(columns):
    table = pa.table({"a": [1, 2, 3]})
    if not columns or len(set(columns)) < len(columns) or any(c != "a" for c in columns):
        with pytest.raises(ValueError):
            Loader(table, 2, columns=columns)
    else:
        assert Loader(table, 2, columns=columns).columns == ("a",)
