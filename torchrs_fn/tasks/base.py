"""Task composition: the ``Task`` interface and ``MultiTask``, a weighted sum of tasks' losses.

A task turns a model's outputs into a scalar loss (``loss``) and into metrics (``metrics``).
``Retrieval`` and ``Ranking`` are tasks. ``MultiTask`` combines several, as TFRS's multitask
tutorial does by hand (``rating_weight * rating_loss + retrieval_weight * retrieval_loss``), with
the weights as tensors that a train state carries (``init_state(hparams=task.hparams())``), so a
sweep can vary them and a hypergradient can flow through them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn

__all__ = ["Task", "MultiTask", "WEIGHT_PREFIX"]


def at_least_float32(x: torch.Tensor) -> torch.Tensor:
    """``x`` as float32 when it is bfloat16 or float16, else ``x`` itself.

    Every loss of ``torchrs_fn.tasks`` computes in at least float32, as Keras's mixed-precision
    policies compute losses. Under ``torch.autocast`` on a CPU, softmax, ``logsumexp`` and
    sums of bfloat16 inputs stay bfloat16, so a loss left to autocast would round each list's
    loss to 3 significant digits and the batch total to fewer (measured: 0.1-0.7% off the
    float32 value of the same bfloat16 scores). The cast is differentiable: gradients reach
    bfloat16 inputs as bfloat16. One exception, for speed: under autocast, the fused retrieval
    loss keeps each block's softmax numerators in the product's bfloat16 and takes their row
    sums and log-sum-exp in float32 (its loss was then 1.2e-6 to 4.4e-6 off the float64 value,
    against 2e-5 to 4.3e-5 when the sums were bfloat16 too; numerators in float32 made the
    bfloat16 large-table step 25-35% slower).
    """
    return x.float() if x.dtype in (torch.bfloat16, torch.float16) else x


WEIGHT_PREFIX = "task_weight/"
"""``MultiTask.hparams()`` names each weight ``task_weight/<task name>``."""


@runtime_checkable
class Task(Protocol):
    """What a task offers: ``loss(...) -> 0-d tensor`` and ``metrics(...) -> {name: tensor}``.

    The arguments are the task's own (``Retrieval``: query and candidate embeddings;
    ``Ranking``: labels and predictions). Both are pure functions of their tensors.
    """

    def loss(self, *args: Any, **kwargs: Any) -> torch.Tensor: ...

    def metrics(self, *args: Any, **kwargs: Any) -> dict[str, torch.Tensor]: ...


def _call(fn: Any, inputs: Any, name: str) -> Any:
    if isinstance(inputs, Mapping):
        return fn(**inputs)
    if isinstance(inputs, tuple | list):
        return fn(*inputs)
    raise TypeError(
        f"MultiTask: the inputs of task {name!r} must be a tuple of arguments or a dict of "
        f"keyword arguments, got {type(inputs).__name__}"
    )


class MultiTask(nn.Module):
    """Several named tasks trained together: ``loss = sum_t weight_t * loss_t``.

    Args:
        tasks: ``{name: task}``, e.g. ``{"rating": Ranking(loss="mean_squared_error"),
            "retrieval": Retrieval()}``.
        weights: ``{name: weight}``; a task left out weighs 1.0 (TFRS's tutorial weights are
            plain floats too).

    ``loss(inputs, hparams=None)`` takes ``{name: args}`` (a tuple of positional arguments or a
    dict of keyword arguments for that task's ``loss``) and returns ``(total, logs)`` with each
    task's loss in ``logs`` as ``"<name>_loss"``. The weights are read from ``hparams`` (a train
    state's loss hyperparameters, keys ``task_weight/<name>``) when given there, so one compiled
    step trains every weighting of a sweep: put them into the state with
    ``init_state(params, opt, hparams=multitask.hparams())``. A task with weight 0 still runs
    (its loss is logged) and contributes an exact zero gradient.
    """

    def __init__(self, tasks: Mapping[str, Task], weights: Mapping[str, float] | None = None):
        super().__init__()
        if not tasks:
            raise ValueError("MultiTask: tasks is empty")
        for name, task in tasks.items():
            if not isinstance(name, str) or not name or "/" in name:
                raise ValueError(
                    f"MultiTask: task names must be non-empty strings without '/', got {name!r}"
                )
            if not callable(getattr(task, "loss", None)):
                raise TypeError(
                    f"MultiTask: task {name!r} has no loss method ({type(task).__name__})"
                )
        weights = dict(weights or {})
        unknown = sorted(set(weights) - set(tasks))
        if unknown:
            raise ValueError(
                f"MultiTask: weights for unknown tasks {unknown}; tasks are {sorted(tasks)}"
            )
        modules = {k: v for k, v in tasks.items() if isinstance(v, nn.Module)}
        self.task_modules = nn.ModuleDict(modules)
        self.tasks = dict(tasks)
        self.weights = {name: float(weights.get(name, 1.0)) for name in tasks}

    def hparams(self) -> dict[str, float]:
        """The weights as loss hyperparameters: ``{"task_weight/<name>": weight}``."""
        return {f"{WEIGHT_PREFIX}{name}": w for name, w in self.weights.items()}

    def weight(self, name: str, hparams: Mapping[str, Any] | None = None) -> torch.Tensor | float:
        """Task ``name``'s weight: from ``hparams`` when it holds one, else the constructor's."""
        if hparams is not None and f"{WEIGHT_PREFIX}{name}" in hparams:
            return hparams[f"{WEIGHT_PREFIX}{name}"]
        return self.weights[name]

    def loss(
        self, inputs: Mapping[str, Any], hparams: Mapping[str, Any] | None = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``{name: args}`` -> ``(sum_t w_t * loss_t, {"<name>_loss": loss_t})``."""
        missing = sorted(set(self.tasks) - set(inputs))
        extra = sorted(set(inputs) - set(self.tasks))
        if missing or extra:
            raise ValueError(
                f"MultiTask.loss: inputs must name every task {sorted(self.tasks)}; "
                f"missing {missing}, unknown {extra}"
            )
        total: torch.Tensor | None = None
        logs: dict[str, torch.Tensor] = {}
        for name, task in self.tasks.items():
            value = _call(task.loss, inputs[name], name)
            logs[f"{name}_loss"] = value
            term = self.weight(name, hparams) * value
            total = term if total is None else total + term
        assert total is not None
        return total, logs

    def metrics(self, inputs: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        """``{name: args}`` -> every task's metrics, keyed ``"<name>/<metric>"``."""
        out: dict[str, torch.Tensor] = {}
        for name, args in inputs.items():
            if name not in self.tasks:
                raise ValueError(
                    f"MultiTask.metrics: unknown task {name!r}; tasks are {sorted(self.tasks)}"
                )
            for key, value in _call(self.tasks[name].metrics, args, name).items():
                out[f"{name}/{key}"] = value
        return out

    def forward(
        self, inputs: Mapping[str, Any], hparams: Mapping[str, Any] | None = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return self.loss(inputs, hparams)
