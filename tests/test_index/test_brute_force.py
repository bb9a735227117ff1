"""brute_force_top_k / BruteForce / Streaming against a brute-force reference: a full score
matrix, excluded pairs set to -inf by a Python loop, then a stable sort."""

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from torchrs_fn.index import BruteForce, Streaming, TopKMerger, brute_force_top_k


def reference_top_k(q, c, k, ids=None, exclusions=None):
    """Python loop over queries: (scores [B, k], ids [B, k]) with -inf / -1 for empty slots."""
    ids = torch.arange(c.shape[0]) if ids is None else ids
    scores = (q.double() @ c.double().T).tolist()
    out_s, out_i = [], []
    for b, row in enumerate(scores):
        banned = set() if exclusions is None else {int(x) for x in exclusions[b] if int(x) >= 0}
        ranked = sorted(
            ((s, int(i)) for s, i in zip(row, ids.tolist()) if int(i) not in banned),
            key=lambda t: -t[0],
        )[:k]
        ranked += [(float("-inf"), -1)] * (k - len(ranked))
        out_s.append([s for s, _ in ranked])
        out_i.append([i for _, i in ranked])
    return torch.tensor(out_s, dtype=torch.float64), torch.tensor(out_i)


def random_data(seed, b=12, n=40, d=5):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, d, generator=g), torch.randn(n, d, generator=g)


@pytest.mark.parametrize("chunk", [1000, 9, 1])
@pytest.mark.parametrize("seed", [0, 1])
def test_matches_reference(chunk, seed):
    q, c = random_data(seed)
    scores, rows = brute_force_top_k(q, c, 6, chunk_size=chunk)
    ref_scores, ref_rows = reference_top_k(q, c, 6)
    assert torch.allclose(scores.double(), ref_scores, atol=1e-5)
    assert torch.equal(rows, ref_rows)  # continuous random scores: no ties


def test_many_queries_use_query_blocks(monkeypatch):
    import torchrs_fn.index.brute_force as bf

    monkeypatch.setattr(bf, "_BLOCK_SCORES", 64)  # blocks of a few queries and a few candidates
    q, c = random_data(3, b=50, n=70)
    scores, rows = brute_force_top_k(q, c, 5, chunk_size=16)
    ref_scores, ref_rows = reference_top_k(q, c, 5)
    assert torch.equal(rows, ref_rows)
    assert torch.allclose(scores.double(), ref_scores, atol=1e-5)


def test_ties_keep_all_equal_scores():
    # Integer embeddings: many exact ties. The set of returned scores must equal the reference's,
    # and each returned id must really have its returned score.
    g = torch.Generator().manual_seed(4)
    q = torch.randint(-2, 3, (8, 3), generator=g).float()
    c = torch.randint(-2, 3, (30, 3), generator=g).float()
    scores, rows = brute_force_top_k(q, c, 7, chunk_size=4)
    ref_scores, _ = reference_top_k(q, c, 7)
    assert torch.equal(scores.double(), ref_scores)
    assert torch.equal(scores, (q @ c.T).gather(1, rows))
    assert all(len(set(r)) == 7 for r in rows.tolist())


@pytest.mark.parametrize("chunk", [1000, 7])
def test_exclusions_by_identifier(chunk):
    q, c = random_data(5, b=6, n=25)
    ids = torch.arange(100, 125).flip(0)  # ids not equal to rows
    g = torch.Generator().manual_seed(5)
    exclusions = torch.randint(100, 125, (6, 8), generator=g)
    exclusions[0] = -1  # a query with nothing excluded
    exclusions[1, 4:] = -1  # padding
    scores, got = brute_force_top_k(
        q, c, 5, identifiers=ids, exclusions=exclusions, chunk_size=chunk
    )
    ref_scores, ref_ids = reference_top_k(q, c, 5, ids, exclusions)
    assert torch.equal(got, ref_ids)
    assert torch.allclose(scores.double(), ref_scores, atol=1e-5)
    index = BruteForce(c, ids)
    assert torch.equal(index.query_with_exclusions(q, exclusions, k=5)[1], ref_ids)


