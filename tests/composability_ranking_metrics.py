"""Composability cases of ranking metrics (a part of ``composability_cases.CASES``).

The brute-force references live here (``ref_*``) and serve ``tests/test_metrics/
test_ranking_metrics.py`` too. They walk each list in Python: the real items (label >= 0, mask
True, weight > 0), ``sorted`` by (-score, position), plain ``math`` for the discounts, and 0-d
tensor arithmetic so that autograd gives their gradients.
"""

from __future__ import annotations

import math

import composability_cases as cc
import torch

from torchrs_fn.metrics.ranking import (
    AUCState,
    MetricTerms,
    RootMeanTerms,
    auc,
    auc_merge,
    auc_update,
    binary_accuracy,
    dcg,
    log_loss,
    mae,
    mean_average_precision,
    mrr,
    ndcg,
    ordered_pair_accuracy,
    precision,
    recall,
    rmse,
)

_F64 = torch.float64


def _num(x) -> float:
    """A Python float of a value (a tensor is read without its autograd graph)."""
    return float(x.detach()) if isinstance(x, torch.Tensor) else float(x)


def _zero() -> torch.Tensor:
    return torch.zeros((), dtype=_F64)


def _total(xs) -> torch.Tensor:
    out = _zero()
    for x in xs:
        out = out + x
    return out


# --- references: lists -----------------------------------------------------------------------


def _item_weight(weights, b: int, i: int):
    if weights is None:
        return torch.ones((), dtype=_F64)
    if weights.ndim == 1:
        return weights[b]
    return weights[b, 0] if weights.shape[1] == 1 else weights[b, i]


def _real_items(labels, mask, weights, b: int) -> list[int]:
    return [
        i
        for i in range(labels.shape[1])
        if _num(labels[b, i]) >= 0
        and (mask is None or bool(mask[b, i]))
        and _num(_item_weight(weights, b, i)) > 0
    ]


def _ranked(scores, items: list[int], b: int) -> list[int]:
    """Best score first; a tie goes to the item earlier in the list."""
    return sorted(items, key=lambda i: (-_num(scores[b, i]), i))


def _gain(label):
    return 2.0**label - 1.0


def _discount(position: int) -> float:
    return 1.0 / math.log2(position + 1)


def _ratio(num, den):
    return num / den if _num(den) > 0 else _zero()


def _list_weight(labels, weights, items, b, relevance) -> torch.Tensor:
    """TF-Ranking's list weight: relevance-weighted mean weight; without relevance, the mean
    weight of the real items (0 for a list of padding)."""
    rel = [relevance(labels[b, i]) for i in items]
    ws = [_item_weight(weights, b, i) for i in items]
    if _num(_total(rel)) > 0:
        return _total(w * r for w, r in zip(ws, rel)) / _total(rel)
    return _total(ws) / len(ws) if ws else _zero()


def _binary(label):
    return torch.ones((), dtype=_F64) if _num(label) >= 1 else _zero()


def _ref_dcg_parts(scores, labels, mask, weights, b, topn):
    items = _real_items(labels, mask, weights, b)
    cut = len(items) if topn is None else topn

    def weighted_gain(i):
        return _item_weight(weights, b, i) * _gain(labels[b, i])

    def dcg_of(order):
        return _total(weighted_gain(i) * _discount(p) for p, i in enumerate(order[:cut], 1))

    ideal = sorted(items, key=lambda i: (-_num(weighted_gain(i)), i))
    lw = _list_weight(labels, weights, items, b, _gain)
    return dcg_of(_ranked(scores, items, b)), dcg_of(ideal), lw


def _ref_ndcg_list(scores, labels, mask, weights, b, topn):
    got, best, lw = _ref_dcg_parts(scores, labels, mask, weights, b, topn)
    return _ratio(got, best), lw


def _ref_dcg_list(scores, labels, mask, weights, b, topn):
    got, _, lw = _ref_dcg_parts(scores, labels, mask, weights, b, topn)
    return _ratio(got, lw), lw


def _ref_mrr_list(scores, labels, mask, weights, b, topn):
    items = _real_items(labels, mask, weights, b)
    top = _ranked(scores, items, b)[:topn]
    value = _zero()
    for position, i in enumerate(top, 1):
        if _num(labels[b, i]) >= 1:
            value = torch.tensor(1.0 / position, dtype=_F64)
            break
    return value, _list_weight(labels, weights, items, b, _binary)


