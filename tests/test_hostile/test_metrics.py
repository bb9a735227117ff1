"""Hostile input to the ranking and retrieval metrics and to brute-force top-k."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from torchrs_fn import metrics
from torchrs_fn.index import brute_force_top_k

HOSTILE = settings.get_profile("hostile")

LIST_METRICS = {
    "ndcg": metrics.ndcg,
    "dcg": metrics.dcg,
    "mrr": metrics.mrr,
    "precision": metrics.precision,
    "recall": metrics.recall,
    "mean_average_precision": metrics.mean_average_precision,
    "ordered_pair_accuracy": metrics.ordered_pair_accuracy,
}
BOUNDED = set(LIST_METRICS) - {"dcg"}  # values in [0, 1]
NO_TOPN = {"ordered_pair_accuracy"}


def _topn(name: str, topn: int | None) -> dict:
    return {} if name in NO_TOPN else {"topn": topn}


@st.composite
def ranked_lists(draw):
    b = draw(st.integers(1, 6))
    n = draw(st.integers(1, 8))
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**31)))
    scores = torch.randn(b, n, generator=g) * 10.0 ** draw(st.integers(-3, 30))
    if draw(st.booleans()):
        scores = scores.round()  # ties
    labels = torch.randint(-1, 5, (b, n), generator=g).float()
    mask = torch.rand(b, n, generator=g) < 0.8
    padded = draw(st.lists(st.integers(0, b - 1), max_size=b))
    labels[padded] = -1.0
    scores = torch.where(labels < 0, torch.full_like(scores, math.nan), scores)
    return scores, labels, mask, padded


@settings(HOSTILE, max_examples=40)
@given(batch=ranked_lists(), topn=st.none() | st.integers(1, 20), use_mask=st.booleans())
@pytest.mark.parametrize("name", sorted(LIST_METRICS))
def test_list_metric_finite_bounded_and_padding_weighs_nothing(name, batch, topn, use_mask):
    scores, labels, mask, padded = batch
    fn = LIST_METRICS[name]
    mask = mask if use_mask else None
    value = fn(scores, labels, mask=mask, **_topn(name, topn))
    assert value.shape == () and torch.isfinite(value)
    terms = fn(scores, labels, mask=mask, reduction="none", **_topn(name, topn))
    assert torch.isfinite(terms.values).all() and torch.isfinite(terms.weights).all()
    assert (terms.weights[padded] == 0).all()  # an all-padding list counts nowhere
    if name in BOUNDED:
        assert ((terms.values >= 0) & (terms.values <= 1 + 1e-6)).all()
        assert 0 <= float(value) <= 1 + 1e-6
    # A cut-off at or beyond the list length is the whole list (TF-Ranking's topn=None).
    if topn is not None and topn >= scores.shape[1]:
        torch.testing.assert_close(value, fn(scores, labels, mask=mask))


@settings(HOSTILE, max_examples=20)
@given(b=st.integers(1, 4), n=st.integers(1, 6), topn=st.none() | st.integers(1, 9))
@pytest.mark.parametrize("name", sorted(LIST_METRICS))
def test_list_metric_of_only_padding_is_zero(name, b, n, topn):
    scores = torch.full((b, n), math.nan)
    value = LIST_METRICS[name](scores, -torch.ones(b, n), **_topn(name, topn))
    assert value.item() == 0.0


@settings(HOSTILE, max_examples=20)
@given(batch=ranked_lists(), where=st.data())
@pytest.mark.parametrize("name", sorted(LIST_METRICS))
def test_list_metric_nan_label_is_a_value_error(name, batch, where):
    scores, labels, _, _ = batch
    i = where.draw(st.integers(0, scores.shape[0] - 1))
    j = where.draw(st.integers(0, scores.shape[1] - 1))
    labels[i, j] = where.draw(st.sampled_from([math.nan, math.inf]))
    with pytest.raises(ValueError, match="labels contain NaN or \\+inf"):
        LIST_METRICS[name](scores, labels)


@settings(HOSTILE, max_examples=20)
@given(topn=st.one_of(st.integers(-5, 0), st.floats(), st.booleans(), st.text(max_size=2)))
def test_bad_topn_is_refused(topn):
    with pytest.raises((TypeError, ValueError), match="topn"):
        metrics.ndcg(torch.randn(2, 3), torch.ones(2, 3), topn=topn)


# -- retrieval -------------------------------------------------------------------------------


def _reference_top(q, c, k, exclude):
    """Per query: candidate rows by descending score, lower row first on ties, excluded left out."""
    scores = (q.double() @ c.double().T).tolist()
    out = []
    for b, row in enumerate(scores):
        banned = {int(e) for e in exclude[b] if e >= 0}
        order = sorted((r for r in range(len(row)) if r not in banned), key=lambda r: -row[r])
        out.append(order[:k])
    return out


@st.composite
def retrieval_cases(draw):
    b = draw(st.integers(1, 6))
    n = draw(st.integers(1, 40))
    d = draw(st.integers(1, 4))
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**31)))
    # Small integer embeddings: exact float scores, so the reference order is unambiguous.
    q = torch.randint(-3, 4, (b, d), generator=g).float()
    c = torch.randint(-3, 4, (n, d), generator=g).float()
    width = draw(st.integers(0, 6))
    exclude = torch.randint(-2, n, (b, width), generator=g)
    relevant = torch.randint(-2, n, (b, draw(st.integers(0, 4))), generator=g)
    k = draw(st.integers(1, n))
    return q, c, k, exclude, relevant


@settings(HOSTILE, max_examples=80)
@given(case=retrieval_cases(), chunk=st.none() | st.integers(1, 50))
def test_brute_force_top_k_matches_a_sort(case, chunk):
    q, c, k, exclude, _ = case
    scores, rows = brute_force_top_k(q, c, k, exclusions=exclude, chunk_size=chunk)
    assert scores.shape == rows.shape == (q.shape[0], k)
    full = q @ c.T
    for b, expected in enumerate(_reference_top(q, c, k, exclude)):
        got = rows[b].tolist()
        real = [r for r in got if r >= 0]
        assert len(real) == len(expected)  # -1 only where exclusions left fewer than k rows
        assert got[len(real) :] == [-1] * (k - len(real))
        assert (scores[b, len(real) :] == -math.inf).all()
        assert not set(real) & {int(e) for e in exclude[b] if e >= 0}
        assert len(set(real)) == len(real)
        # Same scores as the reference (ties may pick other rows of equal score).
        assert [full[b, r].item() for r in real] == [full[b, r].item() for r in expected]
        assert scores[b, : len(real)].tolist() == [full[b, r].item() for r in real]


@settings(HOSTILE, max_examples=50)
@given(
    n=st.integers(1, 10),
    k=st.integers(-3, 15) | st.floats() | st.booleans(),
    bad=st.sampled_from(["none", "nan_query", "exclusion_row"]),
)
def test_brute_force_top_k_bad_input_is_named(n, k, bad):
    q, c = torch.randn(2, 3), torch.randn(n, 3)
    ok_k = isinstance(k, int) and not isinstance(k, bool) and 1 <= k <= n
    if bad == "nan_query":
        q[1, 2] = math.nan
        with pytest.raises(ValueError, match="NaN"):
            brute_force_top_k(q, c, min(n, 1))
    elif bad == "exclusion_row":
        with pytest.raises(ValueError, match="exclusions name candidate row"):
            brute_force_top_k(q, c, 1, exclusions=torch.tensor([[n], [0]]))
    elif ok_k:
        assert brute_force_top_k(q, c, k)[1].shape == (2, k)
    else:
        with pytest.raises(ValueError, match="k must be an int"):
            brute_force_top_k(q, c, k)


@settings(HOSTILE, max_examples=80)
@given(case=retrieval_cases(), extra_ks=st.lists(st.integers(1, 40), max_size=3))
def test_retrieval_metrics_match_a_reference(case, extra_ks):
    q, c, k, exclude, relevant = case
    n = c.shape[0]
    ks = tuple(dict.fromkeys([k, *(x for x in extra_ks if x <= n)]))
    out = metrics.retrieval_metrics(q, c, relevant, ks=ks, exclude=exclude)
    reference = _reference_top(q, c, n, exclude)
    for b in range(q.shape[0]):
        rel = {int(r) for r in relevant[b] if r >= 0}
        assert out["weight"][b].item() == float(bool(rel))
        ranking = reference[b]
        for kk in ks:
            hits = len(set(ranking[:kk]) & rel)
            for key in ("recall", "precision", "hit_rate", "ndcg", "map"):
                value = out[f"{key}@{kk}"][b].item()
                assert math.isfinite(value) and 0 <= value <= 1 + 1e-6
            if rel:
                assert out[f"recall@{kk}"][b].item() == pytest.approx(hits / len(rel))
            assert out[f"precision@{kk}"][b].item() == pytest.approx(hits / kk)
        first = next((i for i, r in enumerate(ranking) if r in rel), None)
        expected_mrr = 0.0 if first is None else 1.0 / (first + 1)
        assert out["mrr"][b].item() == pytest.approx(expected_mrr)


@settings(HOSTILE, max_examples=40)
@given(
    ks=st.lists(st.integers(-2, 12) | st.floats(0, 5) | st.booleans(), min_size=0, max_size=3),
    bad=st.sampled_from(["none", "nan", "row"]),
)
def test_retrieval_metrics_bad_input_is_named(ks, bad):
    q, c = torch.randn(2, 3), torch.randn(6, 3)
    relevant = torch.tensor([[0], [1]])
    valid_ks = bool(ks) and all(
        isinstance(k, int) and not isinstance(k, bool) and 1 <= k <= 6 for k in ks
    )
    if bad == "nan":
        c[3, 1] = math.nan
        with pytest.raises(ValueError, match="NaN"):
            metrics.retrieval_metrics(q, c, relevant, ks=(1,))
    elif bad == "row":
        with pytest.raises(IndexError, match="relevant"):
            metrics.retrieval_metrics(q, c, torch.tensor([[6], [0]]), ks=(1,))
    elif valid_ks:
        assert "mrr" in metrics.retrieval_metrics(q, c, relevant, ks=ks)
    else:
        with pytest.raises((TypeError, ValueError), match="k"):
            metrics.retrieval_metrics(q, c, relevant, ks=ks)


@settings(HOSTILE, max_examples=30)
@given(
    n=st.integers(1, 300),
    where=st.data(),
    bad=st.sampled_from([math.nan, math.inf, -math.inf]),
    chunk=st.none() | st.integers(1, 20),
)
def test_brute_force_top_k_refuses_non_finite_candidates(n, where, bad, chunk):
    """Whatever the chunking, a NaN/inf candidate is an error, never a silent top hit or drop."""
    c = torch.randn(n, 3)
    c[where.draw(st.integers(0, n - 1)), where.draw(st.integers(0, 2))] = bad
    with pytest.raises(ValueError, match="candidates contain NaN or inf"):
        brute_force_top_k(torch.randn(4, 3), c, 1, chunk_size=chunk)


@settings(HOSTILE, max_examples=60)
@given(case=retrieval_cases(), chunk=st.none() | st.integers(1, 50), pad=st.integers(0, 12))
def test_exclusion_pairs_padded_and_wide_padding_agree(case, chunk, pad):
    # The three spellings of one set of exclusions: padded, padded with many extra -1 columns
    # (the eager path then writes only real pairs), and (query row, candidate row) pairs in a
    # shuffled order. Ranks and metrics must not depend on the spelling.
    q, c, k, exclude, relevant = case
    b = q.shape[0]
    wide = torch.cat([torch.full((b, pad), -1), exclude], dim=1)
    rows, slots = (exclude >= 0).nonzero(as_tuple=True)
    order = torch.randperm(len(rows), generator=torch.Generator().manual_seed(pad))
    pairs = (rows[order], exclude[rows, slots][order])
    positives = (
        relevant.clamp(min=0)[:, 0] if relevant.shape[1] else torch.zeros(b, dtype=torch.long)
    )
    kwargs = {} if chunk is None else {"chunk_size": chunk}
    want = metrics.positive_ranks(q, c, positives, exclude=exclude, **kwargs)
    for form in (wide, pairs):
        assert torch.equal(metrics.positive_ranks(q, c, positives, exclude=form, **kwargs), want)
    ks = (k,)
    ref = metrics.retrieval_metrics(q, c, relevant, ks=ks, exclude=exclude, chunk_size=chunk)
    for form in (wide, pairs):
        got = metrics.retrieval_metrics(q, c, relevant, ks=ks, exclude=form, chunk_size=chunk)
        for name, value in ref.items():
            assert torch.equal(got[name], value), name
