"""factorized_top_k / positive_ranks against a brute-force Python loop."""

import pytest
import torch

from torchrs_fn import metrics
from torchrs_fn.metrics import retrieval as retrieval_metrics


def _brute_force_hits(q, c, pos, ks):
    out = {k: [] for k in ks}
    for i in range(q.shape[0]):
        scores = [float(q[i] @ c[j]) for j in range(c.shape[0])]
        own = scores[int(pos[i])]
        higher = sum(1 for j, s in enumerate(scores) if s > own and j != int(pos[i]))
        for k in ks:
            out[k].append(1.0 if higher < k else 0.0)
    return out


@pytest.mark.parametrize("chunk", [None, 7])
def test_matches_brute_force(chunk, monkeypatch):
    if chunk:
        monkeypatch.setattr(retrieval_metrics, "_CHUNK", chunk)
    g = torch.Generator().manual_seed(0)
    q = torch.randn(30, 4, generator=g)
    c = torch.randn(50, 4, generator=g)
    pos = torch.randint(0, 50, (30,), generator=g)
    ks = (1, 5, 10, 50)
    got = (
        metrics.factorized_top_k(q, c, pos, ks)
        if chunk is None
        else {
            f"top_{k}": (metrics.positive_ranks(q, c, pos, chunk_size=chunk) < k).float()
            for k in ks
        }
    )
    ref = _brute_force_hits(q, c, pos, ks)
    for k in ks:
        assert got[f"top_{k}"].tolist() == ref[k]


def test_ties_count_as_hits():
    # Every candidate has the same embedding: every score ties, so the positive is in the top 1.
    q = torch.randn(5, 3)
    c = torch.ones(20, 3)
    hits = metrics.factorized_top_k(q, c, torch.arange(5), ks=(1,))
    assert hits["top_1"].tolist() == [1.0] * 5


def test_hand_computed_ranks():
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    c = torch.tensor([[3.0, 0.0], [2.0, 5.0], [1.0, 1.0], [0.0, -1.0]])
    # Query 0 scores [3, 2, 1, 0]; positive 2 -> rank 2. Query 1 scores [0, 5, 1, -1]; positive 0 -> 2.
    ranks = metrics.positive_ranks(q, c, torch.tensor([2, 0]))
    assert ranks.tolist() == [2, 2]
    top = metrics.factorized_top_k(q, c, torch.tensor([2, 3]), ks=(1, 3, 4))
    assert top["top_1"].tolist() == [0.0, 0.0]
    assert top["top_3"].tolist() == [1.0, 0.0]
    assert top["top_4"].tolist() == [1.0, 1.0]


def test_errors_name_the_argument():
    q, c = torch.randn(3, 2), torch.randn(4, 2)
    with pytest.raises(IndexError, match=r"positive_indices must lie in \[0, 4\)"):
        metrics.positive_ranks(q, c, torch.tensor([0, 1, 4]))
    with pytest.raises(ValueError, match="last dimension"):
        metrics.positive_ranks(q, torch.randn(4, 3), torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match=r"shape \[3\]"):
        metrics.positive_ranks(q, c, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="ks"):
        metrics.factorized_top_k(q, c, torch.tensor([0, 1, 2]), ks=(0,))


def test_mean_accumulator_merges_exactly():
    a = metrics.mean_update(metrics.mean_init(), torch.tensor([1.0, 2.0, 3.0]))
    b = metrics.mean_update(metrics.mean_init(), torch.tensor([4.0]), weight=3.0)
    merged = metrics.mean_merge(a, b)
    assert metrics.mean_result(merged) == pytest.approx((1 + 2 + 3 + 12) / 6)
    assert metrics.mean_result(metrics.mean_init()) != metrics.mean_result(
        metrics.mean_init()
    )  # NaN


def test_candidate_rows_first_occurrence_and_missing():
    ids = torch.tensor([4, 2, 4, 0, 2])
    rows = metrics.candidate_rows(ids, 6)
    # By hand: id 0 -> row 3, id 2 -> row 1 (first of 1, 4), id 4 -> row 0, ids 1, 3, 5 absent.
    assert rows.tolist() == [3, -1, 1, -1, 0, -1]
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        metrics.candidate_rows(ids, 4)


def test_query_blocks_match_brute_force(monkeypatch):
    monkeypatch.setattr(retrieval_metrics, "_SCORE_BLOCK", 100)  # 2 queries per block of 50
    g = torch.Generator().manual_seed(5)
    q, c = torch.randn(9, 4, generator=g), torch.randn(50, 4, generator=g)
    pos = torch.randint(0, 50, (9,), generator=g)
    got = metrics.factorized_top_k(q, c, pos, ks=(1, 10))
    ref = _brute_force_hits(q, c, pos, (1, 10))
    assert got["top_1"].tolist() == ref[1] and got["top_10"].tolist() == ref[10]
    assert metrics.positive_ranks(q[:0], c, pos[:0]).shape == (0,)
