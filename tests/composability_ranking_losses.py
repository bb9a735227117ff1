"""Composability cases of ranking losses (a part of ``composability_cases.CASES``).

The references are brute force, written from TF-Ranking's definitions and not from
``torchrs_fn.tasks.ranking``: Python loops over lists, items and pairs, scalar math in float64,
padding skipped by ``if``. Each reference builds the loss's elements (one per item, pair, list or
Gumbel draw, each a ``(loss, weight)``) and ``ref_reduce`` reduces them as TF's
``compute_weighted_loss``. ``tests/test_tasks/test_ranking_losses.py`` imports them from here.

This module needs torch and torchrs_fn only (not pytest), so the docs build can import it.
"""

from __future__ import annotations

import itertools
import math

import composability_cases as cc
import torch

from torchrs_fn import random as trandom
from torchrs_fn.tasks import ranking

_F64 = torch.float64
_ZERO = torch.zeros((), dtype=_F64)

# --- brute-force references -------------------------------------------------------------------


def _num(x) -> float:
    """A Python number from a scalar (a reference's branch or constant, never differentiated)."""
    return x.detach().item() if isinstance(x, torch.Tensor) else float(x)


def _valid_items(labels, mask, b: int) -> list[int]:
    """Positions of list b that are not padding: label >= 0 (NaN is not) and not masked."""
    return [
        i
        for i in range(labels.shape[1])
        if _num(labels[b, i]) >= 0 and (mask is None or bool(mask[b, i]))
    ]


def _item_weight(weights, b: int, i: int):
    if weights is None:
        return 1.0
    if weights.ndim == 1:
        return weights[b]
    return weights[b, 0] if weights.shape[1] == 1 else weights[b, i]


def _list_weight(labels, items: list[int], weights, b: int):
    """TF-Ranking's listwise weight: 1, or ``sum w_i l_i / sum l_i`` (0 for a zero sum)."""
    if weights is None:
        return 1.0
    num = sum((_item_weight(weights, b, i) * labels[b, i] for i in items), _ZERO)
    den = sum((labels[b, i] for i in items), _ZERO)
    return num / den if _num(den) != 0 else 0.0


def ref_reduce(elements: dict, reduction: str = "sum_by_nonzero_weights", shape=None):
    """TF's ``compute_weighted_loss`` over ``{index: (loss, weight)}``; ``"none"`` fills
    ``shape`` with the weighted losses (0 where there is no element)."""
    if reduction == "none":
        cells = []
        for index in itertools.product(*(range(n) for n in shape)):
            loss, weight = elements.get(index, (_ZERO, 0.0))
            cells.append(torch.as_tensor(loss * weight, dtype=_F64))
        return torch.stack(cells).reshape(shape)
    total = sum((loss * weight for loss, weight in elements.values()), _ZERO)
    if reduction == "sum":
        return total
    if reduction == "mean":
        den = sum((weight for _, weight in elements.values()), _ZERO)
        return total / den if _num(den) != 0 else total * 0
    count = sum(1 for _, weight in elements.values() if _num(weight) != 0)
    return total / count if count else total * 0


def _pointwise_elements(kind: str, scores, labels, mask, weights, temperature) -> dict:
    if scores.ndim == 1:
        scores, labels = scores[:, None], labels[:, None]
        mask = None if mask is None else mask[:, None]
    out = {}
    for b in range(scores.shape[0]):
        for i in _valid_items(labels, mask, b):
            y, x = labels[b, i], scores[b, i] / temperature
            if kind == "mean_squared_loss":
                loss = (y - x) ** 2
            else:  # sigmoid cross-entropy: -y log sigmoid(x) - (1 - y) log(1 - sigmoid(x))
                loss = torch.log1p(torch.exp(x)) - y * x
            out[(b, i)] = (loss, _item_weight(weights, b, i))
    return out


_PAIR_LOSSES = {
    "pairwise_hinge_loss": lambda d: (1 - d) if _num(d) < 1 else d * 0,
    "pairwise_logistic_loss": lambda d: torch.log1p(torch.exp(-d)),
    "pairwise_soft_zero_one_loss": lambda d: 1 / (1 + torch.exp(d)),
}