def _ref_precision_list(scores, labels, mask, weights, b, topn):
    items = _real_items(labels, mask, weights, b)
    top = _ranked(scores, items, b)[:topn]
    hits = sum(1 for i in top if _num(labels[b, i]) >= 1)
    value = torch.tensor(hits / len(top) if top else 0.0, dtype=_F64)
    return value, _list_weight(labels, weights, items, b, _binary)


def _ref_recall_list(scores, labels, mask, weights, b, topn):
    items = _real_items(labels, mask, weights, b)
    top = _ranked(scores, items, b)[:topn]
    hits = sum(1 for i in top if _num(labels[b, i]) >= 1)
    relevant = sum(1 for i in items if _num(labels[b, i]) >= 1)
    value = torch.tensor(hits / relevant if relevant else 0.0, dtype=_F64)
    return value, _list_weight(labels, weights, items, b, _binary)


def _ref_map_list(scores, labels, mask, weights, b, topn):
    items = _real_items(labels, mask, weights, b)
    top = _ranked(scores, items, b)[:topn]
    found, precisions = 0, []
    for position, i in enumerate(top, 1):
        if _num(labels[b, i]) >= 1:
            found += 1
            precisions.append(_item_weight(weights, b, i) * (found / position))
    relevant = _total(_item_weight(weights, b, i) for i in items if _num(labels[b, i]) >= 1)
    value = _ratio(_total(precisions), relevant)
    return value, _list_weight(labels, weights, items, b, _binary)


def _ref_opa_list(scores, labels, mask, weights, b, topn):
    assert topn is None
    items = _real_items(labels, mask, weights, b)
    right, total = _zero(), _zero()
    for i in items:
        for j in items:
            if _num(labels[b, i]) > _num(labels[b, j]):
                w = _item_weight(weights, b, i)
                total = total + w
                if _num(scores[b, i]) > _num(scores[b, j]):
                    right = right + w
    return _ratio(right, total), total


def _ref_lists(per_list):
    """``ref(scores, labels, mask=None, weights=None, topn=None) -> (mean, MetricTerms)``."""

    def reference(scores, labels, mask=None, weights=None, topn=None):
        pairs = [per_list(scores, labels, mask, weights, b, topn) for b in range(scores.shape[0])]
        values = [v for v, _ in pairs]
        ws = [w for _, w in pairs]
        mean = _ratio(_total(v * w for v, w in pairs), _total(ws))
        empty = torch.zeros(0, dtype=_F64)
        terms = MetricTerms(
            torch.stack(values) if values else empty, torch.stack(ws) if ws else empty
        )
        return mean, terms

    return reference


ref_ndcg = _ref_lists(_ref_ndcg_list)
ref_dcg = _ref_lists(_ref_dcg_list)
ref_mrr = _ref_lists(_ref_mrr_list)
ref_precision = _ref_lists(_ref_precision_list)
ref_recall = _ref_lists(_ref_recall_list)
ref_mean_average_precision = _ref_lists(_ref_map_list)
ref_ordered_pair_accuracy = _ref_lists(_ref_opa_list)


# --- references: pointwise -------------------------------------------------------------------


def _flat_weights(predictions, weights) -> list:
    if weights is None:
        return [torch.ones((), dtype=_F64)] * predictions.numel()
    w = weights
    while w.ndim < predictions.ndim:
        w = w.unsqueeze(-1)
    return list(w.expand(predictions.shape).reshape(-1))


def _ref_pointwise(term, finish=lambda m: m, terms_type=MetricTerms):
    def reference(predictions, labels, weights=None, **options):
        ps, ys = list(predictions.reshape(-1)), list(labels.reshape(-1))
        ws = _flat_weights(predictions, weights)
        values = [term(p, y, **options) for p, y in zip(ps, ys)]
        mean = _ratio(_total(v * w for v, w in zip(values, ws)), _total(ws))
        return finish(mean), terms_type(torch.stack(values), torch.stack(ws))

    return reference


def _sqrt(m):
    return torch.sqrt(m) if _num(m) > 0 else _zero()


def _log_loss_term(p, y, from_logits=False):
    if from_logits:
        # log(1 + e^-x) written for both signs of x without overflow.
        x = p
        if _num(x) >= 0:
            nll_pos = torch.log1p(torch.exp(-x))
            nll_neg = x + torch.log1p(torch.exp(-x))
        else:
            nll_pos = -x + torch.log1p(torch.exp(x))
            nll_neg = torch.log1p(torch.exp(x))
        return y * nll_pos + (1 - y) * nll_neg
    eps = 1e-7
    if _num(p) < eps:
        p = torch.tensor(eps, dtype=_F64)
    elif _num(p) > 1 - eps:
        p = torch.tensor(1 - eps, dtype=_F64)
    return -(y * torch.log(p) + (1 - y) * torch.log(1 - p))


