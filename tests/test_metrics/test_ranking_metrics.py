"""Ranking metrics against brute-force references, hand-computed values and TF-Ranking / Keras.

The references (``ref_*``: Python loops over each list, ``sorted`` with an explicit tie rule) live
in ``tests/composability_ranking_metrics.py`` and serve the composability matrix as well.
"""

from __future__ import annotations

import importlib.util
import itertools
import math
import sys
from pathlib import Path

import pytest
import torch

from torchrs_fn.metrics.aggregate import mean_init, mean_merge, mean_result, mean_update
from torchrs_fn.metrics.ranking import (
    MetricTerms,
    auc,
    auc_init,
    auc_merge,
    auc_result,
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

TESTS = Path(__file__).resolve().parents[1]


def _load(name: str):
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, TESTS / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


_load("composability_cases")  # loads its parts, this file's references among them
refs = sys.modules["composability_ranking_metrics"]

F64 = torch.float64
LIST_METRICS = {
    "ndcg": (ndcg, refs.ref_ndcg),
    "dcg": (dcg, refs.ref_dcg),
    "mrr": (mrr, refs.ref_mrr),
    "precision": (precision, refs.ref_precision),
    "recall": (recall, refs.ref_recall),
    "mean_average_precision": (mean_average_precision, refs.ref_mean_average_precision),
    "ordered_pair_accuracy": (ordered_pair_accuracy, refs.ref_ordered_pair_accuracy),
}
HAS_TOPN = [name for name in LIST_METRICS if name != "ordered_pair_accuracy"]


def t(x) -> torch.Tensor:
    return torch.tensor(x, dtype=F64)


def _call(name, scores, labels, topn=None, **kw):
    metric = LIST_METRICS[name][0]
    if topn is not None:
        kw["topn"] = topn
    return metric(scores, labels, **kw)


def _close(got, want, rtol=1e-12, atol=1e-12) -> None:
    assert torch.allclose(got, want, rtol=rtol, atol=atol), f"got {got}, want {want}"


# --- random lists against the references -----------------------------------------------------


def _random_lists(seed: int, b: int, n: int, weights: str, with_mask: bool):
    g = torch.Generator().manual_seed(seed)
    scores = torch.randint(0, 5, (b, n), generator=g).to(F64) / 4  # ties
    labels = torch.randint(-1, 4, (b, n), generator=g).to(F64)  # -1: padding
    mask = torch.rand(b, n, generator=g) > 0.2 if with_mask else None
    w = {
        "none": None,
        "list": torch.rand(b, generator=g, dtype=F64) + 0.5,
        "list1": torch.rand(b, 1, generator=g, dtype=F64) + 0.5,
        "item": torch.rand(b, n, generator=g, dtype=F64) + 0.5,
        "item0": (torch.rand(b, n, generator=g, dtype=F64) + 0.5)
        * (torch.rand(b, n, generator=g) > 0.2),
    }[weights]
    return scores, labels, mask, w


CONFIGS = [
    # (B, L, weights, mask)
    (6, 7, "none", False),
    (6, 7, "none", True),
    (5, 6, "list", False),
    (5, 6, "list1", True),
    (5, 6, "item", False),
    (5, 6, "item0", True),
    (4, 1, "item", False),  # lists of one item
]


@pytest.mark.parametrize(
    ("name", "topn"),
    [
        (name, topn)
        for name in LIST_METRICS
        for topn in (None, 1, 3, 50)
        if name in HAS_TOPN or topn is None
    ],
)
@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: f"B{c[0]}-L{c[1]}-w_{c[2]}-mask{c[3]}")
def test_list_metric_matches_brute_force(name, topn, config):
    b, n, weights, with_mask = config
    for seed in range(3):
        scores, labels, mask, w = _random_lists(seed, b, n, weights, with_mask)
        want_mean, want_terms = LIST_METRICS[name][1](scores, labels, mask, w, topn)
        got = _call(name, scores, labels, topn, mask=mask, weights=w)
        terms = _call(name, scores, labels, topn, mask=mask, weights=w, reduction="none")
        assert isinstance(terms, MetricTerms)
        assert got.shape == () and got.dtype == F64
        _close(got, want_mean)
        _close(terms.values, want_terms.values)
        _close(terms.weights, want_terms.weights)