def _score_ranks(scores, items: list[int], b: int) -> dict[int, int]:
    """1-based ranks by descending score, ties by position."""
    order = sorted(items, key=lambda i: (-_num(scores[b, i]), i))
    return {i: k + 1 for k, i in enumerate(order)}


def _ndcg_pair_weight(labels, items, ranks, b, i, j, topn, smooth_fraction) -> float:
    """LambdaLoss's NDCG pair weight (TF-Ranking DCGLambdaWeight, create_ndcg_lambda_weight)."""
    length = labels.shape[1]
    gain = {k: 2.0 ** _num(labels[b, k]) - 1 for k in items}
    ideal = sorted(gain.values(), reverse=True)[: topn or length]
    max_dcg = sum(g / math.log(2 + k) for k, g in enumerate(ideal))
    scale = 1 / max_dcg if max_dcg > 0 else 0.0
    n = topn or length
    ri, rj = ranks[i], ranks[j]
    if ri > n and rj > n:
        return 0.0
    d = abs(ri - rj)
    u = abs(1 / math.log(1 + d) - 1 / math.log(2 + d)) if d > 0 else 0.0

    def cut(r):
        return 1 / math.log(1 + r) if r <= n else 0.0

    v = abs(cut(ri) - cut(rj))
    sf = _num(smooth_fraction)
    return length * abs(gain[i] - gain[j]) * scale * ((1 - sf) * u + sf * v)


def _pairwise_elements(name, scores, labels, mask, weights, temperature, lambda_weight) -> dict:
    out = {}
    for b in range(scores.shape[0]):
        items = _valid_items(labels, mask, b)
        ranks = _score_ranks(scores, items, b)
        for i in items:
            for j in items:
                yi, yj = labels[b, i], labels[b, j]
                d = (scores[b, i] - scores[b, j]) / temperature
                if name == "pairwise_mse_loss":
                    if i == j:
                        continue
                    loss = (d - (yi - yj)) ** 2
                elif _num(yi) > _num(yj):
                    loss = _PAIR_LOSSES[name](d)
                else:
                    continue
                if lambda_weight is None:
                    pair = 1.0
                elif lambda_weight == "label_diff":
                    pair = abs(_num(yi) - _num(yj))
                else:
                    _, topn, sf = lambda_weight
                    pair = _ndcg_pair_weight(labels, items, ranks, b, i, j, topn, sf)
                out[(b, i, j)] = (loss, _item_weight(weights, b, i) * pair)
    return out


def _log_softmax_at(xs: list, k: int):
    top = max(_num(x) for x in xs)
    return xs[k] - (top + torch.log(sum(torch.exp(x - top) for x in xs)))


def _softmax_elements(name, scores, labels, mask, weights, temperature) -> dict:
    out = {}
    for b in range(scores.shape[0]):
        items = _valid_items(labels, mask, b)
        if not items:
            out[(b,)] = (_ZERO, 0.0)
            continue
        z = [labels[b, i] * _item_weight(weights, b, i) for i in items]
        total = sum(z, _ZERO)
        if _num(total) > 0:
            target = [zi / total for zi in z]
        else:  # TF-Ranking: a uniform target (the list's weight, its label sum, is <= 0)
            target = [1.0 / len(items)] * len(items)
        xs = [scores[b, i] / temperature for i in items]
        loss = -sum((t * _log_softmax_at(xs, k) for k, t in enumerate(target)), _ZERO)
        out[(b,)] = (loss, total)
    return out


def _key(seed):
    return seed if isinstance(seed, torch.Tensor) else trandom.key(seed)