def _accuracy_term(p, y, threshold=0.5, from_logits=False):
    prob = 1 / (1 + math.exp(-_num(p))) if from_logits else _num(p)
    predicted = 1.0 if prob > _num(threshold) else 0.0
    return torch.tensor(1.0 if predicted == _num(y) else 0.0, dtype=_F64)


ref_rmse = _ref_pointwise(lambda p, y: (p - y) * (p - y), finish=_sqrt, terms_type=RootMeanTerms)
ref_mae = _ref_pointwise(lambda p, y: p - y if _num(p) >= _num(y) else y - p)
ref_log_loss = _ref_pointwise(_log_loss_term)
ref_binary_accuracy = _ref_pointwise(_accuracy_term)


def ref_auc(scores, labels, weights=None) -> torch.Tensor:
    """Every (positive, negative) pair of examples, ties half; example i is positive with weight
    ``w_i y_i`` and negative with weight ``w_i (1 - y_i)``."""
    ss, ys = list(scores.reshape(-1)), list(labels.reshape(-1))
    ws = _flat_weights(scores, weights)
    pos = [w * y for w, y in zip(ws, ys)]
    neg = [w * (1 - y) for w, y in zip(ws, ys)]
    num = _zero()
    for i in range(len(ss)):
        for j in range(len(ss)):
            if _num(ss[i]) > _num(ss[j]):
                num = num + pos[i] * neg[j]
            elif _num(ss[i]) == _num(ss[j]):
                num = num + 0.5 * pos[i] * neg[j]
    return _ratio(num, _total(pos) * _total(neg))


# --- inputs ----------------------------------------------------------------------------------

_B, _L = 4, 5


def list_inputs(seed: int) -> tuple:
    """(scores, labels, mask, weights) ``[4, 5]``: scores in halves (ties), graded labels 0..3;
    list 0 has a padding label, list 1 a masked item and a weight-0 item, list 2 no relevant
    item (one padding label), list 3 is all padding (masked)."""
    g = cc._gen(500 + seed)
    scores = torch.randint(0, 4, (_B, _L), generator=g).to(_F64) / 2
    labels = torch.randint(0, 4, (_B, _L), generator=g).to(_F64)
    labels[0, 4] = -1.0
    labels[1, 1] = 3.0
    labels[2] = torch.tensor([0.0, 0.0, -1.0, 0.0, 0.0], dtype=_F64)
    mask = torch.ones(_B, _L, dtype=torch.bool)
    mask[1, 0] = False
    mask[3] = False
    weights = torch.rand(_B, _L, generator=g, dtype=_F64) + 0.5
    weights[1, 3] = 0.0
    return scores, labels, mask, weights


def _default_inputs(seed: int) -> tuple:
    scores, labels, _, _ = list_inputs(seed)
    return scores, labels


_TOPN = 3
_ZERO_SCORES = "exact: 0 in the scores (piecewise constant)"
_TOPN_STATIC = "topn is a Python int (static)"
_NO_HPARAMS = "no hyperparameters"
_ZERO_ALL = "exact: 0 in scores and labels (piecewise constant); weights through list weights"


def _list_case(name: str, metric, reference, note: str, topn: int | None = _TOPN) -> cc.Case:
    options = {} if topn is None else {"topn": topn}

    def fn(scores, labels, mask, weights):
        kw = {"mask": mask, "weights": weights, **options}
        return metric(scores, labels, **kw), metric(scores, labels, reduction="none", **kw)

    def ref(scores, labels, mask, weights):
        return reference(scores, labels, mask, weights, topn)

    where = f"topn={topn}, " if topn is not None else ""
    return cc.Case(
        name=f"metrics.{name}",
        variant=f'{where}mask, per-item weights; reduction "mean" and "none"',
        kind="metric",
        make_inputs=list_inputs,
        fn=fn,
        reference=ref,
        grad_argnums=(0, 1, 3),
        # 0 in the scores is the exact answer; test_ranking_metrics checks the rest is not 0.
        nonzero_grad=False,
        transforms=cc.statuses(
            grad=cc.Checked(note),
            vmap_hparams=cc.NotApplicable(_TOPN_STATIC),
            vmap_grad=cc.Checked(note),
            compile_vmap_grad=cc.Checked(note),
        ),
    )


def _ndcg_defaults(scores, labels):
    return ndcg(scores, labels)


