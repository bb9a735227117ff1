"""Which ``torch.func`` transforms enclose the current call (private helper for every room).

Read from functorch's interpreter stack, which ``torch.compile`` also tracks while it traces, so
the answers are the same eagerly and compiled. It lives at the top of the package, beside
``tree``, because losses (``tasks``), metrics and steps (``train``) all need it, and it imports
nothing of the package.
"""

from __future__ import annotations

import torch
from torch._C._functorch import (
    TransformType,
    get_dynamic_layer_stack_depth,
    get_unwrapped,
    is_batchedtensor,
    is_functorch_wrapped_tensor,
)
from torch._functorch.pyfunctorch import retrieve_current_functorch_interpreter

__all__ = [
    "differentiating_levels",
    "host_checks_allowed",
    "inside_transforms",
    "is_batched",
    "vmap_levels",
]


def _walk_levels(depth: int, kinds: tuple) -> int:
    if depth == 0:
        return 0
    interpreter = retrieve_current_functorch_interpreter()
    here = int(interpreter.key() in kinds)
    with interpreter.lower():
        return here + _walk_levels(depth - 1, kinds)


def differentiating_levels() -> int:
    """How many differentiating ``torch.func`` transforms (grad, vjp, jacrev, jvp, jacfwd) enclose
    this call. Two or more mean a higher-order derivative may be taken through it."""
    return _walk_levels(get_dynamic_layer_stack_depth(), (TransformType.Grad, TransformType.Jvp))


def vmap_levels() -> int:
    """How many ``torch.vmap`` transforms enclose this call."""
    return _walk_levels(get_dynamic_layer_stack_depth(), (TransformType.Vmap,))


def inside_transforms() -> bool:
    """True inside any ``torch.func`` transform (``vmap`` included)."""
    return get_dynamic_layer_stack_depth() != 0


def is_batched(t: torch.Tensor) -> bool:
    """True when ``t`` is batched by a ``vmap`` at any level, also beneath ``grad`` wrappers
    (eager only: not traceable by ``torch.compile``, whose callers skip host-side checks)."""
    while is_functorch_wrapped_tensor(t):
        if is_batchedtensor(t):
            return True
        t = get_unwrapped(t)
    return False


def host_checks_allowed(*tensors: torch.Tensor | None) -> bool:
    """Whether a value check that reads ``tensors`` on the host may run: not while
    ``torch.compile`` traces (it would break the graph) and not on a ``vmap``-batched tensor
    (its values are not one example's). ``None`` entries are skipped."""
    if torch.compiler.is_compiling():
        return False
    return not any(t is not None and is_batched(t) for t in tensors)
