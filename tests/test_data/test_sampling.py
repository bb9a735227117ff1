"""Sampling: negatives (probabilities by formula, frequencies within 3 sigma, exclusion checked
against Python sets), listwise lists and sequence examples against plain-Python per-user loops,
on synthetic tables and MovieLens 100K."""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from itertools import permutations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
import torch

from torchrs_fn.data import NegativeSampler, UserPositives, sample_listwise, sequence_examples

# -- helpers -------------------------------------------------------------------------------------


def _within_3_sigma(counts: np.ndarray, probabilities: np.ndarray, draws: int) -> None:
    """Each bin's count within 3 binomial standard deviations of draws * p."""
    expected = draws * probabilities
    sigma = np.sqrt(draws * probabilities * (1 - probabilities))
    z = np.abs(counts - expected) / np.where(sigma > 0, sigma, 1)
    assert (z <= 3).all(), (z.max(), np.argmax(z))
    assert counts[probabilities == 0].sum() == 0


def _interactions(n: int, seed: int, num_users: int, num_items: int) -> pa.Table:
    rng = np.random.default_rng(seed)
    return pa.table(
        {"user_id": rng.integers(0, num_users, n), "movie_id": rng.integers(0, num_items, n)}
    )


# -- UserPositives -------------------------------------------------------------------------------


def test_user_positives_match_python_sets():
    table = _interactions(500, 0, num_users=30, num_items=40)
    positives = UserPositives.from_table(table, num_users=35)
    sets: dict[int, set[int]] = defaultdict(set)
    for u, i in zip(table["user_id"].to_pylist(), table["movie_id"].to_pylist(), strict=True):
        sets[u].add(i)
    assert positives.num_users == 35 and positives.num_items == 40
    assert len(positives) == sum(len(s) for s in sets.values())
    for u in range(35):
        assert positives[u].tolist() == sorted(sets[u])
        assert positives.counts()[u] == len(sets[u])
    users = torch.arange(-1, 37).repeat_interleave(42)
    items = torch.arange(-1, 41).repeat(38)
    expected = [
        i in sets.get(u, set()) for u, i in zip(users.tolist(), items.tolist(), strict=True)
    ]
    assert positives.contains(users, items).tolist() == expected
    row, flat = positives.gather([3, 0, 99, 3])
    want = [(r, i) for r, u in enumerate([3, 0, 99, 3]) for i in sorted(sets.get(u, set()))]
    assert list(zip(row.tolist(), flat.tolist(), strict=True)) == want


def test_user_positives_errors():
    with pytest.raises(ValueError, match="differ in length"):
        UserPositives([0, 1], [0])
    with pytest.raises(ValueError, match=">= 0"):
        UserPositives([0, -1], [0, 1])
    with pytest.raises(TypeError, match="integer ids"):
        UserPositives(pa.array(["a"]), pa.array([1]))
    with pytest.raises(ValueError, match="not below num_items=3"):
        UserPositives([0], [3], num_items=3)
    with pytest.raises(ValueError, match="item='item_id'"):
        UserPositives.from_table(pa.table({"user_id": [0]}), item="item_id")
    with pytest.raises(ValueError, match="null"):
        UserPositives(pa.array([0, None]), pa.array([1, 2]))


# -- NegativeSampler: probabilities --------------------------------------------------------------


def test_popularity_probabilities_are_count_power_over_sum():
    counts = [5, 0, 1, 12, 3, 0, 7, 1]
    items = np.repeat(np.arange(len(counts)), counts)
    np.random.default_rng(0).shuffle(items)
    sampler = NegativeSampler.fit(pa.array(items), power=0.75)
    weights = [c**0.75 for c in counts]
    expected = [w / math.fsum(weights) for w in weights]
    np.testing.assert_allclose(sampler.probabilities.numpy(), expected, rtol=1e-15, atol=0)
    ids, probs = sampler.sample(1000, seed=0)
    assert probs.dtype == torch.float32 and ids.dtype == torch.int64 and ids.shape == (1000,)
    # float32 of the float64 probability, exactly
    assert torch.equal(probs, torch.tensor(expected, dtype=torch.float64)[ids].float())
    assert sampler.num_items == 8
    assert NegativeSampler.fit(items, num_items=11).num_items == 11