def _ndcg_defaults_reference(scores, labels):
    return ref_ndcg(scores, labels)[0]


# Pointwise: 7 examples with weights; probabilities in (0, 1) and one exactly 0 (clipped).
def pointwise_inputs(seed: int) -> tuple:
    """(predictions, labels, weights) ``[7]``, labels 0 / 1."""
    g = cc._gen(600 + seed)
    predictions = torch.rand(7, generator=g, dtype=_F64) * 0.9 + 0.05
    labels = torch.randint(0, 2, (7,), generator=g).to(_F64)
    weights = torch.rand(7, generator=g, dtype=_F64) + 0.25
    return predictions, labels, weights


def _regression_inputs(seed: int) -> tuple:
    p, _, w = pointwise_inputs(seed)
    y = torch.randn(7, generator=cc._gen(650 + seed), dtype=_F64)
    return p * 3, y, w


def _log_loss_inputs(seed: int) -> tuple:
    p, _, w = pointwise_inputs(seed)
    p = p.clone()
    p[2] = 0.0  # below Keras's clip: costs -log(1e-7), gradient 0 in p
    y = torch.rand(7, generator=cc._gen(660 + seed), dtype=_F64)  # soft labels
    return p.reshape(7, 1), y.reshape(7, 1), w  # [B, 1] predictions, [B] weights


def _logit_inputs(seed: int) -> tuple:
    p, y, w = _log_loss_inputs(seed)
    return torch.logit(p.clamp(0.01, 0.99)) * 2, y, w


def _accuracy_inputs(seed: int) -> tuple:
    p, y, w = pointwise_inputs(seed)
    return p, y, w, torch.tensor(0.5, dtype=_F64)


def _thresholds() -> tuple:
    return (torch.tensor([0.3, 0.5, 0.7], dtype=_F64),)


def _both(metric, **options):
    def fn(p, y, w):
        return (
            metric(p, y, weights=w, **options),
            metric(p, y, weights=w, reduction="none", **options),
        )

    return fn


def _accuracy(p, y, w, t):
    return (
        binary_accuracy(p, y, weights=w, threshold=t),
        binary_accuracy(p, y, weights=w, threshold=t, reduction="none"),
    )


def _accuracy_reference(p, y, w, t):
    return ref_binary_accuracy(p, y, w, threshold=t)


def _pointwise_case(name, metric, reference, make_inputs, variant, **options) -> cc.Case:
    return cc.Case(
        name=f"metrics.{name}",
        variant=variant,
        kind="metric",
        make_inputs=make_inputs,
        fn=_both(metric, **options),
        reference=lambda p, y, w: reference(p, y, w, **options),
        grad_argnums=(0, 1, 2),
        transforms=cc.statuses(vmap_hparams=cc.NotApplicable(_NO_HPARAMS)),
    )


# AUC: 8 scores in quarters (ties), labels 0 / 1 with two soft ones, weights.
def auc_inputs(seed: int) -> tuple:
    g = cc._gen(700 + seed)
    scores = torch.randint(0, 5, (8,), generator=g).to(_F64) / 4
    labels = torch.tensor([1.0, 0.0, 1.0, 0.0, 0.0, 1.0, 0.7, 0.2], dtype=_F64)
    labels = labels[torch.randperm(8, generator=g)]
    weights = torch.rand(8, generator=g, dtype=_F64) + 0.5
    return scores, labels, weights


def _auc(scores, labels, weights):
    return auc(scores, labels, weights=weights)


def _state(seed: int, n: int) -> AUCState:
    return AUCState(*(x[:n] for x in auc_inputs(50 + seed)))


def _auc_update_inputs(seed: int) -> tuple:
    return (_state(seed, 3), *auc_inputs(seed))


def _auc_update_reference(state, scores, labels, weights) -> AUCState:
    def joined(old, new):
        return torch.stack([*old, *new])

    return AUCState(
        joined(state.scores, scores),
        joined(state.labels, labels),
        joined(state.weights, weights),
    )


def _auc_merge_inputs(seed: int) -> tuple:
    return _state(seed, 3), _state(seed + 20, 5)


def _auc_merge_reference(a, b) -> AUCState:
    return AUCState(*(torch.stack([*x, *y]) for x, y in zip(a, b)))


