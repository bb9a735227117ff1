"""layers.Cross / MultiLayerDCN: TFRS's formula by hand, TFRS's own outputs, Keras initialisers."""

import math

import numpy as np
import pytest
import torch

import torchrs_fn as rs
from torchrs_fn import tree
from torchrs_fn.layers.dcn import Cross, MultiLayerDCN, keras_initializer


def _vals(shape, k):
    """Deterministic inputs, the same in the TFRS script that produced the constants below."""
    n = int(np.prod(shape))
    return (np.sin(np.arange(n) * 0.7 + k) * 0.5).reshape(shape).astype(np.float32)


def _t(a):
    return torch.from_numpy(np.ascontiguousarray(a))


# Produced with tensorflow-cpu 2.21.0, tf-keras 2.21.0, tensorflow-recommenders 0.7.7
# (TF_USE_LEGACY_KERAS=1), d = 4, r = 2, x0 = _vals((3, 4), 10), x = _vals((3, 4), 11):
#   Cross(diag_scale=0.5, preactivation="relu"), _dense kernel _vals((4, 4), 20),
#     bias _vals((4,), 21), called (x0, x)                    -> TFRS_CROSS_FULL
#   Cross() with the same kernel and bias, called (x0)        -> TFRS_CROSS_SELF
#   Cross(projection_dim=2, diag_scale=0.25), _dense_u kernel _vals((4, 2), 30),
#     _dense_v kernel _vals((2, 4), 31), bias _vals((4,), 21), called (x0, x) -> TFRS_CROSS_LOW_RANK
#   MultiLayerDCN(projection_dim=2, num_layers=2), layer i: u kernel _vals((4, 2), 40 + i),
#     v kernel _vals((2, 4), 50 + i), bias _vals((4,), 60 + i), called (x0) -> TFRS_MULTI_LAYER_DCN
# Keras kernels are [in, out]; the torch weights below are their transposes.
TFRS_CROSS_FULL = [
    [-0.5117818, -0.2898742, -0.0637715, 0.225741],
    [0.5599712, 0.6754815, 0.3038792, -0.1126753],
    [-0.3812548, -0.447076, -0.285244, -0.0575028],
]
TFRS_CROSS_SELF = [
    [-0.3747642, -0.5370338, -0.3723379, -0.1318899],
    [0.1638534, 0.4401648, 0.364356, 0.1778245],
    [0.0788859, -0.3502634, -0.4452948, -0.2883899],
]
TFRS_CROSS_LOW_RANK = [
    [-0.5625556, -0.4206178, -0.0353339, 0.3084706],
    [0.5416264, 0.5658732, 0.1293319, -0.3101095],
    [-0.3752214, -0.5035604, -0.2606681, 0.0982356],
]
TFRS_MULTI_LAYER_DCN = [
    [-0.1158604, -0.0877805, -0.1494376, -0.1762841],
    [0.0388987, 0.0179719, 0.1011385, 0.2658863],
    [0.0197301, -0.0650014, -0.2213423, -0.4296964],
]

X0, X = _t(_vals((3, 4), 10)), _t(_vals((3, 4), 11))


def test_matches_tfrs_outputs_for_given_weights():
    full = Cross(4, diag_scale=0.5, preactivation="relu")
    rs.init(full, seed=0)
    p = {"weight": _t(_vals((4, 4), 20).T), "bias": _t(_vals((4,), 21))}
    np.testing.assert_allclose(rs.apply(full, p, X0, X).numpy(), TFRS_CROSS_FULL, atol=2e-6)
    plain = Cross(4)
    rs.init(plain, seed=0)
    np.testing.assert_allclose(rs.apply(plain, p, X0).numpy(), TFRS_CROSS_SELF, atol=2e-6)

    low = Cross(4, projection_dim=2, diag_scale=0.25)
    rs.init(low, seed=0)
    p = {
        "u_weight": _t(_vals((4, 2), 30).T),
        "v_weight": _t(_vals((2, 4), 31).T),
        "bias": _t(_vals((4,), 21)),
    }
    np.testing.assert_allclose(rs.apply(low, p, X0, X).numpy(), TFRS_CROSS_LOW_RANK, atol=2e-6)

    stack = MultiLayerDCN(4, 2, projection_dim=2)
    rs.init(stack, seed=0)
    p = {
        "layers": {
            str(i): {
                "u_weight": _t(_vals((4, 2), 40 + i).T),
                "v_weight": _t(_vals((2, 4), 50 + i).T),
                "bias": _t(_vals((4,), 60 + i)),
            }
            for i in range(2)
        }
    }
    np.testing.assert_allclose(rs.apply(stack, p, X0).numpy(), TFRS_MULTI_LAYER_DCN, atol=2e-6)


