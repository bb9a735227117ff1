"""retrieval_loss(num_hard_negatives=k) against a brute-force, row-by-row reference and autograd.

The reference follows TFRS's ``HardNegativeMining`` literally: each row's logits with TFRS's
options (accidental hits masked with float32.min / 100), the positive plus the k largest negatives
found by sorting (a stable sort: ties go to the lower column, as TFRS's ``top_k``), then the
log-softmax of the positive over them.
"""

import itertools

import pytest
import torch

from torchrs_fn.tasks import Retrieval, retrieval_loss

_MASK = torch.finfo(torch.float32).min / 100.0
_B = 12


def _reference_losses(q, c, k, w=None, t=None, p=None, ids=None):
    """``[B]`` weighted per-row losses, one Python loop iteration per row."""
    b, n = q.shape[0], c.shape[0]
    losses = []
    for i in range(b):
        logits = c @ q[i]
        if t is not None:
            logits = logits / t
        if p is not None:
            logits = logits - torch.log(p)
        if ids is not None:
            hit = torch.tensor([j != i and int(ids[j]) == int(ids[i]) for j in range(n)])
            logits = logits + hit.to(logits.dtype) * _MASK
        values = [float(v) for v in logits.detach()]
        negatives = sorted((j for j in range(n) if j != i), key=lambda j: -values[j])[:k]
        kept = logits[[i, *negatives]]
        loss = -torch.log_softmax(kept, dim=0)[0]
        losses.append(loss if w is None else loss * w[i])
    return torch.stack(losses)


def _reduce(losses, reduction):
    if reduction == "none":
        return losses
    return losses.sum() if reduction == "sum" else losses.sum() / losses.shape[0]


def _inputs(n, seed=0, num_ids=5):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(_B, 4, generator=g, dtype=torch.float64)
    c = torch.randn(n, 4, generator=g, dtype=torch.float64)
    w = torch.rand(_B, generator=g, dtype=torch.float64) + 0.5
    t = torch.tensor(0.4, dtype=torch.float64)
    p = torch.rand(n, generator=g, dtype=torch.float64) * 0.9 + 0.05
    ids = torch.randint(0, num_ids, (n,), generator=g)  # several accidental hits per row
    return {"w": w, "t": t, "p": p, "ids": ids}, q, c


OPTIONS = {
    "none": (),
    "temperature": ("t",),
    "logq": ("p",),
    "accidental_hits": ("ids",),
    "sample_weight": ("w",),
    "all": ("w", "t", "p", "ids"),
}
_KWARG = {
    "w": "sample_weight",
    "t": "temperature",
    "p": "candidate_sampling_probability",
    "ids": "candidate_ids",
}


@pytest.mark.parametrize("reduction", ["sum", "mean", "none"])
@pytest.mark.parametrize("n_extra", [0, 6])
@pytest.mark.parametrize("options", list(OPTIONS))
@pytest.mark.parametrize("k", [1, 4])
def test_value_and_every_gradient_match_the_brute_force_reference(k, options, n_extra, reduction):
    extras, q, c = _inputs(_B + n_extra, seed=k + n_extra)
    names = OPTIONS[options]
    floats = ["q", "c", *(x for x in names if x != "ids")]  # every floating-point input
    values = {"q": q, "c": c, **{x: extras[x] for x in names}}
    ids = values.get("ids")
    cotangent = torch.randn(_B, generator=torch.Generator().manual_seed(9), dtype=torch.float64)

    def loss(*args, fused=True):
        kw = dict(zip(floats, args))
        out = retrieval_loss(
            kw["q"],
            kw["c"],
            num_hard_negatives=k,
            reduction=reduction,
            fused=fused,
            candidate_ids=ids,
            **{_KWARG[x]: kw[x] for x in floats[2:]},
        )
        return (out * cotangent).sum() if reduction == "none" else out, out

    ref_args = [values[x].clone().requires_grad_() for x in floats]
    ref_kw = dict(zip(floats, ref_args))
    ref = _reduce(
        _reference_losses(
            ref_kw["q"], ref_kw["c"], k, ref_kw.get("w"), ref_kw.get("t"), ref_kw.get("p"), ids
        ),
        reduction,
    )
    ref_scalar = (ref * cotangent).sum() if reduction == "none" else ref
    ref_grads = torch.autograd.grad(ref_scalar, ref_args)

    args = [values[x] for x in floats]
    for fused in (True, False):  # hard negatives always take the plain path
        grads, (_, value) = torch.func.grad_and_value(
            lambda *a, fused=fused: loss(*a, fused=fused),
            argnums=tuple(range(len(args))),
            has_aux=True,
        )(*args)
        assert value.shape == ref.shape
        assert torch.allclose(value, ref, rtol=1e-10, atol=1e-12)
        for name, got, want in zip(floats, grads, ref_grads):
            assert torch.allclose(got, want, rtol=1e-9, atol=1e-12), name
            assert want.abs().max() > 0, name  # not a vacuous check

    # The same gradients through plain torch.autograd.
    auto_args = [values[x].clone().requires_grad_() for x in floats]
    got = torch.autograd.grad(loss(*auto_args)[0], auto_args)
    for name, a, b in zip(floats, got, ref_grads):
        assert torch.allclose(a, b, rtol=1e-9, atol=1e-12), name


