"""Ranking metrics: Keras's pointwise metrics and TF-Ranking's list metrics as pure functions.

Pointwise metrics (``rmse``, ``mae``, ``binary_accuracy``, ``log_loss``, ``auc``) take predictions
and labels of any one shape (flattened) and optional ``weights`` of that shape or a prefix of it
(``[B]`` for ``[B, L]`` inputs weighs each row, as a Keras ``sample_weight`` does).

List metrics (``ndcg``, ``dcg``, ``mrr``, ``mean_average_precision``, ``precision``, ``recall``,
``ordered_pair_accuracy``) take ``scores [B, L]`` and ``labels [B, L]``: B lists of L items.
They follow TF-Ranking's ``metrics_impl``:

- Padding: an item with a negative label, ``mask`` False or weight 0 is not in its list: it is
  ranked after every real item and counts nowhere. (TF-Ranking reads padding from the labels only
  when no mask is given; here a negative label is padding either way.)
- Gain ``2^label - 1`` and discount ``1 / log2(rank + 1)`` (ranks from 1) for ``ndcg``/``dcg``;
  an item is relevant for ``mrr``/``precision``/``recall``/``mean_average_precision`` when its
  label is at least 1 (TF-Ranking's ``labels >= 1.0``; a label of 0.5 is not relevant).
- Ties in scores: TF-Ranking shuffles tied items at random before sorting, so its value on ties is
  random. Here ties keep their order in the list (the earlier item ranks first): deterministic,
  and one of the orders TF-Ranking draws. ``ordered_pair_accuracy`` counts a tied pair as wrong,
  as TF-Ranking does.
- ``topn``: a Python int (static), the cut-off; larger than L means the whole list, as in
  TF-Ranking (``topn=None``).
- Weights: ``None``, per list (``[B]`` or ``[B, 1]``) or per item (``[B, L]``). Each list gets a
  weight as in TF-Ranking: the mean item weight over its relevant items (weighted by gain for
  ``ndcg``/``dcg``), so with unit weights every real list weighs 1. The metric is the weighted
  mean of the per-list values. ``ordered_pair_accuracy`` weighs a list by its ordered pairs.
- A list without a relevant item has value 0 and still counts in the mean (TF-Ranking's
  ``divide_no_nan``), except for ``ordered_pair_accuracy``, where a list without an ordered pair
  weighs 0. Its weight is the mean weight of its real items (1 with unit weights, as in
  TF-Ranking). TF-Ranking gives it the batch's average list weight instead, so that with uneven
  weights a list's weight depends on the rest of its batch and a mean over shards differs from
  the mean over the whole data; the two rules agree when all weights are 1.
- A list that is all padding weighs 0 (TF-Ranking counts it, with value 0, unless its weights
  are 0); if every list is padding the mean is 0 (``divide_no_nan``), never NaN.

Accumulating over batches (one mechanism for every metric but AUC): ``reduction="none"`` returns
``MetricTerms(values, weights)``, the ``[N]`` per-list (or per-example) values and weights whose
weighted mean is the metric, and ``aggregate.mean_update(state, *terms)`` folds them into a
``MeanState``; ``mean_merge`` combines shards and ``mean_result`` reads the mean. For ``rmse`` the
values are the squared errors, returned as ``RootMeanTerms`` (a ``MetricTerms``), so the
accumulated mean is the MSE: ``train.evaluate`` (or you, after ``mean_result``) takes its square
root. AUC is not a mean of per-example terms: ``AUCState`` keeps the examples
themselves (``auc_init`` / ``auc_update`` / ``auc_merge`` / ``auc_result``) and is exact.

Every metric is a function of tensors without host syncs (except the eager input checks, skipped
under ``torch.compile`` and on ``vmap``-batched tensors), so ``grad``, ``vmap`` and ``compile``
compose over them. Sorting makes list metrics piecewise constant in the scores: their gradient
with respect to the scores is exactly 0; ``ndcg``/``dcg``/``mean_average_precision`` are
differentiable in the weights, and ``ndcg``/``dcg`` in the labels through the gain.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, NamedTuple

import torch

from .._transforms import host_checks_allowed

__all__ = [
    "MetricTerms",
    "RootMeanTerms",
    "rmse",
    "mae",
    "binary_accuracy",
    "log_loss",
    "auc",
    "ndcg",
    "dcg",
    "mrr",
    "mean_average_precision",
    "precision",
    "recall",
    "ordered_pair_accuracy",
    "AUCState",
    "auc_init",
    "auc_update",
    "auc_merge",
    "auc_result",
]

Reduction = Literal["mean", "none"]
KERAS_EPSILON = 1e-7  # Keras's backend.epsilon(): log_loss clips probabilities to [eps, 1 - eps]


class MetricTerms(NamedTuple):
    """A metric before its mean: ``values [N]`` and ``weights [N]`` (per list or per example).

    The metric is ``sum(values * weights) / sum(weights)`` (``rmse``: the square root of it);
    ``aggregate.mean_update(state, *terms)`` accumulates it.
    """

    values: torch.Tensor
    weights: torch.Tensor


class RootMeanTerms(MetricTerms):
    """``MetricTerms`` whose metric is the square root of the weighted mean (``rmse``'s squared
    errors): ``train.evaluate`` takes the root after accumulating."""


# --- checks ------------------------------------------------------------------------------------


def _raise_if(bad: Callable[[], torch.Tensor], message: str, *tensors: torch.Tensor | None) -> None:
    """Raise ``ValueError(message)`` if ``bad()`` (a bool tensor of ``tensors``) is anywhere true;
    only eagerly: the values are read on the host."""
    if host_checks_allowed(*tensors) and bool(bad().any()):
        raise ValueError(message)


def _check_tensor(fn: str, name: str, x: object) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{fn}: {name} must be a tensor, got {type(x).__name__}")
    if x.is_complex() or x.dtype == torch.bool:
        raise TypeError(f"{fn}: {name} must be real numbers, got {x.dtype}")
    return x


def _check_reduction(fn: str, reduction: str) -> None:
    if reduction not in ("mean", "none"):
        raise ValueError(f'{fn}: reduction must be "mean" or "none", got {reduction!r}')


def _check_weights_values(fn: str, w: torch.Tensor) -> None:
    _raise_if(
        lambda: ~torch.isfinite(w) | (w < 0),
        f"{fn}: weights must be finite and non-negative, got NaN, inf or a negative weight",
        w,
    )


def _float_dtype(*tensors: torch.Tensor | None) -> torch.dtype:
    dtype = None
    for t in tensors:
        if t is not None and t.is_floating_point():
            dtype = t.dtype if dtype is None else torch.promote_types(dtype, t.dtype)
    return torch.get_default_dtype() if dtype is None else dtype


def _safe_div(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    """``num / den`` where ``den > 0``, else 0; the denominator is sanitised before dividing so
    that neither the value nor its gradient is ever NaN."""
    ok = den > 0
    return torch.where(ok, num / torch.where(ok, den, torch.ones_like(den)), torch.zeros_like(num))


def _reduce(
    values: torch.Tensor, weights: torch.Tensor, reduction: str
) -> torch.Tensor | MetricTerms:
    if reduction == "none":
        return MetricTerms(values, weights)
    return _safe_div((values * weights).sum(), weights.sum())


# --- pointwise metrics ------------------------------------------------------------------------


def _pointwise(
    fn: str,
    predictions: torch.Tensor,
    labels: torch.Tensor,
    weights: torch.Tensor | float | None,
    pred_name: str = "predictions",
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Checked, flattened ``(predictions [N], labels [N], weights [N])`` in one float dtype."""
    p = _check_tensor(fn, pred_name, predictions)
    y = _check_tensor(fn, "labels", labels)
    if y.shape != p.shape:
        raise ValueError(
            f"{fn}: labels must have the shape of {pred_name} {tuple(p.shape)}, got "
            f"{tuple(y.shape)}"
        )
    w = None
    if weights is not None:
        w = weights if isinstance(weights, torch.Tensor) else torch.as_tensor(weights)
        _check_tensor(fn, "weights", w)
        if w.shape != p.shape[: w.ndim]:
            raise ValueError(
                f"{fn}: weights must have the shape of {pred_name} {tuple(p.shape)} or a prefix "
                f"of it (e.g. [B] to weigh rows), got {tuple(w.shape)}"
            )
    dtype = _float_dtype(p, y, w)
    _raise_if(lambda: torch.isnan(p), f"{fn}: {pred_name} contain NaN", p)
    _raise_if(lambda: torch.isnan(y), f"{fn}: labels contain NaN", y)
    p, y = p.to(dtype).reshape(-1), y.to(dtype).reshape(-1)
    if w is None:
        return p, y, torch.ones_like(p)
    _check_weights_values(fn, w)
    w = w.to(dtype=dtype, device=p.device)
    w = w.reshape(w.shape + (1,) * (predictions.ndim - w.ndim)).expand(predictions.shape)
    return p, y, w.reshape(-1)


