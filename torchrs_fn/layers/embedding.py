"""Embedding tables: single ids (``Embedding``, ``HashedEmbedding``) and bags of ids (``BagEmbedding``).

All are initialised by ``torchrs_fn.init`` with Keras's ``uniform(-0.05, 0.05)`` and run through
``torchrs_fn.apply``. Ids come from the data side (``data.StringLookup``, ``data.Hashing``,
``data.TextVectorization``, ``data.pad_lists``): the layers take integer tensors only.

Sharing one table between features needs no special class: use the same module for both features
(``self.titles(batch["title"])`` and ``self.titles(batch["previous_titles"])``), or assign one
module to two attributes. ``init`` then creates one parameter, and its gradient is the sum of the
gradients of both uses.
"""

from __future__ import annotations

import torch
from torch import nn

from .._transforms import host_checks_allowed

__all__ = ["BagEmbedding", "Embedding", "HashedEmbedding", "embedding_lookup"]

_COMBINERS = ("mean", "sum", "sqrtn")


def _check_integer_ids(ids: torch.Tensor, name: str) -> None:
    if ids.is_floating_point() or ids.dtype == torch.bool or ids.is_complex():
        raise TypeError(f"{name}: ids must be integers, got {ids.dtype}")


def _check_ids(ids: torch.Tensor, name: str, size: int, hint: str) -> None:
    """Integer dtype always; the range only in eager mode (not compiled, not under vmap), so the
    check never adds a graph break."""
    _check_integer_ids(ids, name)
    if ids.numel() and host_checks_allowed(ids):
        lo, hi = int(ids.min()), int(ids.max())
        if lo < 0 or hi >= size:
            raise IndexError(
                f"{name}: ids must lie in [0, {size}), got values in [{lo}, {hi}] ({hint})"
            )