def test_hard_negatives_change_the_loss_and_pick_the_largest():
    _, q, c = _inputs(_B + 3)
    full = retrieval_loss(q, c, reduction="none")
    hard = retrieval_loss(q, c, num_hard_negatives=2, reduction="none")
    # Dropping negatives can only lower each row's log-sum-exp.
    assert torch.all(hard < full)
    scores = q @ c.T
    i = 3
    negatives = torch.cat([scores[i, :i], scores[i, i + 1 :]])
    top2 = torch.sort(negatives, descending=True).values[:2]
    expected = torch.logsumexp(torch.stack([scores[i, i], *top2]), 0) - scores[i, i]
    assert torch.allclose(hard[i], expected, rtol=1e-12)


def test_rows_with_fewer_negatives_than_k_pick_masked_hits_that_add_nothing():
    """TFRS's top_k then takes masked accidental hits: exp(float32.min / 100) is 0."""
    g = torch.Generator().manual_seed(4)
    q = torch.randn(6, 3, generator=g, dtype=torch.float64)
    c = torch.randn(9, 3, generator=g, dtype=torch.float64)
    ids = torch.tensor([0, 0, 0, 0, 1, 2, 0, 0, 3])  # row 0 has 3 non-hit negatives, 5 hits
    qr, cr = q.clone().requires_grad_(), c.clone().requires_grad_()
    for k in (3, 5, 7):
        value = retrieval_loss(qr, cr, candidate_ids=ids, num_hard_negatives=k, reduction="none")
        ref = _reference_losses(qr, cr, k, ids=ids)
        assert torch.allclose(value, ref, rtol=1e-12)
        got = torch.autograd.grad(value.sum(), (qr, cr))
        want = torch.autograd.grad(ref.sum(), (qr, cr))
        for a, b in zip(got, want):
            assert torch.isfinite(a).all() and torch.allclose(a, b, rtol=1e-10, atol=1e-14)
    # For row 0, every k >= 3 keeps all of its real negatives: the full loss with hits removed.
    full = retrieval_loss(q, c, candidate_ids=ids, reduction="none", fused=False)
    for k in (3, 5, 7):
        hard = retrieval_loss(q, c, candidate_ids=ids, num_hard_negatives=k, reduction="none")
        assert torch.allclose(hard[0], full[0], rtol=1e-12)


@pytest.mark.parametrize("fused", [True, False])
def test_k_of_at_least_n_minus_1_is_the_plain_loss(fused):
    extras, q, c = _inputs(_B + 3, seed=1)
    n = c.shape[0]
    kw = dict(
        sample_weight=extras["w"],
        temperature=extras["t"],
        candidate_sampling_probability=extras["p"],
        candidate_ids=extras["ids"],
    )
    plain = retrieval_loss(q, c, fused=fused, **kw)
    for k in (n - 1, n, 1000):
        assert torch.equal(retrieval_loss(q, c, num_hard_negatives=k, fused=fused, **kw), plain)
    # One negative fewer than all of them is a real selection (without accidental hits, whose
    # masked columns would be the ones dropped, at no change in value).
    # Dropping a negative lowers a row's loss (by less than float64's resolution where its logit
    # is far below the rest).
    del kw["candidate_ids"]
    hard = retrieval_loss(q, c, num_hard_negatives=n - 2, reduction="none", fused=fused, **kw)
    full = retrieval_loss(q, c, reduction="none", fused=fused, **kw)
    assert torch.all(hard <= full) and torch.sum(hard < full) >= _B // 2


