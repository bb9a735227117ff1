"""retrieval_loss against F.cross_entropy, hand-computed values and autograd."""

import math

import pytest
import torch
import torch.nn.functional as F

from torchrs_fn import tree
from torchrs_fn.tasks import Retrieval, retrieval_loss
from torchrs_fn.tasks import retrieval as retrieval_module


def _embeddings(b=40, n=None, d=6, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    n = n or b
    return torch.randn(b, d, generator=g, dtype=dtype), torch.randn(n, d, generator=g, dtype=dtype)


def test_hand_computed_two_by_two():
    q = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    c = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    # scores [[1, 0], [0, 2]]: row losses log(e + 1) - 1 and log(1 + e^2) - 2.
    expected = (math.log(math.e + 1) - 1) + (math.log(1 + math.e**2) - 2)
    for fused in (True, False):
        assert retrieval_loss(q, c, fused=fused).item() == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("n_extra", [0, 7])
def test_matches_cross_entropy_with_identity_labels(fused, n_extra, monkeypatch):
    monkeypatch.setattr(retrieval_module, "_BLOCK_ROWS", 16)  # several blocks and a ragged one
    q, c = _embeddings(b=40, n=40 + n_extra)
    w = torch.rand(40, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    scores = q @ c.T
    labels = torch.arange(40)
    ref = F.cross_entropy(scores, labels, reduction="none")
    assert torch.allclose(retrieval_loss(q, c, fused=fused), ref.sum())
    assert torch.allclose(retrieval_loss(q, c, sample_weight=w, fused=fused), (w * ref).sum())
    assert torch.allclose(retrieval_loss(q, c, reduction="mean", fused=fused), ref.sum() / 40)
    assert torch.allclose(retrieval_loss(q, c, reduction="none", fused=fused), ref)


def _reference(q, c, w, temperature, prob, ids):
    """Straight from TFRS's definition, written with plain autograd ops."""
    scores = q @ c.T / temperature - torch.log(prob)[None, :]
    b = q.shape[0]
    mask = (ids[:b, None] == ids[None, :]) & ~torch.eye(b, c.shape[0], dtype=torch.bool)
    scores = scores + mask * (torch.finfo(torch.float32).min / 100.0)
    return (w * F.cross_entropy(scores, torch.arange(b), reduction="none")).sum()


def test_all_options_value_and_gradients_match_autograd(monkeypatch):
    monkeypatch.setattr(retrieval_module, "_BLOCK_ROWS", 8)
    q, c = _embeddings(b=20, n=26, seed=2)
    g = torch.Generator().manual_seed(3)
    w = torch.rand(20, generator=g, dtype=torch.float64) + 0.5
    prob = torch.rand(26, generator=g, dtype=torch.float64) * 0.9 + 0.05
    ids = torch.randint(0, 8, (26,), generator=g)  # many accidental hits
    kwargs = dict(
        sample_weight=w, temperature=0.3, candidate_sampling_probability=prob, candidate_ids=ids
    )

    ref_value, ref_grads = None, None
    qr, cr = q.clone().requires_grad_(), c.clone().requires_grad_()
    ref_value = _reference(qr, cr, w, 0.3, prob, ids)
    ref_grads = torch.autograd.grad(ref_value, (qr, cr))
    for fused in (True, False):
        grads, value = torch.func.grad_and_value(
            lambda a, b, fused=fused: retrieval_loss(a, b, fused=fused, **kwargs), argnums=(0, 1)
        )(q, c)
        assert torch.allclose(value, ref_value, rtol=1e-9)
        assert torch.allclose(grads[0], ref_grads[0], atol=1e-9)
        assert torch.allclose(grads[1], ref_grads[1], atol=1e-9)


def test_fused_gradients_under_vmap_over_a_sweep():
    qs = torch.stack([_embeddings(b=12, seed=s)[0] for s in range(3)])
    cs = torch.stack([_embeddings(b=12, seed=s)[1] for s in range(3)])
    temps = torch.tensor([0.5, 1.0, 2.0], dtype=torch.float64)

    def loss(q, c, t):
        return retrieval_loss(q, c, temperature=t)

    grads = torch.vmap(torch.func.grad(loss, argnums=(0, 1)))(qs, cs, temps)
    for i in range(3):
        ref = torch.func.grad(
            lambda a, b, i=i: retrieval_loss(a, b, temperature=temps[i], fused=False),
            argnums=(0, 1),
        )(qs[i], cs[i])
        assert torch.allclose(grads[0][i], ref[0]) and torch.allclose(grads[1][i], ref[1])


def test_retrieval_task_module():
    q, c = _embeddings(b=10, seed=4)
    ids = torch.tensor([0, 1, 2, 3, 4, 0, 1, 2, 3, 9])
    task = Retrieval(temperature=0.5, remove_accidental_hits=True)
    expected = _reference(
        q, c, torch.ones(10, dtype=torch.float64), 0.5, torch.ones(10, dtype=torch.float64), ids
    )
    assert torch.allclose(task(q, c, candidate_ids=ids), expected)
    with pytest.raises(ValueError, match="candidate_ids"):
        task(q, c)


def test_bad_shapes_are_named():
    q, c = _embeddings(b=4)
    with pytest.raises(ValueError, match="last dimensions must match"):
        retrieval_loss(q, torch.zeros(4, 5, dtype=torch.float64))
    with pytest.raises(ValueError, match="at least as many candidates"):
        retrieval_loss(q, c[:3])
    with pytest.raises(ValueError, match=r"sample_weight must have shape \[4\]"):
        retrieval_loss(q, c, sample_weight=torch.ones(3, dtype=torch.float64))
    with pytest.raises(ValueError, match="2-D"):
        retrieval_loss(q[0], c)
    with pytest.raises(ValueError, match="reduction"):
        retrieval_loss(q, c, reduction="avg")


def test_tree_of_grads_flows_into_optimizer_shapes():
    q, c = _embeddings(b=8)
    grads = torch.func.grad(lambda p: retrieval_loss(p["q"], p["c"]))({"q": q, "c": c})
    assert tree.structure(grads) == tree.structure({"q": q, "c": c})


@pytest.mark.parametrize("per_configuration", [True, False])
def test_vmapped_fused_loss_matches_each_configuration(per_configuration, monkeypatch):
    """Both forms of the statistics' vmap rule (one call per configuration, or batched)."""
    monkeypatch.setattr(retrieval_module, "_BLOCK_ROWS", 8)
    monkeypatch.setattr(retrieval_module, "_LOOP_MIN_SCORES", 0 if per_configuration else 1 << 60)
    g = torch.Generator().manual_seed(5)
    qs = torch.randn(3, 20, 4, generator=g, dtype=torch.float64)
    cs = torch.randn(3, 26, 4, generator=g, dtype=torch.float64)
    ws = torch.rand(3, 20, generator=g, dtype=torch.float64) + 0.5
    ps = torch.rand(3, 26, generator=g, dtype=torch.float64) * 0.9 + 0.05
    ts = torch.tensor([0.3, 1.0, 2.0], dtype=torch.float64)
    ids = torch.randint(0, 8, (26,), generator=g)  # shared by the configurations

    def loss(q, c, w, t, p, fused=True):
        return retrieval_loss(
            q,
            c,
            sample_weight=w,
            temperature=t,
            candidate_sampling_probability=p,
            candidate_ids=ids,
            fused=fused,
        )

    grads = torch.vmap(torch.func.grad_and_value(loss, argnums=(0, 1, 2, 3, 4)))(qs, cs, ws, ts, ps)
    for i in range(3):
        ref = torch.func.grad_and_value(lambda *a: loss(*a, fused=False), argnums=(0, 1, 2, 3, 4))(
            qs[i], cs[i], ws[i], ts[i], ps[i]
        )
        assert torch.allclose(grads[1][i], ref[1], rtol=1e-10)
        for got, want in zip(grads[0], ref[0]):
            assert torch.allclose(got[i], want, rtol=1e-8, atol=1e-10)


def test_plain_autograd_gradients_for_every_input_and_no_silent_second_order(monkeypatch):
    monkeypatch.setattr(retrieval_module, "_BLOCK_ROWS", 8)
    q, c = _embeddings(b=20, n=26, seed=6)
    g = torch.Generator().manual_seed(7)
    w = torch.rand(20, generator=g, dtype=torch.float64) + 0.5
    p = torch.rand(26, generator=g, dtype=torch.float64) * 0.9 + 0.05
    t = torch.tensor(0.4, dtype=torch.float64)
    ids = torch.randint(0, 8, (26,), generator=g)
    inputs = [x.clone().requires_grad_() for x in (q, c, w, t, p)]
    value = retrieval_loss(
        inputs[0],
        inputs[1],
        sample_weight=inputs[2],
        temperature=inputs[3],
        candidate_sampling_probability=inputs[4],
        candidate_ids=ids,
    )
    got = torch.autograd.grad(value, inputs)
    ref_inputs = [x.clone().requires_grad_() for x in (q, c, w, t, p)]
    ref_value = _reference(*ref_inputs[:2], ref_inputs[2], ref_inputs[3], ref_inputs[4], ids)
    want = torch.autograd.grad(ref_value, ref_inputs)
    assert torch.allclose(value, ref_value, rtol=1e-12)
    for a, b in zip(got, want):
        assert torch.allclose(a, b, rtol=1e-9, atol=1e-12)
    # A second derivative through plain autograd is refused, by name, instead of being wrong.
    value = retrieval_loss(inputs[0], inputs[1], temperature=inputs[3])
    with pytest.raises(RuntimeError, match="fused=False"):
        torch.autograd.grad(value, inputs[0], create_graph=True)

    # ... while torch.func's second derivatives are exact (the loss switches to the plain form).
    def grad_norm(q_, fused):
        gq = torch.func.grad(lambda a: retrieval_loss(a, c, temperature=t, fused=fused))(q_)
        return (gq**2).sum()

    assert torch.allclose(
        torch.func.grad(grad_norm)(q, True), torch.func.grad(grad_norm)(q, False), rtol=1e-10
    )


def test_float32_gradients_for_every_input_within_1e_4_of_float64():
    g = torch.Generator().manual_seed(11)
    q = torch.randn(300, 32, generator=g) * 0.3
    c = torch.randn(420, 32, generator=g) * 0.3
    w = torch.rand(300, generator=g) + 0.5
    p = torch.rand(420, generator=g) * 0.9 + 0.05
    t = torch.tensor(0.2)
    ids = torch.randint(0, 140, (420,), generator=g)

    def loss(q_, c_, w_, t_, p_, fused):
        return retrieval_loss(
            q_,
            c_,
            sample_weight=w_,
            temperature=t_,
            candidate_sampling_probability=p_,
            candidate_ids=ids,
            fused=fused,
        )

    args = (q, c, w, t, p)
    got = torch.func.grad(lambda *a: loss(*a, True), argnums=(0, 1, 2, 3, 4))(*args)
    want = torch.func.grad(lambda *a: loss(*a, False), argnums=(0, 1, 2, 3, 4))(
        *[x.double() for x in args]
    )
    for name, a, b in zip(("q", "c", "w", "t", "p"), got, want):
        assert a.dtype == torch.float32, name
        scale = b.abs().max()
        assert float((a.double() - b).abs().max() / scale) < 1e-4, name


@pytest.mark.parametrize(
    "kwargs", [{}, {"fused": False}, {"num_hard_negatives": 3}, {"reduction": "none"}]
)
def test_bfloat16_embeddings_give_the_float32_loss_and_bfloat16_gradients(kwargs):
    """Mixed precision: bfloat16 embeddings give, bit for bit, the float32 loss of the same
    values (as Keras computes losses), and bfloat16 gradients."""
    g = torch.Generator().manual_seed(5)
    q = torch.randn(32, 8, generator=g).bfloat16().requires_grad_()
    c = torch.randn(40, 8, generator=g).bfloat16().requires_grad_()
    q32, c32 = q.detach().float().requires_grad_(), c.detach().float().requires_grad_()
    got, want = retrieval_loss(q, c, **kwargs), retrieval_loss(q32, c32, **kwargs)
    assert got.dtype == torch.float32
    assert torch.equal(got, want)
    got_grads = torch.autograd.grad(got.sum(), (q, c))
    want_grads = torch.autograd.grad(want.sum(), (q32, c32))
    for a, b in zip(got_grads, want_grads):
        assert a.dtype == torch.bfloat16
        assert torch.equal(a, b.bfloat16())


@pytest.mark.parametrize("fused", [True, False])
def test_under_bfloat16_autocast_the_loss_stays_float32(fused):
    """Under autocast the products run in bfloat16 but the loss is float32 and within
    bfloat16's product error of the float64 loss (measured: 4.4e-6 fused, whose block softmax
    numerators stay bfloat16 for speed but whose row sums and log-sum-exp are float32, and
    3.3e-5 plain, whose softmax is float32 but whose positive scores come from the bfloat16
    product). Left to autocast, the plain form summed in bfloat16 and was 9.1e-4 off; the fused
    form with bfloat16 row sums was 1.6e-5 off."""
    tolerance = 1e-5 if fused else 1e-4
    g = torch.Generator().manual_seed(6)
    q = torch.randn(512, 16, generator=g) * 0.5
    c = torch.randn(512, 16, generator=g) * 0.5
    want = retrieval_loss(q.double(), c.double()).item()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = retrieval_loss(q, c, fused=fused)
    assert got.dtype == torch.float32
    assert abs(got.item() - want) / want < tolerance
