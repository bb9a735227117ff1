"""brute_force_top_k / BruteForce against torch.topk over the full score matrix."""

import pytest
import torch

from torchrs_fn.index import BruteForce, brute_force_top_k


@pytest.mark.parametrize("chunk", [1000, 9])
def test_matches_full_topk(chunk):
    g = torch.Generator().manual_seed(0)
    q, c = torch.randn(12, 5, generator=g), torch.randn(40, 5, generator=g)
    scores, rows = brute_force_top_k(q, c, 6, chunk_size=chunk)
    ref_scores, ref_rows = torch.topk(q @ c.T, 6, dim=1)
    assert torch.allclose(scores, ref_scores)
    assert torch.equal(rows, ref_rows)  # continuous random scores: no ties


def test_identifiers_and_class():
    g = torch.Generator().manual_seed(1)
    q, c = torch.randn(3, 4, generator=g), torch.randn(10, 4, generator=g)
    ids = torch.arange(100, 110)
    index = BruteForce(c, ids)
    _, got = index(q, k=3)
    assert torch.equal(got, torch.topk(q @ c.T, 3).indices + 100)
    with pytest.raises(ValueError, match="k must be"):
        index(q, k=11)
    with pytest.raises(ValueError, match="identifiers"):
        BruteForce(c, torch.arange(3))
