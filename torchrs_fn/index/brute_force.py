"""Exact top-k retrieval over a candidate matrix (TFRS ``tfrs.layers.factorized_top_k.BruteForce``).

Candidates are scored in chunks into one reused score buffer, and the running top k is merged
chunk by chunk, so memory stays at ``[query block, chunk]`` whatever the number of candidates.
Writing every chunk's scores into the same buffer matters on a CPU: a fresh buffer per chunk
costs a page fault per 4 KiB touched and halves the matrix product's speed.

Merging is pruned: a query's running k-th best score is a threshold, and a chunk whose scores all
fall below every query's threshold costs one comparison pass instead of a top-k selection. Only
the queries with a score above their threshold run ``torch.topk`` on the chunk.

Exclusions (TFRS ``query_with_exclusions``) are applied while scoring: an excluded (query,
candidate) pair gets the score ``-inf`` before selection, so it can never be returned, and a
query with fewer than k candidates left gets ``-inf`` scores and id ``-1`` in its last slots.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from ..serialization import load_tree, save_tree

__all__ = ["brute_force_top_k", "BruteForce", "TopKMerger"]

# About 4 MiB of float32 scores per block (measured on a 2-core AVX-512 CPU, 1,000 queries x 1M
# candidates of dimension 64): the matrix product reaches ~170 GFLOP/s writing blocks this size,
# ~100 GFLOP/s writing 16 MiB ones, and the threshold pass reads the block while it is cached.
_BLOCK_SCORES = 1 << 20
_QUERY_BLOCK = 1024


class TopKMerger:
    """The running top k of a block of queries, fed chunk after chunk of candidate scores.

    ``push(scores, start)`` merges a ``[Q, n]`` chunk whose column j is candidate row
    ``start + j`` (or ``ids[j]``); ``result()`` returns ``(scores [Q, k], rows [Q, k])``, best
    first. Scores of ``-inf`` are never selected over a real candidate; slots no candidate
    filled hold ``-inf`` and row ``-1``. Shared by ``brute_force_top_k`` and ``Streaming``.

    Until every query has k candidates, a chunk is merged with ``torch.topk``. After that each
    query's k-th best score is a threshold: one comparison pass finds the few scores above it,
    which wait in a pool; the pool is folded into the top k (one sort) when it outgrows the
    top k itself, which also raises the thresholds. Selecting from every whole chunk with
    ``torch.topk`` would cost several times the matrix product that made the chunk.
    """

    def __init__(self, num_queries: int, k: int, device: torch.device, dtype: torch.dtype) -> None:
        self.k = k
        self.num_queries = num_queries
        self.scores = torch.full((num_queries, k), float("-inf"), device=device, dtype=dtype)
        self.rows = torch.full((num_queries, k), -1, device=device, dtype=torch.int64)
        self._filled = False  # True once every slot holds a finite candidate
        self._pool: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
        self._pool_size = 0

    def push(self, scores: torch.Tensor, start: int, ids: torch.Tensor | None = None) -> None:
        """Merge the ``[Q, n]`` chunk ``scores``: column j is candidate row ``start + j``, or,
        given ``ids [n]``, the candidate ``ids[j]`` (what ``result`` then returns)."""
        if not self._filled:
            self._merge_topk(scores, start, ids)
            return
        width = scores.shape[1]
        threshold = self.scores[:, -1:]
        # Most rows of a late chunk hold nothing above their threshold: one max per row (a
        # cheap read) finds the rows that do, and only those are searched element by element.
        hit = (scores.amax(dim=1, keepdim=True) > threshold).view(-1).nonzero().squeeze(1)
        if not hit.numel():
            return
        if hit.numel() < self.num_queries // 2:
            block, threshold = scores[hit], threshold[hit]
        else:
            block, hit = scores, None
        flat = block.reshape(-1) if block.is_contiguous() else block.flatten()
        at = (block > threshold).view(-1).nonzero().squeeze(1)
        if not at.numel():
            return
        query, column = at // width, at % width
        if hit is not None:
            query = hit[query]
        labels = column + start if ids is None else ids[column]
        self._pool.append((query, flat[at], labels))
        self._pool_size += query.numel()
        if self._pool_size >= self.scores.numel():
            self._fold_pool()

    def _merge_topk(self, scores: torch.Tensor, start: int, ids: torch.Tensor | None) -> None:
        top, local = torch.topk(scores, min(self.k, scores.shape[1]), dim=1)
        rows = local + start if ids is None else ids[local]
        merged_s, pick = torch.topk(torch.cat([self.scores, top], dim=1), self.k, dim=1)
        merged_r = torch.cat([self.rows, rows], dim=1).gather(1, pick)
        self.rows = torch.where(torch.isneginf(merged_s), torch.full_like(merged_r, -1), merged_r)
        self.scores = merged_s
        self._filled = bool(torch.isfinite(self.scores[:, -1]).all())

    def _fold_pool(self) -> None:
        """Fold the pooled (query, score, label) entries into the top k of each query."""
        if not self._pool:
            return
        q_count, k = self.num_queries, self.k
        query = torch.cat([p[0] for p in self._pool])
        score = torch.cat([p[1] for p in self._pool])
        label = torch.cat([p[2] for p in self._pool])
        self._pool, self._pool_size = [], 0
        order = torch.argsort(query, stable=True)
        query, score, label = query[order], score[order], label[order]
        counts = torch.bincount(query, minlength=q_count)
        width = int(counts.max())
        if q_count * (k + width) <= 4 * (q_count * k + query.numel()):
            # Each query's pooled entries in a row after its current top k, -inf padded.
            slot = torch.arange(query.numel(), device=query.device)
            slot = slot - (torch.cumsum(counts, 0) - counts)[query] + k
            all_s = torch.cat(
                [self.scores, self.scores.new_full((q_count, width), float("-inf"))], 1
            )
            all_l = torch.cat([self.rows, self.rows.new_full((q_count, width), -1)], 1)
            all_s[query, slot] = score
            all_l[query, slot] = label
            self.scores, pick = torch.topk(all_s, k, dim=1)
            self.rows = all_l.gather(1, pick)
            return
        # A few queries hold most of the pool: sort everything instead (by score, then stably
        # by query), and keep each query's first k.
        query = torch.cat([torch.arange(q_count, device=query.device).repeat_interleave(k), query])
        score = torch.cat([self.scores.reshape(-1), score])
        label = torch.cat([self.rows.reshape(-1), label])
        order = torch.argsort(score, descending=True, stable=True)
        order = order[torch.argsort(query[order], stable=True)]
        counts = counts + k
        rank = torch.arange(order.numel(), device=order.device)
        rank = rank - (torch.cumsum(counts, 0) - counts)[query[order]]
        keep = order[rank < k]
        self.scores = score[keep].reshape(q_count, k)
        self.rows = label[keep].reshape(q_count, k)

    def result(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(scores [Q, k], rows [Q, k])`` (ids when ``push`` was given them), best first."""
        self._fold_pool()
        return self.scores, self.rows


