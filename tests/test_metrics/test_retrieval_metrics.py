"""Retrieval metrics with exclusions against brute-force Python loops over a full score matrix.

The references (``tests/composability_retrieval_metrics.py``) rank each query's candidates with ``sorted`` by ``(-score, row)`` after dropping
its excluded rows, then count hits by the textbook formulas. Integer-valued float64 embeddings
make every score exact, so ties are many and compare exactly.
"""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import pytest
import torch

from torchrs_fn import metrics
from torchrs_fn.metrics import retrieval as retrieval_module

_F64 = torch.float64


# --- references (in tests/composability_retrieval_metrics.py, shared with the matrix) ------------

TESTS = Path(__file__).resolve().parents[1]


def _load(name: str):
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, TESTS / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


_load("composability_cases")  # loads its parts, this file's references among them
refs = sys.modules["composability_retrieval_metrics"]
ref_retrieval_metrics = refs.ref_retrieval_lists
ref_ranks = refs.ref_ranks
_names = refs.metric_names


# --- inputs -------------------------------------------------------------------------------------


def _inputs(seed: int, ties: bool, b: int = 12, n: int = 30, d: int = 3):
    """Queries, candidates, relevant rows ``[b, 5]`` (padding, a repeat, two empty queries) and
    exclusions ``[b, 6]`` (padding, and query 4's first relevant rows excluded)."""
    g = torch.Generator().manual_seed(seed)
    if ties:
        q = torch.randint(-2, 3, (b, d), generator=g).to(_F64)
        c = torch.randint(-2, 3, (n, d), generator=g).to(_F64)
    else:
        q = torch.randn(b, d, generator=g, dtype=_F64)
        c = torch.randn(n, d, generator=g, dtype=_F64)
    relevant = torch.randint(-3, n, (b, 5), generator=g).clamp(min=-1)
    relevant[0, 1] = relevant[0, 0] = 4  # a row listed twice
    relevant[1] = -1  # no relevant row
    relevant[3] = -1
    exclude = torch.randint(-3, n, (b, 6), generator=g).clamp(min=-1)
    exclude[4, :2] = relevant[4, :2].clamp(min=0)  # relevant rows excluded
    return q, c, relevant, exclude


def _assert_matches(got, want):
    for name, values in want.items():
        if name == "top_rows":
            assert got[name].tolist() == values, name
        else:
            assert got[name].dtype == _F64, name
            assert torch.allclose(got[name], torch.tensor(values, dtype=_F64), atol=1e-12), (
                name,
                got[name].tolist(),
                values,
            )
    assert set(got) == set(want)


# --- retrieval_metrics --------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("excluded", [False, True])
@pytest.mark.parametrize("chunk", [None, 7])
@pytest.mark.parametrize("padded", [False, True])
def test_retrieval_metrics_match_brute_force(seed, ties, excluded, chunk, padded):
    q, c, relevant, exclude = _inputs(seed, ties)
    if padded:  # mostly padding: the eager path writes only the real (row, candidate) pairs
        exclude = torch.cat([torch.full((exclude.shape[0], 14), -1), exclude], dim=1)
    exclude = exclude if excluded else None
    ks = (1, 5, 10)
    got = metrics.retrieval_metrics(q, c, relevant, ks=ks, exclude=exclude, chunk_size=chunk)
    _assert_matches(got, ref_retrieval_metrics(q, c, relevant, ks, exclude))


def test_query_blocks_match_brute_force(monkeypatch):
    monkeypatch.setattr(retrieval_module, "_SCORE_BLOCK", 60)  # 2 queries per block of 30
    q, c, relevant, exclude = _inputs(5, ties=True, b=9)
    for chunk in (None, 4):
        got = metrics.retrieval_metrics(
            q, c, relevant, ks=(3, 30), exclude=exclude, chunk_size=chunk
        )
        _assert_matches(got, ref_retrieval_metrics(q, c, relevant, (3, 30), exclude))


