"""StringLookup / IntegerLookup against hand-computed ids and brute-force Python references.

The references: Keras's documented adapt order (count descending, ties by term descending) done
with ``collections.Counter`` and ``sorted``; FNV-1a 64 from the published test vectors and a
byte-by-byte Python loop; floor modulo from Python's ``%``.
"""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pyarrow as pa
import pytest
import torch

from torchrs_fn.data import IntegerLookup, StringLookup
from torchrs_fn.data.lookup import fnv1a_64


def _fnv1a_64_python(s: str) -> int:
    h = 0xCBF29CE484222325
    for byte in s.encode("utf-8"):
        h ^= byte
        h = (h * 0x100000001B3) % 2**64
    return h


def _keras_order(values: list, oov_token: object = "[UNK]") -> list:
    """Terms by count descending, ties by term descending (Keras IndexLookup.finalize_state),
    without the OOV token."""
    counts = Counter(v for v in values if v != oov_token)
    return [t for t, _ in sorted(counts.items(), key=lambda kv: (kv[1], kv[0]), reverse=True)]


# -- explicit vocabulary ----------------------------------------------------------------------


def test_ids_with_one_oov_bucket():
    lookup = StringLookup(vocabulary=["a", "b", "c"], num_oov_indices=1)
    ids = lookup(["b", "z", "a", "c", "a"])
    assert isinstance(ids, np.ndarray) and ids.dtype == np.int64
    assert ids.tolist() == [2, 0, 1, 3, 1]
    assert lookup.vocabulary_size() == 4
    assert lookup.get_vocabulary() == ["[UNK]", "a", "b", "c"]
    assert lookup.get_vocabulary(include_special_tokens=False) == ["a", "b", "c"]


def test_arrow_inputs_give_arrow_outputs():
    lookup = StringLookup(["x", "y"])
    out = lookup(pa.array(["y", "x", "q"]))
    assert isinstance(out, pa.Array) and out.type == pa.int64()
    assert out.to_pylist() == [2, 1, 0]
    chunked = lookup(pa.chunked_array([["y"], ["x", "q", "y"]]))
    assert isinstance(chunked, pa.ChunkedArray) and chunked.type == pa.int64()
    assert [len(c) for c in chunked.chunks] == [1, 3]
    assert chunked.to_pylist() == [2, 1, 0, 2]
    large = lookup(pa.array(["x", "y"], type=pa.large_string()))
    assert large.to_pylist() == [1, 2]
    assert lookup(pa.array(["y", "y", "q"]).dictionary_encode()).to_pylist() == [2, 2, 0]


def test_numpy_input_keeps_its_shape():
    lookup = StringLookup(["a", "b"])
    out = lookup(np.array([["a", "b", "c"], ["b", "b", "a"]]))
    assert out.shape == (2, 3)
    assert out.tolist() == [[1, 2, 0], [2, 2, 1]]


def test_zero_oov_buckets_raise_on_unknown_naming_it():
    lookup = StringLookup(["a", "b"], num_oov_indices=0)
    assert lookup(["b", "a"]).tolist() == [1, 0]
    with pytest.raises(KeyError, match="zebra"):
        lookup(["a", "zebra"])


def test_fnv1a_64_matches_published_vectors_and_python():
    # Test vectors from the FNV reference (Fowler/Noll/Vo): "", "a", "foobar".
    words = ["", "a", "foobar", "héllo wörld", "[UNK]", "x" * 300]
    got = fnv1a_64(pa.array(words))
    assert got[:3].tolist() == [0xCBF29CE484222325, 0xAF63DC4C8601EC8C, 0x85944171F73967E8]
    assert got.tolist() == [_fnv1a_64_python(w) for w in words]
    # sliced arrays hash the right strings
    assert fnv1a_64(pa.array(words).slice(2, 2)).tolist() == [
        _fnv1a_64_python(w) for w in words[2:4]
    ]


def test_several_oov_buckets_hash_strings_deterministically():
    vocab = ["known1", "known2"]
    unknown = [f"stranger{i}" for i in range(200)] + ["ünïcode", "", "stranger3"]
    lookup = StringLookup(vocab, num_oov_indices=5)
    ids = lookup(unknown + vocab)
    expected = [_fnv1a_64_python(s) % 5 for s in unknown] + [5, 6]
    assert ids.tolist() == expected
    assert len(set(ids[:200].tolist())) == 5  # the buckets are all used
    again = StringLookup(vocab, num_oov_indices=5)(unknown + vocab)
    assert again.tolist() == ids.tolist()