CASES: list = [
    _list_case("ndcg", ndcg, ref_ndcg, "exact: 0 in the scores (piecewise constant)"),
    cc.Case(
        name="metrics.ndcg",
        variant="defaults: padding by negative labels, whole lists, unit weights",
        kind="metric",
        make_inputs=_default_inputs,
        fn=_ndcg_defaults,
        reference=_ndcg_defaults_reference,
        grad_argnums=(0, 1),
        nonzero_grad=False,
        transforms=cc.statuses(
            grad=cc.Checked(_ZERO_SCORES),
            vmap_hparams=cc.NotApplicable(_NO_HPARAMS),
            vmap_grad=cc.Checked(_ZERO_SCORES),
            compile_vmap_grad=cc.Checked(_ZERO_SCORES),
        ),
    ),
    _list_case("dcg", dcg, ref_dcg, _ZERO_SCORES),
    _list_case("mrr", mrr, ref_mrr, _ZERO_ALL),
    _list_case("precision", precision, ref_precision, _ZERO_ALL),
    _list_case("recall", recall, ref_recall, _ZERO_ALL),
    _list_case(
        "mean_average_precision", mean_average_precision, ref_mean_average_precision, _ZERO_ALL
    ),
    _list_case(
        "ordered_pair_accuracy",
        ordered_pair_accuracy,
        ref_ordered_pair_accuracy,
        _ZERO_ALL,
        topn=None,
    ),
    _pointwise_case(
        "rmse", rmse, ref_rmse, _regression_inputs, 'weights; reduction "mean" and "none"'
    ),
    _pointwise_case(
        "mae", mae, ref_mae, _regression_inputs, 'weights; reduction "mean" and "none"'
    ),
    _pointwise_case(
        "log_loss",
        log_loss,
        ref_log_loss,
        _log_loss_inputs,
        'probabilities (one below the clip), soft labels, row weights; "mean" and "none"',
    ),
    _pointwise_case(
        "log_loss",
        log_loss,
        ref_log_loss,
        _logit_inputs,
        'from_logits=True, soft labels, row weights; "mean" and "none"',
        from_logits=True,
    ),
    cc.Case(
        name="metrics.binary_accuracy",
        variant='threshold as a tensor, weights; reduction "mean" and "none"',
        kind="metric",
        make_inputs=_accuracy_inputs,
        fn=_accuracy,
        reference=_accuracy_reference,
        grad_argnums=(0, 1, 2, 3),
        hparam_argnums=(3,),
        hparam_values=_thresholds,
        nonzero_grad=False,
        transforms=cc.statuses(
            grad=cc.Checked("exact: 0 but in the weights (piecewise constant)"),
            vmap_grad=cc.Checked("exact: 0 but in the weights (piecewise constant)"),
            compile_vmap_grad=cc.Checked("exact: 0 but in the weights (piecewise constant)"),
        ),
    ),
    cc.Case(
        name="metrics.auc",
        variant="ties, soft labels, weights",
        kind="metric",
        make_inputs=auc_inputs,
        fn=_auc,
        reference=ref_auc,
        grad_argnums=(0, 1, 2),
        nonzero_grad=False,
        transforms=cc.statuses(
            grad=cc.Checked(_ZERO_SCORES),
            vmap_hparams=cc.NotApplicable(_NO_HPARAMS),
            vmap_grad=cc.Checked(_ZERO_SCORES),
            compile_vmap_grad=cc.Checked(_ZERO_SCORES),
        ),
    ),
    cc.Case(
        name="metrics.auc_update",
        variant="a state of 3 examples and a batch of 8",
        kind="metric",
        make_inputs=_auc_update_inputs,
        fn=auc_update,
        reference=_auc_update_reference,
        grad_argnums=(0, 1, 2, 3),
        transforms=cc.statuses(vmap_hparams=cc.NotApplicable(_NO_HPARAMS)),
    ),
    cc.Case(
        name="metrics.auc_merge",
        variant="states of 3 and 5 examples",
        kind="metric",
        make_inputs=_auc_merge_inputs,
        fn=auc_merge,
        reference=_auc_merge_reference,
        grad_argnums=(0, 1),
        transforms=cc.statuses(vmap_hparams=cc.NotApplicable(_NO_HPARAMS)),
    ),
]

NOT_FUNCTIONS_OF_TENSORS: dict[str, str] = {
    "metrics.MetricTerms": "a NamedTuple type (a metric's values and weights before the mean)",
    "metrics.RootMeanTerms": "a NamedTuple type (rmse's squared errors and weights)",
    "metrics.AUCState": "a NamedTuple type (the exact AUC accumulator's state)",
    "metrics.auc_init": "a constructor: takes a device, returns empty tensors",
    "metrics.auc_result": "host-side reader: returns a Python float (one sync, by design)",
}
