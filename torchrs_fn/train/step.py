"""The train and eval steps: pure functions of (state, batch), compiled with ``torch.compile``.

``step(state, batch) -> (state, logs)`` is built from ``torch.func.grad_and_value`` over a loss
function ``loss_fn(params, batch)``, followed by an optimizer update. The state is a ``TrainState``
NamedTuple (params, optimizer state with its hyperparameters as tensors, step count): a pytree that
can be checkpointed, stacked and vmapped. The step does not mutate the state it is given; it
returns a new one (callers should drop the old one, as JAX users do with donated buffers).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import torch
from torch import nn

from .. import tree
from ..models.base import Params, loss_fn_of
from ..optim.base import GradientTransformation, apply_updates

__all__ = ["TrainState", "init_state", "make_train_step", "make_eval_step", "maybe_compile"]

Batch = Any
Logs = dict[str, torch.Tensor]


class TrainState(NamedTuple):
    """Everything a train step reads and writes: ``params``, ``opt_state`` and ``step`` (int64)."""

    params: Params
    opt_state: Any
    step: torch.Tensor


def init_state(params: Params, optimizer: GradientTransformation) -> TrainState:
    """A fresh ``TrainState``: the optimizer's ``init(params)`` and a step count of 0."""
    if not isinstance(optimizer, GradientTransformation):
        raise TypeError(
            f"init_state: optimizer must be a GradientTransformation (e.g. optim.adagrad(0.1)), "
            f"got {type(optimizer).__name__}"
        )
    leaves = [x for x in tree.leaves(params) if isinstance(x, torch.Tensor)]
    device = leaves[0].device if leaves else None
    return TrainState(
        params, optimizer.init(params), torch.zeros((), dtype=torch.int64, device=device)
    )


def maybe_compile(fn: Callable, compile: bool | dict, name: str) -> Callable:
    """``torch.compile(fn)`` unless ``compile`` is False; a dict is passed to ``torch.compile``.

    Shapes are static by default (``dynamic=False``): a final smaller batch compiles once more
    instead of switching the whole step to symbolic shapes.
    """
    if compile is False:
        return fn
    options = {"dynamic": False}
    if isinstance(compile, dict):
        options.update(compile)
    elif compile is not True:
        raise TypeError(f"{name}: compile must be a bool or a dict of torch.compile options")
    return torch.compile(fn, **options)


def _as_loss_fn(loss: Callable | nn.Module) -> Callable:
    if isinstance(loss, nn.Module):
        return loss_fn_of(loss, training=True)
    if not callable(loss):
        raise TypeError(
            f"expected a loss function (params, batch) -> loss or a Model, got {type(loss).__name__}"
        )
    return loss


def _split_aux(out: Any) -> tuple[torch.Tensor, Logs]:
    if isinstance(out, tuple):
        if len(out) != 2 or not isinstance(out[1], dict):
            raise TypeError("a loss function returns a scalar loss or (loss, dict of logs)")
        loss, aux = out
    else:
        loss, aux = out, {}
    if not isinstance(loss, torch.Tensor) or loss.ndim != 0:
        shape = tuple(loss.shape) if isinstance(loss, torch.Tensor) else type(loss).__name__
        raise ValueError(f"the loss must be a scalar tensor (reduce it), got {shape}")
    return loss, aux


def make_train_step(
    loss: Callable[[Params, Batch], Any] | nn.Module,
    optimizer: GradientTransformation,
    *,
    compile: bool | dict = True,
) -> Callable[[TrainState, Batch], tuple[TrainState, Logs]]:
    """Build ``step(state, batch) -> (new_state, logs)``.

    Args:
        loss: ``loss_fn(params, batch)`` returning a scalar loss or ``(loss, logs)``; or a
            ``Model`` (its ``compute_loss(batch, training=True)`` is used).
        optimizer: a ``GradientTransformation`` (e.g. ``optim.adagrad(0.1)``).
        compile: ``True`` (default) compiles with ``torch.compile(dynamic=False)``; ``False`` runs
            eagerly (for debugging); a dict is passed as options to ``torch.compile`` (e.g.
            ``{"fullgraph": True}``).

    ``logs`` holds ``"loss"`` and whatever the loss function reported, as 0-d tensors (no host
    sync inside the step).
    """
    loss_fn = _as_loss_fn(loss)

    def with_aux(params: Params, batch: Batch) -> tuple[torch.Tensor, Logs]:
        return _split_aux(loss_fn(params, batch))

    grad_fn = torch.func.grad_and_value(with_aux, has_aux=True)

    def step(state: TrainState, batch: Batch) -> tuple[TrainState, Logs]:
        grads, (loss_value, aux) = grad_fn(state.params, batch)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = apply_updates(state.params, updates)
        logs = {"loss": loss_value.detach(), **{k: v.detach() for k, v in aux.items()}}
        return TrainState(params, opt_state, state.step + 1), logs

    return maybe_compile(step, compile, "make_train_step")


def make_eval_step(
    fn: Callable[..., dict[str, torch.Tensor]],
    *,
    compile: bool | dict = True,
) -> Callable[..., dict[str, torch.Tensor]]:
    """Build ``eval_step(params, batch, *context) -> dict of tensors`` (no gradients).

    ``fn(params, batch, *context)`` returns named values: ``[B]`` per-example values (e.g. top-k
    hits, per-example losses) are averaged over examples by ``evaluate``; 0-d values (e.g. a
    batch loss) are averaged over batches weighted by batch size, as Keras does for its loss.
    ``context`` carries what is computed once per evaluation, e.g. the candidate embeddings.
    """

    def eval_step(params: Params, batch: Batch, *context: Any) -> dict[str, torch.Tensor]:
        with torch.no_grad():
            out = fn(params, batch, *context)
        if not isinstance(out, dict):
            raise TypeError(f"an eval function returns a dict of tensors, got {type(out).__name__}")
        return out

    return maybe_compile(eval_step, compile, "make_eval_step")