def test_several_oov_buckets_for_integers_use_floor_modulo():
    lookup = IntegerLookup([100, 200], num_oov_indices=3)
    values = [100, 7, -7, 200, 9, 5]
    assert lookup(values).tolist() == [3, 7 % 3, -7 % 3, 4, 9 % 3, 5 % 3]
    assert lookup(np.array(values, dtype=np.int32)).tolist() == lookup(values).tolist()


def test_unknown_values_never_get_a_vocabulary_id():
    rng = np.random.default_rng(0)
    vocab = [f"t{i}" for i in range(50)]
    queries = [f"u{i}" for i in rng.integers(0, 10_000, 2000)]
    for k in (1, 2, 7):
        ids = StringLookup(vocab, num_oov_indices=k)(queries)
        assert (ids >= 0).all() and (ids < k).all()


def test_nulls_are_rejected():
    lookup = StringLookup(["a"])
    with pytest.raises(ValueError, match="null"):
        lookup(pa.array(["a", None]))
    with pytest.raises(ValueError, match="null"):
        lookup(["a", None])
    with pytest.raises(ValueError, match="null"):
        IntegerLookup([1]).invert(pa.array([1, None]))


def test_wrong_value_types():
    with pytest.raises(TypeError, match="IntegerLookup"):
        StringLookup(["a"])(pa.array([1, 2]))
    with pytest.raises(TypeError, match="StringLookup"):
        IntegerLookup([1])(pa.array(["a"]))
    with pytest.raises(TypeError, match="integers"):
        IntegerLookup([1])(np.array([1.5]))
    with pytest.raises(TypeError):
        StringLookup(["a"])(42)


def test_vocabulary_errors():
    with pytest.raises(ValueError, match="repeated.*'b'"):
        StringLookup(["a", "b", "b"])
    with pytest.raises(ValueError, match="repeated"):
        IntegerLookup([3, 1, 3])
    with pytest.raises(ValueError, match="empty"):
        StringLookup([])
    with pytest.raises(ValueError, match="OOV token"):
        StringLookup(["a", "[UNK]"])
    with pytest.raises(ValueError, match="OOV token"):
        IntegerLookup([4, -1])
    with pytest.raises(ValueError, match="num_oov_indices"):
        StringLookup(["a"], num_oov_indices=-1)


def test_vocabulary_may_start_with_its_special_tokens():
    lookup = StringLookup(["[UNK]", "[UNK]", "a", "b"], num_oov_indices=2)
    assert lookup.get_vocabulary() == ["[UNK]", "[UNK]", "a", "b"]
    assert lookup(["a", "b"]).tolist() == [2, 3]
    rebuilt = StringLookup(lookup.get_vocabulary(), num_oov_indices=2)
    assert rebuilt.get_vocabulary() == lookup.get_vocabulary()


# -- invert -----------------------------------------------------------------------------------


def test_invert_maps_oov_ids_to_unk():
    lookup = StringLookup(["a", "b", "c"], num_oov_indices=2)
    out = lookup.invert([0, 1, 2, 3, 4])
    assert isinstance(out, pa.Array)
    assert out.to_pylist() == ["[UNK]", "[UNK]", "a", "b", "c"]
    assert lookup.invert(torch.tensor([4, 2])).to_pylist() == ["c", "a"]
    chunked = lookup.invert(pa.chunked_array([[2], [3, 0]]))
    assert isinstance(chunked, pa.ChunkedArray) and chunked.to_pylist() == ["a", "b", "[UNK]"]


def test_integer_invert_uses_minus_one():
    lookup = IntegerLookup([10, 20])
    assert lookup.invert(np.array([0, 1, 2])).to_pylist() == [-1, 10, 20]
    assert lookup.get_vocabulary() == [-1, 10, 20]


def test_invert_rejects_ids_outside_the_vocabulary():
    lookup = StringLookup(["a", "b"])  # vocabulary_size 3
    with pytest.raises(ValueError, match=r"\[0, 3\).*\[3\]"):
        lookup.invert([1, 3])
    with pytest.raises(ValueError, match=r"-1"):
        lookup.invert(np.array([-1, 0]))
    with pytest.raises(ValueError, match="1-D"):
        lookup.invert(np.zeros((2, 2), dtype=np.int64))
    with pytest.raises(TypeError, match="integers"):
        lookup.invert([0.5])


