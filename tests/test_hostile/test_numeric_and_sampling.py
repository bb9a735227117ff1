"""Hostile input to Normalization / Discretization and to the samplers."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from torchrs_fn.data import (
    Discretization,
    NegativeSampler,
    Normalization,
    UserPositives,
    sample_listwise,
    sequence_examples,
)

HOSTILE = settings.get_profile("hostile")

finite = st.floats(allow_nan=False, allow_infinity=False)
moderate = st.floats(-1e6, 1e6, allow_nan=False)
non_finite = st.sampled_from([math.nan, math.inf, -math.inf])


@settings(HOSTILE, max_examples=80)
@given(values=st.lists(finite, min_size=1, max_size=40), container=st.sampled_from("lnta"))
def test_normalization_fit_is_finite_or_refused(values, container):
    """Any finite column: finite statistics, or a ValueError (variance overflowing float64)."""
    column = {
        "l": values,
        "n": np.asarray(values),
        "t": torch.tensor(values, dtype=torch.float64),
        "a": pa.array(values),
    }[container]
    with np.errstate(over="ignore", invalid="ignore"):
        try:
            norm = Normalization.fit(column)
        except ValueError as e:
            assert "variance" in str(e) or "mean" in str(e)
            return
    assert np.isfinite(norm.mean).all() and np.isfinite(norm.variance).all()


@settings(HOSTILE, max_examples=80)
@given(
    fit_on=st.lists(moderate, min_size=1, max_size=30),
    apply_to=st.lists(moderate, max_size=30),
    as_torch=st.booleans(),
)
def test_normalization_of_moderate_values_is_finite(fit_on, apply_to, as_torch):
    norm = Normalization.fit(np.asarray(fit_on))
    if as_torch:
        out = norm(torch.tensor(apply_to, dtype=torch.float64)).numpy()
    else:
        out = norm(np.asarray(apply_to, dtype=np.float64))
    assert out.shape == (len(apply_to),) and out.dtype == np.float32
    # The 1e-7 floor under the scale keeps constant columns finite: |x - mean| * 1e7 <= 2e13.
    assert np.isfinite(out).all()


@settings(HOSTILE, max_examples=60)
@given(
    values=st.lists(finite, min_size=1, max_size=20),
    bad=non_finite,
    where=st.integers(0, 10**6),
    fit_kind=st.sampled_from(["normalization", "discretization"]),
)
def test_fit_refuses_nan_and_inf(values, bad, where, fit_kind):
    values = list(values)
    where %= len(values)
    values[where] = bad
    with pytest.raises(ValueError, match=rf"NaN or infinite.*first at flat position {where}\b"):
        if fit_kind == "normalization":
            Normalization.fit(values)
        else:
            Discretization.fit(values, num_bins=3)


@settings(HOSTILE, max_examples=80)
@given(
    fit_on=st.lists(finite, min_size=1, max_size=30),
    apply_to=st.lists(finite | st.sampled_from([math.inf, -math.inf]), max_size=30),
    num_bins=st.integers(1, 12),
    as_torch=st.booleans(),
)
def test_discretization_buckets_every_value(fit_on, apply_to, num_bins, as_torch):
    disc = Discretization.fit(fit_on, num_bins=num_bins)
    assert disc.num_bins == num_bins
    x = np.asarray(apply_to, dtype=np.float64)
    out = disc(torch.from_numpy(x)).numpy() if as_torch else disc(x)
    assert out.shape == x.shape
    assert ((out >= 0) & (out < num_bins)).all()
    # Reference: a value's bucket is the number of boundaries <= it (infinities included).
    expected = [sum(b <= v for b in disc.bin_boundaries) for v in apply_to]
    assert out.tolist() == expected


@settings(HOSTILE, max_examples=40)
@given(values=st.lists(finite, min_size=1, max_size=10), where=st.integers(0, 10**6))
def test_discretization_refuses_nan_input(values, where):
    disc = Discretization([0.0, 1.0])
    values = list(values)
    values[where % len(values)] = math.nan
    with pytest.raises(ValueError, match="NaN"):
        disc(values)
    with pytest.raises(ValueError, match="NaN"):
        disc(torch.tensor(values))


# -- samplers --------------------------------------------------------------------------------


@st.composite
def ratings(draw, min_rows=1):
    n = draw(st.integers(min_rows, 40))
    users = draw(st.lists(st.integers(0, 5) | st.text(max_size=3), min_size=n, max_size=n))
    return pa.table(
        {
            "user_id": pa.array([str(u) for u in users]),
            "movie_title": pa.array([f"m{i}" for i in range(n)]),
            "user_rating": pa.array(np.arange(n, dtype=np.float32)),
        }
    )


@settings(HOSTILE, max_examples=80)
@given(table=ratings(), lists_per_user=st.integers(1, 4), k=st.integers(1, 6), seed=st.integers(0))
def test_sample_listwise_returns_what_it_promises(table, lists_per_user, k, seed):
    out = sample_listwise(
        table, num_list_per_user=lists_per_user, num_examples_per_list=k, seed=seed
    )
    users = table.column("user_id").to_pylist()
    rows_of = {u: [i for i, v in enumerate(users) if v == u] for u in dict.fromkeys(users)}
    eligible = [u for u, rows in rows_of.items() if len(rows) >= k]
    # Every eligible user exactly lists_per_user times, in order of first appearance; no other.
    assert out.column("user_id").to_pylist() == [u for u in eligible for _ in range(lists_per_user)]
    for user, titles, ratings_ in zip(
        out.column("user_id").to_pylist(),
        out.column("movie_title").to_pylist(),
        out.column("user_rating").to_pylist(),
    ):
        picked = [int(t[1:]) for t in titles]
        assert len(picked) == k == len(set(picked))  # K distinct rows, without replacement
        assert set(picked) <= set(rows_of[user])  # only this user's rows
        assert ratings_ == [float(i) for i in picked]  # columns stay aligned


@settings(HOSTILE, max_examples=20)
@given(k=st.integers(1, 5))
def test_sample_listwise_refuses_empty_table(k):
    empty = pa.table({"user_id": pa.array([], pa.string()), "movie_title": [], "user_rating": []})
    with pytest.raises(ValueError, match="empty"):
        sample_listwise(empty, num_examples_per_list=k, seed=0)


@settings(HOSTILE, max_examples=80)
@given(
    users=st.lists(st.integers(0, 4), min_size=1, max_size=30),
    item_ids=st.data(),
    context=st.integers(1, 6),
    min_length=st.integers(1, 5),
    pad_id=st.integers(-(2**63), 2**63 - 1),
)
def test_sequence_examples_one_per_timeline_step(users, item_ids, context, min_length, pad_id):
    n = len(users)
    items = item_ids.draw(st.lists(st.integers(0, 2**63 - 1), min_size=n, max_size=n))
    times = item_ids.draw(st.lists(st.integers(-(2**40), 2**40), min_size=n, max_size=n))
    table = pa.table({"user_id": users, "movie_id": items, "timestamp": times})
    out = sequence_examples(
        table, max_context_length=context, min_timeline_length=min_length, pad_id=pad_id
    )
    # Reference: a per-user loop over the timeline sorted by (time, row).
    expected = []
    for user in dict.fromkeys(users):
        rows = sorted((t, i) for i, (u, t) in enumerate(zip(users, times)) if u == user)
        timeline = [items[i] for _, i in rows]
        if len(timeline) < min_length:
            continue
        for t in range(1, len(timeline)):
            ctx = timeline[max(0, t - context) : t]
            expected.append((user, ctx + [pad_id] * (context - len(ctx)), len(ctx), timeline[t]))
    got = list(
        zip(
            out.column("user_id").to_pylist(),
            out.column("context").to_pylist(),
            out.column("context_length").to_pylist(),
            out.column("target").to_pylist(),
        )
    )
    assert got == expected


@settings(HOSTILE, max_examples=30)
@given(value=st.integers(2**63, 2**64 - 1))
def test_sequence_examples_refuses_ids_beyond_int64(value):
    table = pa.table(
        {
            "user_id": [1, 1, 1],
            "movie_id": pa.array([1, value, 2], pa.uint64()),
            "timestamp": [1, 2, 3],
        }
    )
    with pytest.raises(ValueError, match="movie_id"):
        sequence_examples(table)


@settings(HOSTILE, max_examples=80)
@given(
    weights=st.lists(st.floats(0, 1e300) | st.just(0.0), min_size=1, max_size=30),
    num=st.integers(1, 50),
    num_users=st.none() | st.integers(1, 4),
    seed=st.integers(0, 2**40),
)
def test_negative_sampler_draws_only_items_with_mass(weights, num, num_users, seed):
    w = np.asarray(weights)
    if not w.sum() > 0 or not np.isfinite(w.sum()):
        with pytest.raises(ValueError, match="weights"):
            NegativeSampler(w)
        return
    sampler = NegativeSampler(w)
    users = None if num_users is None else torch.arange(num_users)
    ids, p = sampler.sample(num, users=users, seed=seed)
    assert ids.shape == p.shape == ((num,) if users is None else (num_users, num))
    assert ((ids >= 0) & (ids < len(w))).all()
    assert (w[ids.numpy()] > 0).all()  # never an item the distribution gives no mass
    np.testing.assert_allclose(p.numpy(), (w / w.sum())[ids.numpy()], rtol=1e-6)


@settings(HOSTILE, max_examples=60)
@given(
    num_items=st.integers(2, 12),
    positives=st.lists(st.tuples(st.integers(0, 3), st.integers(0, 11)), max_size=30),
    num=st.integers(1, 20),
    seed=st.integers(0, 2**40),
)
def test_negative_sampler_excludes_positives_or_says_why(num_items, positives, num, seed):
    positives = [(u, i) for u, i in positives if i < num_items]
    users = torch.arange(4)
    exclude = UserPositives(
        [u for u, _ in positives], [i for _, i in positives], num_users=4, num_items=num_items
    )
    sampler = NegativeSampler.uniform(num_items)
    full = {u for u in range(4) if len({i for v, i in positives if v == u}) == num_items}
    if full:
        with pytest.raises(ValueError, match="no valid negatives"):
            sampler.sample(num, users=users, exclude=exclude, seed=seed)
        return
    ids, _ = sampler.sample(num, users=users, exclude=exclude, seed=seed)
    for u in range(4):
        assert not set(ids[u].tolist()) & {i for v, i in positives if v == u}


@settings(HOSTILE, max_examples=60)
@given(
    pairs=st.lists(st.tuples(st.integers(0, 5), st.integers(0, 2**63 - 2)), min_size=1, max_size=6),
    probe=st.tuples(st.integers(0, 5), st.integers(0, 2**63 - 2)),
)
def test_user_positives_with_huge_item_ids_are_exact_or_refused(pairs, probe):
    """(user, item) keys are ``user * num_items + item``: past int64 they must be refused."""
    users, items = [u for u, _ in pairs], [i for _, i in pairs]
    if (max(users) + 1) * (max(items) + 1) > 2**63 - 1:
        with pytest.raises(ValueError, match="int64"):
            UserPositives(users, items)
        return
    positives = UserPositives(users, items)
    queries = [*pairs, probe]
    got = positives.contains(
        torch.tensor([u for u, _ in queries]), torch.tensor([i for _, i in queries])
    )
    assert got.tolist() == [q in set(pairs) for q in queries]
    for u in set(users):
        assert positives[u].tolist() == sorted({i for v, i in pairs if v == u})


@settings(HOSTILE, max_examples=60)
@given(
    ids=st.lists(st.integers(-3, 2**62), max_size=40),
    shape=st.sampled_from(["flat", "rows"]),
)
def test_unique_ids_round_trip_any_ids(ids, shape):
    # optim.unique_ids (the row-sparse step's compaction): every non-negative id comes back
    # through its slot, the valid slots are exactly the distinct ids, padding stays negative.
    from torchrs_fn import optim

    t = torch.tensor(ids, dtype=torch.int64)
    if shape == "rows" and len(ids) % 2 == 0:
        t = t.reshape(2, -1)
    r = optim.unique_ids(t)
    assert r.ids.shape == (t.numel() + 1,) and r.inverse.shape == t.shape
    real = t[t >= 0]
    assert sorted(r.ids[r.valid].tolist()) == sorted(set(real.tolist()))
    assert r.ids[0] == 0
    back = torch.where(t >= 0, r.ids[r.inverse.clamp(min=0)], t)
    assert torch.equal(back, t)
