"""layers.MLP: TFRS's blocks.MLP against a numpy loop over the params, Keras Dense init, errors."""

import math

import numpy as np
import pytest
import torch

import torchrs_fn as rs
from torchrs_fn import tree
from torchrs_fn.layers.mlp import MLP


def _reference(params, x, activation, final_activation):
    """Dense layers by hand in numpy: h @ kernel + b with kernel = weight.T."""
    h = x.numpy().astype(np.float64)
    layers = params["layers"]
    for i in range(len(layers)):
        w = layers[str(i)]["weight"].numpy().astype(np.float64)
        h = h @ w.T
        if "bias" in layers[str(i)]:
            h = h + layers[str(i)]["bias"].numpy()
        h = (final_activation if i == len(layers) - 1 else activation)(h)
    return h


def _relu(h):
    return np.maximum(h, 0.0)


def _sigmoid(h):
    return 1.0 / (1.0 + np.exp(-h))


def test_forward_matches_dense_layers_by_hand():
    mlp = MLP(5, [7, 4, 3], final_activation="sigmoid")
    params = rs.init(mlp, seed=0)
    x = torch.randn(6, 5, generator=torch.Generator().manual_seed(1))
    out = rs.apply(mlp, params, x)
    assert out.shape == (6, 3)
    np.testing.assert_allclose(out.numpy(), _reference(params, x, _relu, _sigmoid), atol=1e-6)


def test_activation_names_callables_and_no_bias():
    mlp = MLP(3, [4, 2], activation="tanh", final_activation=torch.square, use_bias=False)
    params = rs.init(mlp, seed=2)
    assert set(tree.flatten_dict(params)) == {"layers.0.weight", "layers.1.weight"}
    x = torch.randn(2, 5, 3, generator=torch.Generator().manual_seed(0))  # extra leading dims
    expected = _reference(params, x.reshape(10, 3), np.tanh, np.square).reshape(2, 5, 2)
    np.testing.assert_allclose(rs.apply(mlp, params, x).numpy(), expected, atol=1e-6)
    # A single layer gets only the final activation; "linear" means none.
    one = MLP(3, [2], activation="relu", final_activation="linear")
    p1 = rs.init(one, seed=0)
    expected = x @ p1["layers"]["0"]["weight"].T + p1["layers"]["0"]["bias"]
    torch.testing.assert_close(rs.apply(one, p1, x), expected)


def test_init_is_keras_dense():
    mlp = MLP(64, [32, 16])
    params = rs.init(mlp, seed=0)
    again = rs.init(mlp, seed=0)
    assert tree.allclose(params, again, rtol=0, atol=0)
    for i, (fan_in, fan_out) in enumerate([(64, 32), (32, 16)]):
        w = params["layers"][str(i)]["weight"]
        assert w.shape == (fan_out, fan_in)
        bound = math.sqrt(6.0 / (fan_in + fan_out))
        assert w.abs().max() <= bound and w.abs().max() > 0.95 * bound
        assert abs(w.std().item() - bound / math.sqrt(3)) < 0.1 * bound  # uniform's std
        assert torch.count_nonzero(params["layers"][str(i)]["bias"]) == 0


def test_clear_errors():
    mlp = MLP(5, [3])
    params = rs.init(mlp, seed=0)
    with pytest.raises(
        ValueError, match=r"MLP\(5, \[3\]\): expected inputs of shape \[\.\.\., 5\], got \(2, 4\)"
    ):
        rs.apply(mlp, params, torch.zeros(2, 4))
    with pytest.raises(ValueError, match="at least one layer"):
        MLP(5, [])
    with pytest.raises(TypeError, match="sequence of ints"):
        MLP(5, 3)
    with pytest.raises(ValueError, match="unknown activation 'rellu'"):
        MLP(5, [3], activation="rellu")
    with pytest.raises(ValueError, match="positive"):
        MLP(0, [3])


def test_grad_and_vmap_over_stacked_params_match_per_seed_runs():
    mlp = MLP(4, [8, 1])
    x = torch.randn(10, 4, generator=torch.Generator().manual_seed(0))
    seeds = [rs.init(mlp, seed=s) for s in range(3)]
    stacked = tree.stack(seeds)

    def loss(p):
        return rs.apply(mlp, p, x).square().mean()

    grads = torch.vmap(torch.func.grad(loss))(stacked)
    for s, p in enumerate(seeds):
        # Reference gradient: autograd on the explicit formula, leaves from the params dict.
        w0, b0, w1, b1 = (
            p["layers"]["0"]["weight"].clone().requires_grad_(),
            p["layers"]["0"]["bias"].clone().requires_grad_(),
            p["layers"]["1"]["weight"].clone().requires_grad_(),
            p["layers"]["1"]["bias"].clone().requires_grad_(),
        )
        ref = (torch.relu(x @ w0.T + b0) @ w1.T + b1).square().mean()
        expected = torch.autograd.grad(ref, [w0, b0, w1, b1])
        got = tree.unstack(grads)[s]
        for g, e in zip([got["layers"][i][n] for i in "01" for n in ("weight", "bias")], expected):
            torch.testing.assert_close(g, e)
        torch.testing.assert_close(
            torch.vmap(lambda q: rs.apply(mlp, q, x))(stacked)[s], rs.apply(mlp, p, x)
        )