# --- hand-computed values --------------------------------------------------------------------

# One list, scores 3 > 2 > 1 > 0.5, labels 0, 1, 2, 0.
S1 = t([[3.0, 2.0, 1.0, 0.5]])
Y1 = t([[0.0, 1.0, 2.0, 0.0]])


def test_hand_computed_single_list():
    dcg_value = 1 / math.log2(3) + 3 / math.log2(4)  # gains 1 and 3 at ranks 2 and 3
    ideal = 3 / math.log2(2) + 1 / math.log2(3)
    assert float(dcg(S1, Y1)) == pytest.approx(dcg_value, rel=1e-14)
    assert float(ndcg(S1, Y1)) == pytest.approx(dcg_value / ideal, rel=1e-14)
    assert float(ndcg(S1, Y1, topn=1)) == 0.0
    # topn=2: DCG@2 = 1/log2(3); ideal@2 = 3 + 1/log2(3).
    assert float(ndcg(S1, Y1, topn=2)) == pytest.approx(
        (1 / math.log2(3)) / (3 + 1 / math.log2(3)), rel=1e-14
    )
    assert float(mrr(S1, Y1)) == 0.5  # first relevant (label >= 1) at rank 2
    assert float(mrr(S1, Y1, topn=1)) == 0.0
    assert float(precision(S1, Y1)) == 0.5
    assert float(precision(S1, Y1, topn=2)) == 0.5
    assert float(recall(S1, Y1, topn=2)) == 0.5
    assert float(recall(S1, Y1)) == 1.0
    assert float(mean_average_precision(S1, Y1)) == pytest.approx((1 / 2 + 2 / 3) / 2, rel=1e-14)
    # Only the relevant item at rank 2 is in the top 2; the one at rank 3 counts as a miss.
    assert float(mean_average_precision(S1, Y1, topn=2)) == pytest.approx(0.25, rel=1e-14)
    # Ordered pairs (better label first): (1,0), (2,0), (2,1), (1,3), (2,3); right: (1,3), (2,3).
    assert float(ordered_pair_accuracy(S1, Y1)) == pytest.approx(2 / 5, rel=1e-14)


def test_ties_rank_the_earlier_item_first():
    scores = t([[1.0, 1.0, 1.0]])
    first = t([[1.0, 0.0, 0.0]])
    last = t([[0.0, 0.0, 1.0]])
    assert float(mrr(scores, first)) == 1.0
    assert float(mrr(scores, last)) == pytest.approx(1 / 3)
    assert float(precision(scores, last, topn=1)) == 0.0
    assert float(ndcg(scores, first)) == 1.0
    # A tied pair is never ordered right.
    assert float(ordered_pair_accuracy(scores, first)) == 0.0


def test_graded_labels_below_one_are_not_relevant_but_have_gain():
    scores, labels = t([[2.0, 1.0]]), t([[0.0, 0.5]])
    assert float(mrr(scores, labels)) == 0.0
    assert float(precision(scores, labels)) == 0.0
    gain = 2**0.5 - 1
    assert float(ndcg(scores, labels)) == pytest.approx(gain / math.log2(3) / gain)