def _list_mle_elements(name, scores, labels, mask, weights, temperature, seed) -> dict:
    bits = trandom.bits(_key(seed), tuple(labels.shape))  # the documented tie-break draw
    out = {}
    for b in range(scores.shape[0]):
        items = _valid_items(labels, mask, b)
        order = sorted(items, key=lambda i: (-_num(labels[b, i]), -int(bits[b, i]), i))
        xs = [scores[b, i] / temperature for i in order]
        loss = _ZERO
        for k in range(len(xs)):
            rest = xs[k:]
            loss = loss - _log_softmax_at(rest, 0)
        out[(b,)] = (loss, _list_weight(labels, items, weights, b) if items else 0.0)
    return out


def _approx_ranks(xs: list) -> list:
    return [
        1 + sum((torch.sigmoid(xs[j] - xs[i]) for j in range(len(xs)) if j != i), _ZERO)
        for i in range(len(xs))
    ]


def _approx_ndcg_value(xs: list, ys: list, all_ys: list):
    """``all_ys``: the list's labels with padding as 0, in list order. The ideal order sorts them
    (a stable sort: ties keep list order), as TF-Ranking's top_k does; where labels tie, the
    ideal DCG has a kink, and this order picks TF-Ranking's side of it."""
    ranks = _approx_ranks(xs)
    dcg = sum(((2**y - 1) / torch.log(1 + r) for y, r in zip(ys, ranks)), _ZERO)
    ideal = sorted(all_ys, key=_num, reverse=True)
    max_dcg = sum(((2**y - 1) / math.log(2 + k) for k, y in enumerate(ideal)), _ZERO)
    return dcg / max_dcg


def _padded_labels(labels, items: list[int], b: int) -> list:
    return [labels[b, k] if k in items else _ZERO for k in range(labels.shape[1])]


def _approx_elements(name, scores, labels, mask, weights, temperature) -> dict:
    out = {}
    for b in range(scores.shape[0]):
        items = _valid_items(labels, mask, b)
        ys = [labels[b, i] for i in items]
        label_sum = sum(ys, _ZERO)
        if _num(label_sum) <= 0:
            out[(b,)] = (_ZERO, 0.0)
            continue
        xs = [scores[b, i] / temperature for i in items]
        if name == "approx_ndcg_loss":
            loss = -_approx_ndcg_value(xs, ys, _padded_labels(labels, items, b))
        else:
            ranks = _approx_ranks(xs)
            loss = -sum((y / r for y, r in zip(ys, ranks)), _ZERO) / label_sum
        out[(b,)] = (loss, _list_weight(labels, items, weights, b))
    return out


def gumbel_noise(seed, shape, dtype=_F64):
    """The Gumbel draws ``gumbel_approx_ndcg_loss`` documents: ``-log(-log(u + 1e-20) + 1e-20)``
    with ``u = torchrs_fn.random.uniform(key, shape)``."""
    u = trandom.uniform(_key(seed), shape, dtype=dtype)
    return -torch.log(-torch.log(u + 1e-20) + 1e-20)


def _gumbel_elements(
    name, scores, labels, mask, weights, temperature, gumbel_temperature, sample_size, seed
):
    noise = gumbel_noise(seed, (scores.shape[0], sample_size, scores.shape[1]))
    out = {}
    for b in range(scores.shape[0]):
        items = _valid_items(labels, mask, b)
        ys = [labels[b, i] for i in items]
        positive = _num(sum(ys, _ZERO)) > 0
        for s in range(sample_size):
            if not positive:
                out[(b, s)] = (_ZERO, 0.0)
                continue
            xs = [(scores[b, i] + noise[b, s, i]) / gumbel_temperature / temperature for i in items]
            ndcg = _approx_ndcg_value(xs, ys, _padded_labels(labels, items, b))
            out[(b, s)] = (-ndcg, _list_weight(labels, items, weights, b))
    return out


def _neural_sort_rows(xs: list) -> list[list]:
    """NeuralSort: row r = softmax_k((n + 1 - 2r) x_k - sum_j |x_k - x_j|), r = 1..n."""
    n = len(xs)
    spread = [sum((torch.abs(xk - xj) for xj in xs), _ZERO) for xk in xs]
    rows = []
    for r in range(1, n + 1):
        logits = [(n + 1 - 2 * r) * xk - spread[k] for k, xk in enumerate(xs)]
        rows.append([torch.exp(_log_softmax_at(logits, k)) for k in range(n)])
    return rows


