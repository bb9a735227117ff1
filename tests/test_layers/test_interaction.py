"""layers.DotInteraction: TFRS's output order, by hand and from TFRS itself."""

import numpy as np
import pytest
import torch

import torchrs_fn as rs
from torchrs_fn.layers.interaction import DotInteraction


def _vals(shape, k):
    """Deterministic inputs, the same in the TFRS script that produced the constants below."""
    n = int(np.prod(shape))
    return (np.sin(np.arange(n) * 0.7 + k) * 0.5).reshape(shape).astype(np.float32)


# Produced with tensorflow-cpu 2.21.0, tf-keras 2.21.0, tensorflow-recommenders 0.7.7
# (TF_USE_LEGACY_KERAS=1): tfrs.layers.feature_interaction.DotInteraction(self_interaction,
# skip_gather)([_vals((2, 3), i) for i in range(4)]), keyed by (self_interaction, skip_gather).
TFRS_DOT = {
    (False, False): [
        [0.3261208, 0.0058757, 0.2540891, -0.3197715, -0.2623609, 0.0362631],
        [0.0434572, -0.198139, 0.3162934, -0.2575671, 0.0088721, 0.2671543],
    ],
    (False, True): [
        [0, 0, 0, 0, 0.3261208, 0, 0, 0, 0.0058757, 0.2540891, 0, 0, -0.3197715, -0.2623609,
         0.0362631, 0],
        [0, 0, 0, 0, 0.0434572, 0, 0, 0, -0.198139, 0.3162934, 0, 0, -0.2575671, 0.0088721,
         0.2671543, 0],
    ],
    (True, False): [
        [0.3465319, 0.3261208, 0.5369308, 0.0058757, 0.2540891, 0.2686942, -0.3197715, -0.2623609,
         0.0362631, 0.3015469],
        [0.2450991, 0.0434572, 0.332916, -0.198139, 0.3162934, 0.5399271, -0.2575671, 0.0088721,
         0.2671543, 0.2798162],
    ],
    (True, True): [
        [0.3465319, 0, 0, 0, 0.3261208, 0.5369308, 0, 0, 0.0058757, 0.2540891, 0.2686942, 0,
         -0.3197715, -0.2623609, 0.0362631, 0.3015469],
        [0.2450991, 0, 0, 0, 0.0434572, 0.332916, 0, 0, -0.198139, 0.3162934, 0.5399271, 0,
         -0.2575671, 0.0088721, 0.2671543, 0.2798162],
    ],
}  # fmt: skip


@pytest.mark.parametrize(("self_interaction", "skip_gather"), sorted(TFRS_DOT))
def test_matches_tfrs_outputs(self_interaction, skip_gather):
    layer = DotInteraction(self_interaction=self_interaction, skip_gather=skip_gather)
    features = [torch.from_numpy(_vals((2, 3), i)) for i in range(4)]
    out = rs.apply(layer, {}, features)
    np.testing.assert_allclose(out.numpy(), TFRS_DOT[self_interaction, skip_gather], atol=1e-6)
    assert out.shape == (2, layer.out_features(4))


def test_order_on_a_hand_built_example():
    # With D = 1 and e_i the i-th prime p_i, dot(e_i, e_j) = p_i p_j names the pair (i, j).
    primes = [2.0, 3.0, 5.0, 7.0]
    features = [torch.tensor([[p]]) for p in primes]  # F = 4, B = 1, D = 1
    lower = rs.apply(DotInteraction(), {}, features)
    # TFRS order: row-major over the strictly lower triangle: (1,0) (2,0) (2,1) (3,0) (3,1) (3,2).
    assert lower.tolist() == [[6.0, 10.0, 15.0, 14.0, 21.0, 35.0]]
    diag = rs.apply(DotInteraction(self_interaction=True), {}, features)
    assert diag.tolist() == [[4.0, 6.0, 9.0, 10.0, 15.0, 25.0, 14.0, 21.0, 35.0, 49.0]]
    full = rs.apply(DotInteraction(skip_gather=True), {}, features)
    assert full.tolist() == [[0, 0, 0, 0, 6.0, 0, 0, 0, 10.0, 15.0, 0, 0, 14.0, 21.0, 35.0, 0]]


def _by_loops(x, self_interaction):
    """x: [B, F, D] numpy -> the gathered products by explicit loops."""
    b, f, _ = x.shape
    rows = []
    for n in range(b):
        row = []
        for i in range(f):
            for j in range(i + 1 if self_interaction else i):
                row.append(float(np.dot(x[n, i], x[n, j])))
        rows.append(row)
    return np.array(rows)


@pytest.mark.parametrize("self_interaction", [False, True])
def test_random_inputs_match_loops_and_stacked_equals_list(self_interaction):
    x = torch.randn(5, 6, 3, generator=torch.Generator().manual_seed(0))
    layer = DotInteraction(self_interaction=self_interaction)
    out = rs.apply(layer, {}, x)
    np.testing.assert_allclose(out.numpy(), _by_loops(x.numpy(), self_interaction), atol=1e-5)
    torch.testing.assert_close(rs.apply(layer, {}, list(x.unbind(1))), out)
    # Leading dims are kept: [2, 5, 6, 3] -> [2, 5, P]; and per example under vmap.
    two = torch.stack([x, 2 * x])
    torch.testing.assert_close(rs.apply(layer, {}, two)[1], 4 * out)
    torch.testing.assert_close(torch.vmap(lambda e: rs.apply(layer, {}, e))(x), out)


def test_grad_matches_autograd_on_loops():
    x = torch.randn(2, 4, 3, generator=torch.Generator().manual_seed(1))
    w = torch.randn(2, 6, generator=torch.Generator().manual_seed(2))
    layer = DotInteraction()
    got = torch.func.grad(lambda t: (rs.apply(layer, {}, t) * w).sum())(x)
    leaf = x.clone().requires_grad_()
    ref = sum(
        w[n, k] * (leaf[n, i] @ leaf[n, j])
        for n in range(2)
        for k, (i, j) in enumerate([(1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2)])
    )
    torch.testing.assert_close(got, torch.autograd.grad(ref, leaf)[0])
    # skip_gather's zeros carry no gradient: the same loss on the gathered entries agrees.
    full = DotInteraction(skip_gather=True)
    idx = torch.tensor([4, 8, 9, 12, 13, 14])
    got_full = torch.func.grad(lambda t: (rs.apply(full, {}, t)[:, idx] * w).sum())(x)
    torch.testing.assert_close(got_full, got)


def test_clear_errors():
    layer = DotInteraction()
    with pytest.raises(ValueError, match=r"feature 0 has \(2, 3\), feature 2 has \(2, 4\)"):
        rs.apply(layer, {}, [torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(2, 4)])
    with pytest.raises(ValueError, match="no features"):
        rs.apply(layer, {}, [])
    with pytest.raises(ValueError, match=r"\[\.\.\., F, D\], got shape \(3,\)"):
        rs.apply(layer, {}, torch.zeros(3))
    with pytest.raises(TypeError, match="floating point"):
        rs.apply(layer, {}, torch.zeros(2, 3, 4, dtype=torch.long))
    assert [
        DotInteraction().out_features(27),
        DotInteraction(self_interaction=True).out_features(27),
        DotInteraction(skip_gather=True).out_features(27),
    ] == [351, 378, 729]
