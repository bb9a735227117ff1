"""Negatives beyond the batch: mixed negative sampling's probability, full-corpus sampled softmax
with data.NegativeSampler, and the extra_candidates hook. References are written out here:
a Python loop for the mixture probability and a hand-built logQ-corrected softmax."""

import math

import pytest
import torch

from torchrs_fn.data import NegativeSampler
from torchrs_fn.tasks import Retrieval, mixed_sampling_probability, retrieval_loss


def reference_loss(q, c, log_q, ids=None):
    """Row by row: logits q_i·c_j - log q_j; accidental hits (same id as the positive, other
    column) dropped; loss = logsumexp - positive; summed."""
    total = 0.0
    for i in range(q.shape[0]):
        logits = []
        for j in range(c.shape[0]):
            if ids is not None and j != i and int(ids[j]) == int(ids[i]):
                continue
            logits.append(float(q[i] @ c[j]) - float(log_q[j]))
        pos = float(q[i] @ c[i]) - float(log_q[i])
        m = max(logits)
        total += m + math.log(sum(math.exp(x - m) for x in logits)) - pos
    return total


def test_mixed_probability_matches_loop():
    g = torch.Generator().manual_seed(0)
    v, b, m = 30, 6, 9
    p_batch = torch.rand(v, generator=g, dtype=torch.float64)
    p_batch /= p_batch.sum()
    p_sample = torch.full((v,), 1.0 / v, dtype=torch.float64)
    ids = torch.randint(0, v, (b + m,), generator=g)
    got = mixed_sampling_probability(
        ids, num_in_batch=b, in_batch_probabilities=p_batch, sampled_probabilities=p_sample
    )
    want = [(b * float(p_batch[i]) + m * float(p_sample[i])) / (b + m) for i in ids.tolist()]
    assert torch.allclose(got, torch.tensor(want, dtype=torch.float64))


def test_mixed_negative_sampling_loss_against_reference():
    g = torch.Generator().manual_seed(1)
    v, b, m, d = 40, 5, 12, 4
    item_table = torch.randn(v, d, generator=g, dtype=torch.float64)
    batch_items = torch.randint(0, v, (b,), generator=g)
    q = torch.randn(b, d, generator=g, dtype=torch.float64)
    popularity = NegativeSampler.fit(
        torch.randint(0, v, (200,), generator=g), power=1.0, num_items=v
    )
    uniform = NegativeSampler.uniform(v)
    sampled, _ = uniform.sample(m, seed=3)
    ids = torch.cat([batch_items, sampled])
    prob = mixed_sampling_probability(
        ids,
        num_in_batch=b,
        in_batch_probabilities=popularity.probabilities,
        sampled_probabilities=uniform.probabilities,
    )
    c = item_table[ids]
    got = retrieval_loss(q, c, candidate_sampling_probability=prob, candidate_ids=ids)
    want = reference_loss(q, c, torch.log(prob), ids)
    assert float(got) == pytest.approx(want, rel=1e-10)


def test_mixed_probability_gradient_and_errors():
    v = 10
    p_b = torch.full((v,), 0.1, dtype=torch.float64, requires_grad=True)
    p_s = torch.full((v,), 0.1, dtype=torch.float64, requires_grad=True)
    ids = torch.tensor([1, 1, 4, 7])
    out = mixed_sampling_probability(
        ids, num_in_batch=2, in_batch_probabilities=p_b, sampled_probabilities=p_s
    )
    out.sum().backward()
    # d/dp_b[i] = count_i * B / N for ids among all N; d/dp_s similarly with M.
    want_b = torch.zeros(v, dtype=torch.float64)
    want_s = torch.zeros(v, dtype=torch.float64)
    for i in ids.tolist():
        want_b[i] += 2 / 4
        want_s[i] += 2 / 4
    assert torch.allclose(p_b.grad, want_b) and torch.allclose(p_s.grad, want_s)
    with pytest.raises(ValueError, match="num_in_batch"):
        mixed_sampling_probability(
            ids, num_in_batch=5, in_batch_probabilities=p_b, sampled_probabilities=p_s
        )
    with pytest.raises(ValueError, match=r"\[0, 10\)"):
        mixed_sampling_probability(
            torch.tensor([3, 12]),
            num_in_batch=1,
            in_batch_probabilities=p_b,
            sampled_probabilities=p_s,
        )
    with pytest.raises(ValueError, match="same items"):
        mixed_sampling_probability(
            ids, num_in_batch=1, in_batch_probabilities=p_b, sampled_probabilities=p_s[:5]
        )