def _neural_sort_elements(name, scores, labels, mask, weights, temperature) -> dict:
    out = {}
    for b in range(scores.shape[0]):
        items = _valid_items(labels, mask, b)
        ys = [labels[b, i] for i in items]
        if _num(sum(ys, _ZERO)) <= 0:
            out[(b,)] = (_ZERO, 0.0)
            continue
        target = _neural_sort_rows(ys)
        relaxed = _neural_sort_rows([scores[b, i] / temperature for i in items])
        ce = sum(
            (
                -t * torch.log(1e-20 + p)
                for t_row, p_row in zip(target, relaxed)
                for t, p in zip(t_row, p_row)
            ),
            _ZERO,
        )
        out[(b,)] = (ce / len(items), _list_weight(labels, items, weights, b))
    return out


def ref_elements(name: str, scores, labels, mask=None, weights=None, **kw) -> dict:
    """The elements ``{index: (loss, weight)}`` of the loss ``name`` (TF-Ranking's definition)."""
    t = kw.pop("temperature", 0.1 if name.startswith(("approx", "gumbel")) else 1.0)
    if name in ("mean_squared_loss", "sigmoid_cross_entropy_loss"):
        return _pointwise_elements(name, scores, labels, mask, weights, t)
    if name.startswith("pairwise_"):
        return _pairwise_elements(
            name, scores, labels, mask, weights, t, kw.pop("lambda_weight", None)
        )
    if name == "softmax_loss":
        return _softmax_elements(name, scores, labels, mask, weights, t)
    if name == "list_mle_loss":
        return _list_mle_elements(name, scores, labels, mask, weights, t, kw.pop("seed", 0))
    if name in ("approx_ndcg_loss", "approx_mrr_loss"):
        return _approx_elements(name, scores, labels, mask, weights, t)
    if name == "gumbel_approx_ndcg_loss":
        return _gumbel_elements(
            name,
            scores,
            labels,
            mask,
            weights,
            t,
            kw.pop("gumbel_temperature", 1.0),
            kw.pop("sample_size", 8),
            kw.pop("seed", 0),
        )
    if name == "neural_sort_cross_entropy_loss":
        return _neural_sort_elements(name, scores, labels, mask, weights, t)
    raise ValueError(f"no reference for {name}")


def ref_loss(name: str, scores, labels, mask=None, weights=None, reduction=None, **kw):
    """The reference value of ``ranking.<name>(scores, labels, ...)``."""
    elements = ref_elements(name, scores, labels, mask, weights, **kw)
    reduction = reduction or "sum_by_nonzero_weights"
    if reduction != "none":
        return ref_reduce(elements, reduction)
    b = scores.shape[0]
    if name.startswith("pairwise_"):
        shape = (b, scores.shape[1], scores.shape[1])
    elif name.startswith(("mean_squared", "sigmoid")):
        shape = tuple(scores.shape) if scores.ndim == 2 else (b, 1)
    elif name == "gumbel_approx_ndcg_loss":
        shape = (b, kw.get("sample_size", 8))
    else:
        shape = (b,)
    out = ref_reduce(elements, "none", shape)
    return out.reshape(scores.shape) if scores.ndim == 1 else out


# --- inputs ----------------------------------------------------------------------------------

B, L = 4, 5