def embedding_lookup(weight: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """The rows of a table at some ids (TF's ``tf.nn.embedding_lookup``).

    Args:
        weight: ``[V, D]`` table.
        ids: ``[...]`` integer ids in ``[0, V)``.

    Returns:
        ``[..., D]``: the same values as ``torch.nn.functional.embedding(ids, weight)``.

    What differs is the gradient's kernel. This lookup is a ``gather``, whose gradient is a
    ``scatter_add`` of the looked-up rows' gradients; ``torch.compile`` (Inductor) hands that to
    ATen's CPU kernel, which sums without atomics. ``F.embedding``'s gradient compiles into one
    atomic add per float instead, and threads that hit the same rows of a small or skewed table
    fight over them. Measured on a 2-core CPU, the compiled lookup and its gradient for one batch
    of 8,192, the outputs concatenated (``python benchmarks/embedding_scatter.py``): 5.4-5.8 ms
    against 0.8-1.0 ms for the six tables of the DCN tutorial, 8.5-9.6 ms against 4.7-6.0 ms
    for the 26 tables of the synthetic Criteo data. Plain ops only: ``grad``, ``vmap`` (of the
    table, the ids or both) and ``torch.compile`` work as for any gather. The layers of this
    module and ``models.DLRM`` look up through it. An id outside ``[0, V)`` raises (eagerly, and
    as a bounds assertion of the compiled kernel).
    """
    _check_integer_ids(ids, "embedding_lookup")
    if weight.ndim != 2:
        raise ValueError(
            f"embedding_lookup: weight must be a [V, D] table, got shape {tuple(weight.shape)}"
        )
    dim = weight.shape[-1]
    flat = ids.reshape(-1, 1).long()
    rows = torch.gather(weight, 0, flat.expand(flat.shape[0], dim))  # [n, D]
    # ATen's scatter_add is fast (sorted, parallel, no atomics) for this expanded index when the
    # incoming gradient is contiguous. A model's concatenation or stack hands each lookup a
    # strided slice of its gradient, which ran 3-7x slower; the flatten and unflatten below are
    # views in the forward, and in the backward they copy such a slice into one buffer.
    rows = rows.reshape(-1)
    return rows.reshape(*ids.shape, dim)


class Embedding(nn.Embedding):
    """``nn.Embedding`` (``[...] int64 ids -> [..., D]``) that names bad ids instead of failing obscurely.

    ``torchrs_fn.init`` gives it Keras's ``uniform(-0.05, 0.05)`` initialisation, like any
    ``nn.Embedding``. In eager mode an id outside ``[0, num_embeddings)`` raises an ``IndexError``
    that gives the table's size and the offending range (TFRS raises for such ids too, on CPU).
    Inside ``torch.compile`` the check is left to the compiled kernel's own bounds assertion, and
    under ``vmap`` over the ids it is skipped, so it never adds a graph break.
    """

    _hint = "is the vocabulary larger than the table, or an id column mapped with another lookup?"

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        _check_ids(
            ids,
            f"{type(self).__name__}({self.num_embeddings}, {self.embedding_dim})",
            self.num_embeddings,
            self._hint,
        )
        if (
            self.padding_idx is not None
            or self.max_norm is not None
            or self.scale_grad_by_freq
            or self.sparse
        ):
            return super().forward(ids)  # nn.Embedding's own options need its own kernel
        return embedding_lookup(self.weight, ids)


class HashedEmbedding(Embedding):
    """An embedding over hash bins: ``[...]`` ids in ``[0, num_bins)`` -> ``[..., D]``.

    The "hashing trick" of Keras (``Hashing(num_bins)`` followed by ``Embedding(num_bins, D)``)
    split at the data boundary: strings and raw integer ids are hashed on the data side with
    ``torchrs_fn.data.Hashing(num_bins, salt=...)`` (a pure, vectorised function of the column),
    and this layer embeds the bins. It is an ``Embedding`` with ``num_bins`` rows, Keras
    ``uniform(-0.05, 0.05)`` init, and an error for ids outside ``[0, num_bins)`` that points at
    the hashing step. The salt lives with the ``Hashing`` (its ``to_dict()``), not in the layer.

    Args:
        num_bins: the ``num_bins`` of the ``data.Hashing`` that produces the ids.
        embedding_dim: ``D``.
    """

    _hint = "hash the raw values with torchrs_fn.data.Hashing(num_bins) of this layer's num_bins"

    def __init__(self, num_bins: int, embedding_dim: int) -> None:
        super().__init__(num_bins, embedding_dim)

    @property
    def num_bins(self) -> int:
        return self.num_embeddings


def _div_no_nan(num: torch.Tensor, denom: torch.Tensor) -> torch.Tensor:
    """``num / denom``, 0 where ``denom == 0`` (TF's ``div_no_nan``), with finite gradients."""
    zero = denom == 0
    return torch.where(
        zero, torch.zeros_like(num), num / torch.where(zero, torch.ones_like(denom), denom)
    )


class BagEmbedding(nn.Module):
    """Embeds a bag of ids per example and combines them: ``[..., L]`` ids -> ``[..., D]``.

    The combiners of TF's ``tf.nn.embedding_lookup_sparse`` (and ``nn.EmbeddingBag``), over the
    valid positions ``l`` of each row, with weights ``w_l`` (1 unless given):

    * ``"sum"``: ``sum_l w_l e_l``;
    * ``"mean"``: ``sum_l w_l e_l / sum_l w_l``;
    * ``"sqrtn"``: ``sum_l w_l e_l / sqrt(sum_l w_l^2)``.

    A row with no valid position (or zero total weight) gives zeros, never NaN, as TF's
    ``div_no_nan`` does. ``combiner="mean"`` with ``mask_zero=True`` is the TFRS tutorials'
    bag-of-words text tower, ``Embedding(n, D, mask_zero=True)`` followed by
    ``GlobalAveragePooling1D()``, over ``data.TextVectorization`` ids (Keras's pooling divides by
    zero for an all-padding row and gives NaN; this gives zeros).

    Which positions are valid: those where ``mask`` is True when a mask is given; else, with
    ``mask_zero=True`` (default, Keras ``Embedding(mask_zero=True)``), those whose id is not 0, the
    padding id of ``TextVectorization`` and ``pad_lists``; else all. Masked positions may hold any
    integer (they are never looked up); valid ids must lie in ``[0, num_embeddings)``.

    Args:
        num_embeddings: rows of the table (with ``mask_zero``, row 0 is never used, as in Keras).
        embedding_dim: ``D``.
        combiner: ``"mean"`` (default), ``"sum"`` or ``"sqrtn"``.
        mask_zero: treat id 0 as padding when no ``mask`` is passed.

    ``torchrs_fn.init`` gives the table Keras's ``uniform(-0.05, 0.05)``. The forward pass has no
    data-dependent branches, so it works under ``torch.func.grad``, ``vmap`` and ``torch.compile``
    (the eager range check of the ids is skipped there, as in ``Embedding``).
    """

    def __init__(
        self,
        num_embeddings: int,
        embedding_dim: int,
        combiner: str = "mean",
        *,
        mask_zero: bool = True,
    ) -> None:
        super().__init__()
        if combiner not in _COMBINERS:
            raise ValueError(f"combiner must be one of {list(_COMBINERS)}, got {combiner!r}")
        self.num_embeddings = int(num_embeddings)
        self.embedding_dim = int(embedding_dim)
        self.combiner = combiner
        self.mask_zero = bool(mask_zero)
        self.weight = nn.Parameter(torch.empty(self.num_embeddings, self.embedding_dim))

    def init_parameters(self, generator: torch.Generator) -> None:
        """Keras ``Embedding`` default: ``uniform(-0.05, 0.05)``."""
        self.weight.uniform_(-0.05, 0.05, generator=generator)

    def forward(
        self,
        ids: torch.Tensor,
        mask: torch.Tensor | None = None,
        weights: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Combined embeddings of each row of ids.

        Args:
            ids: ``[..., L]`` integer ids (e.g. ``[B, L]`` padded ids).
            mask: optional ``[..., L]`` bool, True for the valid positions (overrides
                ``mask_zero``).
            weights: optional ``[..., L]`` floating per-id weights (``sp_weights`` of
                ``embedding_lookup_sparse``).

        Returns:
            ``[..., D]`` in the table's dtype.
        """
        name = f"BagEmbedding({self.num_embeddings}, {self.embedding_dim})"
        if ids.ndim < 1:
            raise ValueError(f"{name}: ids must be [..., L], got a scalar")
        if mask is not None:
            if mask.dtype != torch.bool:
                raise TypeError(f"{name}: mask must be a bool tensor, got {mask.dtype}")
            if mask.shape != ids.shape:
                raise ValueError(
                    f"{name}: mask has shape {tuple(mask.shape)}, ids {tuple(ids.shape)}"
                )
        elif self.mask_zero:
            mask = ids != 0
        if weights is not None:
            if not weights.is_floating_point():
                raise TypeError(f"{name}: weights must be floating point, got {weights.dtype}")
            if weights.shape != ids.shape:
                raise ValueError(
                    f"{name}: weights has shape {tuple(weights.shape)}, ids {tuple(ids.shape)}"
                )
        safe_ids = ids if mask is None else torch.where(mask, ids, torch.zeros_like(ids))
        _check_ids(
            safe_ids,
            name,
            self.num_embeddings,
            "are the ids from a vocabulary larger than the table?",
        )
        vectors = embedding_lookup(self.weight, safe_ids)  # [..., L, D]
        dtype = self.weight.dtype
        w = (
            torch.ones(ids.shape, dtype=dtype, device=ids.device)
            if weights is None
            else weights.to(dtype)
        )
        if mask is not None:
            w = torch.where(mask, w, torch.zeros_like(w))
        total = (w.unsqueeze(-2) @ vectors).squeeze(-2)  # [..., D]
        if self.combiner == "sum":
            return total
        if self.combiner == "mean":
            return _div_no_nan(total, w.sum(-1, keepdim=True))
        squares = (w * w).sum(-1, keepdim=True)
        safe = torch.where(squares == 0, torch.ones_like(squares), squares)
        return torch.where(squares == 0, torch.zeros_like(total), total / torch.sqrt(safe))

    def extra_repr(self) -> str:
        return (
            f"{self.num_embeddings}, {self.embedding_dim}, combiner={self.combiner!r}, "
            f"mask_zero={self.mask_zero}"
        )