def test_extra_candidates_hook_appends_negatives():
    g = torch.Generator().manual_seed(2)
    b, extra, d = 4, 6, 3
    q = torch.randn(b, d, generator=g, dtype=torch.float64)
    c = torch.randn(b, d, generator=g, dtype=torch.float64)
    other = torch.randn(extra, d, generator=g, dtype=torch.float64)  # "another device's" rows
    ids = torch.tensor([0, 1, 2, 3])
    other_ids = torch.tensor([9, 2, 8, 7, 6, 5])  # id 2 is an accidental hit for query 2
    prob = torch.full((b,), 0.2, dtype=torch.float64)
    other_prob = torch.full((extra,), 0.05, dtype=torch.float64)

    def gather(emb, p, i):
        return torch.cat([emb, other]), torch.cat([p, other_prob]), torch.cat([i, other_ids])

    task = Retrieval(remove_accidental_hits=True, extra_candidates=gather)
    got = task(q, c, candidate_sampling_probability=prob, candidate_ids=ids)
    all_c = torch.cat([c, other])
    want = reference_loss(
        q, all_c, torch.log(torch.cat([prob, other_prob])), torch.cat([ids, other_ids])
    )
    assert float(got) == pytest.approx(want, rel=1e-10)
    # The gradient reaches the appended rows (plain autograd through the hook).
    other.requires_grad_(True)
    task(q, c, candidate_sampling_probability=prob, candidate_ids=ids).backward()
    assert other.grad is not None and other.grad.abs().sum() > 0

    with pytest.raises(ValueError, match="returned None"):
        Retrieval(extra_candidates=lambda e, p, i: (e, None, None))(
            q, c, candidate_sampling_probability=prob
        )
    with pytest.raises(ValueError, match="fewer than"):
        Retrieval(extra_candidates=lambda e, p, i: (e[:2], p, i))(q, c)
    with pytest.raises(TypeError, match="function"):
        Retrieval(extra_candidates=3)


def test_full_corpus_sampled_softmax_is_retrieval_with_sampled_rows():
    # Sampled softmax over the corpus: positives in front, NegativeSampler draws after; every row
    # needs its probability for the logQ correction, given by the mixture rule.
    g = torch.Generator().manual_seed(4)
    v, b, m, d = 25, 3, 8, 2
    table = torch.randn(v, d, generator=g, dtype=torch.float64)
    q = torch.randn(b, d, generator=g, dtype=torch.float64)
    pos = torch.tensor([3, 9, 17])
    sampler = NegativeSampler.log_uniform(v)
    neg, neg_p = sampler.sample(m, seed=5)
    assert torch.allclose(neg_p.double(), sampler.probabilities[neg])
    ids = torch.cat([pos, neg])
    prob = mixed_sampling_probability(
        ids,
        num_in_batch=b,
        in_batch_probabilities=sampler.probabilities,
        sampled_probabilities=sampler.probabilities,
    )
    # With one distribution for both routes the mixture is that distribution.
    assert torch.allclose(prob, sampler.probabilities[ids])
    got = retrieval_loss(q, table[ids], candidate_sampling_probability=prob, candidate_ids=ids)
    assert float(got) == pytest.approx(
        reference_loss(q, table[ids], torch.log(prob), ids), rel=1e-10
    )


@pytest.mark.parametrize("options", ["plain", "all"])
def test_batch_metrics_match_loop(options):
    # Integer embeddings give exact ties: a tie with the positive counts as a hit (in_top_k).
    g = torch.Generator().manual_seed(6)
    b, n, d = 6, 9, 2
    q = torch.randint(-2, 3, (b, d), generator=g).double()
    c = torch.randint(-2, 3, (n, d), generator=g).double()
    ids = torch.tensor([0, 1, 2, 1, 4, 5, 1, 7, 2])
    prob = torch.rand(n, generator=g, dtype=torch.float64) + 0.5
    if options == "plain":
        task, kwargs, log_q, t = Retrieval(), {}, torch.zeros(n, dtype=torch.float64), 1.0
    else:
        task = Retrieval(temperature=0.5, remove_accidental_hits=True)
        kwargs, log_q, t = (
            {"candidate_sampling_probability": prob, "candidate_ids": ids},
            torch.log(prob),
            0.5,
        )
    got = task.batch_metrics(q, c, ks=(1, 2, 3), **kwargs)
    for i in range(b):
        logits = [float(q[i] @ c[j]) / t - float(log_q[j]) for j in range(n)]
        masked = [j != i and options == "all" and int(ids[j]) == int(ids[i]) for j in range(n)]
        higher = sum(1 for j in range(n) if not masked[j] and logits[j] > logits[i])
        for k in (1, 2, 3):
            assert float(got[f"batch_top_{k}"][i]) == float(higher < k), (i, k)
    with pytest.raises(ValueError, match="ks must lie"):
        task.batch_metrics(q, c, ks=(10,), **kwargs)
