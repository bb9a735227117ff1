"""Learning-rate schedules: functions ``count -> learning rate`` built from tensor ops only.

Pass one wherever an optimizer takes ``learning_rate``; it is evaluated on the optimizer's step
count (0 for the first update), inside the compiled step, with no graph break. A plain float
learning rate is stored in the optimizer state as a tensor (sweepable under ``vmap``); a schedule's
own constants are shared by every configuration of a sweep.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

__all__ = [
    "Schedule",
    "constant_schedule",
    "linear_schedule",
    "exponential_decay",
    "cosine_decay_schedule",
    "warmup_cosine_decay_schedule",
    "piecewise_constant_schedule",
]

Schedule = Callable[[torch.Tensor], torch.Tensor]


def _f(count: torch.Tensor) -> torch.Tensor:
    return count.to(torch.float32)


def constant_schedule(value: float) -> Schedule:
    """``value`` at every step."""
    return lambda count: torch.full_like(_f(count), value)


def linear_schedule(init_value: float, end_value: float, transition_steps: int) -> Schedule:
    """Linear from ``init_value`` to ``end_value`` over ``transition_steps``, then constant."""
    if transition_steps <= 0:
        raise ValueError(f"linear_schedule: transition_steps must be > 0, got {transition_steps}")

    def schedule(count: torch.Tensor) -> torch.Tensor:
        frac = torch.clamp(_f(count) / transition_steps, 0.0, 1.0)
        return init_value + (end_value - init_value) * frac

    return schedule


def exponential_decay(
    init_value: float, transition_steps: int, decay_rate: float, *, staircase: bool = False
) -> Schedule:
    """``init_value * decay_rate ** (count / transition_steps)`` (Keras ``ExponentialDecay``)."""
    if transition_steps <= 0:
        raise ValueError(f"exponential_decay: transition_steps must be > 0, got {transition_steps}")

    def schedule(count: torch.Tensor) -> torch.Tensor:
        p = _f(count) / transition_steps
        if staircase:
            p = torch.floor(p)
        return init_value * torch.pow(torch.tensor(decay_rate, device=count.device), p)

    return schedule


def cosine_decay_schedule(init_value: float, decay_steps: int, alpha: float = 0.0) -> Schedule:
    """Cosine decay from ``init_value`` to ``alpha * init_value`` over ``decay_steps`` (Keras ``CosineDecay``)."""
    if decay_steps <= 0:
        raise ValueError(f"cosine_decay_schedule: decay_steps must be > 0, got {decay_steps}")

    def schedule(count: torch.Tensor) -> torch.Tensor:
        frac = torch.clamp(_f(count) / decay_steps, 0.0, 1.0)
        cosine = 0.5 * (1.0 + torch.cos(math.pi * frac))
        return init_value * ((1.0 - alpha) * cosine + alpha)

    return schedule


def warmup_cosine_decay_schedule(
    init_value: float,
    peak_value: float,
    warmup_steps: int,
    decay_steps: int,
    end_value: float = 0.0,
) -> Schedule:
    """Linear warm-up from ``init_value`` to ``peak_value``, then cosine decay to ``end_value``.

    ``decay_steps`` counts the warm-up too (as in optax).
    """
    if not 0 <= warmup_steps < decay_steps:
        raise ValueError(
            f"warmup_cosine_decay_schedule: need 0 <= warmup_steps < decay_steps, got "
            f"{warmup_steps} and {decay_steps}"
        )

    def schedule(count: torch.Tensor) -> torch.Tensor:
        c = _f(count)
        warm = init_value + (peak_value - init_value) * c / max(warmup_steps, 1)
        frac = torch.clamp((c - warmup_steps) / (decay_steps - warmup_steps), 0.0, 1.0)
        decay = end_value + (peak_value - end_value) * 0.5 * (1.0 + torch.cos(math.pi * frac))
        return torch.where(c < warmup_steps, warm, decay)

    return schedule


def piecewise_constant_schedule(boundaries: Sequence[int], values: Sequence[float]) -> Schedule:
    """``values[i]`` for ``boundaries[i-1] <= count < boundaries[i]`` (Keras ``PiecewiseConstantDecay``).

    Keras switches after the boundary step (``count > boundary``); this uses the same rule.
    """
    if len(values) != len(boundaries) + 1:
        raise ValueError(
            f"piecewise_constant_schedule: need len(values) == len(boundaries) + 1, got "
            f"{len(values)} values and {len(boundaries)} boundaries"
        )
    if list(boundaries) != sorted(boundaries):
        raise ValueError(f"piecewise_constant_schedule: boundaries must increase, got {boundaries}")

    def schedule(count: torch.Tensor) -> torch.Tensor:
        b = torch.tensor(list(boundaries), device=count.device)
        v = torch.tensor([float(x) for x in values], device=count.device)
        idx = torch.sum((count[..., None] > b).to(torch.int64), dim=-1)
        return v[idx]

    return schedule
