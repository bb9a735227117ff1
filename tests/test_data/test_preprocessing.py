"""Hashing, Normalization, Discretization and TimestampFeatures against independent references.

References: a pure-Python FNV-1a / fmix64 / splitmix64 (byte by byte, Python ints) and pinned
bins; numpy mean/var and hand-computed values; ``np.searchsorted`` / a Python ``bisect`` loop;
and values produced by Keras — tf-keras 2.21.0 with TensorFlow 2.21.0 (``TF_USE_LEGACY_KERAS=1``)
— written in as literals (TensorFlow is not a test dependency).
"""

from __future__ import annotations

import bisect
import json

import numpy as np
import pyarrow as pa
import pytest
import torch

from torchrs_fn.data import (
    Discretization,
    Hashing,
    IntegerLookup,
    Normalization,
    StringLookup,
    TimestampFeatures,
)
from torchrs_fn.data.preprocessing import hash64

MASK64 = (1 << 64) - 1


def _fmix64(h: int) -> int:
    h ^= h >> 33
    h = (h * 0xFF51AFD7ED558CCD) & MASK64
    h ^= h >> 33
    h = (h * 0xC4CEB9FE1A85EC53) & MASK64
    return h ^ (h >> 33)


def _splitmix64(x: int) -> int:
    z = (x + 0x9E3779B97F4A7C15) & MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return z ^ (z >> 31)


def _hash_python(s: str, salt: int | None = None) -> int:
    h = 0xCBF29CE484222325 if salt is None else 0xCBF29CE484222325 ^ _splitmix64(salt)
    for byte in s.encode("utf-8"):
        h = ((h ^ byte) * 0x100000001B3) & MASK64
    return _fmix64(h)


# -- Hashing -----------------------------------------------------------------------------------


def test_hash64_matches_a_byte_by_byte_python_reference():
    words = ["", "a", "hello", "Ünïcode", "x" * 300, "a", "[UNK]"]
    for salt in (None, 0, 133, 2**64 - 1):
        got = hash64(pa.array(words), salt=salt)
        assert got.dtype == np.uint64
        assert got.tolist() == [_hash_python(w, salt) for w in words]


def test_hashing_bins_are_pinned_across_runs_and_machines():
    # Pinned when the hash was chosen; any change of function breaks saved models' bins.
    assert hash64(pa.array(["", "a", "hello"])).tolist() == [
        0xEFD01F60BA992926,
        0x82A2A958A9BECE5B,
        0xE9C562C0FDB23244,
    ]
    assert Hashing(1000)(["a", "b", "hello", "Ünïcode", "42"]).tolist() == [315, 704, 124, 738, 476]
    assert Hashing(1000, salt=133)(["a", "b", "hello"]).tolist() == [338, 835, 837]
    assert Hashing(1000, mask_value="")(["", "a"]).tolist() == [0, 636]


def test_integers_hash_through_their_decimal_string_like_keras():
    ints = Hashing(1000)(pa.array([42, -7, 0], pa.int32()))
    strings = Hashing(1000)(pa.array(["42", "-7", "0"]))
    assert ints.type == pa.int64()
    assert ints.to_pylist() == strings.to_pylist() == [476, 352, 860]
    tensor = Hashing(1000)(torch.tensor([[42, -7], [0, 42]]))
    assert isinstance(tensor, torch.Tensor) and tensor.dtype == torch.int64
    assert tensor.tolist() == [[476, 352], [860, 476]]


def test_hashing_range_salt_and_mask_value():
    words = [f"user_{i}" for i in range(5000)]
    bins = Hashing(7)(words)
    assert bins.min() >= 0 and bins.max() < 7
    assert np.bincount(bins, minlength=7).min() > 600  # roughly uniform (5000 / 7 = 714)
    expected = [_hash_python(w) % 7 for w in words]
    assert bins.tolist() == expected
    salted = Hashing(7, salt=5)(words)
    assert salted.tolist() == [_hash_python(w, 5) % 7 for w in words]
    assert (salted != bins).mean() > 0.7  # unrelated assignment (6/7 expected)
    masked = Hashing(7, mask_value="user_3")(words)
    assert masked[3] == 0
    others = np.delete(masked, 3)
    assert others.min() >= 1 and others.max() <= 6
    assert others.tolist() == [1 + _hash_python(w) % 6 for i, w in enumerate(words) if i != 3]