def test_uniform_and_log_uniform_probabilities():
    uniform = NegativeSampler.uniform(7)
    assert torch.equal(uniform.probabilities, torch.full((7,), 1 / 7, dtype=torch.float64))
    # TF's log_uniform_candidate_sampler: (log(i + 2) - log(i + 1)) / log(range_max + 1)
    v = 50
    log_uniform = NegativeSampler.log_uniform(v)
    expected = [(math.log(i + 2) - math.log(i + 1)) / math.log(v + 1) for i in range(v)]
    np.testing.assert_allclose(log_uniform.probabilities.numpy(), expected, rtol=1e-12)
    power_one = NegativeSampler.fit([0, 0, 1, 2, 2, 2])
    assert power_one.probabilities.tolist() != [2 / 6, 1 / 6, 3 / 6]  # default power is 0.75
    np.testing.assert_allclose(
        NegativeSampler.fit([0, 0, 1, 2, 2, 2], power=1).probabilities, [2 / 6, 1 / 6, 3 / 6]
    )
    # power 0: uniform over the items seen, never the unseen ones
    np.testing.assert_allclose(
        NegativeSampler.fit([0, 3, 3], power=0).probabilities, [0.5, 0, 0, 0.5]
    )


def test_popularity_frequencies_within_3_sigma():
    rng = np.random.default_rng(1)
    counts = rng.integers(0, 60, 40)
    counts[[0, 7]] = 0  # unseen items must never be drawn
    sampler = NegativeSampler.fit(np.repeat(np.arange(40), counts), power=0.75)
    p = counts**0.75 / (counts**0.75).sum()
    draws = 200_000
    ids, _ = sampler.sample(draws, seed=123)
    _within_3_sigma(np.bincount(ids.numpy(), minlength=40), p, draws)


def test_uniform_frequencies_within_3_sigma_and_batched_shape():
    sampler = NegativeSampler.uniform(25)
    ids, probs = sampler.sample(4000, users=torch.arange(30), seed=7)
    assert ids.shape == probs.shape == (30, 4000)
    assert torch.equal(probs, torch.full_like(probs, 1 / 25))
    _within_3_sigma(
        np.bincount(ids.reshape(-1).numpy(), minlength=25), np.full(25, 1 / 25), ids.numel()
    )


def test_sampling_is_seeded_and_reads_no_global_rng():
    sampler = NegativeSampler.fit([0, 1, 1, 2, 3, 3, 3])
    torch.manual_seed(0)
    a = sampler.sample(50, seed=3)
    torch.manual_seed(1)
    b = sampler.sample(50, seed=3)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(sampler.sample(50, seed=4)[0], a[0])
    g1, g2 = torch.Generator().manual_seed(9), torch.Generator().manual_seed(9)
    assert torch.equal(sampler.sample(20, generator=g1)[0], sampler.sample(20, generator=g2)[0])
    # a generator advances: two calls differ
    assert not torch.equal(sampler.sample(20, generator=g1)[0], sampler.sample(20, seed=9)[0])


def test_sampler_errors():
    sampler = NegativeSampler.uniform(5)
    with pytest.raises(ValueError, match="exactly one"):
        sampler.sample(3)
    with pytest.raises(ValueError, match="exactly one"):
        sampler.sample(3, seed=0, generator=torch.Generator())
    with pytest.raises(ValueError, match="num must"):
        sampler.sample(0, seed=0)
    with pytest.raises(ValueError, match="exclude needs users"):
        sampler.sample(3, seed=0, exclude=UserPositives([0], [1]))
    with pytest.raises(ValueError, match="all zero"):
        NegativeSampler([0.0, 0.0])
    with pytest.raises(ValueError, match="finite"):
        NegativeSampler([1.0, -1.0])
    with pytest.raises(ValueError, match="power"):
        NegativeSampler.fit([0, 1], power=-0.5)
    with pytest.raises(ValueError, match="empty"):
        NegativeSampler.fit([])
    with pytest.raises(ValueError, match="num_items=2"):
        NegativeSampler.fit([0, 5], num_items=2)
    with pytest.raises(TypeError, match="StringLookup"):
        NegativeSampler.fit(pa.array(["a", "b"]))


# -- NegativeSampler: excluding positives --------------------------------------------------------