def _cross_by_hand(x0, x, w, b, diag_scale, act):
    """x_{l+1}[n, i] = x0[n, i] * (act(sum_j W[i, j] x[n, j] + b[i]) + s x[n, i]) + x[n, i]."""
    x0, x, w = x0.astype(np.float64), x.astype(np.float64), w.astype(np.float64)
    out = np.empty_like(x)
    for n in range(x.shape[0]):
        for i in range(x.shape[1]):
            pre = sum(w[i, j] * x[n, j] for j in range(x.shape[1])) + (0.0 if b is None else b[i])
            out[n, i] = x0[n, i] * (act(pre) + diag_scale * x[n, i]) + x[n, i]
    return out


@pytest.mark.parametrize(
    ("diag_scale", "preactivation", "act", "use_bias"),
    [
        (0.0, None, lambda v: v, True),
        (0.3, "tanh", math.tanh, True),
        (1.0, "relu", lambda v: max(v, 0.0), False),
    ],
)
def test_full_rank_matches_the_formula_by_hand(diag_scale, preactivation, act, use_bias):
    layer = Cross(5, diag_scale=diag_scale, preactivation=preactivation, use_bias=use_bias)
    params = rs.init(layer, seed=1)
    if use_bias:  # a non-zero bias, so that the test sees it
        params["bias"] = torch.linspace(-0.5, 0.5, 5)
    else:
        assert set(params) == {"weight"}
    g = torch.Generator().manual_seed(0)
    x0, x = torch.randn(4, 5, generator=g), torch.randn(4, 5, generator=g)
    expected = _cross_by_hand(
        x0.numpy(),
        x.numpy(),
        params["weight"].numpy(),
        params["bias"].numpy() if use_bias else None,
        diag_scale,
        act,
    )
    np.testing.assert_allclose(rs.apply(layer, params, x0, x).numpy(), expected, atol=1e-5)
    # x defaults to x0.
    torch.testing.assert_close(rs.apply(layer, params, x0), rs.apply(layer, params, x0, x0))


def test_low_rank_equals_full_rank_with_w_equal_v_u():
    low = Cross(6, projection_dim=2, diag_scale=0.5, preactivation="sigmoid")
    full = Cross(6, diag_scale=0.5, preactivation="sigmoid")
    p_low = rs.init(low, seed=3)
    p_low["bias"] = torch.arange(6.0) / 10
    rs.init(full, seed=0)
    assert p_low["u_weight"].shape == (2, 6) and p_low["v_weight"].shape == (6, 2)
    p_full = {"weight": p_low["v_weight"] @ p_low["u_weight"], "bias": p_low["bias"]}
    g = torch.Generator().manual_seed(1)
    x0, x = torch.randn(3, 6, generator=g), torch.randn(3, 6, generator=g)
    torch.testing.assert_close(rs.apply(low, p_low, x0, x), rs.apply(full, p_full, x0, x))


def test_multi_layer_dcn_is_a_chain_of_cross_layers_on_x0():
    stack = MultiLayerDCN(4, 3, projection_dim=2, diag_scale=0.1)
    params = rs.init(stack, seed=0)
    assert sorted(params["layers"]) == ["0", "1", "2"]
    one = Cross(4, projection_dim=2, diag_scale=0.1)
    rs.init(one, seed=0)
    x = X0
    for i in range(3):
        x = rs.apply(one, params["layers"][str(i)], X0, x)
    torch.testing.assert_close(rs.apply(stack, params, X0), x)


