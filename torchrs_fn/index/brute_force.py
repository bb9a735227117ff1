"""Exact top-k retrieval over a candidate matrix (TFRS ``tfrs.layers.factorized_top_k.BruteForce``).

Candidates are scored in chunks and the running top k is merged chunk by chunk, so memory stays at
``[B, chunk + k]`` whatever the number of candidates.
"""

from __future__ import annotations

import torch

__all__ = ["brute_force_top_k", "BruteForce"]

_CHUNK = 65536


def brute_force_top_k(
    queries: torch.Tensor,
    candidates: torch.Tensor,
    k: int,
    *,
    identifiers: torch.Tensor | None = None,
    chunk_size: int = _CHUNK,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` highest dot-product scores of each query over all candidates.

    Args:
        queries: ``[B, D]``.
        candidates: ``[N, D]``.
        k: how many to return (``1 <= k <= N``).
        identifiers: ``[N]`` ids to return instead of row numbers.
        chunk_size: candidates scored at a time.

    Returns:
        ``(scores [B, k], ids [B, k])``, best first (the order among equal scores is unspecified).
    """
    if queries.ndim != 2 or candidates.ndim != 2 or queries.shape[1] != candidates.shape[1]:
        raise ValueError(
            f"brute_force_top_k: queries [B, D] and candidates [N, D] must share D, got "
            f"{tuple(queries.shape)} and {tuple(candidates.shape)}"
        )
    n = candidates.shape[0]
    if not isinstance(k, int) or not 1 <= k <= n:
        raise ValueError(
            f"brute_force_top_k: k must be an int in [1, {n}] (the candidates), got {k!r}"
        )
    if identifiers is not None and identifiers.shape != (n,):
        raise ValueError(
            f"brute_force_top_k: identifiers must have shape [{n}], got {tuple(identifiers.shape)}"
        )
    best_scores = best_rows = None
    for start in range(0, n, chunk_size):
        scores = queries @ candidates[start : start + chunk_size].T
        rows = torch.arange(start, start + scores.shape[1], device=queries.device).expand_as(scores)
        if best_scores is not None:
            scores = torch.cat([best_scores, scores], dim=1)
            rows = torch.cat([best_rows, rows], dim=1)
        best_scores, top = torch.topk(scores, min(k, scores.shape[1]), dim=1)
        best_rows = rows.gather(1, top)
    ids = identifiers[best_rows] if identifiers is not None else best_rows
    return best_scores, ids


class BruteForce:
    """A brute-force top-k index: ``BruteForce(candidates, identifiers)(queries, k)``.

    TFRS's ``BruteForce`` wraps a query model; here the index holds only candidate embeddings and
    is called with query embeddings (compute them with ``apply``), which keeps it a plain function
    of tensors.
    """

    def __init__(self, candidates: torch.Tensor, identifiers: torch.Tensor | None = None) -> None:
        if candidates.ndim != 2 or candidates.shape[0] == 0:
            raise ValueError(
                f"BruteForce: candidates must be a non-empty [N, D] tensor, got {tuple(candidates.shape)}"
            )
        if identifiers is not None and identifiers.shape != (candidates.shape[0],):
            raise ValueError(
                f"BruteForce: identifiers must have shape [{candidates.shape[0]}], got {tuple(identifiers.shape)}"
            )
        self.candidates = candidates
        self.identifiers = identifiers

    def __call__(self, queries: torch.Tensor, k: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
        """``[B, D]`` queries -> ``(scores [B, k], ids [B, k])``."""
        return brute_force_top_k(queries, self.candidates, k, identifiers=self.identifiers)
