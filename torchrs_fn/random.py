"""Counter-based random numbers: pure functions of an integer key, safe under ``vmap`` and compile.

A *key* is a 0-d int64 tensor holding a 32-bit value. Every random draw is a pure function of a
key (no generator state, no global RNG), so a stacked key ``[N]`` under ``torch.vmap`` gives N
independent streams, each equal to what the same key gives on its own: a sweep's configuration
draws exactly the dropout masks and negatives that a separate run with the same seed draws. This is
JAX's ``PRNGKey`` / ``fold_in`` design on a small integer hash (not cryptographic; about 2^32 keys).

    key = random.key(seed)                        # once per configuration
    step_key = random.fold_in(key, state.step)    # a fresh key per step
    k_drop, k_neg = random.split(step_key, 2)     # one key per use
    x = random.dropout(k_drop, x, rate)

The train step hands a per-step key to the loss as ``hparams["key"]`` when the state was made with
``init_state(..., seed=...)``.

This module sits beside ``tree.py`` (not in a room) because every room may draw random numbers and
it imports nothing of the package.
"""

from __future__ import annotations

import torch

__all__ = ["key", "fold_in", "split", "bits", "uniform", "bernoulli", "randint", "dropout"]

_MASK = 0xFFFFFFFF
# Two odd multipliers below 2**31, so that a 32-bit value times one never leaves int64.
_M1, _M2 = 0x21F0AAAD, 0x735A2D97
_GOLDEN = 0x9E3779B9


def _mix(x: torch.Tensor) -> torch.Tensor:
    """A 32-bit integer hash with good avalanche (xor-shift-multiply), on int64 tensors."""
    x = x & _MASK
    x = x ^ (x >> 16)
    x = (x * _M1) & _MASK
    x = x ^ (x >> 15)
    x = (x * _M2) & _MASK
    return x ^ (x >> 15)


def _check_key(k: torch.Tensor, name: str) -> None:
    if not isinstance(k, torch.Tensor) or k.dtype != torch.int64:
        got = k.dtype if isinstance(k, torch.Tensor) else type(k).__name__
        raise TypeError(f"{name}: key must be an int64 tensor from random.key(seed), got {got}")


def key(seed: int | torch.Tensor, device: torch.device | str | None = None) -> torch.Tensor:
    """A key (0-d int64) from an integer seed; ``key(s)`` is the same on every machine."""
    if isinstance(seed, torch.Tensor):
        if seed.is_floating_point() or seed.is_complex():
            raise TypeError(f"random.key: seed must be an integer, got a {seed.dtype} tensor")
        return _mix(seed.to(torch.int64) ^ _GOLDEN)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"random.key: seed must be an int, got {type(seed).__name__}")
    return _mix(torch.tensor(seed & _MASK, dtype=torch.int64, device=device) ^ _GOLDEN)


def fold_in(k: torch.Tensor, data: int | torch.Tensor) -> torch.Tensor:
    """A new key from ``k`` and an integer ``data`` (e.g. the step count): ``[...]`` like ``k``."""
    _check_key(k, "random.fold_in")
    d = data.to(torch.int64) if isinstance(data, torch.Tensor) else torch.tensor(int(data))
    return _mix(k ^ _mix(d.to(k.device) + _GOLDEN))


def split(k: torch.Tensor, num: int = 2) -> tuple[torch.Tensor, ...]:
    """``num`` independent keys derived from ``k``."""
    _check_key(k, "random.split")
    if not isinstance(num, int) or num < 1:
        raise ValueError(f"random.split: num must be a positive int, got {num!r}")
    return tuple(fold_in(k, 0x5EED0000 + i) for i in range(num))


def bits(k: torch.Tensor, shape: tuple[int, ...] | torch.Size) -> torch.Tensor:
    """``shape`` int64 tensor of uniform 32-bit values, a pure function of ``k``."""
    _check_key(k, "random.bits")
    shape = tuple(int(s) for s in shape)
    n = 1
    for s in shape:
        n *= s
    counter = torch.arange(n, dtype=torch.int64, device=k.device).reshape(shape)
    return _mix(_mix(counter ^ k) + (k >> 7) + _GOLDEN)


def uniform(
    k: torch.Tensor,
    shape: tuple[int, ...] | torch.Size,
    *,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Uniform floats in ``[0, 1)`` of ``shape`` (24 random bits each)."""
    return (bits(k, shape) >> 8).to(dtype) * (1.0 / (1 << 24))


def bernoulli(
    k: torch.Tensor, p: float | torch.Tensor, shape: tuple[int, ...] | torch.Size
) -> torch.Tensor:
    """Booleans of ``shape``, each True with probability ``p``."""
    return uniform(k, shape) < p


def randint(
    k: torch.Tensor, shape: tuple[int, ...] | torch.Size, low: int, high: int
) -> torch.Tensor:
    """Integers uniform in ``[low, high)`` of ``shape`` (int64; bias below 2^-32 * (high - low))."""
    if not isinstance(low, int) or not isinstance(high, int) or high <= low:
        raise ValueError(f"random.randint: need integers low < high, got {low!r}, {high!r}")
    if high - low > 1 << 31:
        raise ValueError(f"random.randint: high - low must be at most 2**31, got {high - low}")
    return low + ((bits(k, shape) * (high - low)) >> 32)


def dropout(k: torch.Tensor, x: torch.Tensor, rate: float | torch.Tensor) -> torch.Tensor:
    """Inverted dropout: zero each entry with probability ``rate``, scale the rest by 1/(1-rate).

    ``rate`` may be a tensor (a swept hyperparameter); ``rate = 0`` returns ``x`` unchanged in
    value. Same semantics as ``torch.nn.functional.dropout(training=True)`` and Keras ``Dropout``,
    with the mask drawn from ``k``.
    """
    if not isinstance(rate, torch.Tensor) and not 0.0 <= float(rate) < 1.0:
        raise ValueError(f"random.dropout: rate must be in [0, 1), got {rate!r}")
    keep = uniform(k, x.shape, dtype=x.dtype) >= rate
    return torch.where(keep, x / (1.0 - rate), torch.zeros((), dtype=x.dtype, device=x.device))
