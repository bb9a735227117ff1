"""Mergeable metric accumulators.

A metric's state is a small pytree of tensors (sums and counts) with three pure functions around it:
``update`` folds in a batch, ``merge`` combines two states (from two shards, two ranks or two
evaluation passes) and ``result`` reads the value. Because states are sums, merging is exact and
order-independent up to float rounding; counts and sums use float64 so that millions of examples
accumulate without loss.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

__all__ = ["MeanState", "mean_init", "mean_update", "mean_merge", "mean_result"]


class MeanState(NamedTuple):
    """A weighted mean in progress: ``total = sum(w * x)``, ``count = sum(w)`` (float64)."""

    total: torch.Tensor
    count: torch.Tensor


def mean_init(device: torch.device | str | None = None) -> MeanState:
    """An empty mean (0 / 0)."""
    z = torch.zeros((), dtype=torch.float64, device=device)
    return MeanState(z, z.clone())


def mean_update(
    state: MeanState, values: torch.Tensor, weight: torch.Tensor | float | None = None
) -> MeanState:
    """Fold in ``values`` (any shape) with an optional per-value (broadcast) ``weight``.

    Differentiable in the state, ``values`` and ``weight`` (callers that only report, like
    ``train.fit``, pass detached values); the sums are float64 whatever the input dtype. The
    result lives on ``values``' device (a state from ``mean_init()`` takes CUDA values).
    """
    v = values.to(torch.float64)
    total, count = state.total.to(v.device), state.count.to(v.device)
    if weight is None:
        return MeanState(total + v.sum(), count + v.numel())
    w = torch.as_tensor(weight, dtype=torch.float64, device=v.device).expand_as(v)
    return MeanState(total + (v * w).sum(), count + w.sum())


def mean_merge(a: MeanState, b: MeanState) -> MeanState:
    """Combine two partial means."""
    return MeanState(a.total + b.total, a.count + b.count)


def mean_result(state: MeanState) -> float:
    """The mean as a Python float; an empty state (count 0) gives NaN, not a silent 0."""
    count = float(state.count)
    return float(state.total) / count if count else float("nan")