def test_excluded_positives_never_drawn_and_probability_is_unconditional():
    table = _interactions(400, 2, num_users=20, num_items=30)
    positives = UserPositives.from_table(table, num_items=30)
    sampler = NegativeSampler.fit(table["movie_id"], power=0.75)
    users = torch.arange(20).repeat(5)
    ids, probs = sampler.sample(64, users=users, exclude=positives, seed=0)
    assert ids.shape == (100, 64)
    sets: dict[int, set[int]] = defaultdict(set)
    for u, i in zip(table["user_id"].to_pylist(), table["movie_id"].to_pylist(), strict=True):
        sets[u].add(i)
    for u, row in zip(users.tolist(), ids.tolist(), strict=True):
        assert not sets[u] & set(row)
    assert torch.equal(probs, sampler.probabilities.float()[ids])


def test_excluded_sampling_follows_the_conditional_distribution():
    counts = np.array([40, 10, 30, 5, 15, 0, 20])
    sampler = NegativeSampler.fit(np.repeat(np.arange(7), counts), power=0.75)
    positives = UserPositives([0, 0, 1], [2, 6, 0], num_items=7)
    p = counts**0.75 / (counts**0.75).sum()
    draws = 100_000
    ids, _ = sampler.sample(draws, users=[0, 1], exclude=positives, seed=5)
    for user, excluded in ((0, [2, 6]), (1, [0])):
        conditional = p.copy()
        conditional[excluded] = 0
        conditional /= conditional.sum()
        _within_3_sigma(np.bincount(ids[user].numpy(), minlength=7), conditional, draws)


def test_users_without_valid_negatives_and_round_bound():
    sampler = NegativeSampler.fit([0, 1, 1, 2, 4])  # item 3 unseen: never drawn
    everything = UserPositives([0, 0, 0, 0, 1], [0, 1, 2, 4, 0])
    with pytest.raises(ValueError, match=r"user\(s\) \[0\] have no valid negatives"):
        sampler.sample(3, users=[1, 0], exclude=everything, seed=0)
    # user 0 sees items 0..3: only item 4 (p = 1e-9 of the mass) is valid
    heavy = NegativeSampler([1.0, 1.0, 1.0, 1.0, 4e-9])
    nearly = UserPositives([0, 0, 0, 0], [0, 1, 2, 3])
    with pytest.raises(RuntimeError, match=r"max_rounds=20.*user\(s\) \[0\]"):
        heavy.sample(4, users=[0], exclude=nearly, seed=0, max_rounds=20)
    # users unknown to the positives (id past num_users) have nothing excluded
    ids, _ = sampler.sample(5, users=[7], exclude=everything, seed=0)
    assert ids.shape == (1, 5)


# -- sample_listwise -----------------------------------------------------------------------------


def _ratings(n: int, seed: int, num_users: int) -> pa.Table:
    rng = np.random.default_rng(seed)
    users = rng.integers(0, num_users, n)
    return pa.table(
        {
            "user_id": pa.array([f"user{u}" for u in users]),
            "movie_title": pa.array([f"m{i}" for i in rng.integers(0, 50, n)]),
            "user_rating": rng.integers(1, 6, n).astype(np.float32),
            "row": np.arange(n),
        }
    )


def test_sample_listwise_structure_by_brute_force():
    table = _ratings(600, 0, num_users=60)  # about 10 rows per user: some users fall short
    lists = sample_listwise(
        table, num_list_per_user=4, num_examples_per_list=8, seed=0, features=["row"]
    )
    assert lists.column_names == ["user_id", "movie_title", "user_rating", "row"]
    assert lists.schema.field("movie_title").type == pa.list_(pa.string(), 8)
    assert lists.schema.field("user_rating").type == pa.list_(pa.float32(), 8)
    # reference: users in order of first appearance, kept when they have >= 8 rows
    rows_by_user: dict[str, list[int]] = {}
    for r, u in enumerate(table["user_id"].to_pylist()):
        rows_by_user.setdefault(u, []).append(r)
    kept = [u for u, rows in rows_by_user.items() if len(rows) >= 8]
    assert 0 < len(kept) < len(rows_by_user)
    assert lists["user_id"].to_pylist() == [u for u in kept for _ in range(4)]
    titles = table["movie_title"].to_pylist()
    ratings = table["user_rating"].to_pylist()
    for example in lists.to_pylist():
        rows = example["row"]
        assert len(set(rows)) == 8  # without replacement within a list
        assert set(rows) <= set(rows_by_user[example["user_id"]])
        assert example["movie_title"] == [titles[r] for r in rows]
        assert example["user_rating"] == [ratings[r] for r in rows]