def test_hand_computed_pointwise():
    p, y = t([1.0, 2.0, 4.0]), t([1.0, 4.0, 3.0])
    assert float(rmse(p, y)) == pytest.approx(math.sqrt(5 / 3))
    assert float(mae(p, y)) == pytest.approx(1.0)
    w = t([1.0, 0.0, 3.0])
    assert float(rmse(p, y, weights=w)) == pytest.approx(math.sqrt(3 / 4))
    probs, labels = t([0.9, 0.2, 0.5, 0.6]), t([1.0, 1.0, 0.0, 0.0])
    # 0.9 -> 1 right, 0.2 -> 0 wrong, 0.5 -> 0 (not > 0.5) right, 0.6 -> 1 wrong.
    assert float(binary_accuracy(probs, labels)) == 0.5
    logits = torch.logit(probs)
    logits[2] = 0.0
    assert float(binary_accuracy(logits, labels, from_logits=True)) == 0.5
    want = -(math.log(0.9) + math.log(0.2) + math.log(0.5) + math.log(0.4)) / 4
    assert float(log_loss(probs, labels)) == pytest.approx(want, rel=1e-12)
    assert float(log_loss(torch.logit(probs), labels, from_logits=True)) == pytest.approx(
        want, rel=1e-12
    )


def test_hand_computed_auc():
    # sklearn's roc_auc_score example: 3 of 4 (positive, negative) pairs ordered right.
    assert float(auc(t([0.1, 0.4, 0.35, 0.8]), t([0.0, 0.0, 1.0, 1.0]))) == 0.75
    # A tie between a positive and a negative counts half.
    assert float(auc(t([0.5, 0.5, 0.9]), t([1.0, 0.0, 0.0]))) == 0.25
    # Weights: the right pair (0.8 over 0.4) weighs 2 * 3, the wrong one (0.35 under 0.4) 1 * 3.
    got = auc(t([0.4, 0.35, 0.8]), t([0.0, 1.0, 1.0]), weights=t([3.0, 1.0, 2.0]))
    assert float(got) == pytest.approx(6 / 9)


# --- TF-Ranking and Keras on the same inputs -------------------------------------------------

# Produced with tensorflow-cpu 2.21.0 and TF-Ranking's metrics_impl.py / utils.py at commit
# 5b1d1338 of github.com/tensorflow/ranking (March 2024, imported with stub parent packages):
# ``v, w = <Metric>(name, topn).compute(labels, scores, weights, mask)`` in float32, then
# ``sum(v * w) / sum(w)``. The inputs have no ties among real items (TF-Ranking shuffles ties)
# and, for case B, a relevant item in every list (TF-Ranking gives lists without one the batch's
# average weight; unit weights make that 1, as here).
TFR_SCORES = [
    [0.3, 0.9, 0.1, 0.5, 0.7],
    [2.0, -1.0, 0.5, 1.5, 0.0],
    [0.2, 0.4, 0.6, 0.8, 1.0],
    [1.0, 3.0, 2.0, 0.0, 0.0],
]
TFR_INPUTS = {
    # A: unit weights, padding by negative labels, list 2 without a relevant item.
    "A": ([[2, 0, 1, 3, -1], [0, 1, 0, 2, -1], [0, 0, 0, -1, 0], [1, 0, 0, -1, -1]], None, None),
    # B: per-item weights.
    "B": (
        [[2, 0, 1, 3, -1], [0, 1, 0, 2, -1], [0, 1, 0, -1, 0], [1, 0, 0, -1, -1]],
        [[0.5, 1, 2, 1.5, 1], [1, 0.25, 1, 3, 1], [2, 1, 0.5, 1, 1], [1, 2, 1, 1, 1]],
        None,
    ),
    # C: an explicit mask over non-negative labels.
    "C": (
        [[2, 0, 1, 3, 1], [0, 1, 0, 2, 3], [0, 2, 0, 1, 0], [1, 0, 0, 2, 0]],
        None,
        [[1, 1, 0, 1, 1], [1, 1, 1, 1, 0], [1, 0, 1, 1, 1], [1, 1, 1, 0, 1]],
    ),
}
TFR_VALUES = {
    ("ndcg", "A", None): 0.453915,
    ("ndcg", "B", None): 0.590643,
    ("ndcg", "C", None): 0.587048,
    ("ndcg", "A", 2): 0.254484,
    ("ndcg", "B", 2): 0.385078,
    ("ndcg", "C", 2): 0.305794,
    ("dcg", "A", None): 2.292663,
    ("dcg", "B", None): 2.689623,
    ("dcg", "C", None): 2.219339,
    ("dcg", "A", 2): 1.577324,
    ("dcg", "B", 2): 2.202799,
    ("dcg", "C", 2): 0.788662,
    ("mrr", "A", None): 0.333333,
    ("mrr", "B", None): 0.432773,
    ("mrr", "C", None): 0.458333,
    ("mrr", "A", 2): 0.25,
    ("mrr", "B", 2): 0.298319,
    ("mrr", "C", 2): 0.375,
    ("precision", "A", None): 0.395833,
    ("precision", "B", None): 0.483193,
    ("precision", "C", None): 0.4375,
    ("precision", "A", 2): 0.25,
    ("precision", "B", 2): 0.298319,
    ("precision", "C", 2): 0.375,
    ("recall", "A", None): 0.75,
    ("recall", "B", None): 1.0,
    ("recall", "C", None): 1.0,
    ("recall", "A", 2): 0.208333,
    ("recall", "B", 2): 0.253501,
    ("recall", "C", 2): 0.458333,
    ("mean_average_precision", "A", None): 0.368056,
    ("mean_average_precision", "B", None): 0.471989,
    ("mean_average_precision", "C", None): 0.493056,
    ("mean_average_precision", "A", 2): 0.104167,
    ("mean_average_precision", "B", 2): 0.201681,
    ("mean_average_precision", "C", 2): 0.229167,
    ("ordered_pair_accuracy", "A", None): 0.384615,
    ("ordered_pair_accuracy", "B", None): 0.477273,
    ("ordered_pair_accuracy", "C", None): 0.352941,
}


