"""Retrieval metrics: TFRS's ``FactorizedTopK`` as pure functions.

For each query the positive candidate's score is compared with the scores of *all* candidates:
the positive is in the top k when fewer than k candidates score strictly higher. Ties therefore
count as hits, as in TFRS (``tf.math.in_top_k``), and the positive itself never counts against it.
Candidates are scored in chunks, so the ``[B, N]`` score matrix is never held whole for large N.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .._transforms import inside_transforms

__all__ = [
    "DEFAULT_KS",
    "positive_ranks",
    "factorized_top_k",
    "top_k_metric_names",
    "candidate_rows",
]

DEFAULT_KS: tuple[int, ...] = (1, 5, 10, 50, 100)
_CHUNK = 65536
_SCORE_BLOCK = 1 << 21  # scores per query block (8 MiB of float32)


def _check_2d(name: str, x: torch.Tensor) -> None:
    if not isinstance(x, torch.Tensor) or x.ndim != 2:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{name} must be a 2-D tensor [rows, D], got {shape}")


def positive_ranks(
    query_embeddings: torch.Tensor,
    candidate_embeddings: torch.Tensor,
    positive_indices: torch.Tensor,
    *,
    chunk_size: int = _CHUNK,
) -> torch.Tensor:
    """``[B]`` int64: for each query, how many candidates score strictly higher than its positive.

    Args:
        query_embeddings: ``[B, D]``.
        candidate_embeddings: ``[N, D]``, the whole candidate set.
        positive_indices: ``[B]`` row of each query's positive in ``candidate_embeddings``.
        chunk_size: candidates scored at a time.

    Rank 0 means the positive is the best-scoring candidate (ties with it count in its favour).
    """
    _check_2d("query_embeddings", query_embeddings)
    _check_2d("candidate_embeddings", candidate_embeddings)
    q, c = query_embeddings, candidate_embeddings
    if q.shape[1] != c.shape[1]:
        raise ValueError(
            f"query_embeddings {tuple(q.shape)} and candidate_embeddings {tuple(c.shape)} differ in "
            "their last dimension"
        )
    if positive_indices.shape != (q.shape[0],):
        raise ValueError(
            f"positive_indices must have shape [{q.shape[0]}], got {tuple(positive_indices.shape)}"
        )
    if positive_indices.is_floating_point():
        raise TypeError(f"positive_indices must be integers, got {positive_indices.dtype}")
    n = c.shape[0]
    # The range check reads values on the host: skipped under torch.compile and torch.func
    # transforms (where an index out of range still fails in ``gather``).
    if not torch.compiler.is_compiling() and not inside_transforms() and positive_indices.numel():
        lo, hi = int(positive_indices.min()), int(positive_indices.max())
        if lo < 0 or hi >= n:
            raise IndexError(
                f"positive_indices must lie in [0, {n}) (the candidate rows), got values in [{lo}, {hi}]"
            )
    # The positive's score is read from the same matmul that scores every candidate, and its own
    # column is left out of the count, so rounding never ranks the positive below itself.
    idx = positive_indices[:, None]
    if n <= chunk_size:
        # Queries in blocks of about _SCORE_BLOCK scores, so each block stays in cache.
        rows = max(1, _SCORE_BLOCK // max(n, 1))
        parts = []
        for start in range(0, q.shape[0], rows):
            scores = q[start : start + rows] @ c.T
            pos = scores.gather(1, idx[start : start + rows])
            parts.append((scores > pos).sum(dim=1))
        if not parts:
            return torch.zeros(0, dtype=torch.int64, device=q.device)
        return parts[0] if len(parts) == 1 else torch.cat(parts)
    pos = torch.zeros(q.shape[0], 1, dtype=q.dtype, device=q.device)
    for start in range(0, n, chunk_size):
        scores = q @ c[start : start + chunk_size].T
        inside = (idx >= start) & (idx < start + scores.shape[1])
        local = (idx - start).clamp(0, scores.shape[1] - 1)
        pos = torch.where(inside, scores.gather(1, local), pos)
    ranks = torch.zeros(q.shape[0], dtype=torch.int64, device=q.device)
    for start in range(0, n, chunk_size):
        scores = q @ c[start : start + chunk_size].T
        ranks = ranks + (scores > pos).sum(dim=1)
    return ranks


def factorized_top_k(
    query_embeddings: torch.Tensor,
    candidate_embeddings: torch.Tensor,
    positive_indices: torch.Tensor,
    ks: Sequence[int] = DEFAULT_KS,
) -> dict[str, torch.Tensor]:
    """TFRS ``FactorizedTopK``: per-query top-k hits over all candidates.

    Args:
        query_embeddings: ``[B, D]``.
        candidate_embeddings: ``[N, D]``.
        positive_indices: ``[B]`` row of each query's positive in ``candidate_embeddings``.
        ks: the cut-offs (TFRS default 1, 5, 10, 50, 100).

    Returns:
        ``{"top_1": [B] float (1.0 hit / 0.0 miss), "top_5": ..., ...}``; their means over a
        test set are TFRS's ``factorized_top_k/top_k_categorical_accuracy``.
    """
    ks = tuple(int(k) for k in ks)
    if not ks or min(ks) < 1:
        raise ValueError(f"ks must be positive integers, got {ks}")
    ranks = positive_ranks(query_embeddings, candidate_embeddings, positive_indices)
    return {f"top_{k}": (ranks < k).to(query_embeddings.dtype) for k in ks}


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