def test_hashing_keeps_the_input_form():
    h = Hashing(50)
    chunked = h(pa.chunked_array([["a", "b"], ["c"]]))
    assert isinstance(chunked, pa.ChunkedArray) and [len(c) for c in chunked.chunks] == [2, 1]
    tags = pa.array([["a", "b"], [], ["a"]], pa.list_(pa.string()))
    out = h(tags)
    assert out.type == pa.list_(pa.int64())
    flat = h(["a", "b"]).tolist()
    assert out.to_pylist() == [flat, [], [flat[0]]]
    assert h(np.array([["a", "b"], ["b", "a"]])).tolist() == [flat, flat[::-1]]
    assert h(pa.array(["a", "b", "a"]).dictionary_encode()).to_pylist() == [*flat, flat[0]]


def test_hashing_bad_input():
    with pytest.raises(TypeError, match="strings or integers.*double"):
        Hashing(10)(pa.array([1.5]))
    with pytest.raises(ValueError, match="null"):
        Hashing(10)(["a", None])
    with pytest.raises(ValueError, match="num_bins"):
        Hashing(0)
    with pytest.raises(ValueError, match="num_bins"):
        Hashing(1, mask_value="")
    with pytest.raises(TypeError, match="salt"):
        Hashing(10, salt="x")
    with pytest.raises(TypeError, match="mask_value"):
        Hashing(10, mask_value=0)(["a"])


def test_hashing_state_round_trip():
    h = Hashing(64, salt=9, mask_value="")
    state = json.loads(json.dumps(h.to_dict()))
    again = Hashing.from_dict(state)
    assert again == h and repr(again) == "Hashing(num_bins=64, salt=9, mask_value='')"
    with pytest.raises(ValueError, match="Normalization"):
        Hashing.from_dict({**state, "type": "Normalization"})


# -- lookups on list columns -------------------------------------------------------------------


def test_lookups_map_list_columns_value_by_value():
    lookup = StringLookup(["drama", "comedy"])
    genres = pa.chunked_array(
        [pa.array([["comedy", "war"], []]), pa.array([["drama"], ["drama", "comedy"]])]
    )
    ids = lookup(genres)
    assert isinstance(ids, pa.ChunkedArray) and [len(c) for c in ids.chunks] == [2, 2]
    assert ids.type == pa.list_(pa.int64())
    assert ids.to_pylist() == [[2, 0], [], [1], [1, 2]]  # unknown "war" -> OOV 0, never a term
    sliced = pa.array([[1], [5, 7], [7]], pa.large_list(pa.int64())).slice(1)
    out = IntegerLookup([7, 5])(sliced)
    assert out.type == pa.large_list(pa.int64()) and out.to_pylist() == [[2, 1], [1]]
    fixed = pa.FixedSizeListArray.from_arrays(pa.array([5, 9, 7, 5]), 2)
    assert IntegerLookup([7, 5])(fixed).to_pylist() == [[2, 0], [1, 2]]
    with pytest.raises(ValueError, match="null list"):
        lookup(pa.array([["drama"], None]))
    with pytest.raises(ValueError, match="null value"):
        lookup(pa.array([["drama", None]]))


# -- Normalization -----------------------------------------------------------------------------


def test_normalization_matches_numpy_and_keras():
    x = pa.array([1.0, 2.0, 3.0, 4.0, 10.0])
    norm = Normalization.fit(x)
    assert norm.mean == 4.0 and norm.variance == 10.0  # population variance, as Keras
    out = norm(x)
    assert out.type == pa.float32()
    # Keras 2.21 Normalization(axis=None).adapt(x); layer(x):
    keras = [-0.94868326, -0.6324555, -0.31622776, 0.0, 1.8973665]
    np.testing.assert_allclose(out.to_numpy(), keras, rtol=1e-6)
    np.testing.assert_allclose(out.to_numpy(), (x.to_numpy() - 4) / np.sqrt(10), rtol=1e-6)
    # Keras invert=True: mean + y * sqrt(var) -> [4., 7.1622777]
    np.testing.assert_allclose(norm.invert(np.array([0.0, 1.0])), [4.0, 7.1622777], rtol=1e-7)


def test_constant_feature_uses_keras_epsilon():
    norm = Normalization.fit(np.array([5.0, 5.0, 5.0]))
    # Keras 2.21: adapt([5, 5, 5]); layer([5, 6]) -> [0, 1e7] (divides by max(sqrt(0), 1e-7)).
    np.testing.assert_allclose(norm(np.array([5.0, 6.0])), [0.0, 1e7])
    np.testing.assert_allclose(norm.invert(np.array([1e7])), [6.0])