@pytest.mark.parametrize(("key", "want"), TFR_VALUES.items(), ids=lambda k: str(k))
def test_matches_tf_ranking(key, want):
    name, case, topn = key
    labels, weights, mask = TFR_INPUTS[case]
    kw = {
        "weights": None if weights is None else t(weights),
        "mask": None if mask is None else torch.tensor(mask, dtype=torch.bool),
    }
    got = _call(name, t(TFR_SCORES), t(labels), topn, **kw)
    assert float(got) == pytest.approx(want, abs=2e-6)


def test_matches_keras():
    """Values from Keras 3.15.1 (TensorFlow 2.21.0 back end), float32: ``keras.metrics.<M>()``
    with ``update_state(labels, predictions, sample_weight=w)`` then ``result()``."""
    p = t([[0.9, 0.2, 0.6], [0.4, 0.0, 0.75], [0.5, 1.0, 0.3]])
    y = t([[1.0, 0.0, 0.0], [1.0, 1.0, 1.0], [0.0, 1.0, 0.0]])
    soft = t([[0.8, 0.1, 0.3], [1.0, 0.6, 1.0], [0.0, 1.0, 0.2]])
    w = t([0.5, 2.0, 1.0])  # per row, as a Keras sample_weight of shape [B]
    assert float(rmse(p, y, weights=w)) == pytest.approx(0.5682051777839661, abs=1e-6)
    assert float(mae(p, y, weights=w)) == pytest.approx(0.4714285731315613, abs=1e-6)
    assert float(binary_accuracy(p, y, weights=w)) == pytest.approx(0.5714285969734192, abs=1e-6)
    got = binary_accuracy(p, y, weights=w, threshold=0.7)
    assert float(got) == pytest.approx(0.6190476417541504, abs=1e-6)
    # BinaryCrossentropy clips probabilities to [1e-7, 1 - 1e-7] (p holds 0.0 and 1.0).
    assert float(log_loss(p, soft, weights=w)) == pytest.approx(2.2685294151306152, abs=1e-5)
    got = log_loss((p - 0.5) * 6, soft, weights=w, from_logits=True)
    assert float(got) == pytest.approx(0.790347158908844, abs=1e-6)


# --- padding, weights, lists without relevant items ------------------------------------------