def lists(seed: int) -> tuple:
    """(scores, labels, mask, item weights [B, L], temperature), float64, with every kind of
    padding: list 0 has a negative label, list 1 a masked item, list 2 is all padding (masked,
    its scores NaN), list 3 has one valid item (the rest negative labels, their scores NaN)."""
    g = cc._gen(500 + seed)
    scores = torch.randn(B, L, generator=g, dtype=_F64)
    labels = torch.randint(0, 4, (B, L), generator=g).to(_F64)
    labels[0, :2] = torch.tensor([3.0, 0.0])  # two distinct grades in each full list
    labels[1, :2] = torch.tensor([0.0, 2.0])
    labels[0, 3] = -1.0
    labels[3, 1:] = -1.0
    labels[3, 0] = 1.0
    mask = torch.ones(B, L, dtype=torch.bool)
    mask[1, 4] = False
    mask[2, :] = False
    scores[2, :] = float("nan")
    scores[3, 1:] = float("nan")
    scores[0, 3] = float("nan")
    weights = torch.rand(B, L, generator=g, dtype=_F64) + 0.5
    temperature = torch.tensor(0.7 + 0.2 * seed, dtype=_F64)
    return scores, labels, mask, weights, temperature


def _temperatures(*values: float):
    return lambda: (torch.tensor(values, dtype=_F64),)


_TEMPERATURES = _temperatures(0.25, 0.5, 1.0, 2.0)
_APPROX_TEMPERATURES = _temperatures(0.05, 0.1, 0.5)


# --- cases -----------------------------------------------------------------------------------

_NO_HPARAMS = "no hyperparameters"
_ZERO_LABEL_GRAD = (
    "labels: exactly 0 (pair labels and lambda weights are constants, TF-Ranking's stop_gradient)"
)


def _standard(name: str, *, temperatures=_TEMPERATURES, int_labels=False, **fixed) -> cc.Case:
    """``name(scores, labels, mask=, weights=[B, L], temperature=, **fixed)``."""
    fn = getattr(ranking, name)

    def make(seed):
        s, y, m, w, t = lists(seed)
        return s, (y.to(torch.int64) if int_labels else y), m, w, t

    def call(s, y, m, w, t):
        return fn(s, y, mask=m, weights=w, temperature=t, **fixed)

    def reference(s, y, m, w, t):
        return ref_loss(name, s, y, m, w, temperature=t, **_ref_kwargs(fixed))

    labels_note = "integer labels" if int_labels else "float labels"
    extra = ", ".join(f"{k}={v!r}" for k, v in fixed.items())
    return cc.Case(
        name=f"tasks.{name}",
        variant=f"mask, negative labels, per-item weights, tensor temperature, {labels_note}"
        + (f", {extra}" if extra else ""),
        kind="loss",
        make_inputs=make,
        fn=call,
        reference=reference,
        grad_argnums=(0, 3, 4) if int_labels else (0, 1, 3, 4),
        hparam_argnums=(4,),
        hparam_values=temperatures,
    )


def _ref_kwargs(fixed: dict) -> dict:
    """The library's keyword arguments in the references' terms (lambda weights as specs)."""
    out = dict(fixed)
    lw = out.get("lambda_weight")
    if isinstance(lw, ranking.LabelDiffLambdaWeight):
        out["lambda_weight"] = "label_diff"
    elif isinstance(lw, ranking.NDCGLambdaWeight):
        out["lambda_weight"] = ("ndcg", lw.topn, lw.smooth_fraction)
    return out


def _mean_squared(s, y, m, w):
    return ranking.mean_squared_loss(s, y, mask=m, weights=w)


def _mean_squared_reference(s, y, m, w):
    return ref_loss("mean_squared_loss", s, y, m, w)


def _pointwise_1d(s, y, w):
    return ranking.mean_squared_loss(s, y, weights=w, reduction="none")


def _pointwise_1d_reference(s, y, w):
    return ref_loss("mean_squared_loss", s, y, None, w, reduction="none")


def _pointwise_1d_inputs(seed: int) -> tuple:
    s, y, _, w, _ = lists(seed)
    return s[0], y[0], w[0]  # one list of 5 as 5 one-item lists (label -1: padding)


def _sigmoid_inputs(seed: int) -> tuple:
    s, y, m, w, t = lists(seed)
    return s, torch.where(y >= 0, y / 3, y), m, w, t  # probabilities in [0, 1], padding kept


def _sigmoid(s, y, m, w, t):
    return ranking.sigmoid_cross_entropy_loss(s, y, mask=m, weights=w, temperature=t)