def test_sample_listwise_ordered_samples_are_uniform():
    # one user with 4 rows, lists of 2: each of the 12 ordered pairs equally likely
    table = pa.table(
        {"user_id": [0] * 4, "movie_title": ["a", "b", "c", "d"], "user_rating": [1.0] * 4}
    )
    lists = sample_listwise(table, num_list_per_user=12_000, num_examples_per_list=2, seed=1)
    pairs = Counter(tuple(x) for x in lists["movie_title"].to_pylist())
    assert set(pairs) == {p for p in permutations("abcd", 2)}
    _within_3_sigma(np.array([pairs[p] for p in sorted(pairs)]), np.full(12, 1 / 12), 12_000)
    # lists as long as the user's history: uniform permutations
    full = sample_listwise(
        table.slice(0, 3), num_list_per_user=6000, num_examples_per_list=3, seed=2
    )
    perms = Counter(tuple(x) for x in full["movie_title"].to_pylist())
    assert set(perms) == set(permutations("abc"))
    _within_3_sigma(np.array([perms[p] for p in sorted(perms)]), np.full(6, 1 / 6), 6000)


def test_sample_listwise_seeding_and_errors():
    table = _ratings(200, 1, num_users=5)
    a = sample_listwise(table, num_list_per_user=3, num_examples_per_list=5, seed=4)
    b = sample_listwise(
        table, num_list_per_user=3, num_examples_per_list=5, seed=np.random.default_rng(4)
    )
    assert a.equals(b)
    assert not a.equals(
        sample_listwise(table, num_list_per_user=3, num_examples_per_list=5, seed=5)
    )
    empty = sample_listwise(table, num_list_per_user=3, num_examples_per_list=1000, seed=0)
    assert empty.num_rows == 0 and empty.column_names == a.column_names
    assert empty.schema.field("movie_title").type == pa.list_(pa.string(), 1000)
    with pytest.raises(ValueError, match="rating='rating'"):
        sample_listwise(table, seed=0, rating="rating")
    with pytest.raises(ValueError, match="num_examples_per_list"):
        sample_listwise(table, seed=0, num_examples_per_list=0)
    with pytest.raises(ValueError, match="seed"):
        sample_listwise(table, seed=-1)
    with pytest.raises(TypeError):
        sample_listwise(table)  # seed is required
    with pytest.raises(ValueError, match="distinct"):
        sample_listwise(table, seed=0, features=["movie_title"])


# -- sequence_examples ---------------------------------------------------------------------------


def _reference_sequence_examples(table, *, max_context_length, min_timeline_length, pad_id, item):
    """The TF Lite data script's loop: per-user timelines sorted by time (stable), then for each
    label position the previous items, padded at the end."""
    timelines: dict[object, list[tuple[int, int, int]]] = {}
    users = table["user_id"].to_pylist()
    items = table[item].to_pylist()
    times = table["timestamp"].to_pylist()
    for u, i, t in zip(users, items, times, strict=True):
        timelines.setdefault(u, []).append((t, i))
    out = []
    for u, timeline in timelines.items():
        timeline.sort(key=lambda x: x[0])  # stable: ties keep table order
        if len(timeline) < min_timeline_length:
            continue
        for label in range(1, len(timeline)):
            context = [i for _, i in timeline[max(0, label - max_context_length) : label]]
            length = len(context)
            context += [pad_id] * (max_context_length - length)
            out.append(
                {
                    "user_id": u,
                    "context": context,
                    "context_length": length,
                    "target": timeline[label][1],
                    "timestamp": timeline[label][0],
                }
            )
    return out


@pytest.mark.parametrize("length, min_length, pad", [(10, 3, 0), (3, 1, -1), (1, 4, 99)])
def test_sequence_examples_by_brute_force(length, min_length, pad):
    rng = np.random.default_rng(length)
    n = 500
    table = pa.table(
        {
            "user_id": pa.array([f"u{u}" for u in rng.integers(0, 60, n)]),
            "movie_id": rng.integers(1, 100, n),
            "timestamp": rng.integers(0, 15, n),  # many ties
        }
    )
    got = sequence_examples(
        table, max_context_length=length, min_timeline_length=min_length, pad_id=pad
    )
    expected = _reference_sequence_examples(
        table,
        max_context_length=length,
        min_timeline_length=min_length,
        pad_id=pad,
        item="movie_id",
    )
    assert got.to_pylist() == expected
    assert got.schema.field("context").type == pa.list_(pa.int64(), length)
    assert got.schema.field("context_length").type == pa.int64()