def test_truncated_normal_init_matches_keras():
    layer = Cross(400)
    params = rs.init(layer, seed=0)
    w = params["weight"]
    # Keras TruncatedNormal(): N(0, 0.05) redrawn beyond 2 stddev; its std is 0.05 * 0.8796
    # (TFRS's own Cross(), built at width 500, gave std 0.04401 and max |w| 0.09999886).
    assert w.abs().max() <= 0.1
    assert w.abs().max() > 0.099
    assert abs(w.std().item() - 0.05 * 0.87962566) < 0.0005
    assert abs(w.mean().item()) < 0.0005
    assert torch.count_nonzero(params["bias"]) == 0
    # Each low-rank kernel is drawn separately, from the same distribution.
    low = rs.init(Cross(400, projection_dim=300), seed=0)
    assert not torch.equal(low["u_weight"][:, :300], low["v_weight"][:300].T)
    for k in ("u_weight", "v_weight"):
        assert low[k].abs().max() <= 0.1
        assert abs(low[k].std().item() - 0.05 * 0.87962566) < 0.0005
    # Seeded: same seed, same values.
    assert tree.allclose(params, rs.init(layer, seed=0), rtol=0, atol=0)


def test_other_keras_initializers_and_callables():
    layer = Cross(
        60,
        projection_dim=20,
        kernel_initializer="glorot_uniform",
        bias_initializer="ones",
    )
    params = rs.init(layer, seed=0)
    bound = math.sqrt(6.0 / (60 + 20))  # Keras fans of the [60, 20] / [20, 60] kernels
    for k in ("u_weight", "v_weight"):
        assert params[k].abs().max() <= bound and params[k].abs().max() > 0.95 * bound
    assert torch.equal(params["bias"], torch.ones(60))
    he = torch.empty(300, 200)
    keras_initializer("he_normal")(he, torch.Generator().manual_seed(0))
    assert abs(he.std().item() - math.sqrt(2.0 / 200)) < 0.003  # truncation-corrected stddev
    assert he.abs().max() <= 2 * math.sqrt(2.0 / 200) / 0.87962566 + 1e-6

    def constant(t, g):
        t.fill_(0.25)

    p = rs.init(Cross(3, kernel_initializer=constant), seed=0)
    assert torch.equal(p["weight"], torch.full((3, 3), 0.25))


def test_clear_errors():
    layer = Cross(4)
    params = rs.init(layer, seed=0)
    with pytest.raises(
        ValueError, match=r"Cross\(4\): expected x0 of shape \[\.\.\., 4\], got \(3, 5\)"
    ):
        rs.apply(layer, params, torch.zeros(3, 5))
    with pytest.raises(ValueError, match=r"expected x of shape \[\.\.\., 4\], got \(3, 3\)"):
        rs.apply(layer, params, torch.zeros(3, 4), torch.zeros(3, 3))
    with pytest.raises(ValueError, match="diag_scale must be non-negative"):
        Cross(4, diag_scale=-1.0)
    with pytest.raises(ValueError, match="unknown initializer 'trunc_normal'"):
        Cross(4, kernel_initializer="trunc_normal")
    with pytest.raises(ValueError, match="projection_dim"):
        Cross(4, projection_dim=0)
    stack = MultiLayerDCN(4, 2)
    p = rs.init(stack, seed=0)
    with pytest.raises(ValueError, match=r"MultiLayerDCN\(4\): expected x0 of shape \[\.\.\., 4\]"):
        rs.apply(stack, p, torch.zeros(2, 8))
    with pytest.raises(ValueError, match="num_layers"):
        MultiLayerDCN(4, 0)


def test_grad_and_vmap_over_stacked_params():
    stack = MultiLayerDCN(4, 2, projection_dim=2, diag_scale=0.2)
    seeds = [rs.init(stack, seed=s) for s in range(3)]
    stacked = tree.stack(seeds)

    def loss(p):
        return rs.apply(stack, p, X0).square().sum()

    batched = torch.vmap(torch.func.grad(loss))(stacked)
    for s, p in enumerate(seeds):
        # Reference: autograd through the explicit formula on leaves taken from the params dict.
        leaves = {
            (i, k): p["layers"][str(i)][k].clone().requires_grad_()
            for i in range(2)
            for k in ("u_weight", "v_weight", "bias")
        }
        x = X0
        for i in range(2):
            w = leaves[i, "v_weight"] @ leaves[i, "u_weight"]
            x = X0 * (x @ w.T + leaves[i, "bias"] + 0.2 * x) + x
        grads = torch.autograd.grad(x.square().sum(), list(leaves.values()))
        got = tree.unstack(batched)[s]
        for (i, k), g in zip(leaves, grads):
            torch.testing.assert_close(got["layers"][str(i)][k], g)