def _sigmoid_reference(s, y, m, w, t):
    return ref_loss("sigmoid_cross_entropy_loss", s, y, m, w, temperature=t)


def _per_list_weights(name: str, reduction: str) -> cc.Case:
    """Per-list weights ``[B]`` and another reduction."""
    fn = getattr(ranking, name)

    def make(seed):
        s, y, m, w, t = lists(seed)
        return s, y, m, w[:, 0], t

    return cc.Case(
        name=f"tasks.{name}",
        variant=f'per-list weights [B], reduction="{reduction}"',
        kind="loss",
        make_inputs=make,
        fn=lambda s, y, m, w, t: fn(s, y, mask=m, weights=w, temperature=t, reduction=reduction),
        reference=lambda s, y, m, w, t: ref_loss(name, s, y, m, w, reduction, temperature=t),
        grad_argnums=(0, 1, 3, 4),
        hparam_argnums=(4,),
        hparam_values=_TEMPERATURES,
        nonzero_grad=not name.startswith("pairwise_"),
        transforms=cc.statuses(grad=cc.Checked(_ZERO_LABEL_GRAD))
        if name.startswith("pairwise_")
        else cc.statuses(),
    )


def _smooth_fraction_inputs(seed: int) -> tuple:
    s, y, m, _, _ = lists(seed)
    return s, y, m, torch.tensor(0.25 + 0.25 * seed, dtype=_F64)


def _smooth_fraction(s, y, m, sf):
    lw = ranking.ndcg_lambda_weight(topn=3, smooth_fraction=sf)
    return ranking.pairwise_logistic_loss(s, y, mask=m, lambda_weight=lw)


def _smooth_fraction_reference(s, y, m, sf):
    return ref_loss("pairwise_logistic_loss", s, y, m, lambda_weight=("ndcg", 3, sf))


def _keyed_inputs(seed: int) -> tuple:
    s, y, m, w, _ = lists(seed)
    y = torch.where(y >= 0, torch.clamp(y, max=1.0), y)  # binary labels: many ties to shuffle
    return s, y, m, w, trandom.key(seed)


def _list_mle_keyed(s, y, m, w, key):
    return ranking.list_mle_loss(s, y, mask=m, weights=w, seed=key)


def _list_mle_keyed_reference(s, y, m, w, key):
    return ref_loss("list_mle_loss", s, y, m, w, seed=key)


def _gumbel_inputs(seed: int) -> tuple:
    s, y, m, w, t = lists(seed)
    return s, y, m, w, t / 5, torch.tensor(1.0 + 0.5 * seed, dtype=_F64)


def _gumbel(s, y, m, w, t, tg):
    return ranking.gumbel_approx_ndcg_loss(
        s, y, mask=m, weights=w, temperature=t, gumbel_temperature=tg, sample_size=3, seed=5
    )


def _gumbel_reference(s, y, m, w, t, tg):
    return ref_loss(
        "gumbel_approx_ndcg_loss",
        s,
        y,
        m,
        w,
        temperature=t,
        gumbel_temperature=tg,
        sample_size=3,
        seed=5,
    )