def test_round_trip():
    words = ["apple", "pear", "fig", "pear", "kiwi"]
    lookup = StringLookup.fit(words)
    assert lookup.invert(lookup(words)).to_pylist() == words
    numbers = [5, 3, 5, 9]
    ilookup = IntegerLookup.fit(pa.array(numbers, type=pa.int16()))
    assert ilookup.invert(ilookup(numbers)).to_pylist() == numbers


# -- fit --------------------------------------------------------------------------------------


def test_fit_orders_by_count_then_term_descending():
    column = ["b", "a", "c", "a", "b", "d"]
    lookup = StringLookup.fit(pa.array(column))
    # counts: a 2, b 2, c 1, d 1 -> ties broken high to low
    assert lookup.get_vocabulary() == ["[UNK]", "b", "a", "d", "c"]
    assert lookup.get_vocabulary()[1:] == _keras_order(column)


def test_fit_matches_brute_force_on_random_data():
    rng = np.random.default_rng(1)
    alphabet = ["x", "y", "é", "Z", "aa", "ab", "ü", "b"]
    column = ["".join(rng.choice(alphabet, size=rng.integers(1, 3))) for _ in range(3000)]
    chunked = pa.chunked_array([column[:1000], column[1000:]])
    assert StringLookup.fit(chunked).get_vocabulary()[1:] == _keras_order(column)
    ints = rng.integers(-20, 20, size=3000)
    assert IntegerLookup.fit(ints).get_vocabulary()[1:] == _keras_order(ints.tolist(), oov_token=-1)


def test_fit_max_tokens_counts_oov_buckets():
    column = ["a"] * 5 + ["b"] * 4 + ["c"] * 3 + ["d"]
    assert StringLookup.fit(column, max_tokens=3).get_vocabulary() == ["[UNK]", "a", "b"]
    two = StringLookup.fit(column, max_tokens=4, num_oov_indices=2)
    assert two.get_vocabulary() == ["[UNK]", "[UNK]", "a", "b"]
    assert two.vocabulary_size() == 4
    with pytest.raises(ValueError, match="max_tokens"):
        StringLookup.fit(column, max_tokens=1)


def test_fit_min_frequency():
    column = ["a"] * 3 + ["b"] * 2 + ["c"]
    assert StringLookup.fit(column, min_frequency=2).get_vocabulary() == ["[UNK]", "a", "b"]
    with pytest.raises(ValueError, match="min_frequency"):
        StringLookup.fit(column, min_frequency=10)


def test_fit_never_learns_the_oov_token():
    assert StringLookup.fit(["[UNK]", "[UNK]", "a"]).get_vocabulary() == ["[UNK]", "a"]
    assert IntegerLookup.fit([-1, -1, 4]).get_vocabulary() == [-1, 4]


def test_fit_errors():
    with pytest.raises(ValueError, match="empty"):
        StringLookup.fit(pa.array([], type=pa.string()))
    with pytest.raises(ValueError, match="null"):
        StringLookup.fit(pa.array(["a", None]))


# -- state ------------------------------------------------------------------------------------


def test_to_dict_from_dict_through_json():
    lookup = StringLookup.fit(["b", "a", "b", "ç"], num_oov_indices=3)
    state = json.loads(json.dumps(lookup.to_dict()))
    assert state == {"type": "StringLookup", "num_oov_indices": 3, "vocabulary": ["b", "ç", "a"]}
    again = StringLookup.from_dict(state)
    queries = ["a", "b", "ç", "new", "other"]
    assert again(queries).tolist() == lookup(queries).tolist()
    ilookup = IntegerLookup([7, 3], num_oov_indices=0)
    assert IntegerLookup.from_dict(json.loads(json.dumps(ilookup.to_dict()))).get_vocabulary() == [
        7,
        3,
    ]


def test_from_dict_checks_the_state():
    with pytest.raises(ValueError, match="IntegerLookup"):
        StringLookup.from_dict({"type": "IntegerLookup", "num_oov_indices": 1, "vocabulary": [1]})
    with pytest.raises(ValueError, match="keys"):
        StringLookup.from_dict({"vocabulary": ["a"]})