@pytest.mark.parametrize("name", list(LIST_METRICS))
def test_three_ways_to_pad_agree_and_padding_content_is_ignored(name):
    scores = t([[0.3, 0.9, 0.1, 0.5], [2.0, -1.0, 0.5, 1.5]])
    labels = t([[2.0, 0.0, 1.0, 3.0], [0.0, 1.0, 2.0, 2.0]])
    pad = torch.tensor([[False, True, False, False], [False, False, True, False]])
    by_label = _call(name, scores, torch.where(pad, -1.0, labels))
    by_mask = _call(name, scores, labels, mask=~pad)
    by_weight = _call(name, scores, labels, weights=(~pad).to(F64))
    # Padded entries may hold anything, even NaN or inf scores and -inf labels.
    junk = _call(
        name,
        torch.where(pad, torch.tensor(float("nan"), dtype=F64), scores),
        torch.where(pad, -math.inf, labels),
    )
    assert torch.equal(by_label, by_mask) and torch.equal(by_label, by_weight)
    assert torch.equal(by_label, junk)


@pytest.mark.parametrize("name", list(LIST_METRICS))
def test_all_padding_lists_weigh_zero_and_never_nan(name):
    scores = t([[0.3, 0.9, 0.1], [2.0, -1.0, 0.5]])
    labels = t([[2.0, 0.0, 1.0], [-1.0, -1.0, -1.0]])
    terms = _call(name, scores, labels, reduction="none")
    assert float(terms.weights[1]) == 0.0 and float(terms.values[1]) == 0.0
    assert torch.equal(_call(name, scores, labels), _call(name, scores[:1], labels[:1]))
    # Every list padding: the mean is 0, its gradient 0, nothing NaN.
    padded = torch.full_like(labels, -1.0)
    value = _call(name, scores, padded)
    assert float(value) == 0.0
    weights = torch.ones_like(scores)
    grads = torch.func.grad(lambda s, w: _call(name, s, padded, weights=w), argnums=(0, 1))(
        scores, weights
    )
    assert all(torch.equal(g, torch.zeros_like(g)) for g in grads)
    # An empty batch too.
    assert float(_call(name, scores[:0], labels[:0])) == 0.0


@pytest.mark.parametrize("name", HAS_TOPN)
def test_lists_without_relevant_items_count_as_zero(name):
    scores = t([[0.3, 0.9, 0.1], [2.0, -1.0, 0.5]])
    labels = t([[2.0, 0.0, 1.0], [0.0, 0.0, -1.0]])
    terms = _call(name, scores, labels, reduction="none")
    assert terms.weights.tolist() == [1.0, 1.0]
    assert float(terms.values[1]) == 0.0
    assert float(_call(name, scores, labels)) == pytest.approx(float(terms.values[0]) / 2)


def test_lists_without_relevant_items_weigh_their_mean_item_weight():
    """TF-Ranking would give list 1 the batch's average list weight (2.0) instead of its own."""
    scores = t([[0.3, 0.9, 0.1], [2.0, -1.0, 0.5]])
    labels = t([[2.0, 0.0, 1.0], [0.0, 0.0, -1.0]])
    terms = mrr(scores, labels, weights=t([[2.0, 5.0, 2.0], [1.0, 4.0, 9.0]]), reduction="none")
    assert terms.weights.tolist() == [2.0, 2.5]  # 9.0 is on a padding item
    terms = mrr(scores, labels, weights=t([2.0, 3.0]), reduction="none")
    assert terms.weights.tolist() == [2.0, 3.0]


def test_ordered_pair_accuracy_weighs_lists_by_their_pairs():
    scores = t([[0.3, 0.9, 0.1], [2.0, -1.0, 0.5]])
    labels = t([[2.0, 0.0, 1.0], [1.0, 1.0, 1.0]])  # list 1: no ordered pair
    terms = ordered_pair_accuracy(scores, labels, reduction="none")
    assert terms.weights.tolist() == [3.0, 0.0]
    # Weighted by the better item of each pair: pairs (0,1) and (0,2) weigh 2, (2,1) weighs 3.
    w = t([[2.0, 1.0, 3.0], [1.0, 1.0, 1.0]])
    terms = ordered_pair_accuracy(scores, labels, weights=w, reduction="none")
    assert terms.weights.tolist() == [7.0, 0.0]
    assert float(terms.values[0]) == pytest.approx(2 / 7)  # only (0, 2) is ordered right