CASES: list[cc.Case] = [
    cc.Case(
        name="tasks.mean_squared_loss",
        variant="mask, negative labels, per-item weights",
        kind="loss",
        make_inputs=lambda seed: lists(seed)[:4],
        fn=_mean_squared,
        reference=_mean_squared_reference,
        grad_argnums=(0, 1, 3),
        transforms=cc.statuses(vmap_hparams=cc.NotApplicable(_NO_HPARAMS)),
    ),
    cc.Case(
        name="tasks.mean_squared_loss",
        variant='pointwise [B] form, reduction="none"',
        kind="loss",
        make_inputs=_pointwise_1d_inputs,
        fn=_pointwise_1d,
        reference=_pointwise_1d_reference,
        grad_argnums=(0, 1, 2),
        transforms=cc.statuses(vmap_hparams=cc.NotApplicable(_NO_HPARAMS)),
    ),
    cc.Case(
        name="tasks.sigmoid_cross_entropy_loss",
        variant="mask, negative labels, per-item weights, tensor temperature",
        kind="loss",
        make_inputs=_sigmoid_inputs,
        fn=_sigmoid,
        reference=_sigmoid_reference,
        grad_argnums=(0, 1, 3, 4),
        hparam_argnums=(4,),
        hparam_values=_TEMPERATURES,
    ),
    _standard("pairwise_hinge_loss", int_labels=True),
    _per_list_weights("pairwise_hinge_loss", "none"),
    _standard("pairwise_logistic_loss", int_labels=True),
    _standard(
        "pairwise_logistic_loss", int_labels=True, lambda_weight=ranking.label_diff_lambda_weight()
    ),
    _standard("pairwise_soft_zero_one_loss", int_labels=True),
    _standard(
        "pairwise_soft_zero_one_loss",
        int_labels=True,
        lambda_weight=ranking.ndcg_lambda_weight(),
    ),
    _standard("pairwise_mse_loss"),
    _standard(
        "pairwise_hinge_loss",
        int_labels=True,
        lambda_weight=ranking.ndcg_lambda_weight(topn=2, smooth_fraction=0.5),
    ),
    _standard("pairwise_mse_loss", lambda_weight=ranking.label_diff_lambda_weight()),
    cc.Case(
        name="tasks.pairwise_logistic_loss",
        variant="ndcg_lambda_weight(topn=3, smooth_fraction) built inside, smooth_fraction swept",
        kind="loss",
        make_inputs=_smooth_fraction_inputs,
        fn=_smooth_fraction,
        reference=_smooth_fraction_reference,
        grad_argnums=(0, 1, 3),
        hparam_argnums=(3,),
        hparam_values=lambda: (torch.tensor([0.0, 0.3, 1.0], dtype=_F64),),
        nonzero_grad=False,
        transforms=cc.statuses(
            grad=cc.Checked(
                "labels and smooth_fraction: exactly 0 (the lambda weight is a constant)"
            )
        ),
    ),
    _standard("softmax_loss"),
    _per_list_weights("softmax_loss", "mean"),
    _standard("list_mle_loss"),
    cc.Case(
        name="tasks.list_mle_loss",
        variant="binary labels (many ties), a torchrs_fn.random key as seed, swept over keys",
        kind="loss",
        make_inputs=_keyed_inputs,
        fn=_list_mle_keyed,
        reference=_list_mle_keyed_reference,
        grad_argnums=(0, 1, 3),
        hparam_argnums=(4,),
        hparam_values=lambda: (torch.stack([trandom.key(k) for k in (0, 1, 2, 3)]),),
    ),
    _standard("approx_ndcg_loss", temperatures=_APPROX_TEMPERATURES),
    _per_list_weights("approx_ndcg_loss", "sum"),
    _standard("approx_mrr_loss", temperatures=_APPROX_TEMPERATURES),
    cc.Case(
        name="tasks.gumbel_approx_ndcg_loss",
        variant="sample_size=3, seed=5, tensor temperature and gumbel_temperature",
        kind="loss",
        make_inputs=_gumbel_inputs,
        fn=_gumbel,
        reference=_gumbel_reference,
        grad_argnums=(0, 1, 3, 4, 5),
        hparam_argnums=(4, 5),
        hparam_values=lambda: (
            torch.tensor([0.05, 0.1, 0.5], dtype=_F64),
            torch.tensor([0.5, 1.0, 2.0], dtype=_F64),
        ),
    ),
    _standard("neural_sort_cross_entropy_loss"),
]

NOT_FUNCTIONS_OF_TENSORS: dict[str, str] = {
    "tasks.label_diff_lambda_weight": (
        "a constructor: returns a frozen lambda-weight spec (checked through the pairwise "
        "losses' lambda_weight cases)"
    ),
    "tasks.ndcg_lambda_weight": (
        "a constructor: returns a frozen lambda-weight spec (checked through the pairwise "
        "losses' lambda_weight cases, one sweeping its smooth_fraction)"
    ),
}
