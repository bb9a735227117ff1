"""BagEmbedding against TF's embedding_lookup_sparse / Keras pooling values and hand computations.

The TF values were produced with TensorFlow 2.21.0 and tf-keras 2.21.0 (``TF_USE_LEGACY_KERAS=1``):
``tf.nn.embedding_lookup_sparse(W, sp_ids, sp_weights, combiner=...)`` over the non-zero ids of
``IDS``, and ``Sequential([Embedding(6, 3, mask_zero=True), GlobalAveragePooling1D()])`` with
``W`` as its weights. They are written in as literals.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import torchrs_fn as rs
from torchrs_fn.layers import BagEmbedding

W = (torch.arange(18, dtype=torch.float32).reshape(6, 3) - 8.0) / 10.0
IDS = torch.tensor([[1, 2, 0, 0], [3, 3, 5, 0], [0, 0, 0, 0], [4, 1, 2, 5]])
WEIGHTS = torch.tensor(
    [[0.5, 2.0, 9.0, 9.0], [1.0, -0.5, 3.0, 9.0], [1.0, 1.0, 1.0, 1.0], [0.25, 1.0, 1.0, 2.0]]
)

TF = {
    ("sum", True): [
        [-0.6499999761581421, -0.4000000059604645, -0.15000000596046448],
        [2.1499998569488525, 2.5, 2.8499999046325684],
        [0.0, 0.0, 0.0],
        [0.7999999523162842, 1.225000023841858, 1.649999976158142],
    ],
    ("sum", False): [
        [-0.699999988079071, -0.5, -0.30000001192092896],
        [0.8999999761581421, 1.2000000476837158, 1.5],
        [0.0, 0.0, 0.0],
        [0.3999999761581421, 0.800000011920929, 1.2000000476837158],
    ],
    ("mean", True): [
        [-0.25999999046325684, -0.1599999964237213, -0.06000000238418579],
        [0.6142856478691101, 0.7142857313156128, 0.8142856955528259],
        [0.0, 0.0, 0.0],
        [0.18823528289794922, 0.28823530673980713, 0.38823530077934265],
    ],
    ("mean", False): [
        [-0.3499999940395355, -0.25, -0.15000000596046448],
        [0.30000001192092896, 0.40000003576278687, 0.5],
        [0.0, 0.0, 0.0],
        [0.09999999403953552, 0.20000000298023224, 0.30000001192092896],
    ],
    ("sqrtn", True): [
        [-0.31529632210731506, -0.19402851164340973, -0.0727606937289238],
        [0.6715471148490906, 0.7808687686920166, 0.8901904225349426],
        [0.0, 0.0, 0.0],
        [0.3249107599258423, 0.4975196123123169, 0.6701284646987915],
    ],
    ("sqrtn", False): [
        [-0.4949747323989868, -0.3535533845424652, -0.2121320366859436],
        [0.5196152329444885, 0.6928203105926514, 0.8660253882408142],
        [0.0, 0.0, 0.0],
        [0.19999998807907104, 0.4000000059604645, 0.6000000238418579],
    ],
}

# Keras Embedding(mask_zero=True) + GlobalAveragePooling1D on IDS: row 2 (all padding) is NaN
# in Keras; the other rows:
KERAS_POOLED = {
    0: [-0.3499999940395355, -0.25, -0.15000000596046448],
    1: [0.29999998211860657, 0.4000000059604645, 0.5],
    3: [0.09999999403953552, 0.20000000298023224, 0.30000001192092896],
}


def _params():
    return {"weight": W.clone()}


@pytest.mark.parametrize("combiner", ["sum", "mean", "sqrtn"])
@pytest.mark.parametrize("weighted", [True, False])
def test_combiners_match_embedding_lookup_sparse(combiner, weighted):
    bag = BagEmbedding(6, 3, combiner)
    rs.init(bag, seed=0)
    out = rs.apply(bag, _params(), IDS, weights=WEIGHTS if weighted else None)
    np.testing.assert_allclose(out.numpy(), TF[(combiner, weighted)], rtol=1e-6, atol=1e-7)


def test_combiners_by_hand():
    bag = BagEmbedding(6, 3, "sqrtn")
    rs.init(bag, seed=0)
    ids = torch.tensor([[3, 3, 5, 0]])
    w = torch.tensor([[1.0, -0.5, 3.0, 9.0]])
    e3, e5 = W[3], W[5]
    numerator = 1.0 * e3 - 0.5 * e3 + 3.0 * e5
    expected = numerator / np.sqrt(1.0 + 0.25 + 9.0)
    torch.testing.assert_close(rs.apply(bag, _params(), ids, weights=w)[0], expected)


def test_bag_of_words_equals_keras_masked_global_average_pooling():
    bag = BagEmbedding(6, 3, "mean")  # mask_zero=True by default
    rs.init(bag, seed=0)
    out = rs.apply(bag, _params(), IDS)
    for row, expected in KERAS_POOLED.items():
        np.testing.assert_allclose(out[row].numpy(), expected, rtol=1e-6)
    # Hand computation: the mean of the embeddings of the non-zero ids.
    torch.testing.assert_close(out[1], (W[3] + W[3] + W[5]) / 3)
    # An all-padding row gives zeros (Keras gives NaN here).
    assert torch.equal(out[2], torch.zeros(3))


def test_explicit_mask_overrides_mask_zero_and_ignores_masked_ids():
    bag = BagEmbedding(6, 3, "sum")
    rs.init(bag, seed=0)
    ids = torch.tensor([[0, 2, -1, 99]])
    mask = torch.tensor([[True, True, False, False]])
    out = rs.apply(bag, _params(), ids, mask=mask)
    torch.testing.assert_close(out[0], W[0] + W[2])  # id 0 counts: the mask says so
    no_mask = BagEmbedding(6, 3, "mean", mask_zero=False)
    rs.init(no_mask, seed=0)
    torch.testing.assert_close(
        rs.apply(no_mask, _params(), torch.tensor([[0, 2]]))[0], (W[0] + W[2]) / 2
    )


def test_init_is_keras_uniform_and_leading_dims_work():
    bag = BagEmbedding(1000, 8)
    params = rs.init(bag, seed=3)
    w = params["weight"]
    assert w.shape == (1000, 8) and w.abs().max() <= 0.05 and w.std() > 0.02
    assert torch.equal(rs.init(BagEmbedding(1000, 8), seed=3)["weight"], w)
    ids = torch.randint(1, 1000, (2, 5, 4), generator=torch.Generator().manual_seed(0))
    out = rs.apply(bag, params, ids)
    assert out.shape == (2, 5, 8)
    torch.testing.assert_close(out, w[ids].mean(-2))


def test_gradients_are_finite_for_empty_rows():
    bag = BagEmbedding(6, 3, "sqrtn")
    rs.init(bag, seed=0)

    def loss(params, weights):
        return rs.apply(bag, params, IDS, weights=weights).sum()

    grads = torch.func.grad(loss, argnums=(0, 1))(_params(), WEIGHTS)
    assert torch.isfinite(grads[0]["weight"]).all() and torch.isfinite(grads[1]).all()
    assert torch.equal(grads[1][2], torch.zeros(4))  # the all-padding row
    # The gradient of a "sum" bag w.r.t. the table counts each valid occurrence once.
    summed = BagEmbedding(6, 3, "sum")
    rs.init(summed, seed=0)
    g = torch.func.grad(lambda p: rs.apply(summed, p, IDS).sum())(_params())["weight"]
    counts = torch.bincount(IDS[IDS != 0], minlength=6).float()
    torch.testing.assert_close(g, counts[:, None].expand(6, 3))


def test_vmap_over_examples_matches_the_batch():
    bag = BagEmbedding(6, 3, "mean")
    rs.init(bag, seed=0)
    params = _params()
    batched = rs.apply(bag, params, IDS, weights=WEIGHTS)
    mapped = torch.vmap(lambda i, w: rs.apply(bag, params, i, weights=w))(IDS, WEIGHTS)
    torch.testing.assert_close(mapped, batched)


def test_bad_input_is_named():
    bag = BagEmbedding(6, 3)
    rs.init(bag, seed=0)
    p = _params()
    with pytest.raises(IndexError, match=r"BagEmbedding\(6, 3\).*\[0, 6\).*\[1, 6\]"):
        rs.apply(bag, p, torch.tensor([[1, 6]]))
    with pytest.raises(TypeError, match="ids must be integers"):
        rs.apply(bag, p, torch.tensor([[1.0]]))
    with pytest.raises(TypeError, match="mask must be a bool"):
        rs.apply(bag, p, torch.tensor([[1]]), mask=torch.tensor([[1]]))
    with pytest.raises(TypeError, match="weights must be floating"):
        rs.apply(bag, p, torch.tensor([[1]]), weights=torch.tensor([[1]]))
    with pytest.raises(ValueError, match="weights has shape"):
        rs.apply(bag, p, torch.tensor([[1, 2]]), weights=torch.ones(1, 3))
    with pytest.raises(ValueError, match="combiner"):
        BagEmbedding(6, 3, "max")


@pytest.mark.compile
def test_compiled_grad_matches_eager():
    bag = BagEmbedding(6, 3, "sqrtn")
    rs.init(bag, seed=0)

    def loss(params, ids, weights):
        return (rs.apply(bag, params, ids, weights=weights) ** 2).sum()

    grad = torch.func.grad(loss)
    eager = grad(_params(), IDS, WEIGHTS)
    compiled = torch.compile(grad, fullgraph=True)(_params(), IDS, WEIGHTS)
    torch.testing.assert_close(compiled["weight"], eager["weight"])
