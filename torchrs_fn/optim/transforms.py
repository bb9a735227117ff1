"""The optimizers: sgd, adagrad, adam, adamw and clip_by_global_norm.

Each returns a ``GradientTransformation`` whose state is a NamedTuple holding a step ``count``,
the hyperparameters as float32 0-d tensors in ``hparams`` (so a stacked state can sweep them under
``vmap``), and the per-parameter slots. The update formulas follow ``torch.optim`` (and hence optax);
Adagrad's defaults are Keras's, which TFRS recipes depend on.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch

from .. import tree
from .base import GradientTransformation, Schedule, _first_leaf, hparam

__all__ = [
    "sgd",
    "adagrad",
    "adam",
    "adamw",
    "rowwise_adagrad",
    "clip_by_global_norm",
    "SgdState",
    "AdagradState",
    "AdamState",
    "ClipState",
]

PyTree = Any
LearningRate = float | torch.Tensor | Schedule


class SgdState(NamedTuple):
    count: torch.Tensor
    hparams: dict[str, torch.Tensor]
    momentum: PyTree


class AdagradState(NamedTuple):
    count: torch.Tensor
    hparams: dict[str, torch.Tensor]
    sum_of_squares: PyTree


class AdamState(NamedTuple):
    count: torch.Tensor
    hparams: dict[str, torch.Tensor]
    mu: PyTree
    nu: PyTree


class ClipState(NamedTuple):
    hparams: dict[str, torch.Tensor]


def _check_positive(name: str, value: Any, *, allow_zero: bool = False) -> None:
    if callable(value) or isinstance(value, torch.Tensor):
        return
    if not isinstance(value, (int, float)) or value < 0 or (value == 0 and not allow_zero):
        raise ValueError(
            f"{name} must be a {'non-negative' if allow_zero else 'positive'} number, got {value!r}"
        )


def _hparams(
    params: PyTree, learning_rate: LearningRate, **others: float
) -> dict[str, torch.Tensor]:
    like = _first_leaf(params)
    out = {k: hparam(v, like) for k, v in others.items()}
    if not callable(learning_rate):
        out["learning_rate"] = hparam(learning_rate, like)
    return out


def _count(params: PyTree) -> torch.Tensor:
    like = _first_leaf(params)
    return torch.zeros((), dtype=torch.int64, device=like.device if like is not None else None)


def _lr(learning_rate: LearningRate, state: Any) -> torch.Tensor:
    if callable(learning_rate):
        return learning_rate(state.count)
    return state.hparams["learning_rate"]


def sgd(
    learning_rate: LearningRate = 0.01,
    momentum: float | None = None,
    *,
    nesterov: bool = False,
) -> GradientTransformation:
    """Stochastic gradient descent, optionally with (Nesterov) momentum, as ``torch.optim.SGD``.

    ``buf = momentum * buf + g``; the update is ``-lr * buf`` (or ``-lr * (g + momentum * buf)``
    with ``nesterov``). Keras's SGD gives the same iterates for a constant learning rate.
    """
    _check_positive("sgd: learning_rate", learning_rate)
    if momentum is not None:
        _check_positive("sgd: momentum", momentum, allow_zero=True)
    if nesterov and momentum is None:
        raise ValueError("sgd: nesterov=True needs a momentum")

    def init(params: PyTree) -> SgdState:
        extra = {"momentum": momentum} if momentum is not None else {}
        # () rather than None without momentum: an empty node in every pytree library, so that
        # torch.vmap over stacked states sees no leaf there.
        trace = tree.zeros_like(params) if momentum is not None else ()
        return SgdState(_count(params), _hparams(params, learning_rate, **extra), trace)

    def update(grads: PyTree, state: SgdState, params: PyTree = None):
        lr = _lr(learning_rate, state)
        if momentum is None:
            updates, trace = tree.map(lambda g: -lr * g, grads), ()
        else:
            m = state.hparams["momentum"]
            trace = tree.map(lambda b, g: m * b + g, state.momentum, grads)
            if nesterov:
                updates = tree.map(lambda g, b: -lr * (g + m * b), grads, trace)
            else:
                updates = tree.map(lambda b: -lr * b, trace)
        return updates, SgdState(state.count + 1, state.hparams, trace)

    return GradientTransformation(init, update)


def adagrad(
    learning_rate: LearningRate = 0.001,
    initial_accumulator_value: float = 0.1,
    epsilon: float = 1e-7,
) -> GradientTransformation:
    """Adagrad with Keras's defaults (initial accumulator 0.1, epsilon 1e-7), as TFRS uses it.

    ``acc += g**2``; update ``-lr * g / (sqrt(acc) + epsilon)``. This is
    ``tf.keras.optimizers.Adagrad`` and ``torch.optim.Adagrad(initial_accumulator_value=0.1,
    eps=1e-7)``. For an embedding row with zero gradient the update is exactly zero, so the dense
    update equals TensorFlow's sparse (IndexedSlices) one.
    """
    _check_positive("adagrad: learning_rate", learning_rate)
    _check_positive(
        "adagrad: initial_accumulator_value", initial_accumulator_value, allow_zero=True
    )
    _check_positive("adagrad: epsilon", epsilon, allow_zero=True)

    def init(params: PyTree) -> AdagradState:
        acc = tree.map(lambda p: torch.full_like(p, initial_accumulator_value), params)
        return AdagradState(_count(params), _hparams(params, learning_rate, epsilon=epsilon), acc)

    def update(grads: PyTree, state: AdagradState, params: PyTree = None):
        lr, eps = _lr(learning_rate, state), state.hparams["epsilon"]
        acc = tree.map(lambda a, g: a + g * g, state.sum_of_squares, grads)
        updates = tree.map(lambda g, a: -lr * g / (torch.sqrt(a) + eps), grads, acc)
        return updates, AdagradState(state.count + 1, state.hparams, acc)

    return GradientTransformation(init, update)


def _row_mean_square(g: torch.Tensor) -> torch.Tensor:
    """``mean(g**2)`` over every dimension but the first (``g**2`` for 1-d, 0-d tensors)."""
    square = g * g
    return square.mean(dim=tuple(range(1, g.ndim))) if g.ndim > 1 else square


def rowwise_adagrad(
    learning_rate: LearningRate = 0.01,
    initial_accumulator_value: float = 0.0,
    epsilon: float = 1e-10,
) -> GradientTransformation:
    """Row-wise Adagrad: one accumulator per row of each parameter, for embedding tables.

    For a parameter ``[V, D]`` the state is ``acc [V]``: ``acc += mean(g**2, over D)``; update
    ``-lr * g / (sqrt(acc) + epsilon)``, the row's accumulator broadcast over its entries. This is
    TorchRec / FBGEMM's ``EXACT_ROWWISE_ADAGRAD`` (and its defaults: initial accumulator 0,
    epsilon 1e-10); it keeps ``V`` floats of state for a table instead of Adagrad's ``V * D``.
    A 1-d parameter has one row per entry (plain Adagrad); a 0-d one is a single row.
    """
    _check_positive("rowwise_adagrad: learning_rate", learning_rate)
    _check_positive(
        "rowwise_adagrad: initial_accumulator_value", initial_accumulator_value, allow_zero=True
    )
    _check_positive("rowwise_adagrad: epsilon", epsilon, allow_zero=True)

    def init(params: PyTree) -> AdagradState:
        acc = tree.map(
            lambda p: torch.full(
                p.shape[:1], initial_accumulator_value, dtype=p.dtype, device=p.device
            ),
            params,
        )
        return AdagradState(_count(params), _hparams(params, learning_rate, epsilon=epsilon), acc)

    def update(grads: PyTree, state: AdagradState, params: PyTree = None):
        lr, eps = _lr(learning_rate, state), state.hparams["epsilon"]
        acc = tree.map(lambda a, g: a + _row_mean_square(g), state.sum_of_squares, grads)

        def step(g: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
            scale = lr / (torch.sqrt(a) + eps)
            return -g * scale.reshape(scale.shape + (1,) * (g.ndim - scale.ndim))

        return tree.map(step, grads, acc), AdagradState(state.count + 1, state.hparams, acc)

    return GradientTransformation(init, update)


def _adam(
    learning_rate: LearningRate,
    b1: float,
    b2: float,
    eps: float,
    weight_decay: float | None,
    name: str,
) -> GradientTransformation:
    _check_positive(f"{name}: learning_rate", learning_rate)
    for hp, v in (("b1", b1), ("b2", b2)):
        if not isinstance(v, torch.Tensor) and not 0.0 <= v < 1.0:
            raise ValueError(f"{name}: {hp} must be in [0, 1), got {v!r}")
    _check_positive(f"{name}: eps", eps, allow_zero=True)
    if weight_decay is not None:
        _check_positive(f"{name}: weight_decay", weight_decay, allow_zero=True)

    def init(params: PyTree) -> AdamState:
        extra = {"b1": b1, "b2": b2, "eps": eps}
        if weight_decay is not None:
            extra["weight_decay"] = weight_decay
        hp = _hparams(params, learning_rate, **extra)
        return AdamState(_count(params), hp, tree.zeros_like(params), tree.zeros_like(params))

    def update(grads: PyTree, state: AdamState, params: PyTree = None):
        hp = state.hparams
        lr, beta1, beta2, e = _lr(learning_rate, state), hp["b1"], hp["b2"], hp["eps"]
        count = state.count + 1
        t = count.to(torch.float32)
        mu = tree.map(lambda m, g: beta1 * m + (1.0 - beta1) * g, state.mu, grads)
        nu = tree.map(lambda v, g: beta2 * v + (1.0 - beta2) * g * g, state.nu, grads)
        c1, c2 = 1.0 - torch.pow(beta1, t), 1.0 - torch.pow(beta2, t)
        updates = tree.map(lambda m, v: -lr * (m / c1) / (torch.sqrt(v / c2) + e), mu, nu)
        if weight_decay is not None:
            if params is None:
                raise ValueError(f"{name}: update needs params for weight decay")
            wd = hp["weight_decay"]
            updates = tree.map(lambda u, p: u - lr * wd * p, updates, params)
        return updates, AdamState(count, hp, mu, nu)

    return GradientTransformation(init, update)


def adam(
    learning_rate: LearningRate = 0.001, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8
) -> GradientTransformation:
    """Adam as ``torch.optim.Adam`` / optax (bias-corrected moments, ``eps`` outside the sqrt).

    Keras's Adam defaults to ``epsilon=1e-7`` and adds it to the uncorrected ``sqrt(v)``; pass
    ``eps=1e-7`` for the Keras default (the iterates then differ from Keras by O(eps) only).
    """
    return _adam(learning_rate, b1, b2, eps, None, "adam")


def adamw(
    learning_rate: LearningRate = 0.001,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    weight_decay: float = 0.01,
) -> GradientTransformation:
    """AdamW (decoupled weight decay) as ``torch.optim.AdamW``: adds ``-lr * weight_decay * p``."""
    return _adam(learning_rate, b1, b2, eps, weight_decay, "adamw")


def clip_by_global_norm(max_norm: float) -> GradientTransformation:
    """Scale updates by ``min(1, max_norm / global_norm)`` (``torch.nn.utils.clip_grad_norm_``).

    Unlike torch's version no 1e-6 is added to the norm (optax's rule); chain it first:
    ``chain(clip_by_global_norm(1.0), adam(1e-3))``.
    """
    _check_positive("clip_by_global_norm: max_norm", max_norm)

    def init(params: PyTree) -> ClipState:
        return ClipState({"max_norm": hparam(max_norm, _first_leaf(params))})

    def update(grads: PyTree, state: ClipState, params: PyTree = None):
        norm = tree.global_norm(grads)
        mx = state.hparams["max_norm"]
        scale = torch.where(
            norm > mx, mx / torch.clamp(norm, min=torch.finfo(torch.float32).tiny), 1.0
        )
        return tree.map(lambda g: g * scale.to(g.dtype), grads), state

    return GradientTransformation(init, update)
