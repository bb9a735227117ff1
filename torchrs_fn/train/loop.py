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
from . import distributed
from .checkpoint import Checkpoint, Checkpointer
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


# world_size too: under data parallelism the global batches depend on W x batch_size, so a
# resume on another number of ranks would replay other batches (the rank is not kept: every
# rank resumes from rank 0's checkpoint).
_LOADER_SETTINGS = ("num_rows", "batch_size", "shuffle", "seed", "drop_remainder", "world_size")


def _loader_settings(loader: Any) -> dict[str, Any]:
    """What a checkpoint remembers of the loader, to refuse a resume that would replay other
    batches."""
    out: dict[str, Any] = {}
    for name in _LOADER_SETTINGS:
        value = getattr(loader, name, None)
        if isinstance(value, (bool, int, float, str)):
            out[name] = value
    if hasattr(loader, "__len__"):
        out["batches"] = len(loader)
    return out


def _global_step(state: Any) -> int:
    """The state's step count (the first one of a stacked sweep state); 0 without one."""
    step = getattr(state, "step", None)
    if isinstance(step, torch.Tensor) and step.numel():
        return int(step.reshape(-1)[0])
    return 0


def _resume(
    checkpoint: Checkpointer, state: TrainState, loader: Any, epochs: int
) -> Checkpoint | None:
    if not isinstance(checkpoint, Checkpointer):
        raise TypeError(
            f"fit: checkpoint must be a train.Checkpointer or None, got {type(checkpoint).__name__}"
        )
    if not (hasattr(loader, "epoch_batches") and hasattr(loader, "set_epoch")):
        raise TypeError(
            "fit: checkpoint=... needs a loader that can replay an epoch from any batch "
            f"(data.Loader: epoch_batches(epoch, start=i), set_epoch); got {type(loader).__name__}"
        )
    found = checkpoint.latest(like=state)
    if found is None:
        return None
    settings = _loader_settings(loader)
    differ = [k for k, v in found.loader.items() if k in settings and settings[k] != v]
    if differ:
        saved = ", ".join(f"{k}={found.loader[k]!r}" for k in differ)
        now = ", ".join(f"{k}={settings[k]!r}" for k in differ)
        raise ValueError(
            f"fit: the checkpoint {found.path} was written with a loader of {saved}; this loader "
            f"has {now}. Resuming would not replay the same batches: use the same loader "
            "settings, or a fresh checkpoint directory"
        )
    if found.epoch > epochs or (found.epoch == epochs and found.batch > 0):
        raise ValueError(
            f"fit: the checkpoint {found.path} is past the end of this run (epoch "
            f"{found.epoch + 1 if found.batch else found.epoch}, epochs={epochs}); ask for at "
            "least that many epochs, or use a fresh checkpoint directory"
        )
    return found


