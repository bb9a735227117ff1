"""The functional model core: ``init``, ``apply`` and the TFRS-style ``Model`` base.

An ``nn.Module`` is used only as a *definition*. ``init(module, seed)`` creates its parameters from an
explicit seed (Keras defaults for ``Embedding`` and ``Linear``, so TFRS recipes behave the same), takes
them out into a nested dict and leaves the module stateless (its parameters become ``meta``
tensors, so calling it directly fails loudly instead of silently using stale weights).
``apply(module, params, *args)`` runs it with ``torch.func.functional_call``, so ``torch.func.grad``,
``torch.vmap`` and ``torch.compile`` compose over it.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn
from torch.nn.utils import stateless

from .. import tree

__all__ = ["Params", "init", "apply", "buffers", "Model", "loss_fn_of"]

Params = dict[str, Any]
"""A nested dict of tensors, keyed by submodule and parameter names."""


def _glorot_uniform_(weight: torch.Tensor, generator: torch.Generator) -> None:
    fan_out, fan_in = weight.shape[0], math.prod(weight.shape[1:])
    bound = math.sqrt(6.0 / (fan_in + fan_out))
    weight.uniform_(-bound, bound, generator=generator)


def _init_own_parameters(module: nn.Module, generator: torch.Generator) -> None:
    """Initialise the parameters that ``module`` owns directly (not those of its children)."""
    own = dict(module.named_parameters(recurse=False))
    if not own:
        return
    if hasattr(module, "init_parameters"):
        module.init_parameters(generator)
    elif isinstance(module, (nn.Embedding, nn.EmbeddingBag)):
        # Keras Embedding default: uniform(-0.05, 0.05).
        module.weight.uniform_(-0.05, 0.05, generator=generator)
    elif isinstance(module, nn.Linear):
        # Keras Dense default: glorot-uniform kernel, zero bias.
        _glorot_uniform_(module.weight, generator)
        if module.bias is not None:
            module.bias.zero_()
    elif hasattr(module, "reset_parameters"):
        # Other torch layers keep their own init, seeded from our generator without touching the
        # caller's global RNG.
        sub_seed = int(torch.randint(0, 2**62, (1,), generator=generator))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(sub_seed)
            module.reset_parameters()
    else:
        raise TypeError(
            f"init: cannot initialise parameters {sorted(own)} of {type(module).__name__}: give it "
            "an `init_parameters(self, generator)` method or a `reset_parameters()` method"
        )


def _materialise(module: nn.Module, device: torch.device | str | None, dtype: torch.dtype | None):
    """Give every (possibly meta) parameter fresh real storage on ``device``."""
    for sub in module.modules():
        for name, p in list(sub._parameters.items()):
            if p is None:
                continue
            target_device = torch.device(device) if device is not None else p.device
            if target_device.type == "meta":
                target_device = torch.device("cpu")
            new = torch.empty(p.shape, dtype=dtype or p.dtype, device=target_device)
            sub._parameters[name] = nn.Parameter(new, requires_grad=p.requires_grad)


def _stateless_guard(module: nn.Module, args: Any) -> None:
    for p in module._parameters.values():
        if p is not None and p.is_meta:
            raise RuntimeError(
                f"{type(module).__name__} holds no parameters of its own after torchrs_fn.init; "
                "run it with torchrs_fn.apply(module, params, ...)"
            )
        return


def _make_stateless(module: nn.Module) -> None:
    for sub in module.modules():
        for name, p in list(sub._parameters.items()):
            if p is not None:
                sub._parameters[name] = nn.Parameter(
                    torch.empty(p.shape, dtype=p.dtype, device="meta"),
                    requires_grad=p.requires_grad,
                )
        if any(p is not None for p in sub._parameters.values()) and not getattr(
            sub, "_torchrs_fn_guarded", False
        ):
            sub.register_forward_pre_hook(_stateless_guard)
            sub._torchrs_fn_guarded = True


def init(
    module: nn.Module,
    seed: int = 0,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> Params:
    """Create the parameters of ``module`` from ``seed`` and return them as a nested dict.

    Initialisation follows Keras defaults so TFRS recipes carry over: ``nn.Embedding`` /
    ``nn.EmbeddingBag`` uniform(-0.05, 0.05); ``nn.Linear`` glorot-uniform weight and zero bias.
    A module may define ``init_parameters(generator)`` to initialise its own parameters; other
    torch layers use their ``reset_parameters`` under a seeded, forked RNG. The global RNG is never
    read. The module is left stateless (parameters on the ``meta`` device); ``init`` can be called
    again on it, e.g. ``tree.stack([init(m, s) for s in range(8)])`` for a seed sweep.

    Args:
        module: the model definition.
        seed: integer seed; the same seed gives bit-identical parameters.
        device: where to create the parameters (default: CPU).
        dtype: the dtype of the parameters (default: float32, or the dtype the module declared).

    Returns:
        ``{"submodule": {"weight": Tensor, ...}, ...}`` mirroring ``module.named_parameters()``.
        Buffers are not included: take them with ``buffers(module)``.
    """
    if not isinstance(module, nn.Module):
        raise TypeError(f"init: module must be a torch.nn.Module, got {type(module).__name__}")
    generator = torch.Generator().manual_seed(int(seed))
    _materialise(module, "cpu", dtype)
    with torch.no_grad():
        for sub in module.modules():
            _init_own_parameters(sub, generator)
    flat = {
        name: p.detach().to(device=device or "cpu", dtype=dtype or p.dtype).clone()
        for name, p in module.named_parameters()
    }
    _make_stateless(module)
    return tree.unflatten_dict(flat)


def buffers(module: nn.Module) -> Params:
    """The module's buffers (e.g. batch-norm statistics) as a nested dict of detached copies."""
    return tree.unflatten_dict({n: b.detach().clone() for n, b in module.named_buffers()})


