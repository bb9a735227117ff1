"""Faiss and ScaNN wrappers: recall against an exact answer computed here (full score matrix and
torch.topk), exclusions against a Python loop, save/load round trips, errors."""

import importlib.util

import pytest
import torch

from torchrs_fn.index import Faiss, ScaNN

HAS_FAISS = importlib.util.find_spec("faiss") is not None
HAS_SCANN = importlib.util.find_spec("scann") is not None
needs_faiss = pytest.mark.skipif(not HAS_FAISS, reason="faiss-cpu is not installed (extra 'faiss')")
needs_scann = pytest.mark.skipif(not HAS_SCANN, reason="scann is not installed (extra 'scann')")


def clustered(n=6000, b=40, d=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(30, d, generator=g)
    c = centres[torch.randint(0, 30, (n,), generator=g)] + 0.3 * torch.randn(n, d, generator=g)
    q = centres[torch.randint(0, 30, (b,), generator=g)] + 0.3 * torch.randn(b, d, generator=g)
    return q, c


def exact_ids(q, c, k, ids):
    return ids[torch.topk(q.double() @ c.double().T, k, dim=1).indices]


def overlap(got, want):
    return float((got.unsqueeze(2) == want.unsqueeze(1)).any(2).sum()) / want.numel()


BUILDERS = {
    "faiss_flat": (needs_faiss, lambda c, ids: Faiss(c, ids, kind="flat")),
    "faiss_ivf": (needs_faiss, lambda c, ids: Faiss(c, ids, kind="ivf", nlist=40, nprobe=40)),
    "faiss_hnsw": (needs_faiss, lambda c, ids: Faiss(c, ids, kind="hnsw", ef_search=256)),
    "scann": (
        needs_scann,
        lambda c, ids: ScaNN(c, ids, num_leaves=40, num_leaves_to_search=40, reorder=200),
    ),
}
KINDS = [pytest.param(name, marks=mark) for name, (mark, _) in BUILDERS.items()]


@pytest.mark.parametrize("kind", KINDS)
def test_recall_against_exact(kind):
    q, c = clustered()
    ids = torch.arange(6000) * 7 + 3
    index = BUILDERS[kind][1](c, ids)
    scores, got = index(q, 10)
    want = exact_ids(q, c, 10, ids)
    measured = overlap(got, want)
    # Settings that search every cell / rescore generously: (near-)exact on this small set.
    assert measured >= (1.0 if kind == "faiss_flat" else 0.9), measured
    assert index.recall(q, 10) == pytest.approx(measured)
    # Returned scores are the true dot products of the returned ids, best first.
    rows = (got - 3) // 7
    true = (q.unsqueeze(1) * c[rows]).sum(-1)
    assert torch.allclose(scores, true, atol=1e-3)
    assert (scores[:, :-1] >= scores[:, 1:] - 1e-4).all()


@pytest.mark.parametrize("kind", KINDS)
def test_exclusions(kind):
    q, c = clustered(seed=1)
    ids = torch.arange(6000)
    index = BUILDERS[kind][1](c, ids)
    _, top = index(q, 10)
    exclusions = torch.cat([top[:, :3], torch.full((40, 2), -1)], dim=1)  # the 3 best, padded
    _, got = index.query_with_exclusions(q, exclusions, 10)
    for row, banned in zip(got.tolist(), exclusions.tolist()):
        assert not set(row) & {x for x in banned if x >= 0}
    # What remains is the exact answer without the excluded ids, up to the index's recall.
    s = q.double() @ c.double().T
    s.scatter_(1, top[:, :3], float("-inf"))
    want = torch.topk(s, 10, dim=1).indices
    assert overlap(got, want) >= (1.0 if kind == "faiss_flat" else 0.9)
    with pytest.raises(ValueError, match="no candidate has"):
        index.query_with_exclusions(q, torch.full((40, 1), 10**9), 10)


@needs_faiss
@pytest.mark.parametrize("kind", ["flat", "ivf", "hnsw"])
def test_faiss_save_load(kind, tmp_path):
    q, c = clustered(seed=2, n=3000)
    index = Faiss(c, torch.arange(3000) + 5, kind=kind, nlist=20, nprobe=5)
    index.save(tmp_path / "f.trs")
    loaded = Faiss.load(tmp_path / "f.trs")
    assert loaded.kind == kind
    for a, b in zip(index(q, 7), loaded(q, 7)):
        assert torch.equal(a, b)
    assert loaded.recall(q, 7) == pytest.approx(index.recall(q, 7))


@needs_scann
def test_scann_save_load(tmp_path):
    q, c = clustered(seed=3, n=3000)
    index = ScaNN(c, torch.arange(3000) + 5, num_leaves=30, num_leaves_to_search=10)
    index.save(tmp_path / "scann")
    assert not list((tmp_path / "scann").glob("*.pkl"))  # no pickle written
    loaded = ScaNN.load(tmp_path / "scann")
    for a, b in zip(index(q, 7), loaded(q, 7)):
        assert torch.equal(a, b)


@needs_faiss
def test_errors():
    q, c = clustered(n=500)
    index = Faiss(c, kind="flat")
    with pytest.raises(ValueError, match="k must be"):
        index(q, 501)
    with pytest.raises(ValueError, match=r"queries must be \[B, 16\]"):
        index(q[:, :3], 5)
    with pytest.raises(ValueError, match="kind"):
        Faiss(c, kind="lsh")
    bad = c.clone()
    bad[4, 2] = float("nan")
    with pytest.raises(ValueError, match="row 4"):
        Faiss(bad, kind="flat")
    lean = Faiss(c, kind="flat", keep_candidates=False)
    with pytest.raises(RuntimeError, match="keep_candidates"):
        lean.recall(q, 5)