def fit(
    step: Callable[[TrainState, Any], tuple[TrainState, dict[str, torch.Tensor]]],
    state: TrainState,
    loader: Iterable,
    *,
    epochs: int = 1,
    eval_fn: Callable[[TrainState], dict[str, float]] | None = None,
    verbose: bool = True,
    stream: TextIO | None = None,
    checkpoint: Checkpointer | None = None,
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
        checkpoint: a ``train.Checkpointer``. When its directory holds a valid checkpoint, the
            run resumes from it: ``state`` (pass the freshly initialised one, as usual) serves
            only as the template its leaves must match; the state, epoch, batch within the
            epoch, history and the partial epoch's log sums come from the checkpoint. The run
            saves after every ``checkpoint.every_steps``-th global step and at the end of every
            epoch (after ``eval_fn``). Needs a ``data.Loader`` (it replays an epoch from any
            batch) and a loader with the settings the checkpoint was written with.

    Returns:
        The final state and one dict per epoch: ``epoch``, ``loss`` (mean over the epoch's batches,
        weighted by batch size, as Keras reports it; over a loader sharded across ranks, the
        mean over every rank's batches), ``epoch_seconds`` (wall clock),
        ``epoch_cpu_seconds`` (process CPU time, all threads), ``steps``, the mean of every
        other value the step logged, and the evaluation results if ``eval_fn`` was given.

    A resumed run is exact: its final state and its history's logged values are bit-identical to
    those of an uninterrupted run whose step runs the same code (``compile=False``, or ``True``
    on both). Under ``compile="auto"`` the switch to the compiled step depends on measured step
    times and on the steps left, so a resumed run may switch at another step than the
    uninterrupted one and agree with it to rounding only. ``epoch_seconds`` of a resumed epoch
    adds the time before its checkpoint to the time after the resume.
    """
    if not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"fit: epochs must be an int >= 1, got {epochs!r}")
    stream = stream if stream is not None else sys.stderr
    history: list[dict[str, Any]] = []
    total = len(loader) if hasattr(loader, "__len__") else None
    done_epochs, first_batch = 0, 0
    resumed_sums: dict[str, MeanState] = {}
    resumed_elapsed = (0.0, 0.0)
    loader_epoch = global_step = 0
    settings: dict[str, Any] = {}
    if checkpoint is not None:
        found = _resume(checkpoint, state, loader, epochs)
        settings = _loader_settings(loader)
        loader_epoch, global_step = getattr(loader, "epoch", 0), _global_step(state)
        if found is not None:
            state, history = found.state, list(found.history)
            done_epochs, first_batch, loader_epoch = found.epoch, found.batch, found.loader_epoch
            resumed_sums, resumed_elapsed = dict(found.sums), found.elapsed
            global_step = found.step
            if verbose:
                stream.write(
                    f"resuming from {found.path}: step {found.step}, epoch {found.epoch + 1} "
                    f"at batch {found.batch}\n"
                )
                stream.flush()
    if total is not None and hasattr(step, "plan"):
        # An AutoCompile step compiles only if the rest of the run pays it back.
        step.plan(max(epochs * total - (done_epochs * total + first_batch), 0))
    every = checkpoint.every_steps if checkpoint is not None else None
    for epoch in range(done_epochs + 1, epochs + 1):
        bar = ProgressBar(total, f"epoch {epoch}/{epochs}", stream) if verbose else None
        sums, steps = resumed_sums, first_batch
        start = time.perf_counter() - resumed_elapsed[0]
        cpu_start = time.process_time() - resumed_elapsed[1]
        resumed_sums, resumed_elapsed, first_batch = {}, (0.0, 0.0), 0
        if bar is not None:
            bar.n = steps
        if checkpoint is not None:
            this_loader_epoch = loader_epoch
            loader.set_epoch(this_loader_epoch + 1)  # where iter() would leave it
            loader_epoch += 1
            batches: Iterable = loader.epoch_batches(this_loader_epoch, start=steps)
        else:
            batches = loader
        for batch in batches:
            state, logs = step(state, batch)
            size = _batch_size(batch)
            for k, v in logs.items():
                sums[k] = mean_update(sums.get(k) or mean_init(v.device), v.detach(), float(size))
            steps += 1
            if bar is not None:
                bar.update(1, lambda s=sums: f"loss {mean_result(s['loss']):.4g}")
            if checkpoint is not None:
                global_step += 1
                # The epoch's last step is saved by the end-of-epoch checkpoint just after.
                if every and global_step % every == 0 and (total is None or steps < total):
                    checkpoint.save(
                        Checkpoint(
                            state,
                            global_step,
                            epoch=epoch - 1,
                            batch=steps,
                            loader_epoch=this_loader_epoch,
                            history=history,
                            sums=sums,
                            elapsed=(time.perf_counter() - start, time.process_time() - cpu_start),
                            loader=settings,
                        )
                    )
        if steps == 0:
            raise ValueError(
                "fit: the loader yielded no batch (is it empty, or drop_remainder with too few rows?)"
            )
        record: dict[str, Any] = {"epoch": epoch}
        if distributed._is_sharded(loader):
            # A sharded loader's ranks each saw a share: report the mean over all of them.
            record.update(
                {k: mean_result(s) for k, s in distributed.merge_accumulators(sums).items()}
            )
        else:
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
        if checkpoint is not None:
            checkpoint.save(
                Checkpoint(
                    state,
                    global_step,
                    epoch=epoch,
                    batch=0,
                    loader_epoch=loader_epoch,
                    history=history,
                    loader=settings,
                )
            )
    if checkpoint is not None:
        loader.set_epoch(loader_epoch)  # as an uninterrupted run leaves it
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

    Over a ``data.Loader`` sharded across ranks (``train.distributed``) the accumulators are
    merged across ranks before the results are read, so every rank returns the metrics of the
    whole data.

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
    if distributed._is_sharded(loader):
        sums = distributed.merge_accumulators(sums)  # every rank's examples
    results = {}
    for k, s in sums.items():
        if isinstance(s, AUCState):
            results[k] = auc_result(s)
        else:
            results[k] = math.sqrt(mean_result(s)) if k in roots else mean_result(s)
    return results
