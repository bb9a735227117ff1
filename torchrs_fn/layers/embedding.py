"""Embedding tables with a clear error for ids outside the table."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["Embedding"]


class Embedding(nn.Embedding):
    """``nn.Embedding`` (``[...] int64 ids -> [..., D]``) that names bad ids instead of failing obscurely.

    ``torchrs_fn.init`` gives it Keras's ``uniform(-0.05, 0.05)`` initialisation, like any
    ``nn.Embedding``. In eager mode an id outside ``[0, num_embeddings)`` raises an ``IndexError``
    that gives the table's size and the offending range (TFRS raises for such ids too, on CPU).
    Inside ``torch.compile`` the check is left to the compiled kernel's own bounds assertion, and
    under ``vmap`` over the ids it is skipped, so it never adds a graph break.
    """

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        if ids.is_floating_point():
            raise TypeError(f"Embedding({self.num_embeddings}, {self.embedding_dim}): ids must be integers, got {ids.dtype}")
        if (
            not torch.compiler.is_compiling()
            and ids.numel()
            and not torch._C._functorch.is_batchedtensor(ids)
        ):
            lo, hi = int(ids.min()), int(ids.max())
            if lo < 0 or hi >= self.num_embeddings:
                raise IndexError(
                    f"Embedding({self.num_embeddings}, {self.embedding_dim}): ids must lie in "
                    f"[0, {self.num_embeddings}), got values in [{lo}, {hi}] (is the vocabulary "
                    "larger than the table, or an id column mapped with another lookup?)"
                )
        return super().forward(ids)