@pytest.mark.parametrize("name", HAS_TOPN)
def test_topn_beyond_the_list_is_the_whole_list(name):
    scores, labels, mask, w = _random_lists(3, 5, 6, "item", True)
    whole = _call(name, scores, labels, mask=mask, weights=w)
    assert torch.equal(_call(name, scores, labels, 6, mask=mask, weights=w), whole)
    assert torch.equal(_call(name, scores, labels, 100, mask=mask, weights=w), whole)


def test_integer_labels_and_scores():
    scores, labels = torch.tensor([[3, 2, 1, 0]]), torch.tensor([[0, 1, 2, -1]])
    got = ndcg(scores, labels)
    assert got.dtype == torch.get_default_dtype()
    assert float(got) == pytest.approx(float(ndcg(S1[:, :3], Y1[:, :3])), rel=1e-6)


# --- gradients -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(LIST_METRICS))
def test_list_metric_gradients_are_exact_and_not_vacuous(name):
    """The matrix cases allow zero gradients (0 in the scores is exact); here the weights'
    gradient must be nonzero everywhere, and the labels' for the gain metrics."""
    scores, labels, mask, w = refs.list_inputs(0)
    metric, reference = LIST_METRICS[name]
    topn = 3 if name in HAS_TOPN else None
    kw = {"mask": mask, **({"topn": topn} if topn else {})}
    grads = torch.func.grad(lambda s, y, w: metric(s, y, weights=w, **kw), argnums=(0, 1, 2))(
        scores, labels, w
    )
    y, wr = labels.clone().requires_grad_(), w.clone().requires_grad_()
    want = torch.autograd.grad(
        reference(scores, y, mask, wr, topn)[0], (y, wr), materialize_grads=True
    )
    assert torch.equal(grads[0], torch.zeros_like(scores))  # piecewise constant in the scores
    _close(grads[1], want[0])
    _close(grads[2], want[1])
    assert bool(want[1].abs().max() > 0)
    assert bool(want[0].abs().max() > 0) == (name in ("ndcg", "dcg"))
    # Padding gets no gradient.
    assert float(grads[1][3].abs().sum()) == 0.0 and float(grads[1][0, 4]) == 0.0
    assert float(grads[2][3].abs().sum()) == 0.0 and float(grads[2][1, 0]) == 0.0


def test_rmse_at_zero_error_has_zero_gradient_not_nan():
    p = t([1.0, 2.0])
    g = torch.func.grad(lambda p: rmse(p, t([1.0, 2.0])))(p)
    assert torch.equal(g, torch.zeros_like(p))


def test_log_loss_clips_like_keras_and_logits_are_stable():
    y = t([1.0, 0.0, 1.0, 0.0])
    p = t([0.0, 1.0, 1.0, 0.0])
    losses = log_loss(p, y, reduction="none").values
    clip = -math.log(1e-7)
    assert losses[:2].tolist() == pytest.approx([clip, clip], rel=1e-9)  # 1 - (1 - eps) rounds
    assert losses[2:].tolist() == pytest.approx([-math.log(1 - 1e-7)] * 2, rel=1e-9)
    g = torch.func.grad(lambda p: log_loss(p, y))(p)
    assert torch.equal(g, torch.zeros_like(g))  # beyond the clip
    x = t([200.0, -200.0, 0.0])
    values = log_loss(x, t([0.0, 1.0, 1.0]), from_logits=True, reduction="none").values
    assert values.tolist() == pytest.approx([200.0, 200.0, math.log(2)], rel=1e-12)
    g = torch.func.grad(lambda x: log_loss(x, t([0.0, 1.0, 0.25]), from_logits=True))(x)
    _close(g, (torch.sigmoid(x) - t([0.0, 1.0, 0.25])) / 3)


