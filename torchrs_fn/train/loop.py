"""``fit`` and ``evaluate``: small loops around the compiled steps, with a progress bar and logs.

Both loops keep running sums on the device and read them back once per epoch (or whenever the
progress bar redraws), so the loop itself adds no per-step host synchronisation.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Iterable
from typing import Any, TextIO

import torch

from .. import tree
from ..metrics.aggregate import MeanState, mean_init, mean_result, mean_update
from ..metrics.ranking import AUCState, MetricTerms, RootMeanTerms, auc_merge, auc_result
from .step import TrainState

__all__ = ["fit", "evaluate", "ProgressBar"]


class ProgressBar:
    """A one-line text progress bar (redrawn at most every ``interval`` seconds on a terminal)."""

    def __init__(
        self,
        total: int | None,
        desc: str = "",
        stream: TextIO | None = None,
        interval: float = 0.25,
    ) -> None:
        self.total, self.desc, self.interval = total, desc, interval
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = bool(getattr(self.stream, "isatty", lambda: False)())
        self.n, self._last = 0, 0.0
        self.start = time.perf_counter()

    def update(self, n: int = 1, postfix: Callable[[], str] | None = None) -> None:
        self.n += n
        now = time.perf_counter()
        if not self.enabled or (now - self._last < self.interval and self.n != self.total):
            return
        self._last = now
        width = 24
        if self.total:
            filled = int(width * self.n / self.total)
            bar = f"[{'=' * filled}{'.' * (width - filled)}] {self.n}/{self.total}"
        else:
            bar = f"{self.n}"
        extra = f" {postfix()}" if postfix else ""
        self.stream.write(f"\r{self.desc} {bar} {now - self.start:.1f}s{extra}\033[K")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\r\033[K")
            self.stream.flush()


def _batch_size(batch: Any) -> int:
    for x in tree.leaves(batch):
        if isinstance(x, torch.Tensor) and x.ndim > 0:
            return int(x.shape[0])
    raise ValueError(
        "cannot tell the batch size: the batch holds no tensor with a leading dimension"
    )


def _fmt(logs: dict[str, Any]) -> str:
    parts = []
    for k, v in logs.items():
        if k == "epoch":
            continue
        if isinstance(v, float):
            parts.append(f"{k} {v:.4g}")
        elif isinstance(v, list):
            continue
        else:
            parts.append(f"{k} {v}")
    return " · ".join(parts)


def fit(
    step: Callable[[TrainState, Any], tuple[TrainState, dict[str, torch.Tensor]]],
    state: TrainState,
    loader: Iterable,
    *,
    epochs: int = 1,
    eval_fn: Callable[[TrainState], dict[str, float]] | None = None,
    verbose: bool = True,
    stream: TextIO | None = None,
) -> tuple[TrainState, list[dict[str, Any]]]:
    """Train for ``epochs`` passes over ``loader``; returns ``(final_state, history)``.

    Args:
        step: from ``make_train_step``.
        state: from ``init_state`` (consumed: keep using the returned state).
        loader: an iterable of batches (e.g. ``data.Loader``); iterated once per epoch.
        epochs: number of passes (>= 1).
        eval_fn: optional ``state -> {name: float}`` run after each epoch (e.g. wrapping
            ``evaluate``); its results and its time (``eval_seconds``) join the epoch's log.
        verbose: draw a progress bar on a terminal and print one line per epoch to ``stream``
            (default stderr).

    Returns:
        The final state and one dict per epoch: ``epoch``, ``loss`` (mean over the epoch's batches,
        weighted by batch size, as Keras reports it), ``epoch_seconds`` (wall clock),
        ``epoch_cpu_seconds`` (process CPU time, all threads), ``steps``, the mean of every
        other value the step logged, and the evaluation results if ``eval_fn`` was given.
    """
    if not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"fit: epochs must be an int >= 1, got {epochs!r}")
    stream = stream if stream is not None else sys.stderr
    history: list[dict[str, Any]] = []
    total = len(loader) if hasattr(loader, "__len__") else None
    if total is not None and hasattr(step, "plan"):
        step.plan(epochs * total)  # an AutoCompile step compiles only if the run pays it back
    for epoch in range(1, epochs + 1):
        bar = ProgressBar(total, f"epoch {epoch}/{epochs}", stream) if verbose else None
        sums: dict[str, MeanState] = {}
        steps = 0
        start, cpu_start = time.perf_counter(), time.process_time()
        for batch in loader:
            state, logs = step(state, batch)
            size = _batch_size(batch)
            for k, v in logs.items():
                sums[k] = mean_update(sums.get(k) or mean_init(v.device), v.detach(), float(size))
            steps += 1
            if bar is not None:
                bar.update(1, lambda s=sums: f"loss {mean_result(s['loss']):.4g}")
        if steps == 0:
            raise ValueError(
                "fit: the loader yielded no batch (is it empty, or drop_remainder with too few rows?)"
            )
        record: dict[str, Any] = {"epoch": epoch}
        record.update({k: mean_result(s) for k, s in sums.items()})
        if not math.isfinite(record.get("loss", 0.0)):
            raise FloatingPointError(f"fit: the loss became {record['loss']} in epoch {epoch}")
        record["epoch_seconds"] = time.perf_counter() - start
        record["epoch_cpu_seconds"] = time.process_time() - cpu_start
        record["steps"] = steps
        if bar is not None:
            bar.close()
        if eval_fn is not None:
            t0 = time.perf_counter()
            record.update(eval_fn(state))
            record["eval_seconds"] = time.perf_counter() - t0
        history.append(record)
        if verbose:
            stream.write(f"epoch {epoch}/{epochs} · {_fmt(record)}\n")
            stream.flush()
    return state, history


def evaluate(
    eval_step: Callable[..., dict[str, Any]],
    params: Any,
    loader: Iterable,
    *context: Any,
    verbose: bool = False,
    stream: TextIO | None = None,
) -> dict[str, float]:
    """Run ``eval_step(params, batch, *context)`` over ``loader`` and accumulate what it returns.

    Each value is accumulated over the whole loader exactly, by its kind:

    - a ``[B]`` tensor: averaged over examples; a 0-d tensor: averaged over batches, weighted by
      batch size (as Keras reports a loss);
    - ``metrics.MetricTerms(values, weights)`` (a ranking metric with ``reduction="none"``, or
      ``Ranking.metrics``): the weighted mean of all values; ``metrics.RootMeanTerms`` (RMSE):
      the square root of that mean;
    - ``metrics.AUCState`` (a batch's examples): the exact AUC of all examples.

    Returns ``{name: float}``.
    """
    bar = (
        ProgressBar(len(loader) if hasattr(loader, "__len__") else None, "eval", stream)
        if verbose
        else None
    )
    sums: dict[str, Any] = {}
    roots: set[str] = set()
    for batch in loader:
        out = eval_step(params, batch, *context)
        size = _batch_size(batch)
        for k, v in out.items():
            if isinstance(v, AUCState):
                v = AUCState(*(x.detach() for x in v))
                sums[k] = v if k not in sums else auc_merge(sums[k], v)
                continue
            if isinstance(v, MetricTerms):
                if isinstance(v, RootMeanTerms):
                    roots.add(k)
                values, weights = v.values.detach(), v.weights.detach()
                sums[k] = mean_update(sums.get(k) or mean_init(values.device), values, weights)
                continue
            v = v.detach()
            if v.ndim == 0:
                sums[k] = mean_update(sums.get(k) or mean_init(v.device), v, float(size))
            elif v.ndim == 1 and v.shape[0] == size:
                sums[k] = mean_update(sums.get(k) or mean_init(v.device), v)
            else:
                raise ValueError(
                    f"evaluate: value {k!r} has shape {tuple(v.shape)}; expected a scalar or "
                    f"[{size}], MetricTerms or an AUCState"
                )
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    if not sums:
        raise ValueError("evaluate: the loader yielded no batch")
    results = {}
    for k, s in sums.items():
        if isinstance(s, AUCState):
            results[k] = auc_result(s)
        else:
            results[k] = math.sqrt(mean_result(s)) if k in roots else mean_result(s)
    return results
