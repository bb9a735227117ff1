"""layers.Embedding: same values as nn.Embedding, clear errors for bad ids."""

import pytest
import torch

import torchrs_fn as rs
from torchrs_fn.layers import Embedding, embedding_lookup


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


# --- embedding_lookup: a gather whose gradient is a scatter_add -------------------------------


def _table_and_ids(rows=7, dim=5, shape=(4, 6), seed=0):
    g = torch.Generator().manual_seed(seed)
    weight = torch.randn(rows, dim, generator=g, dtype=torch.float64)
    ids = torch.randint(0, rows, shape, generator=g)
    ids.view(-1)[:3] = 2  # repeated ids: their gradients must add up
    return weight, ids


@pytest.mark.parametrize("dtype", [torch.int64, torch.int32])
def test_embedding_lookup_values_and_gradient_match_nn_functional_embedding(dtype):
    weight, ids = _table_and_ids()
    ids = ids.to(dtype)
    cotangent = torch.randn(*ids.shape, weight.shape[1], dtype=torch.float64)
    w1, w2 = weight.clone().requires_grad_(), weight.clone().requires_grad_()
    got = embedding_lookup(w1, ids)
    want = torch.nn.functional.embedding(ids, w2)
    assert got.shape == (*ids.shape, weight.shape[1])
    assert torch.equal(got, want)
    (g1,) = torch.autograd.grad((got * cotangent).sum(), w1)
    (g2,) = torch.autograd.grad((want * cotangent).sum(), w2)
    assert torch.allclose(g1, g2, rtol=0, atol=1e-12)


def test_embedding_lookup_gradient_of_a_strided_slice_matches_the_reference():
    """The case the flat gather is for: the lookup's gradient arrives as a slice of a
    concatenation's gradient (strided), as in every model that concatenates its features."""
    weights = [_table_and_ids(rows=r, seed=r)[0] for r in (2, 9, 30)]
    ids = [torch.randint(0, w.shape[0], (64,)) for w in weights]
    proj = torch.randn(15, 3, dtype=torch.float64)

    def loss(tables, lookup):
        x = torch.cat([lookup(w, i) for w, i in zip(tables, ids)], dim=-1)
        return (x @ proj).square().sum()

    got = torch.func.grad(loss)(weights, embedding_lookup)
    want = torch.func.grad(loss)(weights, lambda w, i: torch.nn.functional.embedding(i, w))
    for a, b in zip(got, want):
        assert torch.allclose(a, b, rtol=1e-12, atol=1e-12)


def test_embedding_lookup_under_vmap_of_the_table_and_of_the_ids():
    weight, ids = _table_and_ids()
    tables = torch.stack([weight, 2 * weight, -weight])
    out = torch.vmap(embedding_lookup, in_dims=(0, None))(tables, ids)
    assert torch.equal(out, torch.stack([t[ids] for t in tables]))
    out = torch.vmap(embedding_lookup, in_dims=(None, 0))(weight, ids)
    assert torch.equal(out, weight[ids])
    cot = torch.randn(3, *ids.shape, weight.shape[1], dtype=torch.float64)
    grads = torch.vmap(
        torch.func.grad(lambda t, c: (embedding_lookup(t, ids) * c).sum()), in_dims=(0, 0)
    )(tables, cot)
    for t, c, g in zip(tables, cot, grads):
        want = torch.zeros_like(t).index_add_(0, ids.reshape(-1), c.reshape(-1, t.shape[1]))
        assert torch.allclose(g, want, rtol=0, atol=1e-12)


def test_embedding_lookup_compiled_gradient_matches_eager():
    weight, ids = _table_and_ids(rows=3, dim=4, shape=(256,))
    weight = weight.float()
    cot = torch.randn(256, 12)

    def loss(w):
        x = torch.cat([embedding_lookup(w, ids), embedding_lookup(w, ids.flip(0)), w[ids]], -1)
        return (x * cot).sum()

    got = torch.compile(torch.func.grad(loss), fullgraph=True)(weight)
    want = torch.func.grad(loss)(weight)
    assert torch.allclose(got, want, rtol=1e-5, atol=1e-5)


def test_embedding_lookup_bad_input_is_named():
    weight, ids = _table_and_ids()
    with pytest.raises(TypeError, match="ids must be integers"):
        embedding_lookup(weight, ids.double())
    with pytest.raises(ValueError, match=r"\[V, D\] table"):
        embedding_lookup(weight[None], ids)
    with pytest.raises((IndexError, RuntimeError), match="out of bounds"):
        embedding_lookup(weight, torch.tensor([0, 7]))


def test_embedding_with_nn_embedding_options_keeps_their_semantics():
    """padding_idx (and the other nn.Embedding options) keep nn.Embedding's own kernel: the
    padding row gets no gradient."""
    table = Embedding(5, 3, padding_idx=0)
    params = rs.init(table, seed=0)
    ids = torch.tensor([0, 1, 0, 4])
    grads = torch.func.grad(lambda p: rs.apply(table, p, ids).sum())(params)
    assert torch.equal(grads["weight"][0], torch.zeros(3))
    assert torch.equal(grads["weight"][1], torch.ones(3))
