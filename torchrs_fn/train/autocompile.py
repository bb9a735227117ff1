"""Compile when it pays: the default ``compile="auto"`` of ``make_train_step`` and ``make_eval_step``.

A first ``torch.compile`` of a train step costs 10-25 s on a small CPU and makes each later step
perhaps 1.3-2x faster. A three-epoch tutorial run of 30 steps never earns that back; a 300-epoch run
earns it many times over. ``AutoCompile`` runs the step eagerly, times it, and compiles only when
the steps still to come would save more time than the compile costs:

    remaining_steps * eager_step_seconds * (1 - 1 / ASSUMED_SPEEDUP) > COMPILE_SECONDS

with the fastest eager step seen so far (a step slowed by other work on a shared machine does not
make compiling look better than it is).
``train.fit`` tells the step how many steps the run has (``plan``). When nobody does, it compiles
once the time it could already have saved reaches the compile cost (the ski-rental rule: never
more than twice the cost of the best choice made in hindsight).

One compiled graph serves the common batch shape. A batch of another shape (the smaller last
batch of an epoch) runs eagerly instead of triggering a second compile, so an epoch never
compiles twice. Under an outer ``torch.compile`` or a ``torch.func`` transform the step is
simply traced or transformed as the plain function it wraps.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch

from .. import tree
from .._transforms import inside_transforms

__all__ = ["AutoCompile"]


def _signature(args: tuple) -> tuple:
    """What a compiled graph is specialised on: the pytree structure, shapes, dtypes, devices."""
    leaves = tree.leaves(args)
    return (
        tree.structure(args),
        tuple(
            (tuple(x.shape), x.dtype, x.device) if isinstance(x, torch.Tensor) else x
            for x in leaves
        ),
    )


def _synchronize(out: Any) -> None:
    for x in tree.leaves(out):
        if isinstance(x, torch.Tensor) and x.device.type == "cuda":
            torch.cuda.synchronize(x.device)
            return


class AutoCompile:
    """``fn``, compiled with ``torch.compile`` once compiling pays back within the run.

    Args:
        fn: the step, a pure function of tensors (the train or eval step).
        name: used in messages.
        options: ``torch.compile`` options (default ``dynamic=False``).
        compile_seconds: the expected cost of the compile (default ``COMPILE_SECONDS``).
        speedup: the expected speedup of the compiled step (default ``ASSUMED_SPEEDUP``).
        clock: the clock the eager steps are timed with (tests pass a fake one).
        compiler: ``(fn, options) -> compiled fn`` (default ``torch.compile``).

    ``status`` says what it does and why (``"eager: ..."`` or ``"compiled: ..."``).
    """

    COMPILE_SECONDS: float = 20.0
    """A first compile of a recommender train step on a small CPU: 13-25 s measured here."""

    ASSUMED_SPEEDUP: float = 1.5
    """The compiled step's speedup over eager, assumed before compiling (1.3-2x measured here)."""

    def __init__(
        self,
        fn: Callable[..., Any],
        name: str = "step",
        *,
        options: dict | None = None,
        compile_seconds: float | None = None,
        speedup: float | None = None,
        clock: Callable[[], float] = time.perf_counter,
        compiler: Callable[[Callable, dict], Callable] | None = None,
    ) -> None:
        self.fn = fn
        self.name = name
        self.options = {"dynamic": False, **(options or {})}
        self.compile_seconds = self.COMPILE_SECONDS if compile_seconds is None else compile_seconds
        self.speedup = self.ASSUMED_SPEEDUP if speedup is None else speedup
        if self.speedup <= 1.0:
            raise ValueError(f"AutoCompile: speedup must be > 1, got {self.speedup}")
        self.clock = clock
        self.compiler = compiler or (lambda f, options: torch.compile(f, **options))
        self.remaining: int | None = None
        self.compiled: Callable[..., Any] | None = None
        self.compiled_signature: tuple | None = None
        self._last_signature: tuple | None = None
        self._fastest = float("inf")
        self._timed_steps = 0
        self._calls = 0
        self.status = "eager: measuring the step"

    def plan(self, steps: int) -> None:
        """The run still has ``steps`` calls to make (``train.fit`` calls this)."""
        if steps < 0:
            raise ValueError(f"{self.name}: plan(steps) needs steps >= 0, got {steps}")
        self.remaining = int(steps)

    @property
    def eager_step_seconds(self) -> float | None:
        """The fastest timed eager step (the first call, a warm-up, is not timed).

        The fastest, not the mean: on a shared machine a step slowed by other work would inflate
        the saving a compile promises, while the compile itself would slow down as much.
        Underestimating the saving errs towards staying eager, the choice that costs nothing up
        front.
        """
        return self._fastest if self._timed_steps else None

    def __call__(self, *args: Any) -> Any:
        if torch.compiler.is_compiling() or inside_transforms():
            return self.fn(*args)
        if self.remaining is not None:
            self.remaining = max(self.remaining - 1, 0)
        signature = _signature(args)
        if self.compiled is not None:
            return self.compiled(*args) if signature == self.compiled_signature else self.fn(*args)
        start = self.clock()
        out = self.fn(*args)
        _synchronize(out)
        elapsed = self.clock() - start
        self._calls += 1
        same_shape = signature == self._last_signature
        self._last_signature = signature
        if self._calls > 1 and same_shape:
            self._fastest = min(self._fastest, elapsed)
            self._timed_steps += 1
            self._decide(signature)
        return out

    def _decide(self, signature: tuple) -> None:
        step = self.eager_step_seconds
        assert step is not None
        saving = step * (1.0 - 1.0 / self.speedup)
        if self.remaining is not None:
            gain = self.remaining * saving
            why = f"{self.remaining} steps left x {step * 1e3:.0f} ms"
        else:
            # Unknown horizon: compile once what compiling would already have saved equals its
            # cost (at most twice the cost of the choice made in hindsight).
            gain = self._timed_steps * saving
            why = f"{self._timed_steps} steps so far x {step * 1e3:.0f} ms, run length unknown"
        if gain > self.compile_seconds:
            self.compiled = self.compiler(self.fn, self.options)
            self.compiled_signature = signature
            self.status = f"compiled: {why} pays back a ~{self.compile_seconds:.0f} s compile"
        else:
            self.status = f"eager: {why} would not pay back a ~{self.compile_seconds:.0f} s compile"