@pytest.mark.parametrize("bad", [0, -1, 2.0, True, "3"])
def test_bad_num_hard_negatives_is_named(bad):
    _, q, c = _inputs(_B)
    with pytest.raises(ValueError, match="num_hard_negatives must be None .* int >= 1"):
        retrieval_loss(q, c, num_hard_negatives=bad)
    with pytest.raises(ValueError, match="Retrieval: num_hard_negatives"):
        Retrieval(num_hard_negatives=bad)


def test_retrieval_task_passes_num_hard_negatives():
    extras, q, c = _inputs(_B + 2, seed=3)
    task = Retrieval(temperature=0.5, remove_accidental_hits=True, num_hard_negatives=3)
    ids, w, p = extras["ids"], extras["w"], extras["p"]
    want = _reference_losses(q, c, 3, w, 0.5, p, ids).sum()
    assert torch.allclose(task(q, c, w, p, ids), want, rtol=1e-12)
    t = torch.tensor(2.0, dtype=torch.float64)  # a call's temperature replaces the task's
    want = _reference_losses(q, c, 3, w, t, p, ids).sum()
    assert torch.allclose(task(q, c, w, p, ids, temperature=t), want, rtol=1e-12)


def test_vmap_of_grad_over_a_temperature_sweep():
    """The selection differs per temperature (logQ reorders the scores): each lane its own."""
    extras, q, c = _inputs(_B + 4, seed=5)
    temps = torch.tensor([0.1, 0.5, 3.0], dtype=torch.float64)
    p = extras["p"]

    def loss(q_, c_, t_):
        return retrieval_loss(
            q_, c_, temperature=t_, candidate_sampling_probability=p, num_hard_negatives=3
        )

    grads = torch.vmap(torch.func.grad(loss, argnums=(0, 1, 2)), in_dims=(None, None, 0))(
        q, c, temps
    )
    for lane, t in enumerate(temps):
        args = [x.clone().requires_grad_() for x in (q, c, t)]
        ref = _reference_losses(args[0], args[1], 3, None, args[2], p).sum()
        want = torch.autograd.grad(ref, args)
        for got, w in zip(grads, want):
            assert torch.allclose(got[lane], w, rtol=1e-9, atol=1e-12)


def test_second_derivatives_are_exact():
    """The hard-negative path is plain autograd ops: grad of grad, and create_graph=True."""
    extras, q, c = _inputs(_B + 2, seed=6)
    t = extras["t"]

    def grad_norm(q_):
        gq = torch.func.grad(lambda a: retrieval_loss(a, c, temperature=t, num_hard_negatives=3))(
            q_
        )
        return (gq**2).sum()

    qr = q.clone().requires_grad_()
    (gq,) = torch.autograd.grad(_reference_losses(qr, c, 3, t=t).sum(), qr, create_graph=True)
    want = torch.autograd.grad((gq**2).sum(), qr)[0]
    assert torch.allclose(torch.func.grad(grad_norm)(q), want, rtol=1e-9, atol=1e-12)
    qr = q.clone().requires_grad_()
    value = retrieval_loss(qr, c, temperature=t, num_hard_negatives=3)  # fused by default
    (gq,) = torch.autograd.grad(value, qr, create_graph=True)  # no refusal: not the fused path
    assert torch.allclose(torch.autograd.grad((gq**2).sum(), qr)[0], want, rtol=1e-9, atol=1e-12)


def test_options_combined_exhaustively_at_one_k():
    """Every subset of the options (not only one at a time or all), reduction "sum"."""
    extras, q, c = _inputs(_B + 5, seed=7)
    for r in range(5):
        for subset in itertools.combinations(("w", "t", "p", "ids"), r):
            kw = {_KWARG[x]: extras[x] for x in subset}
            got = retrieval_loss(q, c, num_hard_negatives=2, **kw)
            want = _reference_losses(
                q, c, 2, *(extras[x] if x in subset else None for x in ("w", "t", "p", "ids"))
            ).sum()
            assert torch.allclose(got, want, rtol=1e-12), subset