# --- AUC -------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(5))
def test_auc_matches_the_pairs_loop(seed):
    g = torch.Generator().manual_seed(seed)
    n = 40
    scores = torch.randint(0, 12, (n,), generator=g).to(F64)  # many ties
    labels = torch.randint(0, 2, (n,), generator=g).to(F64)
    labels[:4] = torch.rand(4, generator=g, dtype=F64)  # soft labels too
    w = torch.rand(n, generator=g, dtype=F64) + 0.1
    _close(auc(scores, labels, weights=w), refs.ref_auc(scores, labels, w))
    _close(auc(scores, labels), refs.ref_auc(scores, labels))
    # Any shape, flattened; weights of a prefix shape weigh rows.
    rows = w[:8]
    _close(
        auc(scores.reshape(8, 5), labels.reshape(8, 5), weights=rows),
        refs.ref_auc(scores, labels, rows.repeat_interleave(5)),
    )


def test_auc_without_positives_or_negatives_is_zero():
    assert float(auc(t([0.1, 0.2]), t([1.0, 1.0]))) == 0.0
    assert float(auc(t([0.1, 0.2]), t([0.0, 0.0]))) == 0.0
    assert float(auc(t([]), t([]))) == 0.0


# --- accumulators ----------------------------------------------------------------------------


def _shards(n: int, cuts: tuple[int, ...]):
    bounds = [0, *cuts, n]
    return [slice(a, b) for a, b in itertools.pairwise(bounds)]


@pytest.mark.parametrize("name", list(LIST_METRICS))
def test_list_metrics_accumulate_over_shards(name):
    scores, labels, mask, w = _random_lists(7, 9, 6, "item0", True)
    states = []
    for part in _shards(9, (2, 3, 7)):
        state = mean_init()
        terms = _call(name, scores[part], labels[part], mask=mask[part], weights=w[part],
                      reduction="none")  # fmt: skip
        states.append(mean_update(state, *terms))
    merged = states[0]
    for s in states[1:]:
        merged = mean_merge(merged, s)
    whole = _call(name, scores, labels, mask=mask, weights=w)
    assert mean_result(merged) == pytest.approx(float(whole), rel=1e-12, abs=1e-15)


@pytest.mark.parametrize("metric", [rmse, mae, log_loss, binary_accuracy])
def test_pointwise_metrics_accumulate_over_shards(metric):
    g = torch.Generator().manual_seed(0)
    p = torch.rand(10, 3, generator=g, dtype=F64)
    y = torch.randint(0, 2, (10, 3), generator=g).to(F64)
    w = torch.rand(10, generator=g, dtype=F64)
    state = mean_init()
    for part in _shards(10, (4, 5)):
        state = mean_update(state, *metric(p[part], y[part], weights=w[part], reduction="none"))
    got = mean_result(state)
    if metric is rmse:
        got = math.sqrt(got)  # the terms are squared errors
    assert got == pytest.approx(float(metric(p, y, weights=w)), rel=1e-12)


def test_auc_accumulates_exactly():
    g = torch.Generator().manual_seed(1)
    scores = torch.randint(0, 20, (50,), generator=g).to(torch.float32) / 7
    labels = torch.randint(0, 2, (50,), generator=g).to(torch.float32)
    w = torch.rand(50, generator=g)
    parts = [auc_update(auc_init(), scores[s], labels[s], w[s]) for s in _shards(50, (10, 11, 30))]
    merged = auc_merge(auc_merge(parts[0], parts[1]), auc_merge(parts[2], parts[3]))
    whole = auc(scores.to(F64), labels.to(F64), weights=w.to(F64))
    assert auc_result(merged) == float(whole)
    assert merged.scores.dtype == F64 and merged.scores.shape == (50,)
    assert auc_result(auc_init()) == 0.0


