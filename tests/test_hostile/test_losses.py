"""Hostile input to the losses and the embedding layer: finite in, finite out, or a clear error."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from torchrs_fn import tasks
from torchrs_fn.layers import Embedding

HOSTILE = settings.get_profile("hostile")


def _tensor(seed: int, shape: tuple[int, ...], scale: float, dtype=torch.float32) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(shape, generator=g, dtype=torch.float64) * scale).to(dtype)


# -- retrieval ------------------------------------------------------------------------------


@settings(HOSTILE, max_examples=80)
@given(
    b=st.integers(1, 9),
    extra=st.integers(0, 70),
    d=st.integers(1, 6),
    log_scale=st.integers(-30, 17),
    seed=st.integers(0, 2**31),
    reduction=st.sampled_from(["sum", "mean", "none"]),
    fused=st.booleans(),
    hard=st.none() | st.integers(1, 5),
    with_options=st.booleans(),
)
def test_retrieval_loss_finite_for_finite_scores(
    b, extra, d, log_scale, seed, reduction, fused, hard, with_options
):
    """Embeddings up to 1e17 per entry (scores up to ~1e35, still finite in float32)."""
    n = b + extra
    scale = 10.0**log_scale
    q, c = _tensor(seed, (b, d), scale), _tensor(seed + 1, (n, d), scale)
    options = {}
    if with_options:
        g = torch.Generator().manual_seed(seed)
        options = {
            "sample_weight": torch.rand(b, generator=g),
            "candidate_sampling_probability": torch.rand(n, generator=g) * 0.999 + 1e-3,
            "candidate_ids": torch.randint(0, 4, (n,), generator=g),
            "temperature": 0.05,
        }
    loss = tasks.retrieval_loss(
        q, c, reduction=reduction, fused=fused, num_hard_negatives=hard, **options
    )
    assert loss.shape == ((b,) if reduction == "none" else ())
    assert torch.isfinite(loss).all()
    assert (loss >= -1e-3 * max(1.0, float(loss.abs().max()))).all()  # a softmax loss is >= 0


@settings(HOSTILE, max_examples=30)
@given(d=st.integers(1, 4), n=st.integers(0, 3))
def test_retrieval_loss_refuses_empty_batch(d, n):
    with pytest.raises(ValueError, match="no rows"):
        tasks.retrieval_loss(torch.zeros(0, d), torch.zeros(n, d))


@settings(HOSTILE, max_examples=50)
@given(
    b=st.integers(1, 6),
    extra=st.integers(0, 5),
    bad_shape=st.sampled_from(["1d", "dims", "few", "weight", "prob", "ids"]),
)
def test_retrieval_loss_shape_errors_are_value_errors(b, extra, bad_shape):
    q, c = torch.randn(b, 3), torch.randn(b + extra, 3)
    kwargs = {}
    if bad_shape == "1d":
        q = q[:, 0]
    elif bad_shape == "dims":
        c = torch.randn(b + extra, 4)
    elif bad_shape == "few":
        c = torch.randn(b - 1, 3)
    elif bad_shape == "weight":
        kwargs["sample_weight"] = torch.ones(b + 1)
    elif bad_shape == "prob":
        kwargs["candidate_sampling_probability"] = torch.ones(b + extra + 1)
    else:
        kwargs["candidate_ids"] = torch.ones(b + extra, 1)
    with pytest.raises(ValueError, match="retrieval_loss"):
        tasks.retrieval_loss(q, c, **kwargs)


# -- ranking --------------------------------------------------------------------------------

RANKING_LOSSES = {
    "mean_squared": tasks.mean_squared_loss,
    "sigmoid_cross_entropy": tasks.sigmoid_cross_entropy_loss,
    "pairwise_hinge": tasks.pairwise_hinge_loss,
    "pairwise_logistic": tasks.pairwise_logistic_loss,
    "pairwise_soft_zero_one": tasks.pairwise_soft_zero_one_loss,
    "pairwise_mse": tasks.pairwise_mse_loss,
    "softmax": tasks.softmax_loss,
    "list_mle": tasks.list_mle_loss,
    "approx_ndcg": tasks.approx_ndcg_loss,
    "approx_mrr": tasks.approx_mrr_loss,
    "gumbel_approx_ndcg": tasks.gumbel_approx_ndcg_loss,
    "neural_sort_cross_entropy": tasks.neural_sort_cross_entropy_loss,
}
REDUCTIONS = ["sum_by_nonzero_weights", "sum", "mean", "none"]


@st.composite
def ranking_batches(draw, max_lists=5, max_len=7):
    """Lists of 1..max_len items with padding (negative labels / mask), some all padding."""
    b = draw(st.integers(1, max_lists))
    n = draw(st.integers(1, max_len))
    seed = draw(st.integers(0, 2**31))
    g = torch.Generator().manual_seed(seed)
    scale = 10.0 ** draw(st.integers(-3, 4))
    scores = torch.randn(b, n, generator=g) * scale
    labels = torch.randint(-1, 4, (b, n), generator=g).float()
    if draw(st.booleans()):
        labels = labels / 3  # graded labels in [0, 1] as well
    mask = torch.rand(b, n, generator=g) < 0.8
    padded = draw(st.lists(st.integers(0, b - 1), max_size=b))
    labels[padded] = -1.0  # whole lists of padding
    mask[padded] = False
    # Padding may hold anything in its scores, NaN and inf included.
    junk = ~mask | (labels < 0)
    scores = torch.where(junk, torch.full_like(scores, math.nan), scores)
    if draw(st.booleans()):
        scores = torch.where(junk, torch.full_like(scores, math.inf), scores)
    return scores, labels, mask, padded


@settings(HOSTILE, max_examples=40)
@given(batch=ranking_batches(), reduction=st.sampled_from(REDUCTIONS))
@pytest.mark.parametrize("name", sorted(RANKING_LOSSES))
def test_ranking_loss_finite_and_padding_inert(name, batch, reduction):
    loss_fn = RANKING_LOSSES[name]
    scores, labels, mask, padded = batch
    scores.requires_grad_(True)
    loss = loss_fn(scores, labels, mask=mask, reduction=reduction)
    assert torch.isfinite(loss).all(), loss
    (grad,) = torch.autograd.grad(loss.sum(), scores)
    assert torch.isfinite(grad).all()
    assert (grad[~mask] == 0).all()  # padding takes no part, not even in the gradient
    if reduction == "none":
        # An all-padding list contributes exactly 0.
        per_list = loss.reshape(loss.shape[0], -1).sum(-1) if loss.ndim > 1 else loss
        if loss.shape[0] == scores.shape[0]:
            assert (per_list[padded] == 0).all()


@settings(HOSTILE, max_examples=20)
@given(b=st.integers(1, 4), n=st.integers(1, 5), reduction=st.sampled_from(REDUCTIONS))
@pytest.mark.parametrize("name", sorted(RANKING_LOSSES))
def test_ranking_loss_all_padding_is_zero(name, b, n, reduction):
    scores = torch.full((b, n), math.nan, requires_grad=True)
    labels = -torch.ones(b, n)
    loss = RANKING_LOSSES[name](scores, labels, reduction=reduction)
    assert (loss == 0).all()
    (grad,) = torch.autograd.grad(loss.sum(), scores)
    assert (grad == 0).all()


@settings(HOSTILE, max_examples=20)
@given(b=st.integers(1, 5), seed=st.integers(0, 2**31), label=st.integers(0, 3))
@pytest.mark.parametrize("name", ["softmax", "list_mle"])
def test_one_item_lists_give_zero_listwise_loss(name, b, seed, label):
    """Documented: softmax and ListMLE of a one-item list are 0."""
    scores = _tensor(seed, (b, 1), 100.0)
    labels = torch.full((b, 1), float(label))
    loss = RANKING_LOSSES[name](scores, labels, reduction="none")
    assert torch.equal(loss, torch.zeros(b))


@settings(HOSTILE, max_examples=16)
@given(batch=ranking_batches(), where=st.data(), arg=st.sampled_from(["labels", "scores"]))
@pytest.mark.parametrize("name", sorted(RANKING_LOSSES))
def test_ranking_loss_nan_outside_padding_is_a_value_error(name, batch, where, arg):
    scores, labels, mask, _ = batch
    b, n = scores.shape
    i, j = where.draw(st.integers(0, b - 1)), where.draw(st.integers(0, n - 1))
    mask[i, j] = True
    labels[i, j] = 1.0
    scores[i, j] = 0.5
    if arg == "labels":
        labels[i, j] = math.nan
    else:
        scores[i, j] = math.nan
    with pytest.raises(ValueError, match=f"{arg} contains NaN"):
        RANKING_LOSSES[name](scores, labels, mask=mask)


# -- embedding ------------------------------------------------------------------------------


@settings(HOSTILE, max_examples=60)
@given(
    num=st.integers(1, 50),
    ids=st.lists(st.integers(-(2**63), 2**63 - 1), min_size=1, max_size=10),
    dtype=st.sampled_from([torch.int64, torch.int32]),
)
def test_embedding_names_out_of_range_ids(num, ids, dtype):
    layer = Embedding(num, 3)
    if dtype == torch.int32:
        ids = [max(-(2**31), min(2**31 - 1, i)) for i in ids]
    x = torch.tensor(ids, dtype=dtype)
    if all(0 <= i < num for i in ids):
        assert layer(x).shape == (len(ids), 3)
    else:
        with pytest.raises(IndexError, match=rf"ids must lie in \[0, {num}\)"):
            layer(x)


@settings(HOSTILE, max_examples=20)
@given(values=st.lists(st.floats(), min_size=1, max_size=5))
def test_embedding_refuses_float_ids(values):
    with pytest.raises(TypeError, match="integers"):
        Embedding(4, 2)(torch.tensor(values))


SQUARED = {"mean_squared", "pairwise_mse"}


@settings(HOSTILE, max_examples=16)
@given(batch=ranking_batches(), log_scale=st.integers(5, 30))
@pytest.mark.parametrize("name", sorted(RANKING_LOSSES))
def test_ranking_loss_extreme_scores_never_nan(name, batch, log_scale):
    """Scores up to 1e30: no NaN or inf in value or gradient. The squared losses overflow float32
    once a squared difference passes ~3e38, so they are held to scores below 1e18."""
    if name in SQUARED:
        log_scale = min(log_scale, 17)
    scores, labels, mask, _ = batch
    finite = torch.isfinite(scores)
    peak = scores[finite].abs().max() if finite.any() else torch.tensor(1.0)
    scores = torch.where(finite, scores / peak.clamp(min=1e-30), scores)
    scores = (scores * 10.0**log_scale).requires_grad_(True)
    loss = RANKING_LOSSES[name](scores, labels, mask=mask)
    (grad,) = torch.autograd.grad(loss, scores)
    assert torch.isfinite(loss) and torch.isfinite(grad).all()