def test_per_position_statistics_of_list_features():
    rows = np.array([[1.0, 2.0], [3.0, 6.0], [5.0, 1.0]])
    fixed = pa.FixedSizeListArray.from_arrays(pa.array(rows.reshape(-1)), 2)
    for column in (rows, fixed, pa.array(rows.tolist())):
        norm = Normalization.fit(column)
        # Keras 2.21 Normalization(axis=-1): mean [3, 3], variance [2.6666667, 4.6666665]
        np.testing.assert_allclose(norm.mean, [3.0, 3.0])
        np.testing.assert_allclose(norm.variance, [8 / 3, 14 / 3])
    out = norm(fixed)
    assert out.type == pa.list_(pa.float32(), 2)
    expected = (rows - rows.mean(0)) / rows.std(0)
    np.testing.assert_allclose(np.array(out.to_pylist()), expected, rtol=1e-6)
    # Keras: layer([[1, 2]]) -> [[-1.2247448, -0.46291006]]
    np.testing.assert_allclose(norm(rows[:1]), [[-1.2247448, -0.46291006]], rtol=1e-6)
    pooled = Normalization.fit(rows, axis=None)
    assert pooled.mean.shape == () and pooled.mean == rows.mean()
    ragged = pa.array([[1.0, 2.0], [3.0]])
    with pytest.raises(ValueError, match="different lengths.*axis=None"):
        Normalization.fit(ragged)
    out = Normalization.fit(ragged, axis=None)(ragged)
    assert out.type == pa.list_(pa.float32())
    np.testing.assert_allclose(
        np.concatenate(out.to_pylist()), (np.array([1, 2, 3]) - 2) / np.sqrt(2 / 3), rtol=1e-6
    )
    with pytest.raises(ValueError, match="rows of length 2.*single values"):
        norm(pa.array([1.0, 2.0]))
    with pytest.raises(ValueError, match="rows of length 2.*rows of length 3"):
        norm(np.array([1.0, 2.0, 3.0]))
    # numpy and torch broadcast over the last axis: a [2] array is one row, also under vmap.
    np.testing.assert_allclose(norm(rows[0]), expected[0], rtol=1e-6)
    per_row = torch.vmap(norm)(torch.tensor(rows))
    np.testing.assert_allclose(per_row.numpy(), expected, rtol=1e-6)


def test_normalization_keras_pinned_on_larger_data():
    i, j = np.meshgrid(np.arange(200), np.arange(3), indexing="ij")
    m = (((7 * i + 3 * j) % 11 - 5) * np.array([1.0, 10.0, 0.1])).astype(np.float32)
    norm = Normalization.fit(m)
    np.testing.assert_allclose(norm.mean, m.astype(np.float64).mean(0))
    np.testing.assert_allclose(norm.variance, m.astype(np.float64).var(0))
    # Keras 2.21: Normalization(axis=-1).adapt(m, batch_size=200) (float32 statistics).
    np.testing.assert_allclose(norm.mean, [-0.015, 0.15, -0.001], rtol=1e-6)
    np.testing.assert_allclose(
        norm.variance, [10.044778823852539, 1004.4756469726562, 0.09949903190135956], rtol=5e-6
    )
    keras_rows = [
        [-1.5728777647018433, -0.6357777714729309, 0.3201931118965149],
        [0.6357771158218384, 1.572879433631897, -0.9478984475135803],
    ]
    np.testing.assert_allclose(norm(m[:2]), keras_rows, rtol=2e-6)


def test_normalization_on_torch_tensors_is_differentiable_and_compilable_shape():
    norm = Normalization.fit(np.array([1.0, 2.0, 3.0, 4.0, 10.0]))
    x = torch.tensor([1.0, 4.0, 10.0], requires_grad=True)
    y = norm(x)
    assert y.dtype == torch.float32
    y.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), np.full(3, 1 / np.sqrt(10)), rtol=1e-6)
    big = torch.tensor([883_528_851, 893_286_638])  # int64 timestamps: float64 inside
    ref = (np.array([883_528_851, 893_286_638]) - 4.0) / np.sqrt(10)
    np.testing.assert_allclose(norm(big).numpy(), ref.astype(np.float32))
    vmapped = torch.vmap(norm)(torch.tensor([[1.0, 2.0], [3.0, 4.0]]))
    np.testing.assert_allclose(
        vmapped.numpy(), (np.array([[1, 2], [3, 4]]) - 4) / np.sqrt(10), rtol=1e-6
    )