def _all_finite(x: torch.Tensor) -> bool:
    """Whether every entry of the floating-point ``x`` is finite, in one read: NaN propagates
    through ``aminmax`` and an infinity is an extreme (``isfinite(x).all()`` takes three passes
    and was 20 times slower on a 65,536 x 64 batch)."""
    if x.numel() == 0:
        return True
    low, high = torch.aminmax(x)
    return bool(torch.isfinite(low) & torch.isfinite(high))


def _check_queries(queries: torch.Tensor, dim: int, who: str) -> None:
    if not isinstance(queries, torch.Tensor) or queries.ndim != 2 or queries.shape[1] != dim:
        shape = (
            tuple(queries.shape) if isinstance(queries, torch.Tensor) else type(queries).__name__
        )
        raise ValueError(f"{who}: queries must be [B, {dim}] (the candidates' D), got {shape}")
    if not queries.is_floating_point():
        raise TypeError(f"{who}: queries must be floating point, got {queries.dtype}")
    if not _all_finite(queries):
        raise ValueError(f"{who}: queries contain NaN or inf")


def _check_k(k: int, n: int, who: str) -> None:
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= n:
        raise ValueError(
            f"{who}: k must be an int in [1, {n}] (the number of candidates), got {k!r}"
        )


def expand_ranges(starts: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """``[sum(counts)]``: ``starts[i], starts[i] + 1, ..., starts[i] + counts[i] - 1`` for each i,
    concatenated (vectorised; ``counts >= 0``)."""
    total = int(counts.sum())
    first = torch.repeat_interleave(starts, counts)
    offset = torch.arange(total, device=starts.device) - torch.repeat_interleave(
        torch.cumsum(counts, 0) - counts, counts
    )
    return first + offset


def _check_exclusions(exclusions: torch.Tensor, num_queries: int, who: str) -> None:
    """A 2-D ``[B, E]`` integer tensor with one row per query."""
    if not isinstance(exclusions, torch.Tensor) or exclusions.ndim != 2:
        shape = (
            tuple(exclusions.shape)
            if isinstance(exclusions, torch.Tensor)
            else type(exclusions).__name__
        )
        raise ValueError(f"{who}: exclusions must be a 2-D [B, E] integer tensor, got {shape}")
    if exclusions.is_floating_point() or exclusions.dtype == torch.bool:
        raise TypeError(f"{who}: exclusions must be integers, got {exclusions.dtype}")
    if exclusions.shape[0] != num_queries:
        raise ValueError(
            f"{who}: exclusions has {exclusions.shape[0]} rows, but there are {num_queries} queries"
        )


def exclusion_rows(
    exclusions: torch.Tensor,
    num_queries: int,
    identifiers: torch.Tensor | None,
    num_candidates: int,
    who: str = "exclusions",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Flatten ``[B, E]`` exclusions into ``(query, row)`` pairs sorted by candidate row.

    Args:
        exclusions: ``[B, E]`` integers, one row per query: candidate identifiers when
            ``identifiers`` is given, else candidate rows. Negative entries are padding.
        num_queries: B.
        identifiers: ``[N]`` the candidates' ids, or None.
        num_candidates: N.
        who: the caller's name for error messages.

    Returns:
        ``(query [M] int64, row [M] int64)``, sorted by row. An entry naming no candidate raises
        ``ValueError`` (an unknown id is a bug in the caller's data, not something to skip).
    """
    _check_exclusions(exclusions, num_queries, who)
    ex = exclusions.long()
    query = torch.arange(num_queries, device=ex.device).unsqueeze(1).expand_as(ex)
    keep = ex >= 0
    query, ex = query[keep], ex[keep]
    if identifiers is None:
        if ex.numel() and int(ex.max()) >= num_candidates:
            raise ValueError(
                f"{who}: exclusions name candidate row {int(ex.max())}, but there are "
                f"{num_candidates} candidates"
            )
        rows = ex
    else:
        # An id may name several rows (the TFRS tutorials' movie table lists a title twice):
        # every row holding an excluded id is excluded.
        order = torch.argsort(identifiers.to(ex.device))
        sorted_ids = identifiers.to(ex.device)[order]
        left = torch.searchsorted(sorted_ids, ex)
        count = torch.searchsorted(sorted_ids, ex, right=True) - left
        if not bool((count > 0).all()):
            unknown = ex[count == 0][:5].tolist()
            raise ValueError(f"{who}: exclusions name ids that no candidate has, e.g. {unknown}")
        query = torch.repeat_interleave(query, count)
        rows = order[expand_ranges(left, count)]
    perm = torch.argsort(rows)
    return query[perm], rows[perm]


def _mask_excluded(
    scores: torch.Tensor, pairs: tuple[torch.Tensor, torch.Tensor], start: int, q0: int
) -> None:
    """Set ``scores[query - q0, row - start] = -inf`` for the pairs inside this block."""
    query, rows = pairs
    if not rows.numel():
        return
    n, nq = scores.shape[1], scores.shape[0]
    lo, hi = torch.searchsorted(rows, torch.tensor([start, start + n], device=rows.device)).tolist()
    if lo == hi:
        return
    qq, rr = query[lo:hi], rows[lo:hi]
    inside = (qq >= q0) & (qq < q0 + nq)
    scores[qq[inside] - q0, rr[inside] - start] = float("-inf")


def brute_force_top_k(
    queries: torch.Tensor,
    candidates: torch.Tensor,
    k: int,
    *,
    identifiers: torch.Tensor | None = None,
    exclusions: torch.Tensor | None = None,
    chunk_size: int | None = None,
    _candidates_checked: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` highest dot-product scores of each query over all candidates (exact).

    Args:
        queries: ``[B, D]``.
        candidates: ``[N, D]``.
        k: how many to return (``1 <= k <= N``; TFRS's ``top_k`` also fails beyond N).
        identifiers: ``[N]`` ids to return instead of row numbers.
        exclusions: ``[B, E]`` per-query ids (rows when there are no ``identifiers``) never to
            return, e.g. the items a user already rated; negative entries are padding; an id no
            candidate has raises ``ValueError``.
        chunk_size: candidates scored at a time (default: about 1M scores per block of up to
            1,024 queries).

    Returns:
        ``(scores [B, k], ids [B, k])``, best first (the order among exactly equal scores is
        unspecified, as in TFRS). When
        exclusions leave a query fewer than k candidates, its last slots hold score ``-inf``
        and id ``-1``.
    """
    who = "brute_force_top_k"
    if not isinstance(candidates, torch.Tensor) or candidates.ndim != 2:
        raise ValueError(
            f"{who}: candidates must be [N, D], got {getattr(candidates, 'shape', candidates)!r}"
        )
    n, d = candidates.shape
    _check_queries(queries, d, who)
    if not _candidates_checked:  # BruteForce checked its candidates once, when it was built
        _check_candidates(candidates, who)
    _check_k(k, n, who)
    if identifiers is not None and (
        not isinstance(identifiers, torch.Tensor) or identifiers.shape != (n,)
    ):
        raise ValueError(
            f"{who}: identifiers must have shape [{n}], got {tuple(getattr(identifiers, 'shape', ()))}"
        )
    if queries.dtype != candidates.dtype:
        raise TypeError(
            f"{who}: queries ({queries.dtype}) and candidates ({candidates.dtype}) must share a dtype"
        )
    b = queries.shape[0]
    pairs = None
    if exclusions is not None:
        pairs = exclusion_rows(exclusions.to(queries.device), b, identifiers, n, who)
    if chunk_size is None:
        chunk_size = max(2 * k, _BLOCK_SCORES // max(1, min(b, _QUERY_BLOCK)))
        if n <= 4 * chunk_size:  # a few blocks' worth: one block, one top-k, no merging
            chunk_size = n
    chunk_size = max(1, min(int(chunk_size), n))
    query_block = max(1, min(b, _BLOCK_SCORES // chunk_size, _QUERY_BLOCK))
    buffer = torch.empty(
        min(query_block, b), chunk_size, dtype=queries.dtype, device=queries.device
    )
    out_scores, out_rows = [], []
    for q0 in range(0, b, query_block):
        block = queries[q0 : q0 + query_block]
        merger = TopKMerger(block.shape[0], k, queries.device, queries.dtype)
        for start in range(0, n, chunk_size):
            stop = min(start + chunk_size, n)
            scores = buffer[: block.shape[0], : stop - start]
            torch.mm(block, candidates[start:stop].T, out=scores)
            if pairs is not None:
                _mask_excluded(scores, pairs, start, q0)
            merger.push(scores, start)
        top_scores, top_rows = merger.result()
        out_scores.append(top_scores)
        out_rows.append(top_rows)
    scores = torch.cat(out_scores) if len(out_scores) > 1 else out_scores[0]
    rows = torch.cat(out_rows) if len(out_rows) > 1 else out_rows[0]
    if identifiers is not None:
        ids = identifiers.to(rows.device)[rows.clamp(min=0)]
        rows = torch.where(rows < 0, torch.full_like(ids, -1), ids)
    return scores, rows


class BruteForce:
    """A brute-force top-k index: ``BruteForce(candidates, identifiers)(queries, k)``.

    TFRS's ``BruteForce`` wraps a query model; here the index holds only candidate embeddings and
    is called with query embeddings (compute them with ``apply``), which keeps it a plain function
    of tensors. ``save(path)`` / ``BruteForce.load(path)`` store it without pickle.
    """

    def __init__(self, candidates: torch.Tensor, identifiers: torch.Tensor | None = None) -> None:
        _check_candidates(candidates, "BruteForce")
        if identifiers is not None:
            _check_identifiers(identifiers, candidates.shape[0], "BruteForce")
        self.candidates = candidates
        self.identifiers = identifiers

    def __call__(self, queries: torch.Tensor, k: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
        """``[B, D]`` queries -> ``(scores [B, k], ids [B, k])``, best first."""
        return brute_force_top_k(
            queries, self.candidates, k, identifiers=self.identifiers, _candidates_checked=True
        )

    def query_with_exclusions(
        self, queries: torch.Tensor, exclusions: torch.Tensor, k: int = 10
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Top k of each query, never returning the ids in its row of ``exclusions``.

        ``exclusions`` is ``[B, E]`` candidate ids (rows when the index has no identifiers),
        negative entries are padding (TFRS ``query_with_exclusions``; e.g.
        ``data.UserPositives.padded(users)`` for the items each user already rated).
        """
        return brute_force_top_k(
            queries,
            self.candidates,
            k,
            identifiers=self.identifiers,
            exclusions=exclusions,
            _candidates_checked=True,
        )

    def save(self, path: str | os.PathLike) -> None:
        """Write the index to ``path`` (``serialization.save_tree``: no pickle, no code)."""
        tree = {"candidates": self.candidates}
        if self.identifiers is not None:
            tree["identifiers"] = self.identifiers
        save_tree(path, {"brute_force": tree})

    @classmethod
    def load(cls, path: str | os.PathLike, device: str | torch.device | None = None) -> BruteForce:
        """Read an index written by ``save``."""
        tree = load_tree(Path(path), device=device)
        if not isinstance(tree, dict) or "brute_force" not in tree:
            raise ValueError(f"BruteForce.load: {path} holds no BruteForce index")
        body = tree["brute_force"]
        return cls(body["candidates"], body.get("identifiers"))


def _check_candidates(candidates: torch.Tensor, who: str) -> None:
    """A non-empty ``[N, D]`` floating-point tensor without NaN or inf (the first bad row named)."""
    if not isinstance(candidates, torch.Tensor) or candidates.ndim != 2 or candidates.shape[0] == 0:
        raise ValueError(
            f"{who}: candidates must be a non-empty [N, D] tensor, got "
            f"{tuple(getattr(candidates, 'shape', ()))}"
        )
    if not candidates.is_floating_point():
        raise TypeError(f"{who}: candidates must be floating point, got {candidates.dtype}")
    if not _all_finite(candidates):
        bad = int((~torch.isfinite(candidates)).any(dim=1).nonzero()[0])
        raise ValueError(f"{who}: candidates contain NaN or inf (first in row {bad})")


def _check_identifiers(identifiers: torch.Tensor, n: int, who: str) -> None:
    if not isinstance(identifiers, torch.Tensor) or identifiers.shape != (n,):
        raise ValueError(
            f"{who}: identifiers must be a [{n}] tensor (one per candidate), got "
            f"{tuple(getattr(identifiers, 'shape', ()))}"
        )
    if identifiers.is_floating_point() or identifiers.dtype == torch.bool:
        raise TypeError(f"{who}: identifiers must be integers, got {identifiers.dtype}")