def test_ties_rank_the_lower_row_first():
    q = torch.ones(2, 2)
    c = torch.tensor([[1.0, 0.0], [0.0, 1.0], [2.0, 0.0], [1.0, 0.0], [0.5, 0.5]])
    # Scores [1, 1, 2, 1, 1] for both queries: row 2, then rows 0, 1, 3, 4.
    out = metrics.retrieval_metrics(
        q, c, torch.tensor([[4], [1]]), ks=(3,), exclude=torch.tensor([[0], [-1]])
    )
    assert out["top_rows"].tolist() == [[2, 1, 3], [2, 0, 1]]
    assert out["mrr"].tolist() == pytest.approx([1 / 4, 1 / 3])  # query 0: row 4 after 2, 1, 3
    assert out["hit_rate@3"].tolist() == [0.0, 1.0]


def test_hand_computed_values():
    q = torch.tensor([[1.0, 0.0]])
    c = torch.tensor([[4.0, 0.0], [3.0, 0.0], [2.0, 0.0], [1.0, 0.0], [0.0, 0.0]])
    # Ranking 0, 1, 2, 3, 4; relevant {1, 3}; k = 3: hits at positions 1 (row 1).
    out = metrics.retrieval_metrics(q, c, torch.tensor([[3, 1, -1]]), ks=(3,))
    assert out["recall@3"].item() == pytest.approx(0.5)
    assert out["precision@3"].item() == pytest.approx(1 / 3)
    assert out["hit_rate@3"].item() == 1.0
    assert out["ndcg@3"].item() == pytest.approx((1 / math.log2(3)) / (1 + 1 / math.log2(3)))
    assert out["map@3"].item() == pytest.approx((1 / 2) / 2)
    assert out["mrr"].item() == pytest.approx(1 / 2)
    assert out["weight"].item() == 1.0


def test_excluded_relevant_row_is_a_miss_but_stays_relevant():
    q = torch.tensor([[1.0, 0.0]])
    c = torch.tensor([[4.0, 0.0], [3.0, 0.0], [2.0, 0.0]])
    relevant = torch.tensor([[0, 2]])
    out = metrics.retrieval_metrics(q, c, relevant, ks=(1, 2), exclude=torch.tensor([[0, -1]]))
    # Row 0 is gone: the ranking is 1, 2. Row 2 is found second; |R| is still 2.
    assert out["top_rows"].tolist() == [[1, 2]]
    assert out["recall@2"].item() == pytest.approx(0.5)
    assert out["hit_rate@1"].item() == 0.0
    assert out["mrr"].item() == pytest.approx(0.5)
    # Every relevant row excluded: all zero, and the query still counts (weight 1).
    out = metrics.retrieval_metrics(q, c, relevant, ks=(2,), exclude=torch.tensor([[2, 0]]))
    assert out["top_rows"].tolist() == [[1, -1]]
    assert [out[k].item() for k in ("recall@2", "ndcg@2", "mrr", "weight")] == [0, 0, 0, 1]


def test_fewer_rows_than_k_after_exclusions():
    q, c = torch.ones(1, 2), torch.eye(2).repeat(2, 1)  # 4 rows, all score 1
    out = metrics.retrieval_metrics(
        q, c, torch.tensor([[3]]), ks=(4,), exclude=torch.tensor([[0, 2]])
    )
    assert out["top_rows"].tolist() == [[1, 3, -1, -1]]
    assert out["precision@4"].item() == pytest.approx(1 / 4)  # still over k
    assert out["recall@4"].item() == 1.0


def test_queries_without_relevant_rows_weigh_zero():
    q, c = torch.randn(3, 2), torch.randn(6, 2)
    out = metrics.retrieval_metrics(q, c, torch.full((3, 2), -1), ks=(2,))
    for name in _names((2,)):
        assert out[name].tolist() == [0.0] * 3, name
    empty = metrics.retrieval_metrics(q, c, torch.zeros(3, 0, dtype=torch.int64), ks=(2,))
    assert empty["weight"].tolist() == [0.0] * 3
    state = metrics.retrieval_metrics_update(
        metrics.retrieval_metrics_init((2,), 6), q, c, -torch.ones(3, 1, dtype=torch.int64)
    )
    result = metrics.retrieval_metrics_result(state)
    assert math.isnan(result["recall@2"]) and math.isnan(result["mrr"])
    assert result["coverage@2"] > 0


