"""Sampling: negative items, listwise examples and sequence examples from interaction tables.

* ``NegativeSampler`` draws negative item ids from a fixed distribution over ``[0, num_items)``
  (uniform, log-uniform, or popularity ``count ** power``) and returns, with every id, the
  probability it had of being drawn: the ``candidate_sampling_probability`` of TFRS's logQ
  correction. Each user's positives (a ``UserPositives``) can be excluded by rejection sampling.
* ``sample_listwise`` builds TFRS's ``tfrs.examples.movielens.sample_listwise`` lists.
* ``sequence_examples`` builds the (context, target) examples of the TFRS sequential-retrieval
  recipe from per-user timelines.

Everything is vectorised over whole columns (per-user work uses sorting and group offsets), and
all randomness comes from an explicit seed or generator.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from ._columns import (
    check_int,
    check_no_nulls,
    check_table,
    group_codes,
    require_columns,
    sorted_groups,
    time_values,
)

__all__ = ["NegativeSampler", "UserPositives", "sample_listwise", "sequence_examples"]

# After this many redraw rounds, entries still rejected trigger the check for users who have no
# valid negative at all (they would otherwise spin until max_rounds).
_EARLY_CHECK_ROUND = 8

_SEQUENCE_COLUMNS = ("context", "context_length", "target")


# -- helpers -------------------------------------------------------------------------------------


def _int_ids(values: Any, name: str) -> np.ndarray:
    """1-D non-negative integer ids as numpy int64, from Arrow / numpy / torch / lists."""
    if isinstance(values, pa.ChunkedArray | pa.Array):
        if not pa.types.is_integer(values.type):
            raise TypeError(
                f"{name} must hold integer ids, got Arrow type {values.type}; map values to ids "
                "first (data.StringLookup / data.IntegerLookup)"
            )
        check_no_nulls(values, name, "ids")
        if isinstance(values, pa.ChunkedArray):
            values = values.combine_chunks()
        array = values.to_numpy()
    elif isinstance(values, torch.Tensor):
        array = values.detach().cpu().numpy()
    else:
        array = np.asarray(values)
        if array.size == 0:
            array = array.astype(np.int64)  # np.asarray([]) is float64
    if array.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {tuple(array.shape)}")
    if array.dtype.kind not in "iu":
        raise TypeError(f"{name} must hold integer ids, got dtype {array.dtype}")
    array = array.astype(np.int64, copy=False)
    if len(array) and array.min() < 0:
        raise ValueError(f"{name} must be >= 0, got {int(array.min())}")
    return array


def _generator(seed: int | None, generator: torch.Generator | None) -> torch.Generator:
    if (seed is None) == (generator is None):
        raise ValueError("give exactly one of seed (an int) and generator (a torch.Generator)")
    if generator is not None:
        if not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
        if generator.device.type != "cpu":
            raise ValueError(f"generator must be a CPU generator, got one on {generator.device}")
        return generator
    return torch.Generator().manual_seed(check_int(seed, "seed", 0))


def _numpy_rng(seed: int | np.random.Generator) -> np.random.Generator:
    if isinstance(seed, np.random.Generator):
        return seed
    return np.random.default_rng(check_int(seed, "seed", 0))


# -- user positives ------------------------------------------------------------------------------


class UserPositives:
    """Each user's set of positive items, for excluding them from negative sampling.

    Stored in CSR form: user ``u``'s distinct items, sorted, are
    ``items[indptr[u]:indptr[u + 1]]``. Users and items are integer ids (map raw values with
    ``StringLookup`` / ``IntegerLookup`` first). Membership tests are one ``searchsorted`` over the
    sorted keys ``user * num_items + item``, vectorised over any number of queries.
    """

    def __init__(
        self, users: Any, items: Any, *, num_users: int | None = None, num_items: int | None = None
    ) -> None:
        """Builds the sets from parallel ``users`` / ``items`` id arrays (``[N]`` each;
        duplicates are fine). ``num_users`` / ``num_items`` default to the largest id + 1."""
        u = _int_ids(users, "users")
        i = _int_ids(items, "items")
        if len(u) != len(i):
            raise ValueError(f"users and items differ in length: {len(u)} vs {len(i)}")
        self.num_users = self._size(num_users, u, "num_users", "users")
        self.num_items = self._size(num_items, i, "num_items", "items")
        if self.num_users * self.num_items > np.iinfo(np.int64).max:
            raise ValueError(
                f"num_users={self.num_users} times num_items={self.num_items} exceeds the int64 "
                "range of the (user, item) keys; map users and items to dense ids with "
                "data.IntegerLookup first"
            )
        keys = np.unique(u * self.num_items + i)  # sorted, distinct (user, item) pairs
        self._keys = torch.from_numpy(keys)
        self.items = torch.from_numpy(keys % self.num_items)
        self.indptr = torch.from_numpy(
            np.searchsorted(keys // self.num_items, np.arange(self.num_users + 1), side="left")
        )

    @staticmethod
    def _size(given: int | None, ids: np.ndarray, name: str, what: str) -> int:
        largest = int(ids.max()) + 1 if len(ids) else 0
        if given is None:
            return max(largest, 1)
        given = check_int(given, name, 1)
        if largest > given:
            raise ValueError(f"{what} holds id {largest - 1}, not below {name}={given}")
        return given

    @classmethod
    def from_table(
        cls,
        table: pa.Table,
        *,
        user: str = "user_id",
        item: str = "movie_id",
        num_users: int | None = None,
        num_items: int | None = None,
    ) -> UserPositives:
        """The positives of an interactions table with integer ``user`` / ``item`` id columns."""
        check_table(table)
        require_columns(table, {"user": user, "item": item})
        return cls(table.column(user), table.column(item), num_users=num_users, num_items=num_items)

    def __len__(self) -> int:
        """Number of distinct (user, item) pairs."""
        return len(self._keys)

    def __getitem__(self, user: int) -> torch.Tensor:
        """User ``user``'s positive items, sorted (``[n_u]`` int64)."""
        user = check_int(user, "user", 0)
        if user >= self.num_users:
            return self.items[:0]
        return self.items[self.indptr[user] : self.indptr[user + 1]]

    def gather(self, users: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """The positives of ``users`` (``[B]`` ids) as a flat ragged batch:
        ``(row, items)``, where ``items[j]`` is a positive of ``users[row[j]]``; rows in order,
        items sorted within a row. Vectorised (no loop over users)."""
        u = torch.as_tensor(_int_ids(users, "users"))
        u = u.clamp(max=self.num_users)  # ids past the last user have no positives
        indptr = torch.cat([self.indptr, self.indptr[-1:]])
        starts, ends = indptr[u], indptr[u + 1]
        lengths = ends - starts
        row = torch.repeat_interleave(torch.arange(len(u)), lengths)
        first = torch.cumsum(lengths, 0) - lengths
        offset = torch.arange(int(lengths.sum())) - first[row]
        return row, self.items[starts[row] + offset]

    def padded(self, users: Any) -> torch.Tensor:
        """The positives of ``users`` (``[B]`` ids) as a ``[B, E]`` int64 tensor: row ``b`` holds
        ``users[b]``'s distinct item ids, sorted, then -1 up to ``E``, the most positives any of
        these users has (``E = 0`` when none has any). Vectorised (built on ``gather``).

        This is the padded form the retrieval metrics take as ``exclude`` (or ``relevant``): it
        holds item *ids*, which are candidate rows when the candidate matrix is indexed by item id
        (an embedding table); otherwise map them to rows first (e.g. with
        ``metrics.candidate_rows``, keeping -1 as padding).
        """
        row, items = self.gather(users)
        b = len(_int_ids(users, "users"))
        lengths = torch.bincount(row, minlength=b)
        width = int(lengths.max()) if b else 0
        first = torch.cumsum(lengths, 0) - lengths
        column = torch.arange(len(row)) - first[row]
        out = torch.full((b, width), -1, dtype=torch.int64)
        out[row, column] = items
        return out

    def counts(self) -> torch.Tensor:
        """Distinct positives per user, ``[num_users]`` int64."""
        return self.indptr.diff()

    def contains(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Whether ``items[j]`` is a positive of ``users[j]`` (same-shape int64 tensors; a user
        or item id out of range is never a positive)."""
        inside = (users >= 0) & (users < self.num_users) & (items >= 0) & (items < self.num_items)
        keys = users * self.num_items + items
        if len(self._keys) == 0:
            return torch.zeros_like(inside)
        at = torch.searchsorted(self._keys, keys).clamp_(max=len(self._keys) - 1)
        return inside & (self._keys[at] == keys)

    def __repr__(self) -> str:
        return (
            f"UserPositives(num_users={self.num_users}, num_items={self.num_items}, "
            f"pairs={len(self)})"
        )


# -- negative sampling ---------------------------------------------------------------------------


class NegativeSampler:
    """Draws item ids from a fixed distribution over ``[0, num_items)``, with replacement.

    ``NegativeSampler(weights)`` samples item ``i`` with probability
    ``weights[i] / sum(weights)``; the constructors give the usual choices:

    * ``NegativeSampler.uniform(num_items)`` — TF's ``tf.random.uniform_candidate_sampler``;
    * ``NegativeSampler.log_uniform(num_items)`` — TF's ``log_uniform_candidate_sampler``
      (Zipfian over ids sorted by decreasing frequency);
    * ``NegativeSampler.fit(item_column, power=0.75)`` — popularity sampling,
      ``p ∝ count ** power``, TF's ``fixed_unigram_candidate_sampler(unigrams=counts,
      distortion=power)`` (word2vec's 0.75 by default). Items never seen get probability 0.

    ``sample`` returns the ids and their probabilities ``p[id]``, the
    ``candidate_sampling_probability`` that TFRS's ``Retrieval`` task subtracts as ``log p``.
    TF's samplers return expected counts instead: with replacement, those are ``num * p``.
    """

    def __init__(self, weights: Any) -> None:
        """``weights``: ``[num_items]`` non-negative finite numbers, at least one positive."""
        if isinstance(weights, torch.Tensor):
            weights = weights.detach().cpu().numpy()
        w = np.asarray(weights, dtype=np.float64)
        if w.ndim != 1 or len(w) == 0:
            raise ValueError(f"weights must be 1-D and non-empty, got shape {w.shape}")
        if not np.isfinite(w).all() or (w < 0).any():
            raise ValueError("weights must be finite and >= 0")
        total = w.sum()
        if not total > 0:
            raise ValueError("weights are all zero: no item can be sampled")
        p = w / total
        self.probabilities = torch.from_numpy(p)  # [V] float64
        self._probabilities32 = self.probabilities.to(torch.float32)
        self._cdf = torch.from_numpy(np.cumsum(w))
        self._last = int(np.flatnonzero(w > 0)[-1])  # guards draws that round up to the total
        self._support = int(np.count_nonzero(w))

    @classmethod
    def uniform(cls, num_items: int) -> NegativeSampler:
        """Every id in ``[0, num_items)`` with probability ``1 / num_items``."""
        return cls(np.ones(check_int(num_items, "num_items", 1)))

    @classmethod
    def log_uniform(cls, num_items: int) -> NegativeSampler:
        """``p(i) = log((i + 2) / (i + 1)) / log(num_items + 1)``, as TF's
        ``log_uniform_candidate_sampler`` (ids should be sorted by decreasing frequency)."""
        i = np.arange(check_int(num_items, "num_items", 1), dtype=np.float64)
        return cls(np.log1p(1.0 / (i + 1.0)))

    @classmethod
    def fit(
        cls, items: Any, *, power: float = 0.75, num_items: int | None = None
    ) -> NegativeSampler:
        """Popularity sampler: ``p(i) = count_i ** power / sum_j count_j ** power``.

        Args:
            items: the item id of every interaction (an Arrow integer column, numpy array,
                tensor or list), ids ``>= 0``.
            power: the distortion; 1 is proportional to counts, 0 uniform over the items seen.
            num_items: the id range ``[0, num_items)``; default the largest id + 1. Ids never
                seen have count 0 and are never drawn.
        """
        ids = _int_ids(items, "items")
        if len(ids) == 0:
            raise ValueError("items is empty: nothing to count")
        if isinstance(power, bool) or not isinstance(power, (int, float, np.integer, np.floating)):
            raise TypeError(f"power must be a number, got {power!r}")
        if not np.isfinite(power) or power < 0:
            raise ValueError(f"power must be finite and >= 0, got {power!r}")
        size = int(ids.max()) + 1
        if num_items is not None:
            num_items = check_int(num_items, "num_items", 1)
            if size > num_items:
                raise ValueError(f"items holds id {size - 1}, not below num_items={num_items}")
            size = num_items
        counts = np.bincount(ids, minlength=size).astype(np.float64)
        weights = np.zeros_like(counts)
        seen = counts > 0
        weights[seen] = counts[seen] ** float(power)
        return cls(weights)

    @property
    def num_items(self) -> int:
        return len(self.probabilities)

    def probability(self, ids: torch.Tensor) -> torch.Tensor:
        """``p[ids]`` as float32, any shape."""
        return self._probabilities32[ids]

    def _draw(self, n: int, generator: torch.Generator) -> torch.Tensor:
        u = torch.rand(n, generator=generator, dtype=torch.float64)
        ids = torch.searchsorted(self._cdf, u * self._cdf[-1], right=True)
        return ids.clamp_(max=self._last)

    def sample(
        self,
        num: int,
        *,
        users: Any = None,
        exclude: UserPositives | None = None,
        seed: int | None = None,
        generator: torch.Generator | None = None,
        max_rounds: int = 1000,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Draws ``num`` ids (per user when ``users`` is given), independently, with replacement.

        Args:
            num: ids per row, ``>= 1``.
            users: optional ``[B]`` user ids: the result then has one row of ``num`` ids per user.
            exclude: optional ``UserPositives``; needs ``users``. Each id drawn for user ``u``
                that is one of ``u``'s positives is drawn again (rejection sampling, only for the
                rejected entries, up to ``max_rounds`` rounds), so row ``b`` follows ``p``
                conditioned on not being a positive of ``users[b]``.
            seed: an int seed; give exactly one of ``seed`` and ``generator``.
            generator: a CPU ``torch.Generator`` to draw from (it advances).
            max_rounds: the bound on redraw rounds.

        Returns:
            ``(ids, probabilities)``: int64 ids and float32 ``p[ids]``, ``[num]`` or ``[B, num]``.
            With ``exclude`` the probability is still the *unconditional* proposal probability
            ``p[id]``, not ``p[id] / (1 - p(positives of u))``: it is the same for every user,
            which is what the logQ correction of a shared candidate set uses.

        Raises:
            ValueError: a user in ``users`` has no valid negative (every item with ``p > 0`` is a
                positive of theirs), or bad arguments.
            RuntimeError: entries were still rejected after ``max_rounds`` rounds (users whose
                positives carry almost all the probability); the message names them.
        """
        num = check_int(num, "num", 1)
        max_rounds = check_int(max_rounds, "max_rounds", 0)
        g = _generator(seed, generator)
        if users is None:
            if exclude is not None:
                raise ValueError("exclude needs users: the user of each row of negatives")
            ids = self._draw(num, g)
            return ids, self.probability(ids)
        user_ids = torch.from_numpy(_int_ids(users, "users"))
        rows = len(user_ids)
        ids = self._draw(rows * num, g)
        if exclude is not None:
            if not isinstance(exclude, UserPositives):
                raise TypeError(f"exclude must be a UserPositives, got {type(exclude).__name__}")
            self._reject_positives(ids, user_ids.repeat_interleave(num), exclude, g, max_rounds)
        ids = ids.reshape(rows, num)
        return ids, self.probability(ids)

    def _reject_positives(
        self,
        ids: torch.Tensor,
        owner: torch.Tensor,
        exclude: UserPositives,
        generator: torch.Generator,
        max_rounds: int,
    ) -> None:
        """Redraws, in place, every entry of ``ids`` that is a positive of its ``owner``."""
        pending = torch.arange(len(ids))
        for round_ in range(max_rounds + 1):
            hit = exclude.contains(owner[pending], ids[pending])
            pending = pending[hit]
            if len(pending) == 0:
                return
            if round_ in (_EARLY_CHECK_ROUND, max_rounds):
                stuck = torch.unique(owner[pending])
                covered, mass = self._positive_support(exclude, stuck)
                hopeless = stuck[covered >= self._support]
                if len(hopeless):
                    raise ValueError(
                        f"user(s) {hopeless[:10].tolist()} have no valid negatives: every item "
                        f"the sampler can draw ({self._support} with p > 0) is one of their "
                        "positives"
                    )
            if round_ == max_rounds:
                raise RuntimeError(
                    f"{len(pending)} negatives were still positives after max_rounds="
                    f"{max_rounds} redraw rounds, for user(s) {stuck[:10].tolist()} whose "
                    f"positives hold {[round(m, 6) for m in mass[:10].tolist()]} of the "
                    "sampling probability; raise max_rounds, or sample these users from a "
                    "distribution that gives their negatives more mass"
                )
            ids[pending] = self._draw(len(pending), generator)

    def _positive_support(
        self, exclude: UserPositives, users: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """For each of ``users`` (distinct): how many items with ``p > 0`` are its positives,
        and the probability they hold together."""
        segment, items = exclude.gather(users)
        drawable = items < self.num_items
        segment, items = segment[drawable], items[drawable]
        p = self.probabilities[items]
        covered = torch.bincount(segment[p > 0], minlength=len(users))
        mass = torch.zeros(len(users), dtype=torch.float64).index_add_(0, segment, p)
        return covered, mass

    def __repr__(self) -> str:
        return f"NegativeSampler(num_items={self.num_items}, support={self._support})"


# -- listwise examples ---------------------------------------------------------------------------


def _floyd_subsets(n: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """``[M, k]``: row ``m`` is a uniformly random ordered sample of ``k`` distinct indices from
    ``range(n[m])`` (``n >= k``). Floyd's algorithm vectorised over rows (k steps), then a random
    order within each row."""
    rows = len(n)
    chosen = np.empty((rows, k), dtype=np.int64)
    for i in range(k):
        j = n - k + i
        t = rng.integers(0, j + 1)  # uniform in [0, j] per row
        taken = (chosen[:, :i] == t[:, None]).any(axis=1)
        chosen[:, i] = np.where(taken, j, t)
    shuffle = np.argsort(rng.random((rows, k)), axis=1)
    return np.take_along_axis(chosen, shuffle, axis=1)


def sample_listwise(
    table: pa.Table,
    *,
    num_list_per_user: int = 10,
    num_examples_per_list: int = 10,
    seed: int | np.random.Generator,
    user: str = "user_id",
    item: str = "movie_title",
    rating: str = "user_rating",
    features: Sequence[str] = (),
) -> pa.Table:
    """Listwise examples from ratings, as TFRS's ``tfrs.examples.movielens.sample_listwise``.

    For every user with at least ``num_examples_per_list`` rows, ``num_list_per_user`` lists are
    drawn, each a uniformly random ordered sample of ``num_examples_per_list`` of that user's
    rows, without replacement within a list and independently across lists. Users with fewer
    rows are dropped. A user who rated the same item on two rows can have it twice in a list, as
    in TFRS.

    Output rows: users in order of first appearance in ``table``, each user's lists consecutive.
    The distribution is TFRS's; the random stream is not (TFRS draws from
    ``np.random.RandomState(seed)``), so the lists differ from TFRS's for the same seed.

    Args:
        table: the ratings, one row each.
        num_list_per_user: lists per user, ``>= 1``.
        num_examples_per_list: items per list ``K``, ``>= 1``.
        seed: an int, or a ``numpy.random.Generator`` (then consumed).
        user: the user column (any type; no nulls); copied to the output as is.
        item: the item column sampled into lists (any type).
        rating: the rating column sampled into lists (any type).
        features: more per-row columns to sample into lists alongside ``item`` and ``rating``.

    Returns:
        a ``pa.Table`` with ``user`` and one ``fixed_size_list<type>[K]`` column per sampled
        column, in the order ``item``, ``rating``, ``*features``: with ``K = 10``, a
        ``movie_title`` list of 10 titles and the 10 matching ratings, like TFRS's ``[10]``
        tensors. Loaded with ``Loader`` (after mapping strings to ids), a list column becomes a
        ``[B, K]`` tensor.
    """
    check_table(table)
    num_lists = check_int(num_list_per_user, "num_list_per_user", 1)
    k = check_int(num_examples_per_list, "num_examples_per_list", 1)
    if isinstance(features, str) or not isinstance(features, Sequence):
        raise TypeError(f"features must be a sequence of column names, got {features!r}")
    listed = [item, rating, *features]
    require_columns(
        table,
        {
            "user": user,
            "item": item,
            "rating": rating,
            **{f"features[{i}]": f for i, f in enumerate(features)},
        },
    )
    if len(set(listed)) != len(listed) or user in listed:
        raise ValueError(f"user, item, rating and features must be distinct, got {[user, *listed]}")
    rng = _numpy_rng(seed)
    codes, num_users = group_codes(table.column(user), user)
    groups = sorted_groups(codes, num_users)  # each user's rows in table order
    eligible = np.flatnonzero(groups.sizes >= k)
    list_user = np.repeat(eligible, num_lists)
    picks = _floyd_subsets(groups.sizes[list_user], k, rng)
    rows = groups.order[groups.starts[list_user][:, None] + picks]  # [M, K] rows of table
    flat = pa.array(rows.reshape(-1))
    columns = {user: table.column(user).take(pa.array(rows[:, 0]))}
    for name in listed:
        values = table.column(name).take(flat).combine_chunks()
        columns[name] = pa.FixedSizeListArray.from_arrays(values, k)
    return pa.table(columns)


# -- sequence examples ---------------------------------------------------------------------------


def sequence_examples(
    table: pa.Table,
    *,
    user: str = "user_id",
    item: str = "movie_id",
    timestamp: str = "timestamp",
    max_context_length: int = 10,
    min_timeline_length: int = 3,
    pad_id: int = 0,
) -> pa.Table:
    """Next-item examples from per-user timelines, as in the TFRS sequential-retrieval recipe.

    Each user's rows are ordered by ``(timestamp, row index)`` into a timeline
    ``i_0, ..., i_{n-1}``. Users with ``n < min_timeline_length`` give no example. Every position
    ``t = 1 .. n - 1`` gives one example: ``target = i_t`` and ``context`` the up to ``L =
    max_context_length`` items before it, oldest first, ``i_{max(0, t - L)} .. i_{t - 1}``, padded
    on the *right* with ``pad_id`` to length ``L``. This is the layout of the TF Lite on-device
    recommendation data script (``example_generation_movielens.py``) that the TFRS tutorial uses:
    ``context_movie_id`` padded at the end with movie id 0, ``label_movie_id`` the next movie.
    A user with ``n`` rows gives ``n - 1`` examples.

    ``pad_id`` is only filler: ``context_length`` says how many entries are real (the mask is
    ``arange(L) < context_length``), so ``pad_id`` may equal a real id, e.g. the OOV id 0 of a
    ``StringLookup``.

    Args:
        table: the interactions, one row each.
        user: the user column (any type; no nulls).
        item: the item column: integer ids (map strings with ``StringLookup`` first, or cast
            numeric strings with ``pyarrow.compute.cast``).
        timestamp: the time column (see ``temporal_split``).
        max_context_length: ``L``, ``>= 1``.
        min_timeline_length: users with fewer rows are skipped, ``>= 1``.
        pad_id: the filler of short contexts.

    Returns:
        a ``pa.Table``, one row per example: users in order of first appearance in ``table``,
        each user's examples in time order, with columns ``user`` (as in ``table``),
        ``context`` (``fixed_size_list<int64>[L]``), ``context_length`` (``int64``, ``1 .. L``),
        ``target`` (``int64``) and ``timestamp`` (the target's time, as in ``table``, for
        splitting the examples by time).
    """
    check_table(table)
    length = check_int(max_context_length, "max_context_length", 1)
    min_length = check_int(min_timeline_length, "min_timeline_length", 1)
    if isinstance(pad_id, bool) or not isinstance(pad_id, (int, np.integer)):
        raise TypeError(f"pad_id must be an int, got {pad_id!r}")
    require_columns(table, {"user": user, "item": item, "timestamp": timestamp})
    if len({user, item, timestamp}) < 3 or {user, timestamp} & set(_SEQUENCE_COLUMNS):
        raise ValueError(
            f"user={user!r}, item={item!r} and timestamp={timestamp!r} must be distinct, and "
            f"user / timestamp must not be named like an output column {_SEQUENCE_COLUMNS}"
        )
    items_column = table.column(item)
    if not pa.types.is_integer(items_column.type):
        raise TypeError(
            f"column {item!r} (item) must hold integer ids, got {items_column.type}; map it with "
            "data.StringLookup / IntegerLookup, or cast numeric strings with "
            "pyarrow.compute.cast(column, pyarrow.int64())"
        )
    check_no_nulls(items_column, item, "item")
    items = items_column.combine_chunks().to_numpy()
    if items.dtype == np.uint64 and len(items) and items.max() > np.iinfo(np.int64).max:
        raise ValueError(
            f"column {item!r} (item) holds id {int(items.max())}, beyond the int64 range of the "
            "output; map the ids to a dense range with data.IntegerLookup first"
        )
    items = items.astype(np.int64, copy=False)
    times = time_values(table.column(timestamp), timestamp)
    codes, num_users = group_codes(table.column(user), user)
    groups = sorted_groups(codes, num_users, times)
    at = np.flatnonzero((groups.size >= min_length) & (groups.rank >= 1))  # sorted positions
    count = np.minimum(groups.rank[at], length)
    timeline = items[groups.order]
    window = (at - count)[:, None] + np.arange(length)  # [E, L] sorted positions, oldest first
    real = np.arange(length) < count[:, None]
    context = np.where(real, timeline[np.where(real, window, 0)], np.int64(pad_id))
    rows = pa.array(groups.order[at])
    return pa.table(
        {
            user: table.column(user).take(rows),
            "context": pa.FixedSizeListArray.from_arrays(pa.array(context.reshape(-1)), length),
            "context_length": pa.array(count),
            "target": pa.array(timeline[at]),
            timestamp: table.column(timestamp).take(rows),
        }
    )
