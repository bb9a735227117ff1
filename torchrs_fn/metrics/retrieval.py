"""Retrieval metrics: TFRS's ``FactorizedTopK`` and top-k retrieval metrics as pure functions.

Two families, with two rules for tied scores:

- ``positive_ranks`` / ``factorized_top_k`` (TFRS's score-based ``FactorizedTopK``): for each query
  the positive candidate's score is compared with the scores of *all* candidates: the positive is
  in the top k when fewer than k candidates score strictly higher. Ties therefore count as hits,
  as in TFRS (``tf.math.in_top_k``), and the positive itself never counts against it.
  ``factorized_top_k_ids`` is TFRS's id-based mode: a hit when the true id is among the first k
  ids an index retrieved.
- ``retrieval_metrics`` (recall, precision, hit rate, NDCG, MAP at k, and MRR) ranks the candidates
  of each query in one deterministic order: by score, highest first, and among equal scores the
  lower candidate row first. Its accumulator (``RetrievalMetricsState``: ``retrieval_metrics_init``,
  ``_update``, ``_merge``, ``_result``) adds catalogue coverage and merges exactly.

Exclusions and relevant sets are ``[B, E]`` int64 tensors of candidate *rows* (rows of
``candidate_embeddings``), padded with -1 (any negative entry is padding); ``exclude=None`` means
no exclusions. An excluded row is taken out of that query's ranking entirely: it is never
retrieved and never scores above anything. A positive or relevant row that is also excluded is
therefore never retrieved: it counts as a miss (rank ``N`` in ``positive_ranks``; still in the
relevant set, so it lowers recall), as if it had been dropped from the catalogue.
``data.UserPositives.padded`` builds such a tensor from each user's positives (item ids; map them
to rows first unless rows are item ids). Eagerly, ``exclude`` may also be given as
``(query_rows, candidate_rows)`` pairs, one entry per exclusion (``data.UserPositives.gather``
returns that form): its cost follows the real exclusions, with no padding to the longest row.

Candidates are scored in chunks and queries in blocks, so the ``[B, N]`` score matrix is never
held whole for large N. Every function here is a function of tensors without host syncs (the
eager input checks, which read values, are skipped under ``torch.compile`` and on ``vmap``-batched
tensors), so ``vmap`` and ``compile`` compose over them; their float outputs are piecewise
constant in the embeddings, so their gradient is exactly 0.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch

from .._transforms import host_checks_allowed, inside_transforms

__all__ = [
    "DEFAULT_KS",
    "positive_ranks",
    "factorized_top_k",
    "factorized_top_k_ids",
    "top_k_metric_names",
    "candidate_rows",
    "retrieval_metrics",
    "RetrievalMetricsState",
    "retrieval_metrics_init",
    "retrieval_metrics_update",
    "retrieval_metrics_merge",
    "retrieval_metrics_result",
]

DEFAULT_KS: tuple[int, ...] = (1, 5, 10, 50, 100)
_CHUNK = 65536
_SCORE_BLOCK = 1 << 21  # scores per query block (8 MiB of float32)
_AT_K = ("recall", "precision", "hit_rate", "ndcg", "map")


# --- checks ------------------------------------------------------------------------------------


def _check_2d(name: str, x: torch.Tensor) -> None:
    if not isinstance(x, torch.Tensor) or x.ndim != 2:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{name} must be a 2-D tensor [rows, D], got {shape}")


def _is_int(x: torch.Tensor) -> bool:
    return not (x.is_floating_point() or x.is_complex() or x.dtype == torch.bool)


def _check_embeddings(q: torch.Tensor, c: torch.Tensor) -> None:
    """Shapes, dtypes and (eagerly) finiteness of ``query_embeddings [B, D]`` and
    ``candidate_embeddings [N, D]``."""
    _check_2d("query_embeddings", q)
    _check_2d("candidate_embeddings", c)
    if q.shape[1] != c.shape[1]:
        raise ValueError(
            f"query_embeddings {tuple(q.shape)} and candidate_embeddings {tuple(c.shape)} differ in "
            "their last dimension"
        )
    for name, x in (("query_embeddings", q), ("candidate_embeddings", c)):
        if not x.is_floating_point():
            raise TypeError(f"{name} must be floating-point, got {x.dtype}")
        # NaN compares false with everything, so it would rank silently wrong: refuse it.
        if host_checks_allowed(x) and x.numel() and not bool(torch.isfinite(x).all()):
            raise ValueError(f"{name} contain NaN or inf")


def _check_ks(ks: Sequence[int], n: int, what: str = "candidates, N") -> tuple[int, ...]:
    if isinstance(ks, int):
        raise TypeError(f"ks must be a sequence of ints, e.g. ({ks},), got {ks!r}")
    ks = tuple(ks)
    if any(isinstance(k, bool) or not hasattr(k, "__index__") for k in ks):
        raise TypeError(f"ks must hold ints, got {ks!r}")
    ks = tuple(k.__index__() for k in ks)
    if not ks or min(ks) < 1:
        raise ValueError(f"ks must be positive integers, got {ks}")
    if max(ks) > n:
        raise ValueError(f"k={max(ks)} in ks is larger than the number of {what}={n}")
    return ks


def _check_rows(name: str, rows: torch.Tensor | None, b: int, n: int) -> torch.Tensor:
    """``[B, E]`` integer rows padded with negatives, every real one below ``n``; ``None`` gives
    an empty ``[B, 0]``."""
    if rows is None:
        return torch.zeros(b, 0, dtype=torch.int64)
    if not isinstance(rows, torch.Tensor):
        raise TypeError(f"{name} must be an int64 tensor [B, E], got {type(rows).__name__}")
    if not _is_int(rows):
        raise TypeError(f"{name} must hold integer candidate rows, got {rows.dtype}")
    if rows.ndim != 2 or rows.shape[0] != b:
        raise ValueError(
            f"{name} must have shape [{b}, E] (one row of candidate rows per query, padded with "
            f"-1), got {tuple(rows.shape)}"
        )
    if host_checks_allowed(rows) and rows.numel() and int(rows.max()) >= n:
        raise IndexError(
            f"{name} must hold candidate rows in [0, {n}) (negative entries are padding), got "
            f"{int(rows.max())}"
        )
    return rows.long()


# --- scoring in blocks -------------------------------------------------------------------------


def _query_blocks(b: int, width: int) -> list[tuple[int, int]]:
    """Query ranges of about ``_SCORE_BLOCK`` scores each; one (empty) block when ``b == 0``, so
    that outputs keep their shapes."""
    rows = max(1, _SCORE_BLOCK // max(width, 1))
    return [(start, min(start + rows, b)) for start in range(0, max(b, 1), rows)]


def _eager(q: torch.Tensor, c: torch.Tensor, exclude: torch.Tensor) -> bool:
    """Whether exclusions may take the eager paths (``out=`` buffers, data-dependent pairs):
    outside every transform and ``torch.compile``, with no derivative being recorded."""
    if inside_transforms() or q.requires_grad or c.requires_grad:
        return False
    return host_checks_allowed(q, c, exclude)


def _chunk_scores(
    q: torch.Tensor, c: torch.Tensor, exclude: torch.Tensor | _Pairs, start: int, width: int
) -> torch.Tensor:
    """``[b, w]`` scores of ``q`` against candidate rows ``start .. start + w``, with the rows in
    ``exclude [b, E]`` (padded with -1) at -inf.

    Exclusions never build a ``[b, w]`` mask. ``exclude`` is either ``_Pairs`` (eager, mostly
    padding: only the real entries are written) or the padded ``[b, E]``: eagerly scattered
    once into a spare column, and under ``torch.compile`` and ``vmap`` (no ``out=``, no
    data-dependent shapes there) an excluded row takes ``min(score, -inf)`` and any other entry
    ``min(score, +inf)``, which leaves it unchanged. Duplicates are harmless either way.
    """
    cand = c[start : start + width]
    w = cand.shape[0]
    if isinstance(exclude, _Pairs):
        scores = q @ cand.T
        rows, local = exclude.rows, exclude.cols - start
        if start > 0 or w < c.shape[0]:
            keep = (local >= 0) & (local < w)
            rows, local = rows[keep], local[keep]
        return scores.index_put_((rows, local), scores.new_tensor(-math.inf))
    if exclude.shape[1] == 0:
        return q @ cand.T
    local = exclude - start
    inside = (local >= 0) & (local < w)
    if _eager(q, cand, exclude):
        # Mostly real entries: the scores go into a buffer one column wider, and every entry
        # that is not an excluded row of this chunk (padding, another chunk's row) lands in
        # that spare column, in one scatter.
        buffer = q.new_empty(q.shape[0], w + 1)
        torch.mm(q, cand.T, out=buffer[:, :w])
        buffer.scatter_(1, torch.where(inside, local, w), -math.inf)
        return buffer[:, :w]
    scores = q @ cand.T
    fill = torch.full_like(local, 0, dtype=scores.dtype).masked_fill(inside, -math.inf)
    fill = fill.masked_fill(~inside, math.inf)
    return scores.scatter_reduce_(1, torch.where(inside, local, 0), fill, reduce="amin")


class _Pairs(NamedTuple):
    """A block's exclusions as (query row, candidate row) pairs: the real entries of a padded
    ``[b, E]``, found once per block (eager path only: their number depends on the data)."""

    rows: torch.Tensor
    cols: torch.Tensor


def _compact(q: torch.Tensor, c: torch.Tensor, exclude: torch.Tensor) -> torch.Tensor | _Pairs:
    """``exclude [b, E]`` as ``_Pairs`` where an eager, non-differentiated call may use them and
    more than half of its entries are padding, so that exclusions cost what a batch really
    excludes, not ``b`` times its longest row (MovieLens pads a mean of 105 seen items to 737);
    else ``exclude`` itself (scattered whole, see ``_chunk_scores``; always so under
    ``torch.compile`` and ``vmap``)."""
    if exclude.shape[1] == 0 or not _eager(q, c, exclude):
        return exclude
    real = exclude >= 0
    if 2 * int(real.sum()) >= exclude.numel():
        return exclude  # mostly real entries: one scatter of the padded block is cheaper
    rows, slots = real.nonzero(as_tuple=True)
    return _Pairs(rows, exclude[rows, slots])


Exclusions = torch.Tensor | tuple[torch.Tensor, torch.Tensor] | None


def _is_pairs(exclude: Exclusions) -> bool:
    return isinstance(exclude, (tuple, list))


def _check_pairs(name: str, exclude: Sequence[torch.Tensor], b: int, n: int) -> _Pairs:
    """``exclude`` given as ``(query rows [M], candidate rows [M])`` pairs, checked and sorted
    by query row (eager only: the pairs of a query block are a data-dependent slice)."""
    if len(exclude) != 2 or not all(isinstance(x, torch.Tensor) for x in exclude):
        raise TypeError(
            f"{name} as pairs must be (query_rows, candidate_rows), two int64 tensors [M], got "
            f"{[type(x).__name__ for x in exclude]}"
        )
    rows, cols = exclude
    if not (_is_int(rows) and _is_int(cols)):
        raise TypeError(f"{name} pairs must be integer tensors, got {rows.dtype} and {cols.dtype}")
    if rows.ndim != 1 or rows.shape != cols.shape:
        raise ValueError(
            f"{name} pairs must be two 1-d tensors of the same length, got {tuple(rows.shape)} "
            f"and {tuple(cols.shape)}"
        )
    if torch.compiler.is_compiling() or inside_transforms():
        raise ValueError(
            f"{name} as (query_rows, candidate_rows) pairs is for eager evaluation (its blocks "
            "have data-dependent sizes); under torch.compile or vmap pass the padded [B, E] "
            "form (data.UserPositives.padded)"
        )
    rows, cols = rows.long(), cols.long()
    if rows.numel():
        if int(rows.min()) < 0 or int(rows.max()) >= b:
            raise IndexError(
                f"{name} pairs: query rows must lie in [0, {b}), got "
                f"[{int(rows.min())}, {int(rows.max())}]"
            )
        if int(cols.min()) < 0 or int(cols.max()) >= n:
            raise IndexError(
                f"{name} pairs: candidate rows must lie in [0, {n}), got "
                f"[{int(cols.min())}, {int(cols.max())}]"
            )
        if bool((rows[1:] < rows[:-1]).any()):
            order = torch.argsort(rows, stable=True)
            rows, cols = rows[order], cols[order]
    return _Pairs(rows, cols)


def _pairs_block(pairs: _Pairs, qs: int, qe: int) -> _Pairs:
    """The pairs of queries ``qs .. qe`` (sorted pairs: one slice), rows relative to ``qs``."""
    bounds = torch.tensor([qs, qe], dtype=torch.int64, device=pairs.rows.device)
    lo, hi = torch.searchsorted(pairs.rows, bounds).tolist()
    return _Pairs(pairs.rows[lo:hi] - qs, pairs.cols[lo:hi])


def _padded(pairs: _Pairs, b: int) -> torch.Tensor:
    """Sorted pairs as the padded ``[b, E]`` form (-1 padding)."""
    lengths = torch.bincount(pairs.rows, minlength=b)
    width = int(lengths.max()) if b and pairs.rows.numel() else 0
    first = torch.cumsum(lengths, 0) - lengths
    column = torch.arange(pairs.rows.numel(), device=pairs.rows.device) - first[pairs.rows]
    out = torch.full((b, width), -1, dtype=torch.int64, device=pairs.rows.device)
    out[pairs.rows, column] = pairs.cols
    return out


def _score_chunks(
    q: torch.Tensor, c: torch.Tensor, exclude: torch.Tensor | _Pairs, chunk: int
) -> tuple[list[int], Callable[[int], torch.Tensor]]:
    """The chunk starts of one query block and ``start -> scores [b, w]``; a function that may be
    called twice per chunk (two passes) and gives the same scores: one matmul kept when the
    candidates fit in one chunk, recomputed identically otherwise."""
    n = c.shape[0]
    if n <= chunk:
        scores = _chunk_scores(q, c, exclude, 0, n)
        return [0], lambda start: scores
    return list(range(0, n, chunk)), lambda start: _chunk_scores(q, c, exclude, start, chunk)


def _gather_into(
    out: torch.Tensor, scores: torch.Tensor, start: int, rows: torch.Tensor
) -> torch.Tensor:
    """``out [b, R]`` with the scores of those candidate ``rows [b, R]`` that lie in this chunk
    (columns ``start .. start + w``) read from ``scores [b, w]``."""
    w = scores.shape[1]
    inside = (rows >= start) & (rows < start + w)
    local = (rows - start).clamp(0, max(w - 1, 0))
    return torch.where(inside, scores.gather(1, local), out)


# --- FactorizedTopK ------------------------------------------------------------------------------


def positive_ranks(
    query_embeddings: torch.Tensor,
    candidate_embeddings: torch.Tensor,
    positive_indices: torch.Tensor,
    *,
    chunk_size: int = _CHUNK,
    exclude: Exclusions = None,
) -> torch.Tensor:
    """``[B]`` int64: for each query, how many candidates score strictly higher than its positive.

    Args:
        query_embeddings: ``[B, D]``.
        candidate_embeddings: ``[N, D]``, the whole candidate set.
        positive_indices: ``[B]`` row of each query's positive in ``candidate_embeddings``.
        chunk_size: candidates scored at a time.
        exclude: ``[B, E]`` candidate rows to leave out of each query's ranking, padded with -1,
            or (eagerly) ``(query_rows, candidate_rows)`` pairs, e.g.
            ``data.UserPositives.gather(users)``, which cost only the real entries;
            ``None``: none.

    Rank 0 means the positive is the best-scoring candidate (ties with it count in its favour).
    Excluded rows never count as scoring higher. A positive that is itself excluded is never
    retrieved: its rank is ``N``, a miss at every k.
    """
    q, c = query_embeddings, candidate_embeddings
    _check_embeddings(q, c)
    b, n = q.shape[0], c.shape[0]
    if not isinstance(positive_indices, torch.Tensor) or positive_indices.shape != (b,):
        shape = getattr(positive_indices, "shape", type(positive_indices).__name__)
        raise ValueError(f"positive_indices must have shape [{b}], got {tuple(shape)}")
    if not _is_int(positive_indices):
        raise TypeError(f"positive_indices must be integers, got {positive_indices.dtype}")
    # The range check reads values on the host: skipped under torch.compile and on vmap-batched
    # tensors (where an index out of range still fails in ``gather``).
    if host_checks_allowed(positive_indices) and positive_indices.numel():
        lo, hi = int(positive_indices.min()), int(positive_indices.max())
        if lo < 0 or hi >= n:
            raise IndexError(
                f"positive_indices must lie in [0, {n}) (the candidate rows), got values in [{lo}, {hi}]"
            )
    if _is_pairs(exclude):
        pairs, excl = _check_pairs("exclude", exclude, b, n), None
        pairs = _Pairs(pairs.rows.to(q.device), pairs.cols.to(q.device))
    else:
        pairs, excl = None, _check_rows("exclude", exclude, b, n).to(q.device)
    idx = positive_indices.long()[:, None]
    # The positive's score is read from the same matmul that scores every candidate, and its own
    # column is never counted (not > itself), so rounding never ranks the positive below itself.
    parts = []
    for qs, qe in _query_blocks(b, min(n, chunk_size)):
        block = _pairs_block(pairs, qs, qe) if pairs is not None else _compact(q, c, excl[qs:qe])
        starts, score = _score_chunks(q[qs:qe], c, block, chunk_size)
        pos = q.new_zeros(qe - qs, 1)
        for start in starts:
            pos = _gather_into(pos, score(start), start, idx[qs:qe])
        ranks = torch.zeros(qe - qs, dtype=torch.int64, device=q.device)
        for start in starts:
            ranks = ranks + (score(start) > pos).sum(dim=1)
        # An excluded positive is a miss: rank n.
        if isinstance(block, _Pairs):
            own = block.rows[block.cols == idx[qs:qe, 0][block.rows]]
            ranks = ranks.index_fill_(0, own, n)
        elif excl is not None and excl.shape[1]:
            own = (excl[qs:qe] == idx[qs:qe]).any(dim=1)
            ranks = torch.where(own, torch.full_like(ranks, n), ranks)
        parts.append(ranks)
    return parts[0] if len(parts) == 1 else torch.cat(parts)


def factorized_top_k(
    query_embeddings: torch.Tensor,
    candidate_embeddings: torch.Tensor,
    positive_indices: torch.Tensor,
    ks: Sequence[int] = DEFAULT_KS,
    *,
    exclude: Exclusions = None,
) -> dict[str, torch.Tensor]:
    """TFRS ``FactorizedTopK``: per-query top-k hits over all candidates.

    Args:
        query_embeddings: ``[B, D]``.
        candidate_embeddings: ``[N, D]``.
        positive_indices: ``[B]`` row of each query's positive in ``candidate_embeddings``.
        ks: the cut-offs (TFRS default 1, 5, 10, 50, 100), each at most N (TFRS's top-k fails
            likewise).
        exclude: ``[B, E]`` candidate rows to leave out of each query's ranking, padded with -1,
            or (eagerly) ``(query_rows, candidate_rows)`` pairs (see ``positive_ranks``: an
            excluded positive is a miss).

    Returns:
        ``{"top_1": [B] float (1.0 hit / 0.0 miss), "top_5": ..., ...}``; their means over a
        test set are TFRS's ``factorized_top_k/top_k_categorical_accuracy``. A hit means fewer
        than k candidates score strictly higher than the positive (ties count as hits).

    Raises:
        ValueError: a k is not positive or exceeds N, or the shapes do not fit.
    """
    _check_2d("candidate_embeddings", candidate_embeddings)
    ks = _check_ks(ks, candidate_embeddings.shape[0])
    ranks = positive_ranks(
        query_embeddings, candidate_embeddings, positive_indices, exclude=exclude
    )
    return {f"top_{k}": (ranks < k).to(query_embeddings.dtype) for k in ks}


def factorized_top_k_ids(
    top_ids: torch.Tensor, true_ids: torch.Tensor, ks: Sequence[int] = DEFAULT_KS
) -> dict[str, torch.Tensor]:
    """TFRS ``FactorizedTopK`` in its id mode: a hit when the true id is among the first k ids.

    TFRS uses this mode when the candidates layer returns ids and ``true_candidate_ids`` is
    given: ``top_ids`` is what an index retrieved (e.g. ``index.BruteForce``), best first, so
    ties are broken by the index, not in favour of the true candidate.

    Args:
        top_ids: ``[B, K]`` integer ids retrieved per query, best first (a negative id, e.g.
            padding, never matches).
        true_ids: ``[B]`` integer id of each query's true candidate.
        ks: the cut-offs, each at most K.

    Returns:
        ``{"top_1": [B] float (1.0 hit / 0.0 miss), ...}`` in the default float dtype.
    """
    for name, x, ndim in (("top_ids", top_ids, 2), ("true_ids", true_ids, 1)):
        if not isinstance(x, torch.Tensor) or x.ndim != ndim:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            want = "[B, K]" if ndim == 2 else "[B]"
            raise ValueError(f"{name} must be a {ndim}-D tensor {want}, got {shape}")
        if not _is_int(x):
            raise TypeError(f"{name} must hold integer ids, got {x.dtype}")
    if true_ids.shape[0] != top_ids.shape[0]:
        raise ValueError(
            f"true_ids must have shape [{top_ids.shape[0]}] (one per row of top_ids), got "
            f"{tuple(true_ids.shape)}"
        )
    ks = _check_ks(ks, top_ids.shape[1], "retrieved ids per query, K")
    match = top_ids == true_ids[:, None]
    dtype = torch.get_default_dtype()
    return {f"top_{k}": match[:, :k].any(dim=1).to(dtype) for k in ks}


def top_k_metric_names(ks: Sequence[int] = DEFAULT_KS) -> list[str]:
    """The keys ``factorized_top_k`` returns: ``["top_1", "top_5", ...]``."""
    return [f"top_{int(k)}" for k in ks]


def candidate_rows(candidate_ids: torch.Tensor, num_ids: int) -> torch.Tensor:
    """``[num_ids]`` int64: the first row of ``candidate_ids`` holding each id, -1 where none does.

    Maps a batch's positive item ids to ``positive_indices`` for ``factorized_top_k`` when the
    candidate matrix is built from a table of items (which may list an item twice, as the TFRS
    tutorials' movies table does): ``candidate_rows(ids, n)[batch["movie_title"]]``. An id with no
    row maps to -1, which ``positive_ranks`` rejects by name.

    Args:
        candidate_ids: ``[N]`` integer ids, one per candidate row.
        num_ids: the size of the id space (e.g. a lookup's ``vocabulary_size()``).
    """
    if candidate_ids.ndim != 1 or candidate_ids.is_floating_point():
        raise ValueError(
            f"candidate_ids must be a 1-D integer tensor, got {candidate_ids.dtype} of shape "
            f"{tuple(candidate_ids.shape)}"
        )
    if candidate_ids.numel() and (
        int(candidate_ids.min()) < 0 or int(candidate_ids.max()) >= num_ids
    ):
        raise ValueError(
            f"candidate_ids must lie in [0, {num_ids}), got values in "
            f"[{int(candidate_ids.min())}, {int(candidate_ids.max())}]"
        )
    n = candidate_ids.shape[0]
    rows = torch.full((num_ids,), n, dtype=torch.int64, device=candidate_ids.device)
    rows = rows.scatter_reduce(
        0, candidate_ids.long(), torch.arange(n, device=candidate_ids.device), reduce="amin"
    )
    return torch.where(rows == n, torch.full_like(rows, -1), rows)


# --- retrieval metrics ---------------------------------------------------------------------------


def _ordered_top(scores: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``[b, k]`` values and columns of the k best scores, by score descending and, among equal
    scores, lower column first; exact under ties (``torch.topk`` alone picks tied columns in no
    set order). Needs ``k <= scores.shape[1]``."""
    w = scores.shape[1]
    kth = torch.topk(scores, k, dim=1).values[:, -1:]
    above = scores > kth
    tied = scores == kth
    need = k - above.sum(dim=1, keepdim=True)
    chosen = above | (tied & (torch.cumsum(tied, dim=1) <= need))  # lower tied columns first
    # Exactly k columns are chosen: the k largest of (w - column) among them are they, in
    # ascending column order.
    key = torch.where(chosen, w - torch.arange(w, device=scores.device), 0)
    cols = torch.topk(key, k, dim=1).indices
    values = scores.gather(1, cols)
    order = torch.sort(values, dim=1, descending=True, stable=True).indices
    return values.gather(1, order), cols.gather(1, order)


def _merge_top(
    values: torch.Tensor, rows: torch.Tensor, scores: torch.Tensor, start: int, k: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The best k ``(values, rows)`` so far merged with those of one more chunk of ``scores``
    (candidate rows ``start ..``), ordered as ``_ordered_top``. Chunks come in row order, so the
    running best hold the lower rows, and a stable sort keeps ties lower row first."""
    v, r = _ordered_top(scores, min(k, scores.shape[1]))
    if values.shape[1] == 0:
        return v, r + start
    values, rows = torch.cat([values, v], dim=1), torch.cat([rows, r + start], dim=1)
    order = torch.sort(values, dim=1, descending=True, stable=True).indices[:, :k]
    return values.gather(1, order), rows.gather(1, order)


def _relevant_sets(relevant: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``relevant [B, R]`` sorted, and ``[B, R]`` bool: a real, first occurrence of a row (a row
    listed twice counts once)."""
    rel = torch.sort(relevant, dim=1).values
    real = rel >= 0
    if rel.shape[1] > 1:
        repeat = torch.cat([torch.zeros_like(real[:, :1]), rel[:, 1:] == rel[:, :-1]], dim=1)
        real = real & ~repeat
    return rel, real


def retrieval_metrics(
    query_embeddings: torch.Tensor,
    candidate_embeddings: torch.Tensor,
    relevant: torch.Tensor,
    *,
    ks: Sequence[int] = (10,),
    exclude: Exclusions = None,
    chunk_size: int | None = None,
) -> dict[str, torch.Tensor]:
    """Per-query retrieval metrics at each cut-off k, from one exact top-k over all candidates.

    Each query ranks every candidate row not in its ``exclude`` by score ``q . c`` (highest
    first; among equal scores the lower row first: a deterministic order), and takes the first
    ``k``: ``top_k``. With ``R`` the query's set of relevant rows (padding dropped, a repeated row
    counted once) and ``hit_i`` 1 when the i-th retrieved row (from 0) is in ``R``:

    - ``recall@k = sum_{i<k} hit_i / |R|``
    - ``precision@k = sum_{i<k} hit_i / k`` (k even when fewer rows are left after exclusions)
    - ``hit_rate@k = 1 if any hit_i, i < k``
    - ``ndcg@k = DCG / IDCG``, ``DCG = sum_{i<k} hit_i / log2(i + 2)``, ``IDCG = sum_{i<min(|R|,k)}
      1 / log2(i + 2)`` (binary gains)
    - ``map@k = sum_{i<k} hit_i * precision@(i+1) / min(|R|, k)``
    - ``mrr = 1 / (rank + 1)``, ``rank`` the position (from 0) of the first relevant row in the
      whole ranking (not cut at k); 0 when no relevant row can be retrieved.

    A relevant row that is also excluded is never retrieved but stays in ``R`` (a miss, as if
    dropped from the catalogue). A query without relevant rows has every value 0 and ``weight``
    0: averages take ``sum(value * weight) / sum(weight)``, so it counts nowhere (recall is
    undefined for it). The accumulator ``retrieval_metrics_update`` does exactly that.

    Args:
        query_embeddings: ``[B, D]`` floating-point, finite.
        candidate_embeddings: ``[N, D]`` floating-point, finite.
        relevant: ``[B, R]`` integer candidate rows relevant to each query, padded with -1.
        ks: the cut-offs (Python ints), each at most N.
        exclude: ``[B, E]`` integer candidate rows to leave out of each query's ranking, padded
            with -1, or (eagerly) ``(query_rows, candidate_rows)`` pairs; ``None``: none.
        chunk_size: candidates scored at a time (default 65536); memory is bounded by about
            ``2**21`` scores per block plus ``[B, max k]``.

    Returns:
        ``{"recall@10": [B], "precision@10": [B], "hit_rate@10": [B], "ndcg@10": [B],
        "map@10": [B], ..., "mrr": [B], "weight": [B], "top_rows": [B, max k]}``: values in the
        embeddings' dtype; ``weight`` 1.0 for a query with a relevant row, else 0.0;
        ``top_rows`` the retrieved rows (int64) in rank order, -1 where fewer than ``max k``
        rows are left after exclusions (what catalogue coverage counts).

    Raises:
        ValueError: shapes that do not fit, a k above N, NaN or inf in the embeddings.
        TypeError: non-integer ``relevant`` / ``exclude`` or non-float embeddings.
        IndexError: a row of ``relevant`` / ``exclude`` at or above N.
    """
    q, c = query_embeddings, candidate_embeddings
    _check_embeddings(q, c)
    b, n = q.shape[0], c.shape[0]
    ks = _check_ks(ks, n)
    if relevant is None:
        raise TypeError("relevant must be an int64 tensor [B, R], got None")
    rel = _check_rows("relevant", relevant, b, n).to(q.device)
    if _is_pairs(exclude):
        exclude = _padded(_check_pairs("exclude", exclude, b, n), b)
    excl = _check_rows("exclude", exclude, b, n).to(q.device)
    chunk = _CHUNK if chunk_size is None else int(chunk_size)
    if chunk < 1:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    kmax = max(ks)
    if rel.shape[1] == 0:
        rel = torch.full((b, 1), -1, dtype=torch.int64, device=q.device)
    rel, real = _relevant_sets(rel)
    if excl.shape[1]:
        available = real & ~(rel[:, :, None] == excl[:, None, :]).any(dim=2)
    else:
        available = real
    top_parts, first_parts = [], []
    for qs, qe in _query_blocks(b, min(n, chunk)):
        starts, score = _score_chunks(q[qs:qe], c, _compact(q, c, excl[qs:qe]), chunk)
        r_b, a_b = rel[qs:qe], available[qs:qe]
        # First pass: the top k and the relevant rows' scores, from the same matmuls.
        values = q.new_zeros(qe - qs, 0)
        top = torch.zeros(qe - qs, 0, dtype=torch.int64, device=q.device)
        rel_scores = q.new_zeros(r_b.shape)
        for start in starts:
            scores = score(start)
            values, top = _merge_top(values, top, scores, start, kmax)
            rel_scores = _gather_into(rel_scores, scores, start, r_b)
        # The first relevant row of the ranking is the best-scoring available one (the lowest
        # row among ties); second pass: its rank counts the rows before it in that order.
        best = torch.where(a_b, rel_scores, -math.inf).amax(dim=1, keepdim=True)
        best_row = torch.where(a_b & (rel_scores == best), r_b, n).amin(dim=1, keepdim=True)
        rank = torch.zeros(qe - qs, dtype=torch.int64, device=q.device)
        for start in starts:
            scores = score(start)
            cols = torch.arange(start, start + scores.shape[1], device=q.device)
            before = (scores > best) | ((scores == best) & (cols < best_row))
            rank = rank + before.sum(dim=1)
        top_parts.append(top)
        first_parts.append(torch.where(a_b.any(dim=1), rank, -1))
    top = top_parts[0] if len(top_parts) == 1 else torch.cat(top_parts)
    first_rank = first_parts[0] if len(first_parts) == 1 else torch.cat(first_parts)
    if excl.shape[1]:
        # Fewer than k rows left: the excluded ones (at -inf) filled the tail.
        gone = (top[:, :, None] == excl[:, None, :]).any(dim=2)
        top = torch.where(gone, -1, top)
    return _per_query(top, first_rank, rel, real, ks, q.dtype)


def _per_query(
    top: torch.Tensor,
    first_rank: torch.Tensor,
    rel: torch.Tensor,
    real: torch.Tensor,
    ks: tuple[int, ...],
    dtype: torch.dtype,
) -> dict[str, torch.Tensor]:
    hits = ((top[:, :, None] == rel[:, None, :]) & real[:, None, :]).any(dim=2) & (top >= 0)
    hits = hits.to(dtype)
    num_rel = real.sum(dim=1).to(dtype)
    kmax = top.shape[1]
    positions = torch.arange(1, kmax + 1, dtype=dtype, device=top.device)
    discount = 1.0 / torch.log2(positions + 1)
    found = torch.cumsum(hits, dim=1)
    precision_at = found / positions
    zero = torch.zeros_like(num_rel)
    out: dict[str, torch.Tensor] = {}
    for k in ks:
        h = hits[:, :k]
        got = found[:, k - 1]
        shown = torch.minimum(num_rel, torch.full_like(num_rel, k))
        # IDCG: the first min(|R|, k) discounts summed.
        ideal = torch.cumsum(discount[:k], 0).gather(0, (shown.long() - 1).clamp(min=0))
        ideal = torch.where(shown > 0, ideal, zero)
        out[f"recall@{k}"] = _safe_div(got, num_rel)
        out[f"precision@{k}"] = got / k
        out[f"hit_rate@{k}"] = (got > 0).to(dtype)
        out[f"ndcg@{k}"] = _safe_div((h * discount[:k]).sum(dim=1), ideal)
        out[f"map@{k}"] = _safe_div((h * precision_at[:, :k]).sum(dim=1), shown)
    rank = first_rank.to(dtype)
    out["mrr"] = torch.where(first_rank >= 0, 1.0 / (rank.clamp(min=0) + 1), zero)
    out["weight"] = (num_rel > 0).to(dtype)
    out["top_rows"] = top
    return out


def _safe_div(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    ok = den > 0
    return torch.where(ok, num / torch.where(ok, den, torch.ones_like(den)), torch.zeros_like(num))


# --- accumulator -------------------------------------------------------------------------------


class RetrievalMetricsState(NamedTuple):
    """``retrieval_metrics`` over any number of batches, mergeable exactly.

    Attributes:
        sums: ``{"recall@k": 0-d float64, ..., "mrr": ...}``: the sums of the per-query values
            over the queries with a relevant row.
        count: 0-d float64: how many queries had a relevant row (the mean's denominator).
        retrieved: ``{"coverage@k": [N] bool}``: the candidate rows in some query's top k so
            far. Its keys carry the cut-offs, so the state needs no other static field.
    """

    sums: dict[str, torch.Tensor]
    count: torch.Tensor
    retrieved: dict[str, torch.Tensor]


def _state_ks(state: RetrievalMetricsState) -> tuple[int, ...]:
    return tuple(int(name.split("@")[1]) for name in state.retrieved)


def retrieval_metrics_init(
    ks: Sequence[int], num_candidates: int, device: torch.device | str | None = None
) -> RetrievalMetricsState:
    """An empty state for the cut-offs ``ks`` over ``num_candidates`` candidate rows.

    Args:
        ks: the cut-offs (Python ints), each at most ``num_candidates``.
        num_candidates: N, the number of candidate rows (coverage's denominator).
        device: where the state's tensors live.
    """
    if isinstance(num_candidates, bool) or not isinstance(num_candidates, int):
        raise TypeError(f"num_candidates must be an int, got {num_candidates!r}")
    if num_candidates < 1:
        raise ValueError(f"num_candidates must be positive, got {num_candidates}")
    ks = tuple(sorted(set(_check_ks(ks, num_candidates))))
    zero = torch.zeros((), dtype=torch.float64, device=device)
    names = [f"{m}@{k}" for k in ks for m in _AT_K] + ["mrr"]
    return RetrievalMetricsState(
        {name: zero.clone() for name in names},
        zero.clone(),
        {f"coverage@{k}": torch.zeros(num_candidates, dtype=torch.bool, device=device) for k in ks},
    )


def retrieval_metrics_update(
    state: RetrievalMetricsState,
    query_embeddings: torch.Tensor,
    candidate_embeddings: torch.Tensor,
    relevant: torch.Tensor,
    exclude: Exclusions = None,
) -> RetrievalMetricsState:
    """Fold one batch of queries into ``state`` (a new state; ``state`` is not modified).

    Args:
        state: from ``retrieval_metrics_init`` (its cut-offs and N are used).
        query_embeddings: ``[B, D]``.
        candidate_embeddings: ``[N, D]``, the same N candidate rows as the state's.
        relevant: ``[B, R]`` relevant candidate rows per query, padded with -1.
        exclude: ``[B, E]`` candidate rows to leave out per query, padded with -1, or (eagerly)
            ``(query_rows, candidate_rows)`` pairs; ``None``: none.
    """
    ks = _state_ks(state)
    n = next(iter(state.retrieved.values())).shape[0]
    _check_2d("candidate_embeddings", candidate_embeddings)
    if candidate_embeddings.shape[0] != n:
        raise ValueError(
            f"candidate_embeddings has {candidate_embeddings.shape[0]} rows; the state was made "
            f"for num_candidates={n}"
        )
    values = retrieval_metrics(
        query_embeddings, candidate_embeddings, relevant, ks=ks, exclude=exclude
    )
    f64 = torch.float64
    weight = values["weight"].to(f64)
    sums = {
        name: total + (values[name].to(f64) * weight).sum() for name, total in state.sums.items()
    }
    top = values["top_rows"]
    retrieved = {}
    for k in ks:
        rows = top[:, :k].reshape(-1)
        rows = torch.where(rows >= 0, rows, n)  # padding into a spare slot
        seen = torch.zeros(n + 1, dtype=torch.bool, device=rows.device)
        seen = seen.scatter(0, rows, torch.ones_like(rows, dtype=torch.bool))[:n]
        retrieved[f"coverage@{k}"] = state.retrieved[f"coverage@{k}"] | seen
    return RetrievalMetricsState(sums, state.count + weight.sum(), retrieved)


def retrieval_metrics_merge(
    a: RetrievalMetricsState, b: RetrievalMetricsState
) -> RetrievalMetricsState:
    """Combine two partial states (shards, ranks, passes): sums add, coverage vectors OR."""
    if set(a.sums) != set(b.sums) or set(a.retrieved) != set(b.retrieved):
        raise ValueError(
            f"states for different cut-offs: {sorted(a.retrieved)} vs {sorted(b.retrieved)}"
        )
    return RetrievalMetricsState(
        {name: a.sums[name] + b.sums[name] for name in a.sums},
        a.count + b.count,
        {name: a.retrieved[name] | b.retrieved[name] for name in a.retrieved},
    )


def retrieval_metrics_result(state: RetrievalMetricsState) -> dict[str, float]:
    """The metrics as Python floats: each per-query metric's mean over the queries with a
    relevant row (NaN if there was none, as ``mean_result``), and ``coverage@k``: the share of
    the N candidate rows that were in some query's top k."""
    count = float(state.count)
    out = {name: float(total) / count if count else math.nan for name, total in state.sums.items()}
    for name, seen in state.retrieved.items():
        out[name] = float(seen.sum()) / seen.shape[0]
    return out
