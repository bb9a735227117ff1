"""MultiHot and pad_lists against hand-computed rows, Python loops and Keras outputs.

Keras values: tf-keras 2.21.0 on TensorFlow 2.21.0 (``TF_USE_LEGACY_KERAS=1``), written in as
literals.
"""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest
import torch

from torchrs_fn.data import MultiHot, StringLookup, pad_lists


def test_multi_hot_of_list_column_matches_keras_category_encoding():
    genres = pa.array([[1, 3], [0], [], [2, 2, 5]])
    out = MultiHot(6)(genres)
    assert out.type == pa.list_(pa.float32(), 6)
    # Keras CategoryEncoding(num_tokens=6, output_mode="multi_hot") on the same ragged ids:
    assert out.to_pylist() == [
        [0.0, 1.0, 0.0, 1.0, 0.0, 0.0],
        [1.0, 0.0, 0.0, 0.0, 0.0, 0.0],
        [0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
        [0.0, 0.0, 1.0, 0.0, 0.0, 1.0],
    ]
    counts = MultiHot(6, output_mode="count")(np.array([[1, 1], [2, 0]]))
    # Keras CategoryEncoding(output_mode="count")([[1, 1], [2, 0]]):
    assert counts.tolist() == [[0, 2, 0, 0, 0, 0], [1, 0, 1, 0, 0, 0]]
    assert counts.dtype == np.float32
    # A flat column is one id per row: one-hot rows (Keras treats rank-1 input as one sample).
    assert MultiHot(3)(np.array([2, 0])).tolist() == [[0, 0, 1], [1, 0, 0]]


def test_string_lookup_multi_hot_equivalent_matches_keras():
    lookup = StringLookup(["drama", "comedy"])
    ids = lookup(pa.array([["comedy", "war"], [], ["drama", "drama"]]))
    out = MultiHot(lookup.vocabulary_size())(ids)
    # Keras StringLookup(vocabulary=["drama", "comedy"], output_mode="multi_hot"):
    assert out.to_pylist() == [[1.0, 0.0, 1.0], [0.0, 0.0, 0.0], [0.0, 1.0, 0.0]]


def test_multi_hot_against_a_python_loop():
    rng = np.random.default_rng(1)
    rows = [rng.integers(0, 20, size=rng.integers(0, 6)).tolist() for _ in range(300)]
    chunked = pa.chunked_array([pa.array(rows[:100]), pa.array(rows[100:])])
    out = MultiHot(20, output_mode="count")(chunked)
    assert [len(c) for c in out.chunks] == [100, 200]
    expected = np.zeros((300, 20))
    for i, row in enumerate(rows):
        for t in row:
            expected[i, t] += 1
    np.testing.assert_array_equal(np.array(out.to_pylist()), expected)
    t = MultiHot(20)(torch.tensor([[1, 2], [3, 3]]))
    assert isinstance(t, torch.Tensor) and t.sum().item() == 3


def test_multi_hot_bad_input():
    with pytest.raises(ValueError, match=r"outside \[0, 4\).*\[4, 7\]"):
        MultiHot(4)(pa.array([[1, 4], [7]]))
    with pytest.raises(ValueError, match=r"outside"):
        MultiHot(4)(np.array([-1]))
    with pytest.raises(TypeError, match="integer ids.*StringLookup"):
        MultiHot(4)(pa.array([["a"]]))
    with pytest.raises(ValueError, match="null"):
        MultiHot(4)(pa.array([[1, None]]))
    with pytest.raises(ValueError, match="output_mode"):
        MultiHot(4, output_mode="tf_idf")
    m = MultiHot.from_dict(json.loads(json.dumps(MultiHot(9, output_mode="count").to_dict())))
    assert repr(m) == "MultiHot(num_tokens=9, output_mode='count')"


def test_pad_lists_pads_truncates_and_masks():
    lists = pa.array([[4, 5, 6], [7], [], [1, 2]])
    padded = pad_lists(lists)
    assert padded.values.type == pa.list_(pa.int64(), 3)
    assert padded.values.to_pylist() == [[4, 5, 6], [7, 0, 0], [0, 0, 0], [1, 2, 0]]
    assert padded.mask.to_pylist() == [
        [True, True, True],
        [True, False, False],
        [False, False, False],
        [True, True, False],
    ]
    short = pad_lists([[4, 5, 6], [7]], 2, pad_value=-1)
    assert isinstance(short.values, np.ndarray)
    assert short.values.tolist() == [[4, 5], [7, -1]]  # keeps the first values ("post")
    assert short.mask.tolist() == [[True, True], [True, False]]
    floats = pad_lists(pa.array([[0.5], [1.5, 2.5]], pa.large_list(pa.float32())))
    assert floats.values.type == pa.list_(pa.float32(), 2)
    chunked = pad_lists(pa.chunked_array([[[1]], [[2, 3], []]]), 4)
    assert [len(c) for c in chunked.values.chunks] == [1, 2]
    assert chunked.values.to_pylist() == [[1, 0, 0, 0], [2, 3, 0, 0], [0, 0, 0, 0]]


def test_pad_lists_against_a_python_loop():
    rng = np.random.default_rng(2)
    rows = [rng.integers(1, 50, size=rng.integers(0, 9)).tolist() for _ in range(200)]
    padded = pad_lists(pa.array(rows), 5)
    values = np.array(padded.values.to_pylist())
    mask = np.array(padded.mask.to_pylist())
    for i, row in enumerate(rows):
        kept = row[:5]
        assert values[i].tolist() == kept + [0] * (5 - len(kept))
        assert mask[i].tolist() == [True] * len(kept) + [False] * (5 - len(kept))


def test_pad_lists_bad_input():
    with pytest.raises(TypeError, match="list column"):
        pad_lists(pa.array([1, 2]))
    with pytest.raises(TypeError, match="numbers or bools"):
        pad_lists(pa.array([["a"]]))
    with pytest.raises(ValueError, match="null list"):
        pad_lists(pa.array([[1], None]))
    with pytest.raises(ValueError, match="length"):
        pad_lists(pa.array([[1]]), 0)