def test_empty_batch_keeps_shapes():
    out = metrics.retrieval_metrics(
        torch.zeros(0, 3), torch.randn(5, 3), torch.zeros(0, 2, dtype=torch.int64), ks=(2,)
    )
    assert out["recall@2"].shape == (0,) and out["top_rows"].shape == (0, 2)


# --- accumulator --------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1])
def test_accumulator_matches_brute_force_and_merges_exactly(seed):
    q, c, relevant, exclude = _inputs(seed, ties=True, b=14)
    ks = (1, 4)
    ref = ref_retrieval_metrics(q, c, relevant, ks, exclude)
    counted = sum(ref["weight"])
    want = {
        name: sum(v * w for v, w in zip(ref[name], ref["weight"])) / counted
        for name in _names(ks)
        if name != "weight"
    }
    for k in ks:
        want[f"coverage@{k}"] = (
            len({r for rows in ref["top_rows"] for r in rows[:k] if r >= 0}) / 30
        )

    init = metrics.retrieval_metrics_init(ks, 30)
    whole = metrics.retrieval_metrics_update(init, q, c, relevant, exclude)
    a = metrics.retrieval_metrics_update(init, q[:5], c, relevant[:5], exclude[:5])
    b = metrics.retrieval_metrics_update(init, q[5:], c, relevant[5:], exclude[5:])
    merged = metrics.retrieval_metrics_merge(a, b)
    assert torch.equal(merged.count, whole.count)
    for name in whole.retrieved:
        assert torch.equal(merged.retrieved[name], whole.retrieved[name]), name
    for name in whole.sums:
        assert torch.allclose(merged.sums[name], whole.sums[name], rtol=1e-14), name
    got = metrics.retrieval_metrics_result(merged)
    assert set(got) == set(want)
    for name, value in want.items():
        assert got[name] == pytest.approx(value, rel=1e-12), name
    # Folding in again continues the sums: the state is not modified in place.
    assert metrics.retrieval_metrics_result(init)["coverage@1"] == 0.0


def test_accumulator_errors():
    state = metrics.retrieval_metrics_init((2,), 5)
    with pytest.raises(ValueError, match="num_candidates=5"):
        metrics.retrieval_metrics_update(
            state, torch.randn(2, 3), torch.randn(6, 3), torch.zeros(2, 1, dtype=torch.int64)
        )
    with pytest.raises(ValueError, match="different cut-offs"):
        metrics.retrieval_metrics_merge(state, metrics.retrieval_metrics_init((3,), 5))
    with pytest.raises(ValueError, match=r"k=7.*N=5"):
        metrics.retrieval_metrics_init((7,), 5)
    with pytest.raises(TypeError, match="num_candidates"):
        metrics.retrieval_metrics_init((2,), 5.0)


# --- factorized_top_k with exclusions, and the id mode -------------------------------------------


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("chunk", [None, 7])
@pytest.mark.parametrize("padded", [False, True])
def test_positive_ranks_with_exclusions_match_brute_force(ties, chunk, padded):
    q, c, _, exclude = _inputs(3, ties)
    g = torch.Generator().manual_seed(9)
    positives = torch.randint(0, 30, (12,), generator=g)
    exclude[5, 0] = positives[5]  # an excluded positive: rank N
    if padded:  # mostly padding: the eager path writes only the real (row, candidate) pairs
        exclude = torch.cat([exclude, torch.full((exclude.shape[0], 14), -1)], dim=1)
    kwargs = {} if chunk is None else {"chunk_size": chunk}
    ranks = metrics.positive_ranks(q, c, positives, exclude=exclude, **kwargs)
    want = ref_ranks(q, c, positives, exclude)
    assert ranks.tolist() == want and want[5] == 30
    assert metrics.positive_ranks(q, c, positives, **kwargs).tolist() == ref_ranks(q, c, positives)
    hits = metrics.factorized_top_k(q, c, positives, ks=(1, 5, 30), exclude=exclude)
    for k in (1, 5, 30):
        assert hits[f"top_{k}"].tolist() == [1.0 if r < k else 0.0 for r in want]


def test_factorized_top_k_rejects_k_above_n():
    q, c = torch.randn(2, 3), torch.randn(4, 3)
    with pytest.raises(ValueError, match=r"k=5.*N=4"):
        metrics.factorized_top_k(q, c, torch.tensor([0, 1]), ks=(1, 5))


