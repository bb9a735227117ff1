"""``DotInteraction``: DLRM's pairwise dot-product feature interaction, as in TFRS."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["DotInteraction"]


class DotInteraction(nn.Module):
    """Pairwise dot products of ``F`` vectors: ``[..., F, D]`` (or a list) -> ``[..., P]``.

    TFRS's ``tfrs.layers.feature_interaction.DotInteraction(self_interaction, skip_gather)``
    (DLRM, Naumov et al. 2019, section 2.1.3). With ``Z = X X^T`` (``[..., F, F]``, ``X`` the
    features stacked in input order) it returns:

    * default: the strictly lower triangle of ``Z`` in row-major order, ``Z[1,0], Z[2,0],
      Z[2,1], Z[3,0], ...`` — the order of TF's ``boolean_mask`` — so ``P = F (F - 1) / 2``;
    * ``self_interaction=True``: the lower triangle with the diagonal, ``Z[0,0], Z[1,0], Z[1,1],
      Z[2,0], ...``, ``P = F (F + 1) / 2``;
    * ``skip_gather=True``: all of ``Z`` flattened row-major, ``P = F * F``, with the entries
      that would not be gathered (the upper triangle, and the diagonal unless
      ``self_interaction``) set to zero. TFRS offers it as a faster layout; the zeros carry no
      gradient.

    The layer has no parameters. Inputs may be a list of ``F`` tensors of one shape ``[..., D]``
    (TFRS's form; it requires ``[B, D]``) or one stacked tensor ``[..., F, D]``; any leading
    dimensions are kept, so it also runs per example under ``vmap``.
    """

    def __init__(self, *, self_interaction: bool = False, skip_gather: bool = False) -> None:
        super().__init__()
        self.self_interaction = bool(self_interaction)
        self.skip_gather = bool(skip_gather)

    def out_features(self, num_features: int) -> int:
        """``P``, the output width for ``num_features`` input features."""
        f = int(num_features)
        if self.skip_gather:
            return f * f
        return f * (f + 1) // 2 if self.self_interaction else f * (f - 1) // 2

    def forward(self, features: Sequence[torch.Tensor] | torch.Tensor) -> torch.Tensor:
        """``features``: ``F`` tensors ``[..., D]`` or a stacked ``[..., F, D]`` -> ``[..., P]``."""
        if isinstance(features, torch.Tensor):
            if features.ndim < 2:
                raise ValueError(
                    "DotInteraction: a stacked input must be [..., F, D], got shape "
                    f"{tuple(features.shape)}"
                )
            x = features
        else:
            features = list(features)
            if not features:
                raise ValueError("DotInteraction: got no features")
            first = tuple(features[0].shape)
            for i, t in enumerate(features):
                if not isinstance(t, torch.Tensor):
                    raise TypeError(
                        f"DotInteraction: feature {i} is a {type(t).__name__}, not a tensor"
                    )
                if tuple(t.shape) != first or t.ndim < 1:
                    raise ValueError(
                        "DotInteraction: all features must have one shape [..., D]; feature 0 "
                        f"has {first}, feature {i} has {tuple(t.shape)}"
                    )
            x = torch.stack(features, dim=-2)
        if not x.is_floating_point():
            raise TypeError(f"DotInteraction: features must be floating point, got {x.dtype}")
        f = x.shape[-2]
        z = x @ x.transpose(-1, -2)  # [..., F, F]
        offset = 0 if self.self_interaction else -1
        if self.skip_gather:
            keep = torch.ones(f, f, dtype=torch.bool, device=x.device).tril(offset)
            return torch.where(keep, z, torch.zeros_like(z)).flatten(-2)
        rows, cols = torch.tril_indices(f, f, offset, device=x.device)
        # Advanced indexing, not index_select: torch 2.13 compiles vmap(grad(index_select)) into
        # a gradient multiplied by the vmap batch size (a compiled sweep would train wrong).
        return z.flatten(-2)[..., rows * f + cols]

    def extra_repr(self) -> str:
        return f"self_interaction={self.self_interaction}, skip_gather={self.skip_gather}"
