"""layers.Embedding: same values as nn.Embedding, clear errors for bad ids."""

import pytest
import torch

import torchrs_fn as rs
from torchrs_fn.layers import Embedding


def test_lookup_matches_indexing_and_keras_init():
    table = Embedding(10, 4)
    params = rs.init(table, seed=0)
    ids = torch.tensor([[0, 9], [3, 3]])
    assert torch.equal(rs.apply(table, params, ids), params["weight"][ids])
    assert params["weight"].abs().max() <= 0.05


def test_ids_outside_the_table_are_named():
    table = Embedding(10, 4)
    params = rs.init(table, seed=0)
    with pytest.raises(IndexError, match=r"Embedding\(10, 4\).*\[0, 10\).*\[-1, 10\]"):
        rs.apply(table, params, torch.tensor([-1, 10]))
    with pytest.raises(TypeError, match="integers"):
        rs.apply(table, params, torch.tensor([1.0]))


def test_vmap_over_ids_still_works():
    table = Embedding(10, 4)
    params = rs.init(table, seed=0)
    ids = torch.tensor([[1, 2], [3, 4]])
    out = torch.vmap(lambda i: rs.apply(table, params, i))(ids)
    assert torch.equal(out, params["weight"][ids])