def test_sequence_examples_hand_computed():
    table = pa.table(
        {
            "user_id": [7, 7, 8, 7, 8, 9, 7],
            "movie_id": [10, 20, 30, 40, 50, 60, 70],
            "timestamp": [3, 1, 5, 3, 4, 0, 2],
        }
    )
    # user 7 timeline (timestamp, row): 20 (t1), 70 (t2), 10 (t3), 40 (t3, later row)
    got = sequence_examples(table, max_context_length=2, min_timeline_length=3)
    assert got.to_pylist() == [
        {"user_id": 7, "context": [20, 0], "context_length": 1, "target": 70, "timestamp": 2},
        {"user_id": 7, "context": [20, 70], "context_length": 2, "target": 10, "timestamp": 3},
        {"user_id": 7, "context": [70, 10], "context_length": 2, "target": 40, "timestamp": 3},
    ]  # user 8 has 2 < 3 rows, user 9 one


def test_sequence_examples_errors():
    table = pa.table({"user_id": [1, 1], "movie_id": ["a", "b"], "timestamp": [1, 2]})
    with pytest.raises(TypeError, match="StringLookup"):
        sequence_examples(table)
    ints = table.set_column(1, "movie_id", pa.array([1, 2]))
    with pytest.raises(ValueError, match="max_context_length"):
        sequence_examples(ints, max_context_length=0)
    with pytest.raises(ValueError, match="item='item'"):
        sequence_examples(ints, item="item")
    with pytest.raises(ValueError, match="null"):
        sequence_examples(ints.set_column(1, "movie_id", pa.array([1, None])))
    with pytest.raises(ValueError, match="empty"):
        sequence_examples(ints.slice(0, 0))
    with pytest.raises(ValueError, match="distinct"):
        sequence_examples(ints, user="movie_id")
    with pytest.raises(ValueError, match="output column"):
        sequence_examples(ints.rename_columns(["target", "movie_id", "timestamp"]), user="target")


# -- MovieLens 100K ------------------------------------------------------------------------------


def test_sampling_on_movielens_100k(ml100k_dir):
    from torchrs_fn.data.datasets import movielens

    ratings = movielens.load("100k", data_dir=ml100k_dir).ratings
    ratings = ratings.set_column(
        ratings.schema.get_field_index("movie_id"),
        "movie_id",
        pc.cast(ratings["movie_id"], pa.int64()),
    )
    # sequence examples: sum over users with >= 3 ratings of (n_u - 1), counted independently
    per_user = Counter(ratings["user_id"].to_pylist())
    expected_count = sum(n - 1 for n in per_user.values() if n >= 3)
    examples = sequence_examples(ratings)
    assert examples.num_rows == expected_count == 100_000 - 943
    reference = _reference_sequence_examples(
        ratings, max_context_length=10, min_timeline_length=3, pad_id=0, item="movie_id"
    )
    assert examples.to_pylist() == reference

    # listwise: every user has >= 20 ratings, so 10 lists each
    lists = sample_listwise(ratings, seed=42)
    assert lists.num_rows == 943 * 10
    rated: dict[str, set[str]] = defaultdict(set)
    for u, t in zip(
        ratings["user_id"].to_pylist(), ratings["movie_title"].to_pylist(), strict=True
    ):
        rated[u].add(t)
    for u, titles in zip(
        lists["user_id"].to_pylist(), lists["movie_title"].to_pylist(), strict=True
    ):
        assert set(titles) <= rated[u]

    # negatives excluding each user's rated movies
    users = pc.cast(ratings["user_id"], pa.int64())
    positives = UserPositives(users, ratings["movie_id"])
    sampler = NegativeSampler.fit(ratings["movie_id"], power=0.75)
    batch = torch.arange(1, 944)
    ids, probs = sampler.sample(100, users=batch, exclude=positives, seed=0)
    assert not positives.contains(batch[:, None].expand_as(ids), ids).any()
    counts = np.bincount(ratings["movie_id"].to_numpy())
    p = counts**0.75 / (counts**0.75).sum()
    assert torch.equal(probs, torch.from_numpy(p).float()[ids])
