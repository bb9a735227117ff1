"""TF-Ranking's learning-to-rank losses as pure functions of ``scores [B, L]`` and ``labels [B, L]``.

Each of the B rows is one list (a query and its L candidate items); ``scores`` are the model's
ranking scores (TF-Ranking's ``logits``), ``labels`` the graded relevance (float; integer labels
are accepted and converted to the scores' dtype). The names, defaults and numbers are TF-Ranking's
(``tensorflow_ranking/python/losses.py`` and ``losses_impl.py``, release 0.5); every loss is a
pure function, so ``torch.func.grad`` (scores, labels where the loss depends on them smoothly,
weights, float hyperparameters), ``torch.vmap`` (over inputs or hyperparameters), ``vmap`` of
``grad`` and ``torch.compile(fullgraph=True)`` all apply. Argument order is torch's
``(input, target)``: ``loss(scores, labels)``, where TF-Ranking writes ``loss(labels, logits)``.

Common keyword arguments:

- ``mask`` (``[B, L]`` bool): False marks padding. An entry with a negative label is padding too
  (TF-Ranking's ``is_label_valid``). Padding takes no part in a loss: it forms no pair, takes no
  place in a softmax or a ranking, and its scores may hold anything, NaN included (they are
  replaced before any arithmetic, so no NaN or inf reaches the value or the gradient).
- ``weights``: ``[B]`` (or ``[B, 1]``) per list, or ``[B, L]`` per item, as TF-Ranking (each
  family folds them in its own way, said in each docstring).
- ``reduction``: how the weighted losses are reduced (TF-Ranking's ``tf.losses.Reduction``):

  * ``"sum_by_nonzero_weights"`` (default, TF-Ranking's ``SUM_BY_NONZERO_WEIGHTS``): the sum of the
    weighted losses divided by the number of non-zero weights, counted per element of the loss:
    per item for pointwise losses, per pair for pairwise losses, per list for listwise losses
    (per list and sample for the Gumbel loss). 0 when there are none.
  * ``"sum"`` (``SUM``): the sum of the weighted losses.
  * ``"mean"`` (``MEAN``): the sum of the weighted losses divided by the sum of the weights
    (0 when that sum is 0).
  * ``"none"`` (``NONE``): the weighted losses themselves, in TF-Ranking's shape: ``[B, L]``
    pointwise (``[B]`` for the 1-D pointwise form), ``[B, L, L]`` pairwise (entry ``[b, i, j]``
    the pair i above j), ``[B]`` listwise, ``[B, sample_size]`` for the Gumbel loss.

- ``temperature`` and the other float hyperparameters accept a Python number or a 0-d tensor (so a
  sweep can ``vmap`` over them, or learn them); they must be positive.

Bad input: ``labels`` (``mask``, ``weights``) of the wrong shape raise a ``ValueError`` naming the
shapes. NaN in ``labels`` (where not masked), in ``scores`` (where not padding) or in ``weights``
raises a ``ValueError`` naming the argument in eager mode; inside ``torch.compile`` or under
``vmap`` the check is skipped (it would need a host sync), and a NaN label then counts as padding
(``NaN >= 0`` is false, as in TF-Ranking). A list that is all padding contributes 0 and is left
out of the ``sum_by_nonzero_weights`` denominator; so is a list of one item in a pairwise loss (no
pairs). Listwise losses of a one-item list are defined (softmax and ListMLE give 0).

Where this module differs from TF-Ranking (each loss's docstring repeats what concerns it):
padding is excluded exactly, where TF-Ranking gives padded items a very low logit (``log 1e-10``
for softmax and ListMLE); ties in scores are broken by position when ranks are needed (TF-Ranking
shuffles them without a seed); random draws (ListMLE's tie shuffling, Gumbel noise) come from an
explicit ``seed``/key through ``torchrs_fn.random``, never a global RNG; NaN input raises in eager
mode where TF-Ranking computes on.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import torch

from .. import random as _random
from .._transforms import host_checks_allowed
from .base import at_least_float32

__all__ = [
    "Ranking",
    "mean_squared_loss",
    "sigmoid_cross_entropy_loss",
    "pairwise_hinge_loss",
    "pairwise_logistic_loss",
    "pairwise_soft_zero_one_loss",
    "pairwise_mse_loss",
    "softmax_loss",
    "list_mle_loss",
    "approx_ndcg_loss",
    "approx_mrr_loss",
    "gumbel_approx_ndcg_loss",
    "neural_sort_cross_entropy_loss",
    "label_diff_lambda_weight",
    "ndcg_lambda_weight",
]

Reduction = Literal["sum_by_nonzero_weights", "sum", "mean", "none"]
_REDUCTIONS = ("sum_by_nonzero_weights", "sum", "mean", "none")
Hyperparameter = float | torch.Tensor
Seed = int | torch.Tensor

# TF-Ranking's floor inside log(1e-20 + p) of the NeuralSort loss and of its Gumbel noise.
_LOG_FLOOR = 1e-20


# --- lambda weights ---------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class LabelDiffLambdaWeight:
    """Pair weight ``|l_i - l_j|`` (TF-Ranking ``LabelDiffLambdaWeight``).

    Made by ``label_diff_lambda_weight()``; passed as ``lambda_weight=`` to a pairwise loss.
    """


@dataclass(frozen=True, eq=False)
class NDCGLambdaWeight:
    """LambdaLoss NDCG pair weight (TF-Ranking ``DCGLambdaWeight`` as ``create_ndcg_lambda_weight``
    makes it: gain ``2^l - 1``, discount ``1 / ln(1 + rank)``, normalised by the ideal DCG).

    Made by ``ndcg_lambda_weight(topn, smooth_fraction)``; see there for the formula.
    """

    topn: int | None = None
    smooth_fraction: Hyperparameter = 0.0


LambdaWeight = LabelDiffLambdaWeight | NDCGLambdaWeight


def label_diff_lambda_weight() -> LabelDiffLambdaWeight:
    """The label-difference lambda weight (TF-Ranking ``LabelDiffLambdaWeight``).

    A pairwise loss given it weights the pair (i above j) by ``|l_i - l_j|``: pairs of far-apart
    grades count more, and (in ``pairwise_mse_loss``, the one pairwise loss that also takes pairs
    of equal labels) pairs of equal labels get weight 0 and leave the denominator.
    """
    return LabelDiffLambdaWeight()


def ndcg_lambda_weight(
    topn: int | None = None, smooth_fraction: Hyperparameter = 0.0
) -> NDCGLambdaWeight:
    """The NDCG lambda weight of LambdaLoss (TF-Ranking ``create_ndcg_lambda_weight``).

    With ranks ``r`` (1-based) from sorting the scores (descending; ties broken by position, where
    TF-Ranking shuffles them without a seed), gains ``G_i = (2^{l_i} - 1) / maxDCG@topn`` (padding
    has label 0; ``maxDCG = 0`` gives ``G = 0``), ``D(r) = 1 / ln(1 + r)``, ``n = topn or L`` and
    ``d = |r_i - r_j|``, the weight of the pair (i, j) is::

        L * |G_i - G_j| * [r_i <= n or r_j <= n]
          * ((1 - smooth_fraction) * u_ij + smooth_fraction * v_ij)
        u_ij = |D(d) - D(d + 1)| for d > 0 (LambdaLoss's relative-rank discount), else 0
        v_ij = |D~(r_i) - D~(r_j)|, D~(r) = D(r) if r <= n else 0 (LambdaMART's discount)

    where ``L`` is the padded list size (TF-Ranking's heuristic to keep the loss's scale). The
    weight is a constant of the loss (TF-Ranking's ``stop_gradient``): no gradient flows through
    it, to the scores, the labels or ``smooth_fraction``.

    Args:
        topn: the NDCG cut-off (a positive int), or None for the whole list.
        smooth_fraction: in ``[0, 1]``; a float or a 0-d tensor (build the weight inside the
            function you ``vmap`` to sweep it).
    """
    if topn is not None and (isinstance(topn, bool) or not isinstance(topn, int) or topn < 1):
        raise ValueError(f"ndcg_lambda_weight: topn must be a positive int or None, got {topn!r}")
    _check_hparam("ndcg_lambda_weight", "smooth_fraction", smooth_fraction, low=0.0, high=1.0)
    return NDCGLambdaWeight(topn, smooth_fraction)


# --- shared checks and helpers ----------------------------------------------------------------


class _Lists(NamedTuple):
    scores: torch.Tensor  # [B, L], padding replaced by 0
    labels: torch.Tensor  # [B, L], padding replaced by 0
    valid: torch.Tensor  # [B, L] bool
    item_weights: torch.Tensor | None  # [B, L], padding replaced by 0; None when not given
    squeeze: bool  # the input was the 1-D pointwise form


def _check_hparam(
    name: str,
    arg: str,
    value: Hyperparameter,
    *,
    low: float = 0.0,
    high: float | None = None,
) -> None:
    """A float hyperparameter: a number or a 0-d real tensor, ``> low`` (or in ``[low, high]``)."""
    if isinstance(value, torch.Tensor):
        if value.ndim != 0 or value.is_complex() or value.dtype == torch.bool:
            raise ValueError(
                f"{name}: {arg} must be a number or a 0-d real tensor, got a "
                f"{value.dtype} tensor of shape {tuple(value.shape)}"
            )
        if not host_checks_allowed(value):
            return
        number = float(value.detach())
    elif isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name}: {arg} must be a number or a 0-d tensor, got {value!r}")
    else:
        number = float(value)
    if high is None:
        if not number > low or math.isinf(number):
            raise ValueError(f"{name}: {arg} must be positive and finite, got {number}")
    elif not low <= number <= high:
        raise ValueError(f"{name}: {arg} must lie in [{low}, {high}], got {number}")


def _check_reduction(name: str, reduction: str) -> None:
    if reduction not in _REDUCTIONS:
        raise ValueError(f"{name}: reduction must be one of {list(_REDUCTIONS)}, got {reduction!r}")


def _check_nan(name: str, arg: str, bad: torch.Tensor) -> None:
    if bool(bad.any()):
        first = [int(i) for i in bad.nonzero()[0]]
        raise ValueError(
            f"{name}: {arg} contains NaN ({int(bad.sum())} entries, the first at index {first})"
        )


def _prepare(
    name: str,
    scores: torch.Tensor,
    labels: torch.Tensor,
    mask: torch.Tensor | None,
    weights: torch.Tensor | None,
    *,
    pointwise: bool = False,
) -> _Lists:
    """Check shapes (and, eagerly, NaN); replace padding by 0; weights broadcast to ``[B, L]``."""
    if not isinstance(scores, torch.Tensor) or not scores.is_floating_point():
        got = scores.dtype if isinstance(scores, torch.Tensor) else type(scores).__name__
        raise TypeError(f"{name}: scores must be a floating-point tensor, got {got}")
    if not isinstance(labels, torch.Tensor) or labels.is_complex():
        got = labels.dtype if isinstance(labels, torch.Tensor) else type(labels).__name__
        raise TypeError(f"{name}: labels must be a real tensor, got {got}")
    forms = "[B, L] (or [B] for a pointwise loss)" if pointwise else "[B, L]"
    if not (scores.ndim == 2 or (pointwise and scores.ndim == 1)):
        raise ValueError(f"{name}: scores must be {forms}, got shape {tuple(scores.shape)}")
    if labels.shape != scores.shape:
        raise ValueError(
            f"{name}: labels must have the shape of scores {tuple(scores.shape)}, got "
            f"{tuple(labels.shape)}"
        )
    if mask is not None:
        if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool:
            got = mask.dtype if isinstance(mask, torch.Tensor) else type(mask).__name__
            raise TypeError(f"{name}: mask must be a bool tensor, got {got}")
        if mask.shape != scores.shape:
            raise ValueError(
                f"{name}: mask must have the shape of scores {tuple(scores.shape)}, got "
                f"{tuple(mask.shape)}"
            )
    if weights is not None:
        if not isinstance(weights, torch.Tensor) or weights.is_complex():
            got = weights.dtype if isinstance(weights, torch.Tensor) else type(weights).__name__
            raise TypeError(f"{name}: weights must be a real tensor, got {got}")
        b = scores.shape[0]
        shapes = [(b,)] if scores.ndim == 1 else [(b,), (b, 1), tuple(scores.shape)]
        if tuple(weights.shape) not in shapes:
            raise ValueError(
                f"{name}: weights must have shape {' or '.join(str(list(s)) for s in shapes)} "
                f"(per list or per item), got {list(weights.shape)}"
            )
    scores = at_least_float32(scores)  # mixed precision: the loss still runs in float32
    squeeze = scores.ndim == 1
    if squeeze:
        scores, labels = scores[:, None], labels[:, None]
        mask = None if mask is None else mask[:, None]
    dtype = scores.dtype
    labels = labels.to(dtype)
    valid = labels >= 0  # NaN labels compare false: padding, as in TF-Ranking
    if mask is not None:
        valid = valid & mask
    if host_checks_allowed(scores, labels, mask, weights):
        nan_labels = torch.isnan(labels)
        _check_nan(name, "labels", nan_labels if mask is None else nan_labels & mask)
        _check_nan(name, "scores", torch.isnan(scores) & valid)
        if weights is not None and weights.is_floating_point():
            _check_nan(name, "weights", torch.isnan(weights))
    zero = torch.zeros((), dtype=dtype, device=scores.device)
    item_weights = None
    if weights is not None:
        w = weights.to(dtype)
        w = w[:, None] if w.ndim == 1 else w
        item_weights = torch.where(valid, w, zero)
    return _Lists(
        torch.where(valid, scores, zero),
        torch.where(valid, labels, zero),
        valid,
        item_weights,
        squeeze,
    )


def _div_no_nan(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    """``num / den``, 0 where ``den == 0`` (TF's ``div_no_nan``), with finite gradients."""
    zero = den == 0
    return torch.where(
        zero, torch.zeros_like(num), num / torch.where(zero, torch.ones_like(den), den)
    )


def _reduce(losses: torch.Tensor, weights: torch.Tensor, reduction: str) -> torch.Tensor:
    """TF's ``compute_weighted_loss`` on ``losses`` and same-shape ``weights``."""
    weighted = losses * weights
    if reduction == "none":
        return weighted
    total = weighted.sum()
    if reduction == "sum":
        return total
    if reduction == "mean":
        return _div_no_nan(total, weights.sum())
    return _div_no_nan(total, (weights != 0).sum().to(total.dtype))


def _list_weights(lists: _Lists) -> torch.Tensor:
    """``[B]`` per-list weights of TF-Ranking's listwise losses: 1 without weights, else the
    label-weighted mean ``sum_i w_i l_i / sum_i l_i`` of the item weights (0 for a zero sum)."""
    if lists.item_weights is None:
        return torch.ones_like(lists.scores[..., 0])
    return _div_no_nan((lists.item_weights * lists.labels).sum(-1), lists.labels.sum(-1))


def _key(name: str, seed: Seed, device: torch.device) -> torch.Tensor:
    if isinstance(seed, torch.Tensor):
        if seed.dtype != torch.int64 or seed.ndim != 0:
            raise TypeError(
                f"{name}: seed must be an int or a 0-d int64 key from torchrs_fn.random.key, got "
                f"a {seed.dtype} tensor of shape {tuple(seed.shape)}"
            )
        return seed.to(device)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"{name}: seed must be an int or a torchrs_fn.random key, got {seed!r}")
    return _random.key(seed, device=device)


def _pair(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``x [..., L]`` as the row and column operands of an ``[..., L, L]`` pairwise op."""
    return x[..., :, None], x[..., None, :]


def _discount(rank: torch.Tensor) -> torch.Tensor:
    """TF-Ranking's NDCG rank discount ``1 / ln(1 + rank)``."""
    return 1.0 / torch.log1p(rank)


def _inverse_max_dcg(gains: torch.Tensor, topn: int | None) -> torch.Tensor:
    """``[..., 1]``: 1 / (the DCG of the gains sorted descending, cut at topn); 0 for DCG 0."""
    length = gains.shape[-1]
    k = length if topn is None else min(topn, length)
    # Stable: tied gains (padding included, as 0) keep list order, as with TF-Ranking's top_k, so
    # the gradient at a tie (where the ideal DCG has a kink) goes where TF-Ranking sends it.
    ideal = torch.sort(gains, dim=-1, descending=True, stable=True).values[..., :k]
    ranks = torch.arange(1, k + 1, dtype=gains.dtype, device=gains.device)
    dcg = (ideal * _discount(ranks)).sum(-1, keepdim=True)
    positive = dcg > 0
    return torch.where(positive, 1.0 / torch.where(positive, dcg, torch.ones_like(dcg)), 0.0)


def _sorted_ranks(scores: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """``[B, L]`` int64 1-based ranks by descending score, ties by position, padding last."""
    length = scores.shape[-1]
    pos = torch.arange(length, device=scores.device)
    si, sj = _pair(scores)
    vi, vj = _pair(valid)
    earlier = pos[None, :] < pos[:, None]  # [i, j]: j comes before i in the list
    ahead = (vj & ~vi) | ((vj == vi) & ((sj > si) | ((sj == si) & earlier)))
    return 1 + ahead.sum(-1)


def _lambda_pair_weights(
    lambda_weight: LambdaWeight, scores: torch.Tensor, lists: _Lists
) -> torch.Tensor:
    """``[B, L, L]`` pair weights of a lambda weight (detached by the caller)."""
    labels, valid = lists.labels, lists.valid
    li, lj = _pair(labels)
    if isinstance(lambda_weight, LabelDiffLambdaWeight):
        return (li - lj).abs()
    length = labels.shape[-1]
    gains = (torch.exp2(labels) - 1.0) * _inverse_max_dcg(
        torch.exp2(labels) - 1.0, lambda_weight.topn
    )
    gi, gj = _pair(gains)
    vi, vj = _pair(valid)
    pair_gain = (gi - gj).abs() * (vi & vj)
    n = length if lambda_weight.topn is None else lambda_weight.topn
    ranks = _sorted_ranks(scores, valid).to(scores.dtype)
    ri, rj = _pair(ranks)
    in_top = (ri <= n) | (rj <= n)
    d = (ri - rj).abs()
    d_safe = torch.where(d > 0, d, torch.ones_like(d))
    u = torch.where((d > 0) & in_top, (_discount(d_safe) - _discount(d_safe + 1.0)).abs(), 0.0)
    cut = torch.where(ranks > n, 0.0, _discount(ranks))
    ci, cj = _pair(cut)
    v = (ci - cj).abs()
    smooth = lambda_weight.smooth_fraction
    discount = ((1.0 - smooth) * u + smooth * v) * in_top
    return pair_gain * discount * float(length)


def _check_lambda(name: str, lambda_weight: object) -> None:
    if lambda_weight is not None and not isinstance(
        lambda_weight, (LabelDiffLambdaWeight, NDCGLambdaWeight)
    ):
        raise TypeError(
            f"{name}: lambda_weight must come from label_diff_lambda_weight() or "
            f"ndcg_lambda_weight(), got {type(lambda_weight).__name__}"
        )


# --- pointwise --------------------------------------------------------------------------------


def _pointwise_out(lists: _Lists, losses: torch.Tensor, reduction: str) -> torch.Tensor:
    weights = lists.valid.to(losses.dtype) if lists.item_weights is None else lists.item_weights
    out = _reduce(losses, weights, reduction)
    return out[:, 0] if lists.squeeze and reduction == "none" else out


def mean_squared_loss(
    scores: torch.Tensor,
    labels: torch.Tensor,
    *,
    mask: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    reduction: Reduction = "sum_by_nonzero_weights",
) -> torch.Tensor:
    """Pointwise squared error ``(l_i - s_i)^2`` (TF-Ranking ``mean_squared_loss``).

    Args:
        scores: ``[B, L]``, or ``[B]`` (each item its own list).
        labels: the shape of ``scores``; negative is padding.
        mask: the shape of ``scores``, bool; False is padding.
        weights: ``[B]``/``[B, 1]`` per list or ``[B, L]`` per item; each item's loss is weighted
            by its weight (padding by 0).
        reduction: see the module docstring; the default divides by the number of items with a
            non-zero weight (so, unweighted, it is the mean over valid items).

    Returns:
        A scalar, or with ``"none"`` the weighted item losses ``[B, L]`` (``[B]``).
    """
    name = "mean_squared_loss"
    _check_reduction(name, reduction)
    lists = _prepare(name, scores, labels, mask, weights, pointwise=True)
    return _pointwise_out(lists, (lists.labels - lists.scores) ** 2, reduction)


def sigmoid_cross_entropy_loss(
    scores: torch.Tensor,
    labels: torch.Tensor,
    *,
    mask: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    temperature: Hyperparameter = 1.0,
    reduction: Reduction = "sum_by_nonzero_weights",
) -> torch.Tensor:
    """Pointwise sigmoid cross-entropy (TF-Ranking ``sigmoid_cross_entropy_loss``).

    With ``x = s / temperature``: ``log(1 + e^x) - l x`` per item, i.e. the binary cross-entropy
    of ``sigmoid(x)`` against the label (labels in ``[0, 1]`` are probabilities; TF-Ranking does
    not check, nor does this). Computed stably as ``logaddexp(x, 0) - l x``, whose gradient is
    ``sigmoid(x) - l`` everywhere (TF's ``relu``/``abs`` form has a zero subgradient at
    ``x = 0``).

    Args:
        scores: ``[B, L]``, or ``[B]`` (each item its own list).
        labels: the shape of ``scores``; negative is padding.
        mask: as for ``mean_squared_loss``; so are ``weights`` and ``reduction``.
        temperature: divides the scores (TF-Ranking's ``SigmoidCrossEntropyLoss`` temperature,
            default 1); a number or a 0-d tensor.

    Returns:
        A scalar, or with ``"none"`` the weighted item losses ``[B, L]`` (``[B]``).
    """
    name = "sigmoid_cross_entropy_loss"
    _check_reduction(name, reduction)
    _check_hparam(name, "temperature", temperature)
    lists = _prepare(name, scores, labels, mask, weights, pointwise=True)
    x = lists.scores / temperature
    losses = torch.logaddexp(x, torch.zeros_like(x)) - lists.labels * x
    return _pointwise_out(lists, losses, reduction)


# --- pairwise ---------------------------------------------------------------------------------


def _pairwise(
    name: str,
    pair_loss: Callable[[torch.Tensor], torch.Tensor] | None,
    scores: torch.Tensor,
    labels: torch.Tensor,
    mask: torch.Tensor | None,
    weights: torch.Tensor | None,
    lambda_weight: LambdaWeight | None,
    temperature: Hyperparameter,
    reduction: str,
) -> torch.Tensor:
    _check_reduction(name, reduction)
    _check_lambda(name, lambda_weight)
    _check_hparam(name, "temperature", temperature)
    lists = _prepare(name, scores, labels, mask, weights)
    s = lists.scores / temperature
    si, sj = _pair(s)
    vi, vj = _pair(lists.valid)
    li, lj = _pair(lists.labels)
    if pair_loss is None:  # pairwise MSE: every ordered pair of distinct valid items
        losses = ((si - sj) - (li - lj)) ** 2
        eye = torch.eye(s.shape[-1], dtype=torch.bool, device=s.device)
        pair_weights = (vi & vj & ~eye).to(s.dtype)
    else:
        losses = pair_loss(si - sj)
        pair_weights = ((li > lj) & vi & vj).to(s.dtype)
    if lambda_weight is not None:
        pair_weights = pair_weights * _lambda_pair_weights(lambda_weight, s, lists)
    pair_weights = pair_weights.detach()  # TF-Ranking's stop_gradient on the pair weights
    if lists.item_weights is not None:
        pair_weights = lists.item_weights[..., :, None] * pair_weights
    return _reduce(losses, pair_weights, reduction)


def pairwise_hinge_loss(
    scores: torch.Tensor,
    labels: torch.Tensor,
    *,
    mask: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    lambda_weight: LambdaWeight | None = None,
    temperature: Hyperparameter = 1.0,
    reduction: Reduction = "sum_by_nonzero_weights",
) -> torch.Tensor:
    """Pairwise hinge loss ``max(0, 1 - (s_i - s_j))`` (TF-Ranking ``pairwise_hinge_loss``).

    Pairs: (i, j) with both items valid and ``l_i > l_j``; its loss is weighted by the pair
    weight, a constant of the loss (TF-Ranking's ``stop_gradient``): 1, times the lambda weight
    if one is given, times the item weight ``w_i`` of the better item with ``[B, L]`` weights
    (``w_b`` with ``[B]`` weights). Scores enter divided by ``temperature``.

    Args:
        scores: ``[B, L]``.
        labels: ``[B, L]``; negative is padding. The loss is piecewise constant in the labels:
            their gradient is 0.
        mask: ``[B, L]`` bool; False is padding.
        weights: ``[B]``/``[B, 1]`` per list or ``[B, L]`` per item.
        lambda_weight: ``label_diff_lambda_weight()`` or ``ndcg_lambda_weight(...)``, or None.
        temperature: divides the scores (TF-Ranking's loss temperature, default 1).
        reduction: see the module docstring; the default divides by the number of pairs with a
            non-zero weight over the batch (TF-Ranking's ``SUM_BY_NONZERO_WEIGHTS``). A list with
            fewer than two valid items, or with all labels equal, has no pairs: it adds 0 to the
            sum and nothing to the count.

    Returns:
        A scalar, or with ``"none"`` the weighted pair losses ``[B, L, L]`` (entry ``[b, i, j]``
        for item i above item j).
    """
    return _pairwise(
        "pairwise_hinge_loss",
        lambda d: torch.relu(1.0 - d),
        scores,
        labels,
        mask,
        weights,
        lambda_weight,
        temperature,
        reduction,
    )


def pairwise_logistic_loss(
    scores: torch.Tensor,
    labels: torch.Tensor,
    *,
    mask: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    lambda_weight: LambdaWeight | None = None,
    temperature: Hyperparameter = 1.0,
    reduction: Reduction = "sum_by_nonzero_weights",
) -> torch.Tensor:
    """Pairwise logistic loss ``log(1 + exp(-(s_i - s_j)))`` (TF-Ranking
    ``pairwise_logistic_loss``; RankNet).

    Computed as ``logaddexp(-d, 0)``: its gradient at ``d = 0`` (tied scores, e.g. an untrained
    model) is the true ``-1/2``, where TF-Ranking's ``relu``/``abs`` form differentiates to 0.

    Pairs: (i, j) with both items valid and ``l_i > l_j``; its loss is weighted by the pair
    weight, a constant of the loss (TF-Ranking's ``stop_gradient``): 1, times the lambda weight
    if one is given, times the item weight ``w_i`` of the better item with ``[B, L]`` weights
    (``w_b`` with ``[B]`` weights). Scores enter divided by ``temperature``.

    Args:
        scores: ``[B, L]``.
        labels: ``[B, L]``; negative is padding. The loss is piecewise constant in the labels:
            their gradient is 0.
        mask: ``[B, L]`` bool; False is padding.
        weights: ``[B]``/``[B, 1]`` per list or ``[B, L]`` per item.
        lambda_weight: ``label_diff_lambda_weight()`` or ``ndcg_lambda_weight(...)``, or None.
        temperature: divides the scores (TF-Ranking's loss temperature, default 1).
        reduction: see the module docstring; the default divides by the number of pairs with a
            non-zero weight over the batch (TF-Ranking's ``SUM_BY_NONZERO_WEIGHTS``). A list with
            fewer than two valid items, or with all labels equal, has no pairs: it adds 0 to the
            sum and nothing to the count.

    Returns:
        A scalar, or with ``"none"`` the weighted pair losses ``[B, L, L]`` (entry ``[b, i, j]``
        for item i above item j).
    """
    return _pairwise(
        "pairwise_logistic_loss",
        lambda d: torch.logaddexp(-d, torch.zeros_like(d)),
        scores,
        labels,
        mask,
        weights,
        lambda_weight,
        temperature,
        reduction,
    )


def pairwise_soft_zero_one_loss(
    scores: torch.Tensor,
    labels: torch.Tensor,
    *,
    mask: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    lambda_weight: LambdaWeight | None = None,
    temperature: Hyperparameter = 1.0,
    reduction: Reduction = "sum_by_nonzero_weights",
) -> torch.Tensor:
    """Pairwise soft zero-one loss ``sigmoid(-(s_i - s_j))`` (TF-Ranking
    ``pairwise_soft_zero_one_loss``: ``1 - sigmoid(d)`` for ``d > 0``, ``sigmoid(-d)`` else,
    the same function).

    Pairs: (i, j) with both items valid and ``l_i > l_j``; its loss is weighted by the pair
    weight, a constant of the loss (TF-Ranking's ``stop_gradient``): 1, times the lambda weight
    if one is given, times the item weight ``w_i`` of the better item with ``[B, L]`` weights
    (``w_b`` with ``[B]`` weights). Scores enter divided by ``temperature``.

    Args:
        scores: ``[B, L]``.
        labels: ``[B, L]``; negative is padding. The loss is piecewise constant in the labels:
            their gradient is 0.
        mask: ``[B, L]`` bool; False is padding.
        weights: ``[B]``/``[B, 1]`` per list or ``[B, L]`` per item.
        lambda_weight: ``label_diff_lambda_weight()`` or ``ndcg_lambda_weight(...)``, or None.
        temperature: divides the scores (TF-Ranking's loss temperature, default 1).
        reduction: see the module docstring; the default divides by the number of pairs with a
            non-zero weight over the batch (TF-Ranking's ``SUM_BY_NONZERO_WEIGHTS``). A list with
            fewer than two valid items, or with all labels equal, has no pairs: it adds 0 to the
            sum and nothing to the count.

    Returns:
        A scalar, or with ``"none"`` the weighted pair losses ``[B, L, L]`` (entry ``[b, i, j]``
        for item i above item j).
    """
    return _pairwise(
        "pairwise_soft_zero_one_loss",
        lambda d: torch.sigmoid(-d),
        scores,
        labels,
        mask,
        weights,
        lambda_weight,
        temperature,
        reduction,
    )


def pairwise_mse_loss(
    scores: torch.Tensor,
    labels: torch.Tensor,
    *,
    mask: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    lambda_weight: LambdaWeight | None = None,
    temperature: Hyperparameter = 1.0,
    reduction: Reduction = "sum_by_nonzero_weights",
) -> torch.Tensor:
    """Pairwise squared error ``((s_i - s_j) - (l_i - l_j))^2`` (TF-Ranking ``pairwise_mse_loss``).

    Unlike the other pairwise losses it takes every ordered pair ``i != j`` of valid items, equal
    labels included (so each unordered pair counts twice, as in TF-Ranking), and it is smooth in
    the labels: their gradient flows. The pair weight is 1, times the lambda weight if one is
    given (``label_diff_lambda_weight()`` gives pairs of equal labels weight 0, which leaves them
    out of the count), times ``w_i`` with ``[B, L]`` weights; it is a constant of the loss. Scores
    enter divided by ``temperature`` (the labels do not).

    Args:
        scores: ``[B, L]``.
        labels: ``[B, L]``; negative is padding.
        mask: ``[B, L]`` bool; False is padding.
        weights: ``[B]``/``[B, 1]`` per list or ``[B, L]`` per item.
        lambda_weight: ``label_diff_lambda_weight()`` or ``ndcg_lambda_weight(...)``, or None.
        temperature: divides the scores (default 1).
        reduction: see the module docstring; the default divides by the number of ordered pairs
            with a non-zero weight (a list of one valid item has none and is left out).

    Returns:
        A scalar, or with ``"none"`` the weighted pair losses ``[B, L, L]``.
    """
    return _pairwise(
        "pairwise_mse_loss",
        None,
        scores,
        labels,
        mask,
        weights,
        lambda_weight,
        temperature,
        reduction,
    )


# --- listwise ---------------------------------------------------------------------------------


def _masked_log_softmax(x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """``log softmax`` over the valid entries of the last axis; 0 at padding (never NaN)."""
    anything = valid.any(-1, keepdim=True)
    # A list that is all padding takes its (zeroed) scores as they are: finite, and unused.
    logits = torch.where(valid | ~anything, x, float("-inf"))
    lse = torch.logsumexp(logits, dim=-1, keepdim=True)
    return torch.where(valid, x - lse, 0.0)


def softmax_loss(
    scores: torch.Tensor,
    labels: torch.Tensor,
    *,
    mask: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    temperature: Hyperparameter = 1.0,
    reduction: Reduction = "sum_by_nonzero_weights",
) -> torch.Tensor:
    """Listwise softmax cross-entropy (TF-Ranking ``softmax_loss``; ListNet-style).

    With ``z_i = w_i l_i`` (``w = 1`` without weights; per-list weights broadcast to the items),
    ``Z = sum_i z_i`` and ``p = softmax(s / temperature)`` over the list's valid items, a list's
    loss is the cross-entropy of the normalised labels, ``-sum_i (z_i / Z) log p_i``, and its
    weight is ``Z`` (TF-Ranking's label normalisation: the reduced loss is
    ``sum_b -sum_i z_bi log p_bi / #{b : Z_b != 0}``). A list with ``Z = 0`` (all labels 0, or all
    padding) has weight 0: it adds nothing and leaves the count. For ``Z < 0`` (negative weights)
    TF-Ranking takes a uniform target over the valid items, and so does this function.

    Differs from TF-Ranking in one detail: padding is left out of the softmax exactly, where
    TF-Ranking gives padded items the logit ``log(1e-10)`` (a difference of about ``1e-10 * P /
    sum_valid exp(s)`` for P padded items).

    Args:
        scores: ``[B, L]``.
        labels: ``[B, L]``; negative is padding. The gradient flows to the labels and weights.
        mask: ``[B, L]`` bool; False is padding.
        weights: ``[B]``/``[B, 1]`` per list or ``[B, L]`` per item (they multiply the labels).
        temperature: divides the scores (default 1).
        reduction: see the module docstring (the default counts lists with ``Z != 0``).

    Returns:
        A scalar, or with ``"none"`` the weighted list losses ``[B]`` (``Z_b`` times the
        cross-entropy).
    """
    name = "softmax_loss"
    _check_reduction(name, reduction)
    _check_hparam(name, "temperature", temperature)
    lists = _prepare(name, scores, labels, mask, weights)
    z = lists.labels if lists.item_weights is None else lists.labels * lists.item_weights
    total = z.sum(-1)
    positive = total > 0
    valid = lists.valid.to(z.dtype)
    uniform = _div_no_nan(valid, valid.sum(-1, keepdim=True))
    target = torch.where(
        positive[..., None],
        z / torch.where(positive, total, torch.ones_like(total))[..., None],
        uniform,
    )
    log_p = _masked_log_softmax(lists.scores / temperature, lists.valid)
    losses = -(target * log_p).sum(-1)
    return _reduce(losses, total, reduction)


def list_mle_loss(
    scores: torch.Tensor,
    labels: torch.Tensor,
    *,
    mask: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    temperature: Hyperparameter = 1.0,
    seed: Seed = 0,
    reduction: Reduction = "sum_by_nonzero_weights",
) -> torch.Tensor:
    """ListMLE: the Plackett–Luce negative log-likelihood of the label order (TF-Ranking
    ``list_mle_loss``).

    The valid items are put in order of descending label, ties in random order (TF-Ranking's
    ``shuffle_ties``): ``pi``. With ``x = s / temperature`` a list's loss is::

        sum_k [ log sum_{m >= k} exp(x_{pi(m)}) - x_{pi(k)} ]

    The tie order is a pure function of ``seed``: an int (``torchrs_fn.random.key(seed)``) or a
    key tensor from ``torchrs_fn.random`` (e.g. a train step's ``hparams["key"]``); item i ranks
    above an equal-labelled item j when ``random.bits(key, [B, L])`` is larger at i (then by
    position). The global RNG is never read, and the same seed gives the same order eagerly,
    compiled and under ``vmap`` (where every lane draws the same bits unless the key is batched).
    No sort is taken: each item's suffix sum is a masked log-sum-exp over the items at or after
    it, which keeps the loss ``vmap``- and ``compile``-friendly (``O(L^2)`` per list).

    Weights (TF-Ranking's listwise rule): without ``weights`` a list has weight 1; with them,
    ``sum_i w_i l_i / sum_i l_i`` (per-list weights give ``w_b``), 0 for a list of zero label sum.
    A list of one valid item has loss 0 (and counts). Differences from TF-Ranking: padding is left
    out exactly, where TF-Ranking keeps padded items at logit ``log(1e-10)`` at the end of the
    order (adding about ``log(P!)`` for P padded items, a constant); and a list that is all
    padding gets weight 0 (TF-Ranking: 1, with the loss ``log(L!)``), so it leaves the count.

    Args:
        scores: ``[B, L]``.
        labels: ``[B, L]``; negative is padding. The loss is piecewise constant in the labels
            (their gradient is 0 but through per-item weights).
        mask: ``[B, L]`` bool; False is padding.
        weights: ``[B]``/``[B, 1]`` per list or ``[B, L]`` per item.
        temperature: divides the scores (default 1).
        seed: an int seed or a ``torchrs_fn.random`` key, for the order of tied labels.
        reduction: see the module docstring (the default counts lists of non-zero weight).

    Returns:
        A scalar, or with ``"none"`` the weighted list losses ``[B]``.
    """
    name = "list_mle_loss"
    _check_reduction(name, reduction)
    _check_hparam(name, "temperature", temperature)
    lists = _prepare(name, scores, labels, mask, weights)
    key = _key(name, seed, scores.device)
    x = lists.scores / temperature
    length = x.shape[-1]
    bits = _random.bits(key, lists.labels.shape)
    pos = torch.arange(length, device=x.device)
    li, lj = _pair(lists.labels)
    bi, bj = _pair(bits)
    earlier = pos[None, :] < pos[:, None]
    ahead = (li < lj) | ((li == lj) & ((bi < bj) | ((bi == bj) & earlier)))  # j above i
    eye = torch.eye(length, dtype=torch.bool, device=x.device)
    rest = (lists.valid[..., None, :] & ~ahead) | eye  # j at or below i; i itself always
    suffix = torch.logsumexp(torch.where(rest, x[..., None, :], float("-inf")), dim=-1)
    losses = torch.where(lists.valid, suffix - x, 0.0).sum(-1)
    list_weights = _list_weights(lists) * lists.valid.any(-1)
    return _reduce(losses, list_weights, reduction)


def _approx_ranks(x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """``[..., L]``: ``1/2 + sum_{valid j} sigmoid(x_j - x_i)`` (TF-Ranking's ``approx_ranks``)."""
    xi, xj = _pair(x)
    return 0.5 + (torch.sigmoid(xj - xi) * valid[..., None, :]).sum(-1)


def _approx_ndcg(x: torch.Tensor, labels: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """``[...]`` ApproxNDCG of lists ``x [..., L]`` with zero-padded labels."""
    ranks = _approx_ranks(x, valid)
    # TF-Ranking's overflow-safe gains (2^l - 1) / 2^max(l): the ratio to the ideal DCG is the same.
    top = labels.amax(-1, keepdim=True)
    gains = torch.exp2(labels - top) - torch.exp2(-top)
    dcg = (gains * _discount(ranks)).sum(-1)
    return dcg * _inverse_max_dcg(gains, None)[..., 0]


def approx_ndcg_loss(
    scores: torch.Tensor,
    labels: torch.Tensor,
    *,
    mask: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    temperature: Hyperparameter = 0.1,
    reduction: Reduction = "sum_by_nonzero_weights",
) -> torch.Tensor:
    """ApproxNDCG: minus the NDCG of the approximate ranks (TF-Ranking ``approx_ndcg_loss``).

    A list's loss is ``-sum_i (2^{l_i} - 1) / ln(1 + r_i) / maxDCG`` with ``maxDCG`` the DCG of
    the labels in ideal order.

    Approximate ranks (Qin et al.; TF-Ranking's ``approx_ranks``): with ``x = s / temperature``,
    ``r_i = 1/2 + sum_j sigmoid(x_j - x_i)`` over the valid j (j = i gives the 1/2 that makes
    ``r_i = 1 + ...``). Padding is left out of the sums exactly; TF-Ranking gives padded items
    the logit ``min(x) - 1000``, whose sigmoid terms are exactly 0 in floating point, so the
    values agree.

    Weights (TF-Ranking's listwise rule): a list's weight is 0 when its label sum is 0 (all labels
    0, or all padding: it leaves the count), else 1 without ``weights``, or the label-weighted
    mean ``sum_i w_i l_i / sum_i l_i`` of item weights (per-list weights give ``w_b``).

    Args:
        scores: ``[B, L]``.
        labels: ``[B, L]``; negative is padding. The loss is smooth in the labels: their
            gradient flows.
        mask: ``[B, L]`` bool; False is padding.
        weights: ``[B]``/``[B, 1]`` per list or ``[B, L]`` per item.
        temperature: divides the scores before the sigmoids (TF-Ranking's default 0.1); a
            number or a 0-d tensor.
        reduction: see the module docstring (the default counts lists of non-zero weight).

    Returns:
        A scalar, or with ``"none"`` the weighted list losses ``[B]``.
    """
    name = "approx_ndcg_loss"
    _check_reduction(name, reduction)
    _check_hparam(name, "temperature", temperature)
    lists = _prepare(name, scores, labels, mask, weights)
    losses = -_approx_ndcg(lists.scores / temperature, lists.labels, lists.valid)
    list_weights = _list_weights(lists) * (lists.labels.sum(-1) > 0)
    return _reduce(losses, list_weights, reduction)


def approx_mrr_loss(
    scores: torch.Tensor,
    labels: torch.Tensor,
    *,
    mask: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    temperature: Hyperparameter = 0.1,
    reduction: Reduction = "sum_by_nonzero_weights",
) -> torch.Tensor:
    """ApproxMRR: minus the label-weighted reciprocal approximate rank (TF-Ranking
    ``approx_mrr_loss``).

    A list's loss is ``-sum_i l_i / r_i / sum_i l_i``.

    Approximate ranks (Qin et al.; TF-Ranking's ``approx_ranks``): with ``x = s / temperature``,
    ``r_i = 1/2 + sum_j sigmoid(x_j - x_i)`` over the valid j (j = i gives the 1/2 that makes
    ``r_i = 1 + ...``). Padding is left out of the sums exactly; TF-Ranking gives padded items
    the logit ``min(x) - 1000``, whose sigmoid terms are exactly 0 in floating point, so the
    values agree.

    Weights (TF-Ranking's listwise rule): a list's weight is 0 when its label sum is 0 (all labels
    0, or all padding: it leaves the count), else 1 without ``weights``, or the label-weighted
    mean ``sum_i w_i l_i / sum_i l_i`` of item weights (per-list weights give ``w_b``).

    Args:
        scores: ``[B, L]``.
        labels: ``[B, L]``; negative is padding. The loss is smooth in the labels: their
            gradient flows.
        mask: ``[B, L]`` bool; False is padding.
        weights: ``[B]``/``[B, 1]`` per list or ``[B, L]`` per item.
        temperature: divides the scores before the sigmoids (TF-Ranking's default 0.1); a
            number or a 0-d tensor.
        reduction: see the module docstring (the default counts lists of non-zero weight).

    Returns:
        A scalar, or with ``"none"`` the weighted list losses ``[B]``.
    """
    name = "approx_mrr_loss"
    _check_reduction(name, reduction)
    _check_hparam(name, "temperature", temperature)
    lists = _prepare(name, scores, labels, mask, weights)
    ranks = _approx_ranks(lists.scores / temperature, lists.valid)
    label_sum = lists.labels.sum(-1)
    losses = -_div_no_nan((lists.labels / ranks).sum(-1), label_sum)
    list_weights = _list_weights(lists) * (label_sum > 0)
    return _reduce(losses, list_weights, reduction)


def gumbel_approx_ndcg_loss(
    scores: torch.Tensor,
    labels: torch.Tensor,
    *,
    mask: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    temperature: Hyperparameter = 0.1,
    gumbel_temperature: Hyperparameter = 1.0,
    sample_size: int = 8,
    seed: Seed = 0,
    reduction: Reduction = "sum_by_nonzero_weights",
) -> torch.Tensor:
    """ApproxNDCG of Gumbel-perturbed scores (TF-Ranking ``gumbel_approx_ndcg_loss``, whose
    ``GumbelSampler`` defaults are ``sample_size=8``, ``temperature=1``).

    Each list is drawn ``sample_size`` times: ``x = (s + g) / gumbel_temperature`` with standard
    Gumbel noise ``g = -log(-log(u + 1e-20) + 1e-20)``, ``u = torchrs_fn.random.uniform(key,
    [B, sample_size, L])`` (the key from ``seed``: an int, or a ``torchrs_fn.random`` key), and
    each draw is a list of ``approx_ndcg_loss`` (with ``temperature``) with the list's labels and
    weights. The ``B * sample_size`` draws are reduced as TF-Ranking reduces its expanded batch:
    the default divides by the number of draws of non-zero weight, so it is the mean over draws
    of ``approx_ndcg_loss``'s reduction.

    TF-Ranking turns the draws into log-probabilities, ``log(softmax(x) + 1e-20)``, before the
    approximate ranks; ranks depend only on differences of the ``x`` within a list, which the
    log-softmax keeps, so this function skips it (equal up to TF-Ranking's ``1e-20`` floor).
    Padding is left out exactly (TF-Ranking: logit ``log(1e-20)``, then ``min - 1000``).

    Args:
        scores: ``[B, L]``.
        labels: ``[B, L]``; negative is padding. The gradient flows to the labels.
        mask: ``[B, L]`` bool; False is padding.
        weights: ``[B]``/``[B, 1]`` per list or ``[B, L]`` per item (TF-Ranking's listwise rule,
            as ``approx_ndcg_loss``; the same for every draw of a list).
        temperature: of the approximate ranks (default 0.1).
        gumbel_temperature: divides the perturbed scores (default 1).
        sample_size: draws per list, a positive int.
        seed: an int seed or a ``torchrs_fn.random`` key, for the noise.
        reduction: see the module docstring.

    Returns:
        A scalar, or with ``"none"`` the weighted losses of the draws ``[B, sample_size]``.
    """
    name = "gumbel_approx_ndcg_loss"
    _check_reduction(name, reduction)
    _check_hparam(name, "temperature", temperature)
    _check_hparam(name, "gumbel_temperature", gumbel_temperature)
    if isinstance(sample_size, bool) or not isinstance(sample_size, int) or sample_size < 1:
        raise ValueError(f"{name}: sample_size must be a positive int, got {sample_size!r}")
    lists = _prepare(name, scores, labels, mask, weights)
    key = _key(name, seed, scores.device)
    b, length = lists.scores.shape
    u = _random.uniform(key, (b, sample_size, length), dtype=lists.scores.dtype)
    noise = -torch.log(-torch.log(u + _LOG_FLOOR) + _LOG_FLOOR)
    x = (lists.scores[..., None, :] + noise) / gumbel_temperature / temperature
    valid = lists.valid[..., None, :].expand(x.shape)
    draws_labels = lists.labels[..., None, :].expand(x.shape)
    losses = -_approx_ndcg(x, draws_labels, valid)
    list_weights = _list_weights(lists) * (lists.labels.sum(-1) > 0)
    return _reduce(losses, list_weights[..., None].expand(losses.shape), reduction)


def _neural_sort(x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """``[B, L, L]`` NeuralSort relaxed permutation matrix (TF-Ranking's ``neural_sort``).

    Row i (for a valid item i, which is the ``r``-th valid item of its list) is the softmax over
    the valid columns k of ``(n + 1 - 2r) x_k - sum_{valid j} |x_k - x_j|``; TF-Ranking moves
    these rows to the top in that order, which the loss does not need (it pairs rows of the same
    index). Rows of padding are finite and unused.
    """
    vf = valid.to(x.dtype)
    n = vf.sum(-1, keepdim=True)
    xi, xj = _pair(x)
    vi, vj = _pair(valid)
    spread = torch.where(vi & vj, (xi - xj).abs(), 0.0).sum(-2)  # [B, L] per column k
    scaling = n + 1.0 - 2.0 * torch.cumsum(vf, dim=-1)  # [B, L] per row
    logits = scaling[..., :, None] * x[..., None, :] - spread[..., None, :]
    columns = vj | ~valid.any(-1)[..., None, None]
    return torch.softmax(torch.where(columns, logits, float("-inf")), dim=-1)


def neural_sort_cross_entropy_loss(
    scores: torch.Tensor,
    labels: torch.Tensor,
    *,
    mask: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    temperature: Hyperparameter = 1.0,
    reduction: Reduction = "sum_by_nonzero_weights",
) -> torch.Tensor:
    """Cross-entropy of NeuralSort permutation matrices (TF-Ranking
    ``neural_sort_cross_entropy_loss``).

    NeuralSort (Grover et al.) relaxes the sorting permutation of a list ``x`` over its n valid
    items: row r (the r-th position) is ``softmax_k((n + 1 - 2r) x_k - sum_j |x_k - x_j|)``.
    With ``T = NeuralSort(labels)`` (the labels themselves, not scaled) and
    ``P = NeuralSort(s / temperature)``, a list's loss is the mean over its n rows of the
    cross-entropy ``-sum_k T_rk log(1e-20 + P_rk)`` (TF-Ranking's ``1e-20`` floor, kept: it bounds
    each term by ``46 T_rk``). The gradient flows to the scores and the labels (``|x_k - x_j|``
    differentiates to 0 at ties, as TF's ``abs``).

    Weights follow TF-Ranking's listwise rule: a list's weight is 0 when its label sum is 0 (it
    leaves the count), else 1, or the label-weighted mean of item weights. A list of one valid
    item has loss 0 (a 1 x 1 permutation).

    Args:
        scores: ``[B, L]``.
        labels: ``[B, L]``; negative is padding.
        mask: ``[B, L]`` bool; False is padding.
        weights: ``[B]``/``[B, 1]`` per list or ``[B, L]`` per item.
        temperature: divides the scores (TF-Ranking's default 1); a number or a 0-d tensor.
        reduction: see the module docstring.

    Returns:
        A scalar, or with ``"none"`` the weighted list losses ``[B]``.
    """
    name = "neural_sort_cross_entropy_loss"
    _check_reduction(name, reduction)
    _check_hparam(name, "temperature", temperature)
    lists = _prepare(name, scores, labels, mask, weights)
    target = _neural_sort(lists.labels, lists.valid)
    relaxed = _neural_sort(lists.scores / temperature, lists.valid)
    rows = -(target * torch.log(_LOG_FLOOR + relaxed)).sum(-1)
    losses = _div_no_nan(
        torch.where(lists.valid, rows, 0.0).sum(-1), lists.valid.to(rows.dtype).sum(-1)
    )
    list_weights = _list_weights(lists) * (lists.labels.sum(-1) > 0)
    return _reduce(losses, list_weights, reduction)


# --- the Ranking task (TFRS tfrs.tasks.Ranking) -----------------------------------------------

KERAS_EPSILON = 1e-7  # Keras's backend.epsilon(): BinaryCrossentropy clips probabilities by it
_KERAS_LOSSES = ("binary_crossentropy", "mean_squared_error")
_POINTWISE_METRICS = ("rmse", "mae", "auc", "binary_accuracy", "log_loss")
_LIST_METRICS = (
    "ndcg",
    "dcg",
    "mrr",
    "mean_average_precision",
    "precision",
    "recall",
    "ordered_pair_accuracy",
)


def _keras_pointwise(
    kind: str, predictions: torch.Tensor, labels: torch.Tensor, from_logits: bool
) -> torch.Tensor:
    """``[B]`` per-example losses as Keras computes them (no padding: every example counts)."""
    if kind == "mean_squared_error":
        return (predictions - labels) ** 2
    if from_logits:
        return torch.nn.functional.binary_cross_entropy_with_logits(
            predictions, labels, reduction="none"
        )
    # tf.keras's binary_crossentropy on probabilities: clip, then log(p + eps).
    p = predictions.clamp(KERAS_EPSILON, 1.0 - KERAS_EPSILON)
    return -(
        labels * torch.log(p + KERAS_EPSILON) + (1.0 - labels) * torch.log(1.0 - p + KERAS_EPSILON)
    )


class Ranking(torch.nn.Module):
    """TFRS ``tfrs.tasks.Ranking``: ``task.loss(labels, predictions) -> loss``, plus metrics.

    Args:
        loss: ``"binary_crossentropy"`` (default, as TFRS: Keras ``BinaryCrossentropy``),
            ``"mean_squared_error"`` (the rating tutorials' ``MeanSquaredError``), or a list loss
            of this module (or your own) called as ``loss(predictions, labels, weights=...,
            mask=...)``, e.g. ``tasks.list_mle_loss`` (TFRS's listwise tutorial passes
            TF-Ranking's Keras losses the same way).
        from_logits: for ``"binary_crossentropy"`` and the ``auc``/``binary_accuracy``/
            ``log_loss`` metrics: predictions are logits (``True``; ``models.DLRM`` returns
            logits) or probabilities (``False``, Keras's and TFRS's default).
        metrics: names of ``torchrs_fn.metrics`` functions that ``metrics`` computes (TFRS's
            ``metrics``): pointwise ``"rmse"``, ``"mae"``, ``"auc"``, ``"binary_accuracy"``,
            ``"log_loss"``; for lists ``"ndcg"``, ``"dcg"``, ``"mrr"``,
            ``"mean_average_precision"``, ``"precision"``, ``"recall"``,
            ``"ordered_pair_accuracy"``, optionally with a cut-off: ``"ndcg@3"``.

    The two Keras losses take predictions and labels of shape ``[B]`` or ``[B, 1]`` and an
    optional ``sample_weight`` ``[B]``; every example counts (a negative rating is a rating, not
    padding) and the reduction is Keras's default, ``SUM_OVER_BATCH_SIZE``:
    ``sum_i w_i loss_i / B``. A callable loss reduces as it does itself (TF-Ranking's losses: by
    the number of non-zero weights).

    ``metrics(labels, predictions)`` returns, per metric, what ``train.evaluate`` accumulates
    exactly over a whole evaluation set: ``metrics.MetricTerms`` (``RootMeanTerms`` for RMSE)
    or, for AUC, an ``AUCState`` of the batch. TFRS's ``label_metrics``, ``loss_metrics`` and
    ``prediction_metrics`` (Keras metrics of the labels, the loss or the predictions alone)
    have no argument here: return such values from the loss function as logs.
    """

    def __init__(
        self,
        loss: str | Callable[..., torch.Tensor] = "binary_crossentropy",
        *,
        from_logits: bool = False,
        metrics: tuple[str, ...] | list[str] = (),
    ) -> None:
        super().__init__()
        if isinstance(loss, str):
            if loss not in _KERAS_LOSSES:
                raise ValueError(
                    f"Ranking: loss must be one of {_KERAS_LOSSES} or a callable, got {loss!r}"
                )
        elif not callable(loss):
            raise TypeError(
                f"Ranking: loss must be a name or a callable, got {type(loss).__name__}"
            )
        if isinstance(metrics, str):
            raise TypeError(
                f"Ranking: metrics must be a sequence of names, got the string {metrics!r}"
            )
        self.metric_specs: list[tuple[str, str, int | None]] = []
        for spec in metrics:
            base, _, cut = str(spec).partition("@")
            if base not in _POINTWISE_METRICS + _LIST_METRICS or (
                cut
                and (
                    base not in _LIST_METRICS
                    or base == "ordered_pair_accuracy"
                    or not cut.isdigit()
                    or int(cut) < 1
                )
            ):
                raise ValueError(
                    f"Ranking: unknown metric {spec!r}; known: {list(_POINTWISE_METRICS)} and, for "
                    f"lists (with an optional @k cut-off), {list(_LIST_METRICS)}"
                )
            self.metric_specs.append((str(spec), base, int(cut) if cut else None))
        self.loss_fn = loss
        self.from_logits = bool(from_logits)

    @staticmethod
    def _pointwise(
        labels: torch.Tensor, predictions: torch.Tensor, sample_weight: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        for arg, x in (("labels", labels), ("predictions", predictions)):
            if not isinstance(x, torch.Tensor):
                raise TypeError(f"Ranking: {arg} must be a tensor, got {type(x).__name__}")
        p = (
            predictions.squeeze(-1)
            if predictions.ndim == 2 and predictions.shape[1] == 1
            else predictions
        )
        y = labels.squeeze(-1) if labels.ndim == 2 and labels.shape[1] == 1 else labels
        if p.ndim != 1 or y.shape != p.shape:
            raise ValueError(
                "Ranking: a pointwise loss or metric takes predictions and labels of shape [B] or "
                f"[B, 1]; got predictions {tuple(predictions.shape)} and labels "
                f"{tuple(labels.shape)}"
            )
        w = None
        if sample_weight is not None:
            if tuple(sample_weight.shape) not in ((p.shape[0],), (p.shape[0], 1)):
                raise ValueError(
                    f"Ranking: sample_weight must be [B] = [{p.shape[0]}] (or [B, 1]), got "
                    f"{tuple(sample_weight.shape)}"
                )
            w = sample_weight.reshape(-1)
        return p, y.to(p.dtype), w

    def loss(
        self,
        labels: torch.Tensor,
        predictions: torch.Tensor,
        sample_weight: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The 0-d loss of ``predictions`` against ``labels`` (TFRS's argument order)."""
        if not isinstance(self.loss_fn, str):
            kwargs = {} if mask is None else {"mask": mask}
            return self.loss_fn(predictions, labels, weights=sample_weight, **kwargs)
        if mask is not None:
            raise ValueError(
                f"Ranking: mask applies to list losses; {self.loss_fn!r} counts every example"
            )
        p, y, w = self._pointwise(labels, predictions, sample_weight)
        if host_checks_allowed(p, y, w):
            for arg, x in (("predictions", p), ("labels", y)):
                _check_nan("Ranking", arg, torch.isnan(x))
        # Mixed precision: the loss runs in float32 (at_least_float32).
        p, y = at_least_float32(p), at_least_float32(y)
        per_example = _keras_pointwise(self.loss_fn, p, y, self.from_logits)
        if w is not None:
            per_example = per_example * w
        return per_example.sum() / max(p.shape[0], 1)

    def forward(
        self,
        labels: torch.Tensor,
        predictions: torch.Tensor,
        sample_weight: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        return self.loss(labels, predictions, sample_weight, mask)

    def metrics(
        self,
        labels: torch.Tensor,
        predictions: torch.Tensor,
        sample_weight: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
    ) -> dict[str, Any]:
        """``{name: terms}`` per metric, for ``train.evaluate`` to accumulate exactly.

        List metrics take ``[B, L]`` lists (with ``mask``); pointwise metrics take ``[B]`` /
        ``[B, 1]`` inputs, or ``[B, L]`` lists whose every item counts (as Keras metrics
        flatten them). For a batch's own value use the functions of ``torchrs_fn.metrics``.
        """
        from .. import metrics as m  # tasks may import metrics (the design's downward order)

        out: dict[str, Any] = {}
        for name, base, cut in self.metric_specs:
            if base in _LIST_METRICS:
                kwargs: dict[str, Any] = {"mask": mask, "weights": sample_weight}
                if cut is not None:
                    kwargs["topn"] = cut
                out[name] = getattr(m, base)(predictions, labels, reduction="none", **kwargs)
                continue
            if predictions.ndim == 2 and predictions.shape[1] > 1:
                # Lists [B, L]: pointwise metrics over every item (as Keras metrics flatten).
                p, y, w = predictions, labels.to(predictions.dtype), sample_weight
            else:
                p, y, w = self._pointwise(labels, predictions, sample_weight)
            if base == "auc":
                scores = torch.sigmoid(p) if self.from_logits else p
                out[name] = m.auc_update(m.auc_init(p.device), scores, y, w)
            elif base in ("binary_accuracy", "log_loss"):
                out[name] = getattr(m, base)(
                    p, y, weights=w, from_logits=self.from_logits, reduction="none"
                )
            else:
                out[name] = getattr(m, base)(p, y, weights=w, reduction="none")
        return out