def test_factorized_top_k_ids_matches_a_loop():
    g = torch.Generator().manual_seed(1)
    top_ids = torch.randint(-1, 8, (20, 6), generator=g)
    true_ids = torch.randint(0, 8, (20,), generator=g)
    got = metrics.factorized_top_k_ids(top_ids, true_ids, ks=(1, 3, 6))
    for k in (1, 3, 6):
        want = [1.0 if int(true_ids[b]) in top_ids[b, :k].tolist() else 0.0 for b in range(20)]
        assert got[f"top_{k}"].tolist() == want
    with pytest.raises(ValueError, match=r"k=7.*K=6"):
        metrics.factorized_top_k_ids(top_ids, true_ids, ks=(7,))
    with pytest.raises(TypeError, match="top_ids"):
        metrics.factorized_top_k_ids(top_ids.float(), true_ids, ks=(1,))
    with pytest.raises(ValueError, match=r"true_ids must have shape \[20\]"):
        metrics.factorized_top_k_ids(top_ids, true_ids[:3], ks=(1,))


# --- errors -------------------------------------------------------------------------------------


def test_errors_name_the_argument():
    q, c = torch.randn(3, 2), torch.randn(4, 2)
    rel = torch.zeros(3, 1, dtype=torch.int64)
    with pytest.raises(ValueError, match=r"k=5.*N=4"):
        metrics.retrieval_metrics(q, c, rel, ks=(5,))
    with pytest.raises(ValueError, match="last dimension"):
        metrics.retrieval_metrics(q, torch.randn(4, 3), rel, ks=(1,))
    with pytest.raises(TypeError, match="relevant must hold integer"):
        metrics.retrieval_metrics(q, c, rel.float(), ks=(1,))
    with pytest.raises(ValueError, match=r"relevant must have shape \[3, E\]"):
        metrics.retrieval_metrics(q, c, rel[:2], ks=(1,))
    with pytest.raises(ValueError, match=r"exclude must have shape \[3, E\]"):
        metrics.retrieval_metrics(q, c, rel, ks=(1,), exclude=torch.zeros(3, dtype=torch.int64))
    with pytest.raises(TypeError, match="exclude must hold integer"):
        metrics.retrieval_metrics(q, c, rel, ks=(1,), exclude=torch.zeros(3, 1, dtype=torch.bool))
    with pytest.raises(IndexError, match=r"relevant must hold candidate rows in \[0, 4\)"):
        metrics.retrieval_metrics(q, c, rel + 4, ks=(1,))
    with pytest.raises(IndexError, match=r"exclude must hold candidate rows in \[0, 4\)"):
        metrics.positive_ranks(q, c, rel[:, 0], exclude=rel + 9)
    bad = q.clone()
    bad[1, 0] = math.nan
    with pytest.raises(ValueError, match="query_embeddings contain NaN or inf"):
        metrics.retrieval_metrics(bad, c, rel, ks=(1,))
    bad = c.clone()
    bad[0, 0] = math.inf
    with pytest.raises(ValueError, match="candidate_embeddings contain NaN or inf"):
        metrics.factorized_top_k(q, bad, rel[:, 0], ks=(1,))
    with pytest.raises(TypeError, match="query_embeddings must be floating-point"):
        metrics.retrieval_metrics(q.long(), c, rel, ks=(1,))
    with pytest.raises(TypeError, match="ks must be a sequence"):
        metrics.retrieval_metrics(q, c, rel, ks=2)


def test_checks_are_skipped_under_vmap_and_values_still_match():
    q, c, relevant, exclude = _inputs(4, ties=True, b=6)
    lanes = torch.stack([q, q.flip(0)]), torch.stack([relevant, relevant.flip(0)])
    got = torch.vmap(lambda qq, rr: metrics.retrieval_metrics(qq, c, rr, ks=(2,), exclude=exclude))(
        *lanes
    )
    for lane in range(2):
        want = ref_retrieval_metrics(lanes[0][lane], c, lanes[1][lane], (2,), exclude)
        _assert_matches({k: v[lane] for k, v in got.items()}, want)