# --- bad input -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(LIST_METRICS))
def test_list_metric_errors_name_the_argument(name):
    s, y = t([[0.1, 0.2, 0.3]]), t([[1.0, 0.0, 2.0]])
    with pytest.raises(
        ValueError, match=r"labels must have the shape of scores \(1, 3\), got \(3,\)"
    ):
        _call(name, s, y[0])
    with pytest.raises(ValueError, match=r"scores must be 2-D"):
        _call(name, s[0], y[0])
    with pytest.raises(ValueError, match=r"weights must be per list \[1\]"):
        _call(name, s, y, weights=t([[1.0, 2.0]]))
    with pytest.raises(TypeError, match="mask must be a bool tensor"):
        _call(name, s, y, mask=torch.ones(1, 3))
    with pytest.raises(ValueError, match="mask must have the shape"):
        _call(name, s, y, mask=torch.ones(1, 2, dtype=torch.bool))
    with pytest.raises(ValueError, match=rf"{name}: scores contain NaN"):
        _call(name, t([[0.1, float("nan"), 0.3]]), y)
    with pytest.raises(ValueError, match=rf"{name}: labels contain NaN"):
        _call(name, s, t([[1.0, float("nan"), 2.0]]))
    with pytest.raises(ValueError, match="weights must be finite and non-negative"):
        _call(name, s, y, weights=t([[1.0, -1.0, 1.0]]))
    with pytest.raises(ValueError, match="reduction"):
        _call(name, s, y, reduction="sum")
    if name in HAS_TOPN:
        for bad in (0, -2):
            with pytest.raises(ValueError, match="topn must be positive"):
                _call(name, s, y, bad)
        with pytest.raises(TypeError, match="topn must be a Python int"):
            _call(name, s, y, torch.tensor(2))
    # NaN labels on masked-out entries are padding, not an error.
    _call(name, s, t([[1.0, float("nan"), 2.0]]), mask=torch.tensor([[True, False, True]]))


def test_nan_checks_are_skipped_under_vmap():
    s = t([[[0.1, float("nan"), 0.3]], [[0.1, 0.2, 0.3]]])
    y = t([[1.0, 0.0, 2.0]])
    out = torch.vmap(lambda s: ndcg(s, y), in_dims=0)(s)
    assert out.shape == (2,) and not bool(torch.isnan(out[1]))


@pytest.mark.parametrize("metric", [rmse, mae, log_loss, binary_accuracy, auc])
def test_pointwise_errors_name_the_argument(metric):
    p, y = t([0.1, 0.7]), t([0.0, 1.0])
    with pytest.raises(ValueError, match=r"labels must have the shape of (predictions|scores)"):
        metric(p, y[:1])
    with pytest.raises(ValueError, match="prefix"):
        metric(p.reshape(1, 2), y.reshape(1, 2), weights=t([1.0, 2.0]))
    with pytest.raises(ValueError, match=r"(predictions|scores) contain NaN"):
        metric(t([float("nan"), 0.7]), y)
    with pytest.raises(ValueError, match="labels contain NaN"):
        metric(p, t([float("nan"), 1.0]))
    with pytest.raises(ValueError, match="weights must be finite and non-negative"):
        metric(p, y, weights=t([1.0, -0.5]))


def test_probability_and_label_ranges():
    with pytest.raises(ValueError, match="from_logits=True"):
        log_loss(t([1.5, 0.2]), t([1.0, 0.0]))
    with pytest.raises(ValueError, match="from_logits=True"):
        binary_accuracy(t([-0.5, 0.2]), t([1.0, 0.0]))
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 1\]"):
        auc(t([0.1, 0.2]), t([2.0, 0.0]))
    with pytest.raises(ValueError, match=r"threshold must lie in \(0, 1\)"):
        binary_accuracy(t([-0.5, 0.2]), t([1.0, 0.0]), from_logits=True, threshold=1.0)
    with pytest.raises(ValueError, match="reduction"):
        rmse(t([0.1]), t([0.2]), reduction="sum")