def test_exclusions_leave_fewer_than_k():
    q, c = random_data(6, b=2, n=5)
    exclusions = torch.tensor([[0, 1, 2, 3], [-1, -1, -1, -1]])
    scores, rows = brute_force_top_k(q, c, 3, exclusions=exclusions)
    _, ref_rows = reference_top_k(q, c, 3, exclusions=exclusions)
    assert torch.equal(rows, ref_rows)
    assert rows[0, 1:].tolist() == [-1, -1] and torch.isneginf(scores[0, 1:]).all()


def test_duplicate_identifiers_are_all_excluded():
    q, c = random_data(7, b=3, n=10)
    ids = torch.tensor([0, 1, 2, 3, 4, 0, 1, 2, 3, 4])  # every id names two rows
    exclusions = torch.tensor([[0], [3], [-1]])
    _, got = brute_force_top_k(q, c, 6, identifiers=ids, exclusions=exclusions)
    _, ref = reference_top_k(q, c, 6, ids, exclusions)
    assert torch.equal(got, ref)


def test_bad_input_errors():
    q, c = random_data(8)
    with pytest.raises(ValueError, match="k must be"):
        brute_force_top_k(q, c, 41)
    with pytest.raises(ValueError, match="k must be"):
        brute_force_top_k(q, c, 0)
    with pytest.raises(ValueError, match=r"queries must be \[B, 5\]"):
        brute_force_top_k(q[:, :4], c, 3)
    bad = q.clone()
    bad[2, 1] = float("nan")
    with pytest.raises(ValueError, match="NaN or inf"):
        brute_force_top_k(bad, c, 3)
    with pytest.raises(ValueError, match="no candidate has"):
        brute_force_top_k(q, c, 3, identifiers=torch.arange(40), exclusions=torch.full((12, 1), 99))
    with pytest.raises(ValueError, match="candidate row 40"):
        brute_force_top_k(q, c, 3, exclusions=torch.full((12, 1), 40))
    with pytest.raises(ValueError, match="12 queries"):
        brute_force_top_k(q, c, 3, exclusions=torch.zeros(3, 1, dtype=torch.long))
    with pytest.raises(TypeError, match="integers"):
        brute_force_top_k(q, c, 3, exclusions=torch.zeros(12, 1))
    cc = c.clone()
    cc[7, 0] = float("inf")
    with pytest.raises(ValueError, match="row 7"):
        BruteForce(cc)
    with pytest.raises(ValueError, match="identifiers"):
        BruteForce(c, torch.arange(3))


def test_save_load_roundtrip(tmp_path):
    q, c = random_data(9)
    index = BruteForce(c, torch.arange(40) * 3)
    index.save(tmp_path / "index.trs")
    loaded = BruteForce.load(tmp_path / "index.trs")
    assert torch.equal(loaded.candidates, c) and torch.equal(loaded.identifiers, index.identifiers)
    assert torch.equal(loaded(q, 4)[1], index(q, 4)[1])
    text = (tmp_path / "index.trs").read_bytes()
    assert b"pickle" not in text and not text.startswith(b"\x80")  # not a pickle stream


def test_merger_fills_with_neg_inf_then_prunes():
    merger = TopKMerger(2, 3, torch.device("cpu"), torch.float32)
    merger.push(torch.tensor([[1.0, 5.0], [2.0, 0.0]]), 0)
    s, r = merger.result()
    assert r.tolist() == [[1, 0, -1], [0, 1, -1]] and torch.isneginf(s[:, 2]).all()
    merger.push(torch.tensor([[0.5, 7.0], [-1.0, -2.0]]), 2)
    merger.push(torch.tensor([[-9.0], [-9.0]]), 4)  # below both thresholds: pruned
    s, r = merger.result()
    assert r.tolist() == [[3, 1, 0], [0, 1, 2]]
    assert s.tolist() == [[7.0, 5.0, 1.0], [2.0, 0.0, -1.0]]