def apply(
    module: nn.Module,
    params: Params,
    *args: Any,
    buffers: Params | None = None,
    method: str | None = None,
    **kwargs: Any,
) -> Any:
    """Run ``module`` with ``params`` (and optional ``buffers``) as a pure function.

    ``apply(module, params, *args, **kwargs)`` is ``module(*args, **kwargs)`` evaluated with the
    given tensors in place of the module's own, via ``torch.func.functional_call``. Pass a
    submodule with its sub-dict to run part of a model, e.g.
    ``apply(model.user_model, params["user_model"], ids)``. ``method`` calls another method of
    the module (e.g. ``method="compute_loss"``) instead of ``forward``.
    """
    flat = tree.flatten_dict(params)
    expected = {n for n, _ in module.named_parameters(remove_duplicate=False)}
    if not set(flat) >= expected - _tied_names(module):
        missing = sorted(expected - set(flat) - _tied_names(module))
        raise KeyError(
            f"apply: params lack {missing[:5]}{' ...' if len(missing) > 5 else ''} for "
            f"{type(module).__name__}; did you pass the params of another module?"
        )
    extra = set(flat) - expected
    if extra:
        raise KeyError(
            f"apply: params have names {sorted(extra)[:5]} that {type(module).__name__} does not "
            "define"
        )
    for name, value in flat.items():
        p = module.get_parameter(name)
        if tuple(value.shape) != tuple(p.shape) and not (
            _row_views_allowed and value.shape[1:] == p.shape[1:]
        ):
            raise ValueError(
                f"apply: parameter {name!r} has shape {tuple(value.shape)}, the module defines "
                f"{tuple(p.shape)}"
            )
    if buffers is not None:
        flat.update(tree.flatten_dict(buffers))
    if method is None:
        return torch.func.functional_call(module, flat, args, kwargs)
    with stateless._reparametrize_module(module, flat):
        return getattr(module, method)(*args, **kwargs)


# Set by the row-sparse train step (``make_train_step(sparse_tables=...)``) while its loss runs:
# an embedding table then arrives as the ``[N, D]`` rows the batch touches, not ``[V, D]``. A
# module global rather than a context variable so that ``torch.compile`` guards on it.
_row_views_allowed = False


@contextlib.contextmanager
def _allow_row_views() -> Iterator[None]:
    """Within: ``apply`` accepts a parameter whose first dimension differs from the module's."""
    global _row_views_allowed
    before, _row_views_allowed = _row_views_allowed, True
    try:
        yield
    finally:
        _row_views_allowed = before


def _tied_names(module: nn.Module) -> set[str]:
    all_names = {n for n, _ in module.named_parameters(remove_duplicate=False)}
    unique = {n for n, _ in module.named_parameters()}
    return all_names - unique


class Model(nn.Module):
    """TFRS-style model base: subclass it and implement ``compute_loss(batch, training)``.

    As in ``tfrs.models.Model``, the subclass builds its towers and task in ``__init__`` and returns
    the scalar loss from ``compute_loss``; it may instead return ``(loss, logs)`` with a dict of
    extra scalars to report. The model still trains functionally:

        >>> params = init(model, seed=0)
        >>> step = make_train_step(model, adagrad(0.1))   # uses loss_fn_of(model)

    ``forward(batch, training)`` calls ``compute_loss`` so ``apply(model, params, batch)`` returns
    the loss. Unlike TFRS there is no ``fit`` method on the model: use ``torchrs_fn.train.fit``.
    """

    def compute_loss(
        self, batch: dict[str, torch.Tensor], training: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, dict[str, torch.Tensor]]:
        raise NotImplementedError(
            f"{type(self).__name__} must implement compute_loss(batch, training)"
        )

    def forward(self, batch: dict[str, torch.Tensor], training: bool = False, **kwargs: Any):
        return self.compute_loss(batch, training=training, **kwargs)


def loss_fn_of(model: nn.Module, *, training: bool = True) -> Callable[..., Any]:
    """``(params, batch[, hparams]) -> loss`` (or ``(loss, logs)``) for a ``Model``.

    Runs ``apply(model, params, batch, training=training)``; ``hparams`` (the train state's loss
    hyperparameters and random key) is passed on as ``compute_loss(..., hparams=hparams)``.
    """

    def loss_fn(params: Params, batch: Any, hparams: dict | None = None) -> Any:
        if hparams is None:
            return apply(model, params, batch, training=training)
        return apply(model, params, batch, training=training, hparams=hparams)

    return loss_fn