def test_normalization_bad_input_and_state():
    with pytest.raises(ValueError, match="null"):
        Normalization.fit(pa.array([1.0, None]))
    with pytest.raises(ValueError, match="NaN or infinite"):
        Normalization.fit(np.array([1.0, np.nan]))
    with pytest.raises(TypeError, match="column must hold integers or floats.*string"):
        Normalization.fit(pa.array(["a"]))
    with pytest.raises(ValueError, match="empty"):
        Normalization.fit(pa.array([], pa.float64()))
    with pytest.raises(ValueError, match="variance must be >= 0"):
        Normalization(0.0, -1.0)
    with pytest.raises(TypeError, match="values must be an integer or floating tensor"):
        Normalization(0.0, 1.0)(torch.tensor([True]))
    norm = Normalization([1.0, 2.0], [4.0, 9.0])
    again = Normalization.from_dict(json.loads(json.dumps(norm.to_dict())))
    assert again.mean.tolist() == [1.0, 2.0] and again.variance.tolist() == [4.0, 9.0]
    assert "Normalization(mean=[1, 2] (2 positions)" in repr(again)


# -- Discretization ----------------------------------------------------------------------------


def test_boundary_values_go_to_the_upper_bucket_like_keras():
    disc = Discretization([0.0, 1.0, 2.0])
    values = [-1.0, 0.0, 0.5, 1.0, 1.5, 2.0, 3.0]
    # Keras 2.21 Discretization(bin_boundaries=[0., 1., 2.]) -> [0 1 1 2 2 3 3]
    assert disc(np.array(values)).tolist() == [0, 1, 1, 2, 2, 3, 3]
    assert disc(np.array(values)).tolist() == [bisect.bisect_right([0, 1, 2], v) for v in values]
    assert disc(pa.array(values)).type == pa.int64()
    t = disc(torch.tensor(values))
    assert t.dtype == torch.int64 and t.tolist() == [0, 1, 1, 2, 2, 3, 3]
    assert disc(torch.tensor([0, 1, 5])).tolist() == [1, 2, 3]
    assert disc.num_bins == 4
    assert Discretization([])(np.array([3.0, -3.0])).tolist() == [0, 0]


def test_fit_exact_quantiles():
    x = np.arange(100.0)
    disc = Discretization.fit(x, num_bins=4)
    assert disc.bin_boundaries == [24.0, 49.0, 74.0]  # i-th of n at i / n, interpolated
    np.testing.assert_allclose(
        disc.bin_boundaries,
        np.quantile(x, [0.25, 0.5, 0.75], method="interpolated_inverted_cdf"),
    )
    # Each bucket gets a quarter of the values.
    assert np.bincount(disc(x)).tolist() == [24, 25, 25, 26]


def test_fit_with_epsilon_reproduces_keras_single_batch_adapt():
    # Keras 2.21: Discretization(num_bins=4, epsilon=0.01).adapt(tf.constant(x), batch_size=100)
    disc = Discretization.fit(np.arange(100.0), num_bins=4, epsilon=0.01)
    assert disc.bin_boundaries == [24.75, 49.5, 74.25]
    # Same layer, data [1, 1, 1, 2, 5, 7, 9, 9, 9, 9] -> [1.0, 5.0, 9.0]
    data = np.array([1.0, 1, 1, 2, 5, 7, 9, 9, 9, 9])
    assert Discretization.fit(data, num_bins=4, epsilon=0.01).bin_boundaries == [1.0, 5.0, 9.0]
    x = ((np.arange(1000) * 7919 % 1000).astype(np.float64) ** 1.5 / 100).astype(np.float32)
    keras = {
        (5, 0.01): [27.8653564453125, 78.80753326416016, 144.7740478515625, 222.8907012939453],
        (8, 0.1): [
            12.285533905029297,
            34.203582763671875,
            62.4759521484375,
            95.90169525146484,
            133.78213500976562,
            175.644287109375,
            221.1402130126953,
        ],
        # epsilon below 1 / n keeps every value: Keras then equals the exact quantiles.
        (4, 0.0001): [39.29153823852539, 111.46815490722656, 204.9853057861328],
    }
    for (num_bins, eps), expected in keras.items():
        got = Discretization.fit(x, num_bins=num_bins, epsilon=eps).bin_boundaries
        np.testing.assert_allclose(got, expected, rtol=1e-7)
    np.testing.assert_allclose(
        Discretization.fit(x, num_bins=4).bin_boundaries, keras[(4, 0.0001)], rtol=1e-6
    )