# --- exclusions as (query row, candidate row) pairs -----------------------------------------------


def _as_pairs(exclude: torch.Tensor, shuffle_seed: int | None = None):
    rows, slots = (exclude >= 0).nonzero(as_tuple=True)
    pairs = (rows, exclude[rows, slots])
    if shuffle_seed is not None:  # unsorted pairs are sorted by the metric
        order = torch.randperm(len(rows), generator=torch.Generator().manual_seed(shuffle_seed))
        pairs = (rows[order], pairs[1][order])
    return pairs


@pytest.mark.parametrize("chunk", [None, 7])
@pytest.mark.parametrize("shuffled", [False, True])
def test_exclusion_pairs_equal_the_padded_form(chunk, shuffled):
    q, c, relevant, exclude = _inputs(4, ties=True)
    g = torch.Generator().manual_seed(2)
    positives = torch.randint(0, 30, (12,), generator=g)
    exclude[7, 1] = positives[7]  # an excluded positive
    pairs = _as_pairs(exclude, 5 if shuffled else None)
    kwargs = {} if chunk is None else {"chunk_size": chunk}
    want = ref_ranks(q, c, positives, exclude)
    assert metrics.positive_ranks(q, c, positives, exclude=pairs, **kwargs).tolist() == want
    assert want[7] == 30
    hits = metrics.factorized_top_k(q, c, positives, ks=(1, 5), exclude=pairs)
    padded_hits = metrics.factorized_top_k(q, c, positives, ks=(1, 5), exclude=exclude)
    for k in (1, 5):
        assert torch.equal(hits[f"top_{k}"], padded_hits[f"top_{k}"])
    got = metrics.retrieval_metrics(q, c, relevant, ks=(1, 5), exclude=pairs, **kwargs)
    _assert_matches(got, ref_retrieval_metrics(q, c, relevant, (1, 5), exclude))


def test_exclusion_pairs_from_user_positives(ml100k_dir):
    # Real MovieLens positives: UserPositives.gather gives the pairs, .padded the padded form.
    import numpy as np

    from torchrs_fn.data import UserPositives

    raw = np.loadtxt(ml100k_dir / "u.data", dtype=np.int64)
    positives = UserPositives(raw[:, 0], raw[:, 1], num_users=944, num_items=1683)
    users = torch.arange(1, 201)
    g = torch.Generator().manual_seed(0)
    q, c = torch.randn(200, 8, generator=g), torch.randn(1683, 8, generator=g)
    targets = torch.randint(1, 1683, (200,), generator=g)
    a = metrics.factorized_top_k(q, c, targets, ks=(10, 100), exclude=positives.gather(users))
    b = metrics.factorized_top_k(q, c, targets, ks=(10, 100), exclude=positives.padded(users))
    for k in (10, 100):
        assert torch.equal(a[f"top_{k}"], b[f"top_{k}"])


@pytest.mark.parametrize(
    ("pairs", "error", "match"),
    [
        ((torch.tensor([0, 1]),), TypeError, "query_rows, candidate_rows"),
        ((torch.tensor([0.0]), torch.tensor([1])), TypeError, "integer"),
        ((torch.tensor([0, 1]), torch.tensor([1])), ValueError, "same length"),
        ((torch.tensor([0, 12]), torch.tensor([1, 2])), IndexError, "query rows"),
        ((torch.tensor([0, 1]), torch.tensor([1, 30])), IndexError, "candidate rows"),
        ((torch.tensor([0, 1]), torch.tensor([-1, 2])), IndexError, "candidate rows"),
    ],
)
def test_bad_exclusion_pairs_are_named(pairs, error, match):
    q, c, _, _ = _inputs(0, ties=False)
    with pytest.raises(error, match=match):
        metrics.positive_ranks(q, c, torch.zeros(12, dtype=torch.int64), exclude=pairs)


def test_exclusion_pairs_under_vmap_are_a_clear_error():
    q, c, _, exclude = _inputs(0, ties=False)
    pairs = _as_pairs(exclude)
    pos = torch.zeros(12, dtype=torch.int64)
    with pytest.raises(ValueError, match="eager evaluation"):
        torch.vmap(lambda x: metrics.positive_ranks(x, c, pos, exclude=pairs))(q[None])