def rmse(
    predictions: torch.Tensor,
    labels: torch.Tensor,
    *,
    weights: torch.Tensor | float | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor | MetricTerms:
    """Root mean squared error, Keras ``RootMeanSquaredError``: ``sqrt(mean(w (p - y)^2))``.

    Args:
        predictions: any shape (flattened).
        labels: the shape of ``predictions``.
        weights: the shape of ``predictions`` or a prefix of it; ``None``: all 1.
        reduction: ``"mean"``: 0-d; ``"none"``: ``RootMeanTerms`` of the ``[N]`` *squared* errors
            and weights (accumulate them, then take the square root of the mean).

    The square root of an MSE of exactly 0 has no derivative; its gradient there is 0 (a
    subgradient), never NaN. No weight (or all 0) gives 0.
    """
    _check_reduction("rmse", reduction)
    p, y, w = _pointwise("rmse", predictions, labels, weights)
    sq = (p - y) ** 2
    if reduction == "none":
        return RootMeanTerms(sq, w)
    mse = _reduce(sq, w, "mean")
    pos = mse > 0
    return torch.where(
        pos, torch.sqrt(torch.where(pos, mse, torch.ones_like(mse))), torch.zeros_like(mse)
    )


def mae(
    predictions: torch.Tensor,
    labels: torch.Tensor,
    *,
    weights: torch.Tensor | float | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor | MetricTerms:
    """Mean absolute error, Keras ``MeanAbsoluteError``: ``mean(w |p - y|)``.

    Shapes and ``reduction`` as ``rmse`` (``"none"``: the ``[N]`` absolute errors and weights).
    At ``p == y`` the gradient is 0 (a subgradient).
    """
    _check_reduction("mae", reduction)
    p, y, w = _pointwise("mae", predictions, labels, weights)
    return _reduce((p - y).abs(), w, reduction)


def _check_probabilities(fn: str, p: torch.Tensor) -> None:
    _raise_if(
        lambda: (p < 0) | (p > 1),
        f"{fn}: predictions must be probabilities in [0, 1] (pass from_logits=True for logits)",
        p,
    )


def binary_accuracy(
    predictions: torch.Tensor,
    labels: torch.Tensor,
    *,
    weights: torch.Tensor | float | None = None,
    threshold: torch.Tensor | float = 0.5,
    from_logits: bool = False,
    reduction: Reduction = "mean",
) -> torch.Tensor | MetricTerms:
    """Keras ``BinaryAccuracy``: the (weighted) share of ``(p > threshold) == label``.

    Args:
        predictions: probabilities in ``[0, 1]`` (Keras's input), or logits with
            ``from_logits=True`` (then ``logit > log(t / (1 - t))``, i.e. ``logit > 0`` at 0.5,
            which is ``sigmoid(logit) > t`` without sigmoid's rounding).
        labels: 0 or 1, compared for equality with the predicted class as Keras does (a label
            that is neither never matches). Same shape as ``predictions``.
        weights: the shape of ``predictions`` or a prefix of it.
        threshold: a float or a 0-d tensor (a hyperparameter ``vmap`` may batch); with
            ``from_logits`` it must lie strictly between 0 and 1.
        reduction: ``"mean"``: 0-d; ``"none"``: ``MetricTerms`` of ``[N]`` 1.0 / 0.0 and weights.

    Piecewise constant: the gradient in predictions and labels is exactly 0.
    """
    fn = "binary_accuracy"
    _check_reduction(fn, reduction)
    p, y, w = _pointwise(fn, predictions, labels, weights)
    if isinstance(threshold, torch.Tensor):
        t = threshold.to(dtype=p.dtype, device=p.device)
    else:
        t = torch.tensor(float(threshold), dtype=p.dtype, device=p.device)
    if t.ndim != 0:
        raise ValueError(f"{fn}: threshold must be a float or a 0-d tensor, got {tuple(t.shape)}")
    if from_logits:
        _raise_if(
            lambda: (t <= 0) | (t >= 1),
            f"{fn}: with from_logits=True threshold must lie in (0, 1), got {threshold}",
            t,
        )
        t = torch.logit(t)
    else:
        _check_probabilities(fn, p)
    hit = (p > t).to(p.dtype) == y
    return _reduce(hit.to(p.dtype), w, reduction)


def log_loss(
    predictions: torch.Tensor,
    labels: torch.Tensor,
    *,
    weights: torch.Tensor | float | None = None,
    from_logits: bool = False,
    reduction: Reduction = "mean",
) -> torch.Tensor | MetricTerms:
    """Binary cross-entropy, Keras ``BinaryCrossentropy`` metric: ``-(y log p + (1-y) log(1-p))``.

    Args:
        predictions: probabilities in ``[0, 1]``, clipped to ``[1e-7, 1 - 1e-7]`` before the log
            as Keras 3 does (``KERAS_EPSILON``; tf.keras 2 also added 1e-7 inside the log), so a
            confident wrong prediction costs about 16.1, not infinity; beyond the clip the
            gradient in ``predictions`` is 0. With ``from_logits=True``: logits, computed
            stably as ``-(y logsigmoid(x) + (1-y) logsigmoid(-x))`` without clipping.
        labels: in ``[0, 1]`` (soft labels allowed), the shape of ``predictions``.
        weights: the shape of ``predictions`` or a prefix of it.
        reduction: ``"mean"``: 0-d; ``"none"``: ``MetricTerms`` of the ``[N]`` losses and weights.
    """
    fn = "log_loss"
    _check_reduction(fn, reduction)
    p, y, w = _pointwise(fn, predictions, labels, weights)
    if from_logits:
        loss = -(
            y * torch.nn.functional.logsigmoid(p) + (1 - y) * torch.nn.functional.logsigmoid(-p)
        )
    else:
        _check_probabilities(fn, p)
        q = p.clamp(KERAS_EPSILON, 1 - KERAS_EPSILON)
        loss = -(y * torch.log(q) + (1 - y) * torch.log1p(-q))
    return _reduce(loss, w, reduction)


# --- AUC ---------------------------------------------------------------------------------------


def _auc_flat(s: torch.Tensor, y: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Exact AUC of flat ``[N]`` scores, labels in [0, 1] and weights >= 0: one sort,
    O(N log N), static shapes."""
    pos, neg = w * y, w * (1 - y)
    n = s.shape[0]
    if n == 0:
        return s.new_zeros(())
    order = torch.sort(s, stable=True).indices
    ss = s.gather(0, order)
    at = torch.arange(n, device=s.device)
    differs = ss[1:] != ss[:-1]
    yes = torch.ones(1, dtype=torch.bool, device=s.device)
    first = torch.cat([yes, differs])  # starts a run of tied scores
    last = torch.cat([differs, yes])  # ends one
    start = torch.cummax(torch.where(first, at, torch.zeros_like(at)), 0).values
    end = torch.cummin(torch.where(last, at, torch.full_like(at, n)).flip(0), 0).values.flip(0)
    # below[k] + tied[k] / 2 = (c[start] + c[end + 1]) / 2, c the cumulative negative mass.
    c = torch.cat([neg.new_zeros(1), torch.cumsum(neg.gather(0, order), 0)])
    beaten = 0.5 * (c.gather(0, start) + c.gather(0, end + 1))
    return _safe_div((pos.gather(0, order) * beaten).sum(), pos.sum() * neg.sum())


def _auc_inputs(fn, scores, labels, weights):
    s, y, w = _pointwise(fn, scores, labels, weights, pred_name="scores")
    _raise_if(
        lambda: (y < 0) | (y > 1), f"{fn}: labels must lie in [0, 1] (1 positive, 0 negative)", y
    )
    return s, y, w


def auc(
    scores: torch.Tensor,
    labels: torch.Tensor,
    *,
    weights: torch.Tensor | float | None = None,
) -> torch.Tensor:
    """Exact ROC AUC as the Mann–Whitney statistic: the chance a positive outscores a negative.

    ``sum_ij pos_i neg_j [s_i > s_j] + 1/2 [s_i == s_j]`` over ``sum(pos) sum(neg)``, with
    ``pos = w y`` and ``neg = w (1 - y)``: with 0/1 labels, the weighted share of (positive,
    negative) pairs ranked right, ties counting half (sklearn's ``roc_auc_score``). A soft label
    splits its example's weight between the classes (the example then also ties with itself).
    Keras's ``AUC`` approximates this with 200 thresholds; this is exact, by one sort
    (O(N log N)), with no data-dependent shapes.

    Args:
        scores: any shape (flattened); any real values, only their order matters.
        labels: in ``[0, 1]``, the shape of ``scores``.
        weights: the shape of ``scores`` or a prefix of it; ``None``: all 1.

    Returns:
        0-d; 0 when there is no positive or no negative weight (Keras gives 0 there too).
    """
    return _auc_flat(*_auc_inputs("auc", scores, labels, weights))


class AUCState(NamedTuple):
    """An exact AUC in progress: every example seen, flat ``[N]`` float64 tensors.

    Memory is O(examples); merging concatenates, so the result is exactly ``auc`` of all the
    data (float64 holds float32 scores exactly, so ties are kept).
    """

    scores: torch.Tensor
    labels: torch.Tensor
    weights: torch.Tensor


def auc_init(device: torch.device | str | None = None) -> AUCState:
    """An empty AUC state (no examples)."""
    z = torch.zeros(0, dtype=torch.float64, device=device)
    return AUCState(z, z.clone(), z.clone())


def auc_update(
    state: AUCState,
    scores: torch.Tensor,
    labels: torch.Tensor,
    weights: torch.Tensor | float | None = None,
) -> AUCState:
    """Append a batch (arguments as ``auc``); differentiable in the state and the batch.

    The result lives on the batch's device: a state from ``auc_init()`` (CPU) takes a CUDA batch,
    and a state moves with its batches.
    """
    s, y, w = _auc_inputs("auc_update", scores, labels, weights)
    f64, dev = torch.float64, s.device
    return AUCState(
        torch.cat([state.scores.to(dev), s.to(f64)]),
        torch.cat([state.labels.to(dev), y.to(f64)]),
        torch.cat([state.weights.to(dev), w.to(f64)]),
    )


def auc_merge(a: AUCState, b: AUCState) -> AUCState:
    """Combine two partial states (``a``'s examples first)."""
    return AUCState(*(torch.cat([x, y]) for x, y in zip(a, b)))


def auc_result(state: AUCState) -> float:
    """The AUC of every example folded in, as a Python float (0 with no positive or negative)."""
    return float(_auc_flat(state.scores, state.labels, state.weights))


# --- list metrics -----------------------------------------------------------------------------


class _Lists(NamedTuple):
    """Checked lists: padding entries hold 0 in scores, labels and weights."""

    scores: torch.Tensor  # [B, L]
    labels: torch.Tensor  # [B, L]
    weights: torch.Tensor  # [B, L]
    valid: torch.Tensor  # [B, L] bool
    k: int  # the cut-off, at most L


def _lists(
    fn: str,
    scores: torch.Tensor,
    labels: torch.Tensor,
    mask: torch.Tensor | None,
    weights: torch.Tensor | None,
    topn: int | None,
    reduction: str,
) -> _Lists:
    _check_reduction(fn, reduction)
    s = _check_tensor(fn, "scores", scores)
    y = _check_tensor(fn, "labels", labels)
    if s.ndim != 2:
        raise ValueError(
            f"{fn}: scores must be 2-D [B, L] (B lists of L items), got {tuple(s.shape)}"
        )
    if y.shape != s.shape:
        raise ValueError(
            f"{fn}: labels must have the shape of scores {tuple(s.shape)}, got {tuple(y.shape)}"
        )
    b, n = s.shape
    if mask is not None:
        if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool:
            raise TypeError(
                f"{fn}: mask must be a bool tensor, got "
                f"{getattr(mask, 'dtype', type(mask).__name__)}"
            )
        if mask.shape != s.shape:
            raise ValueError(
                f"{fn}: mask must have the shape of scores {tuple(s.shape)}, got "
                f"{tuple(mask.shape)}"
            )
    w = weights
    if w is not None:
        _check_tensor(fn, "weights", w)
        if w.shape not in ((b,), (b, 1), (b, n)):
            raise ValueError(
                f"{fn}: weights must be per list [{b}] or [{b}, 1], or per item [{b}, {n}], got "
                f"{tuple(w.shape)}"
            )
    if topn is not None:
        if isinstance(topn, bool) or not isinstance(topn, int):
            raise TypeError(
                f"{fn}: topn must be a Python int or None (a static cut-off), got {topn!r}"
            )
        if topn <= 0:
            raise ValueError(f"{fn}: topn must be positive, got {topn}")
    dtype = _float_dtype(s, y, w)
    s, y = s.to(dtype), y.to(dtype)
    if w is None:
        w = torch.ones_like(s)
    else:
        _check_weights_values(fn, w)
        w = w.to(dtype=dtype, device=s.device)
        w = (w.unsqueeze(1) if w.ndim == 1 else w).expand(b, n)

    def bad_labels() -> torch.Tensor:
        bad = torch.isnan(y) | torch.isposinf(y)
        return bad if mask is None else bad & mask

    _raise_if(
        bad_labels,
        f"{fn}: labels contain NaN or +inf (mark padding with a negative label or mask=False)",
        y,
        mask,
    )
    valid = (y >= 0) & (w > 0)
    if mask is not None:
        valid = valid & mask
    _raise_if(
        lambda: torch.isnan(s) & valid, f"{fn}: scores contain NaN (outside padding)", s, valid
    )
    zero = torch.zeros_like(s)
    k = n if topn is None else min(topn, n)
    return _Lists(
        torch.where(valid, s, zero),
        torch.where(valid, y, zero),
        torch.where(valid, w, zero),
        valid,
        k,
    )


def _order(keys: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """``[B, L]`` item indices by descending key, ties in list order, padding last."""
    by_key = torch.sort(keys, dim=-1, descending=True, stable=True).indices
    real_first = torch.sort(
        valid.gather(-1, by_key).to(torch.uint8), dim=-1, descending=True, stable=True
    )
    return by_key.gather(-1, real_first.indices)


def _top(x: torch.Tensor, order: torch.Tensor, k: int) -> torch.Tensor:
    """``[B, k]``: ``x`` in ranked order, cut at k."""
    return x.gather(-1, order[:, :k])


def _ranks(k: int, like: torch.Tensor) -> torch.Tensor:
    return torch.arange(1, k + 1, dtype=like.dtype, device=like.device)


def _gain(labels: torch.Tensor) -> torch.Tensor:
    return torch.exp2(labels) - 1


def _relevant(lists: _Lists) -> torch.Tensor:
    return (lists.labels >= 1).to(lists.labels.dtype)


def _list_weights(lists: _Lists, relevance: torch.Tensor) -> torch.Tensor:
    """``[B]``: relevance-weighted mean item weight; without relevance, the mean item weight."""
    per_relevant = _safe_div((lists.weights * relevance).sum(-1), relevance.sum(-1))
    per_item = _safe_div(lists.weights.sum(-1), lists.valid.sum(-1).to(lists.weights.dtype))
    return torch.where(relevance.sum(-1) > 0, per_relevant, per_item)


def _dcg_sums(lists: _Lists) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``[B]`` weighted DCG at k, ideal DCG at k, and the per-item weighted gains ``[B, L]``."""
    gain = _gain(lists.labels)
    weighted = lists.weights * gain
    discount = 1.0 / torch.log2(_ranks(lists.k, weighted) + 1)
    order = _order(lists.scores, lists.valid)
    ideal = _order(weighted, lists.valid)
    dcg = (_top(weighted, order, lists.k) * discount).sum(-1)
    best = (_top(weighted, ideal, lists.k) * discount).sum(-1)
    return dcg, best, gain


def ndcg(
    scores: torch.Tensor,
    labels: torch.Tensor,
    *,
    topn: int | None = None,
    mask: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor | MetricTerms:
    """Normalized DCG, TF-Ranking's ``NDCGMetric``: DCG@k over the ideal DCG@k of each list.

    With per-item weights the gains are weighted, and the ideal order sorts the weighted gains,
    as in TF-Ranking. A list's weight is its gain-weighted mean item weight. A list without gain
    has NDCG 0 and counts.

    Args:
        scores: ``[B, L]`` the model's scores; higher ranks first.
        labels: ``[B, L]`` graded relevance; a negative label marks padding.
        topn: a Python int cut-off; ``None`` (or more than L): the whole list.
        mask: ``[B, L]`` bool; False marks padding (as well as negative labels).
        weights: ``[B]`` / ``[B, 1]`` per list or ``[B, L]`` per item; weight 0 marks padding.
        reduction: ``"mean"``: the weighted mean over lists, 0-d (0 if no list weighs anything);
            ``"none"``: ``MetricTerms`` of the ``[B]`` per-list values and list weights.
    """
    lists = _lists("ndcg", scores, labels, mask, weights, topn, reduction)
    dcg_, best, gain = _dcg_sums(lists)
    return _reduce(_safe_div(dcg_, best), _list_weights(lists, gain), reduction)


def dcg(
    scores: torch.Tensor,
    labels: torch.Tensor,
    *,
    topn: int | None = None,
    mask: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor | MetricTerms:
    """Discounted cumulative gain, TF-Ranking's ``DCGMetric``: ``sum_i (2^y_i - 1) / log2(1 + i)``.

    With weights, each list's weighted DCG is divided by the list's weight (its gain-weighted
    mean item weight), which the mean over lists then multiplies back, as in TF-Ranking.
    Arguments as ``ndcg``.
    """
    lists = _lists("dcg", scores, labels, mask, weights, topn, reduction)
    dcg_, _, gain = _dcg_sums(lists)
    list_weights = _list_weights(lists, gain)
    return _reduce(_safe_div(dcg_, list_weights), list_weights, reduction)


def mrr(
    scores: torch.Tensor,
    labels: torch.Tensor,
    *,
    topn: int | None = None,
    mask: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor | MetricTerms:
    """Mean reciprocal rank, TF-Ranking's ``MRRMetric``: 1 / the rank of the first relevant item
    (label >= 1) in the top k, 0 if there is none. Weights act through the list weights only.
    Arguments as ``ndcg``.
    """
    lists = _lists("mrr", scores, labels, mask, weights, topn, reduction)
    rel = _relevant(lists)
    top = _top(rel, _order(lists.scores, lists.valid), lists.k)
    first = top * (torch.cumsum(top, -1) == 1).to(top.dtype)
    return _reduce((first / _ranks(lists.k, top)).sum(-1), _list_weights(lists, rel), reduction)


def precision(
    scores: torch.Tensor,
    labels: torch.Tensor,
    *,
    topn: int | None = None,
    mask: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor | MetricTerms:
    """Precision@k, TF-Ranking's ``PrecisionMetric``: relevant items (label >= 1) in the top k
    over ``min(k, real items in the list)``. Weights act through the list weights only.
    Arguments as ``ndcg``.
    """
    lists = _lists("precision", scores, labels, mask, weights, topn, reduction)
    rel = _relevant(lists)
    hits = _top(rel, _order(lists.scores, lists.valid), lists.k).sum(-1)
    shown = lists.valid.sum(-1).clamp(max=lists.k).to(rel.dtype)  # k, or fewer real items
    return _reduce(_safe_div(hits, shown), _list_weights(lists, rel), reduction)


def recall(
    scores: torch.Tensor,
    labels: torch.Tensor,
    *,
    topn: int | None = None,
    mask: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor | MetricTerms:
    """Recall@k, TF-Ranking's ``RecallMetric``: relevant items (label >= 1) in the top k over
    all relevant items of the list (0 without any). Weights act through the list weights only.
    Arguments as ``ndcg``.
    """
    lists = _lists("recall", scores, labels, mask, weights, topn, reduction)
    rel = _relevant(lists)
    hits = _top(rel, _order(lists.scores, lists.valid), lists.k).sum(-1)
    return _reduce(_safe_div(hits, rel.sum(-1)), _list_weights(lists, rel), reduction)


def mean_average_precision(
    scores: torch.Tensor,
    labels: torch.Tensor,
    *,
    topn: int | None = None,
    mask: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor | MetricTerms:
    """Mean average precision, TF-Ranking's ``MeanAveragePrecisionMetric``.

    Per list: the sum over relevant items (label >= 1) in the top k of ``weight * precision at
    their rank``, over the weighted count of *all* relevant items of the list (so a relevant item
    below the cut-off counts as a miss), 0 without any.
    Arguments as ``ndcg``.
    """
    lists = _lists("mean_average_precision", scores, labels, mask, weights, topn, reduction)
    rel = _relevant(lists)
    order = _order(lists.scores, lists.valid)
    top, top_w = _top(rel, order, lists.k), _top(lists.weights, order, lists.k)
    at_rank = torch.cumsum(top, -1) / _ranks(lists.k, top)
    ap = _safe_div((at_rank * top * top_w).sum(-1), (lists.weights * rel).sum(-1))
    return _reduce(ap, _list_weights(lists, rel), reduction)


def ordered_pair_accuracy(
    scores: torch.Tensor,
    labels: torch.Tensor,
    *,
    mask: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor | MetricTerms:
    """Ordered pair accuracy, TF-Ranking's ``OPAMetric``: the weighted share of pairs with
    ``label_i > label_j`` that the scores order right (``s_i > s_j``; a tie is wrong).

    A pair weighs the weight of its better-labelled item; a list weighs the sum of its pairs'
    weights, so the mean over lists is the weighted share over all pairs of all lists, and a list
    without an ordered pair weighs 0. There is no cut-off (TF-Ranking's has none). O(B L^2).

    Arguments as for ``ndcg`` (without ``topn``).
    """
    fn = "ordered_pair_accuracy"
    lists = _lists(fn, scores, labels, mask, weights, None, reduction)
    s, y, v = lists.scores, lists.labels, lists.valid
    pairs = (y.unsqueeze(2) > y.unsqueeze(1)) & v.unsqueeze(2) & v.unsqueeze(1)
    pair_w = pairs.to(s.dtype) * lists.weights.unsqueeze(2)
    right = (s.unsqueeze(2) > s.unsqueeze(1)).to(s.dtype)
    list_w = pair_w.sum((1, 2))
    return _reduce(_safe_div((pair_w * right).sum((1, 2)), list_w), list_w, reduction)