@pytest.mark.parametrize("chunk", [50, 200, 64])
@pytest.mark.parametrize("ids", [False, True])
def test_merger_over_many_chunks_equals_one_topk(ids, chunk):
    # 64 queries, 3,000 candidates in chunks of 50 (one partial segment of the pre-filter), 200
    # (three segments of 64 and a partial one) or 64: late chunks leave most segments with
    # nothing above their query's threshold, early ones many (the whole-chunk scan); the result
    # must equal one torch.topk over all scores.
    g = torch.Generator().manual_seed(7)
    scores = torch.randn(64, 3000, generator=g, dtype=torch.float64)
    labels = torch.randperm(3000, generator=g) + 10_000
    merger = TopKMerger(64, 20, torch.device("cpu"), torch.float64)
    for start in range(0, 3000, chunk):
        stop = start + chunk
        merger.push(scores[:, start:stop], start, labels[start:stop] if ids else None)
    got_s, got_r = merger.result()
    ref_s, ref_r = torch.topk(scores, 20, dim=1)
    assert torch.equal(got_s, ref_s)
    assert torch.equal(got_r, labels[ref_r] if ids else ref_r)


# ---- Streaming -------------------------------------------------------------------------------


def _table(c, ids):
    emb = pa.FixedSizeListArray.from_arrays(pa.array(c.numpy().ravel()), c.shape[1])
    return pa.table({"embedding": emb, "id": pa.array(ids.numpy())})


@pytest.mark.parametrize("kind", ["tensors", "table", "parquet_dir", "list_column"])
def test_streaming_matches_reference(kind, tmp_path):
    q, c = random_data(10, b=7, n=53)
    ids = torch.arange(1000, 1053)
    exclusions = torch.randint(1000, 1053, (7, 4), generator=torch.Generator().manual_seed(10))
    if kind == "tensors":
        index = Streaming(lambda: ((c[i : i + 10], ids[i : i + 10]) for i in range(0, 53, 10)))
    elif kind == "table":
        index = Streaming(_table(c, ids), batch_rows=8)
    elif kind == "parquet_dir":
        for part, start in enumerate(range(0, 53, 20)):
            pq.write_table(
                _table(c[start : start + 20], ids[start : start + 20]), tmp_path / f"{part}.parquet"
            )
        index = Streaming(tmp_path, batch_rows=6)
    else:
        table = pa.table(
            {"vec": pa.array([row.tolist() for row in c]), "item": pa.array(ids.numpy())}
        )
        index = Streaming(table, embedding_column="vec", id_column="item", batch_rows=11)
    scores, got = index(q, k=5)
    ref_scores, ref_ids = reference_top_k(q, c, 5, ids)
    assert torch.equal(got, ref_ids)
    assert torch.allclose(scores.double(), ref_scores, atol=1e-5)
    _, got_ex = index.query_with_exclusions(q, exclusions, k=5)
    assert torch.equal(got_ex, reference_top_k(q, c, 5, ids, exclusions)[1])


def test_streaming_bad_input(tmp_path):
    q, c = random_data(11, b=3, n=10)
    ids = torch.arange(10)
    index = Streaming(lambda: [(c, ids)])
    with pytest.raises(ValueError, match="no candidate has"):
        index.query_with_exclusions(q, torch.tensor([[3], [77], [-1]]), k=2)
    with pytest.raises(ValueError, match="k must be"):
        index(q, k=11)
    with pytest.raises(ValueError, match="empty"):
        Streaming(lambda: [])(q, 1)
    with pytest.raises(ValueError, match="disagree on D"):
        Streaming(lambda: [(c, ids), (c[:, :3], ids)])(q, 1)
    with pytest.raises(ValueError, match="ids of shape"):
        Streaming(lambda: [(c, ids[:4])])(q, 1)
    with pytest.raises(TypeError, match="one-shot"):
        Streaming(iter([(c, ids)]))
    with pytest.raises(FileNotFoundError):
        Streaming(tmp_path / "missing")
    with pytest.raises(KeyError, match="'embedding'"):
        Streaming(pa.table({"x": [1]}))(q, 1)
    ragged = pa.table({"embedding": pa.array([[1.0, 2.0], [1.0]]), "id": pa.array([0, 1])})
    with pytest.raises(ValueError, match="different lengths"):
        Streaming(ragged)(torch.zeros(1, 2), 1)
    nan = c.clone()
    nan[0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        Streaming(lambda: [(nan, ids)])(q, 1)