def test_discretization_bad_input_and_state():
    disc = Discretization([0.0, 1.0])
    with pytest.raises(ValueError, match="NaN"):
        disc(np.array([0.5, np.nan]))
    with pytest.raises(ValueError, match="NaN"):
        disc(torch.tensor([np.nan]))
    with pytest.raises(ValueError, match="null"):
        disc(pa.array([1.0, None]))
    with pytest.raises(TypeError, match="integers or floats"):
        disc(pa.array(["1"]))
    with pytest.raises(ValueError, match="sorted"):
        Discretization([1.0, 0.0])
    with pytest.raises(ValueError, match="num_bins"):
        Discretization.fit(np.arange(3.0), num_bins=0)
    with pytest.raises(ValueError, match="epsilon"):
        Discretization.fit(np.arange(3.0), num_bins=2, epsilon=2.0)
    again = Discretization.from_dict(json.loads(json.dumps(disc.to_dict())))
    assert again.bin_boundaries == [0.0, 1.0]
    assert repr(again) == "Discretization(num_bins=3, bin_boundaries=[0, 1])"


# -- TimestampFeatures -------------------------------------------------------------------------


def test_timestamp_features_follow_the_tutorial_recipe():
    ts = pa.array([874_724_710, 880_000_000, 885_000_000, 893_286_638], pa.int64())
    feats = TimestampFeatures.fit(ts)  # num_boundaries=1000, as np.linspace(min, max, num=1000)
    x = np.array(ts.to_pylist(), dtype=np.float64)
    boundaries = np.linspace(x.min(), x.max(), num=1000)
    assert feats.num_buckets == 1001
    np.testing.assert_array_equal(feats.discretization.bin_boundaries, boundaries)
    out = feats(ts)
    np.testing.assert_allclose(out.normalized.to_numpy(), (x - x.mean()) / x.std(), rtol=1e-6)
    expected = np.searchsorted(boundaries, x, side="right")
    assert out.bucket.to_pylist() == expected.tolist()
    assert out.bucket.to_pylist()[0] == 1 and out.bucket.to_pylist()[-1] == 1000
    # Arrow timestamps and numpy datetime64 are int64 counts of their unit.
    as_time = pa.array(ts.to_pylist(), pa.timestamp("s"))
    assert feats.bucketize(as_time).to_pylist() == expected.tolist()
    assert feats.bucketize(x.astype("datetime64[s]")).tolist() == expected.tolist()
    again = TimestampFeatures.from_dict(json.loads(json.dumps(feats.to_dict())))
    assert again(ts).bucket.to_pylist() == expected.tolist()


def test_timestamp_features_on_movielens_against_keras(ml100k_dir):
    ts = np.loadtxt(ml100k_dir / "u.data", dtype=np.int64)[:, 3]
    feats = TimestampFeatures.fit(pa.array(ts))
    # Keras 2.21, the tutorial's layers: Normalization(axis=None) adapted on batches of 1024
    # gives mean 8.8352896e+08, variance 2.8556497e+13 (float32 accumulation).
    np.testing.assert_allclose(feats.normalization.mean, 8.8352896e08, rtol=1e-6)
    np.testing.assert_allclose(feats.normalization.variance, 2.8556497e13, rtol=1e-6)
    np.testing.assert_allclose(feats.normalization.mean, ts.mean())
    buckets = feats.bucketize(ts)
    # Keras's Bucketize compares in float32: 159 of the 100,000 buckets differ from these by one.
    # The first ten, from Keras: [352 915 225 317 629 510 347 910 625 478].
    assert buckets[:10].tolist() == [352, 915, 225, 317, 629, 510, 347, 910, 625, 478]
    assert buckets.min() == 1 and buckets.max() == 1000  # min is the first boundary


@pytest.mark.compile
def test_torch_paths_compile_without_graph_breaks():
    norm = Normalization.fit(np.array([[1.0, 2.0], [3.0, 5.0]]))
    disc = Discretization([0.0, 1.0, 2.0])
    x = torch.tensor([[0.5, 2.0], [1.0, 3.0]])
    compiled = torch.compile(lambda v: norm(v) + disc(v).float(), fullgraph=True)
    expected = (x.numpy() - [2.0, 3.5]) / [1.0, 1.5] + [[1, 3], [2, 3]]
    np.testing.assert_allclose(compiled(x).numpy(), expected, rtol=1e-6)
    np.testing.assert_array_equal(torch.vmap(disc)(x).numpy(), [[1, 3], [2, 3]])
