"""Hyperparameter sweeps: N configurations trained at once by one compiled, vmapped step.

Every hyperparameter lives in the train state as a tensor (the optimizer's in ``opt_state``, the
loss's in ``state.hparams``, the random stream in ``state.key``), so N configurations are N states
stacked along a new leading axis, and ``torch.vmap(step)`` trains them together on each shared
batch. A configuration's result equals a separate run of the same step from the same state: the
same initial parameters (from its seed), the same random stream (from its seed), the same batches.

    result = train.sweep(
        model, optim.adagrad(0.1),
        params=lambda seed: rs.init(model, seed),
        configs=[{"learning_rate": lr, "temperature": t} for lr in lrs for t in temps],
        hparams={"temperature": 0.1},          # the loss's hyperparameters and their defaults
        loader=train_loader, epochs=3,
        eval_fn=lambda state: {...},           # per configuration, after each epoch
        select="top_100",
    )
    result.best_config, result.history[i], result.state(i)

Stopping: a configuration whose loss becomes NaN or infinite is frozen at its last finite state
(the update that produced the bad loss is not applied) and reported in ``result.failed``; a
configuration can also be stopped early (``patience`` on the selected metric, or ``stop_fn``);
a stopped configuration's state no longer changes while the others go on.

Memory: ``memory_budget`` (bytes) splits the N configurations into chunks trained one after the
other, each padded to the same size so that one compiled step serves them all.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TextIO

import torch
from torch import nn
from torch.utils import _pytree as pytree

from .. import tree
from ..models.base import Params
from ..optim.base import GradientTransformation, hparam_names, set_hparams
from .loop import _batch_size
from .step import Batch, Logs, TrainState, init_state, make_train_step, maybe_compile

__all__ = ["sweep", "make_sweep_step", "stack_states", "SweepResult", "STATE_COPIES"]

STATE_COPIES = 4
"""Bytes per configuration are estimated as ``STATE_COPIES`` times its train state's size: the
state in, its gradients, the updates and the state out are alive together during a step
(activations come on top and are not counted)."""


def stack_states(states: Sequence[TrainState]) -> TrainState:
    """Stack N train states of the same structure into one ``[N, ...]`` state (``tree.stack``).

    Raises ``ValueError`` for an empty list, or naming the first state whose structure or leaf
    shapes differ from state 0's.
    """
    states = list(states)
    if not states:
        raise ValueError("stack_states: needs at least one state (N = 0)")
    spec = tree.structure(states[0])
    first = tree.leaves(states[0])
    for i, s in enumerate(states[1:], start=1):
        if tree.structure(s) != spec:
            raise ValueError(
                f"stack_states: state {i} has a different structure from state 0 (another "
                f"optimizer, other hyperparameter names or a missing seed?):\n  {tree.structure(s)}"
                f"\nvs\n  {spec}"
            )
        for (path, a), b in zip(tree.flatten_with_paths(s), first):
            if a.shape != b.shape or a.dtype != b.dtype:
                raise ValueError(
                    f"stack_states: leaf {path!r} of state {i} is {a.dtype}{list(a.shape)}, "
                    f"state 0 has {b.dtype}{list(b.shape)}"
                )
    return tree.stack(states)


def _leading_size(state: TrainState, name: str) -> int:
    paths = tree.flatten_with_paths(state)
    if not paths:
        raise ValueError(f"{name}: the stacked state has no tensors")
    for path, x in paths:
        if x.ndim == 0:
            raise ValueError(
                f"{name}: leaf {path!r} is 0-d; a stacked state has a leading configuration axis "
                "on every leaf (build it with stack_states)"
            )
    n = None
    for path, x in paths:
        if n is None:
            n = int(x.shape[0])
        elif x.shape[0] != n:
            raise ValueError(
                f"{name}: leaf {path!r} has leading size {x.shape[0]}, others have {n}; every "
                "leaf of a stacked state needs the same number of configurations"
            )
    if n == 0:
        raise ValueError(f"{name}: the stacked state holds no configuration (N = 0)")
    return int(n)


def make_sweep_step(
    loss: Callable[..., Any] | nn.Module,
    optimizer: GradientTransformation,
    *,
    compile: bool | str | dict = True,
    sparse_tables: Mapping[str, str | Sequence[str]] | None = None,
) -> Callable[[TrainState, torch.Tensor, Batch], tuple[TrainState, Logs, torch.Tensor]]:
    """Build ``sweep_step(states, active, batch) -> (states, logs, applied)`` over stacked states.

    ``states`` is a stacked ``TrainState`` (``stack_states``), ``active`` a ``[N]`` bool tensor and
    ``batch`` one batch shared by every configuration. It is ``torch.vmap`` of
    ``make_train_step``'s step, compiled as one graph (``compile`` as in ``make_train_step``).
    Configuration i's state is updated only where ``applied[i] = active[i] and its loss is
    finite``; elsewhere it is returned unchanged, so stopped or diverged configurations stay frozen.
    ``logs`` hold ``[N]`` tensors. ``sparse_tables`` as for ``make_train_step``: each
    configuration's tables are updated by rows, in place (the step consumes ``states``).
    """
    step = make_train_step(loss, optimizer, compile=False, sparse_tables=sparse_tables)
    compiled: dict[Any, Callable] = {}

    def masked(state: TrainState, active: torch.Tensor, batch: Batch):
        if sparse_tables:
            # The row-sparse step writes its tables in place, keeping the old rows itself where
            # a configuration is not applied; the tables it returns are the ones it was given,
            # and need no (table-sized) select here.
            new, logs = step(state, batch, _active=active)
        else:
            new, logs = step(state, batch)
        applied = active & torch.isfinite(logs["loss"])
        new = tree.map(lambda n, o: n if n is o else torch.where(applied, n, o), new, state)
        return new, logs, applied

    def vstep_for(states: TrainState) -> Callable:
        # torch.vmap's pytrees take None for a leaf. The library's states hold () instead, but a
        # hand-built or third-party state may hold None: map it with in/out dims of None. One
        # compiled function per structure.
        spec = tree.structure(states)
        if spec not in compiled:
            dims = pytree.tree_map(lambda x: 0 if isinstance(x, torch.Tensor) else None, states)
            compiled[spec] = maybe_compile(
                torch.vmap(masked, in_dims=(dims, 0, None), out_dims=(dims, 0, 0)),
                compile,
                "make_sweep_step",
            )
        return compiled[spec]

    checked: list[bool] = []

    def sweep_step(states: TrainState, active: torch.Tensor, batch: Batch):
        n = _leading_size(states, "sweep_step")
        if active.shape != (n,) or active.dtype != torch.bool:
            raise ValueError(
                f"sweep_step: active must be a bool tensor of shape [{n}], got "
                f"{active.dtype}{list(active.shape)}"
            )
        if sparse_tables and not checked and not torch.compiler.is_compiling():
            # The row-sparse step's first-call check (the loss looks up only the named columns'
            # ids), on the first configuration: under vmap it cannot run.
            step._check_sparse(tree.map(lambda x: x[0], states), batch)
            checked.append(True)
        if torch.compiler.is_compiling():
            # Traced by an outer torch.compile: build the vmapped step inline (the cache keyed by
            # tree structures is plain Python that Dynamo need not see).
            dims = pytree.tree_map(lambda x: 0 if isinstance(x, torch.Tensor) else None, states)
            vmapped = torch.vmap(masked, in_dims=(dims, 0, None), out_dims=(dims, 0, 0))
            return vmapped(states, active, batch)
        return vstep_for(states)(states, active, batch)

    return sweep_step


class SweepResult:
    """What ``sweep`` returns.

    Attributes:
        configs: the configurations, in the order given.
        history: ``history[i]`` is configuration i's list of per-epoch records (``epoch``,
            ``loss``, ``steps``, the step's other logs, the ``eval_fn`` results); a stopped
            configuration's list ends at the epoch it stopped in.
        stopped: ``{index: reason}`` for every configuration that stopped before the last epoch.
        failed: one dict per configuration whose loss became non-finite: ``index``, ``config``,
            ``epoch``, ``step`` (the global step whose loss was bad) and ``loss`` (that value).
        metric, mode: the selection rule (``select`` / ``mode`` of ``sweep``).
        seconds: wall-clock seconds of the whole sweep.
    """

    def __init__(
        self,
        configs: list[dict[str, Any]],
        history: list[list[dict[str, Any]]],
        states: list[TrainState],
        stopped: dict[int, str],
        failed: list[dict[str, Any]],
        metric: str | None,
        mode: str,
        seconds: float,
    ) -> None:
        self.configs, self.history, self._states = configs, history, states
        self.stopped, self.failed = stopped, failed
        self.metric, self.mode, self.seconds = metric, mode, seconds

    def state(self, index: int) -> TrainState:
        """Configuration ``index``'s final train state (unstacked)."""
        return self._states[index]

    def final(self, name: str) -> list[float]:
        """The last recorded value of ``name`` for every configuration (NaN where none)."""
        out = []
        for records in self.history:
            values = [r[name] for r in records if name in r]
            out.append(float(values[-1]) if values else float("nan"))
        return out

    def best(self, metric: str | None = None, mode: str | None = None) -> int:
        """Index of the best configuration by the last recorded ``metric`` (default ``select``).

        ``mode`` is ``"max"`` or ``"min"``; failed configurations and NaN values never win.
        """
        metric = metric or self.metric
        mode = mode or self.mode
        if metric is None:
            raise ValueError("SweepResult.best: name a metric (or pass select= to sweep)")
        if mode not in ("max", "min"):
            raise ValueError(f"SweepResult.best: mode must be 'max' or 'min', got {mode!r}")
        if not any(metric in r for records in self.history for r in records):
            known = sorted({k for records in self.history for r in records for k in r})
            raise KeyError(
                f"SweepResult.best: no configuration recorded {metric!r}; known: {known}"
            )
        failed = {f["index"] for f in self.failed}
        values = self.final(metric)
        candidates = [
            (v if mode == "max" else -v, -i)
            for i, v in enumerate(values)
            if i not in failed and not math.isnan(v)
        ]
        if not candidates:
            raise ValueError(f"SweepResult.best: every configuration failed or has NaN {metric}")
        return -max(candidates)[1]

    @property
    def best_index(self) -> int:
        """``best()`` with the sweep's own ``select`` and ``mode``."""
        return self.best()

    @property
    def best_config(self) -> dict[str, Any]:
        """The configuration at ``best_index``."""
        return self.configs[self.best_index]

    def table(self) -> list[dict[str, Any]]:
        """One row per configuration: its index, its values, its last record and its status."""
        failed = {f["index"] for f in self.failed}
        rows = []
        for i, (config, records) in enumerate(zip(self.configs, self.history)):
            last = dict(records[-1]) if records else {}
            status = "failed" if i in failed else ("stopped" if i in self.stopped else "done")
            rows.append({"index": i, **config, **last, "status": status})
        return rows


def _config_names(
    configs: Sequence[Mapping[str, Any]], opt_names: list[str], loss_names: list[str]
) -> None:
    for i, config in enumerate(configs):
        if not isinstance(config, Mapping):
            raise TypeError(f"sweep: configs[{i}] must be a dict, got {type(config).__name__}")
        for name in config:
            if name == "seed" or name in loss_names:
                continue
            if not any(f == name or f.endswith("." + name) for f in opt_names):
                raise KeyError(
                    f"sweep: configs[{i}] sets {name!r}, which is neither 'seed', a loss "
                    f"hyperparameter declared in hparams= ({loss_names}) nor one in the "
                    f"optimizer's state ({opt_names})"
                )


def _check_seed(i: int, seed: Any) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"sweep: configs[{i}]['seed'] must be an int, got {seed!r}")
    return seed


def sweep(
    loss: Callable[..., Any] | nn.Module,
    optimizer: GradientTransformation,
    *,
    params: Params | Callable[[int], Params],
    configs: Sequence[Mapping[str, Any]],
    loader: Iterable,
    epochs: int = 1,
    hparams: Mapping[str, float] | None = None,
    eval_fn: Callable[[TrainState], dict[str, float]] | None = None,
    select: str | None = None,
    mode: str = "max",
    patience: int | None = None,
    stop_fn: Callable[[int, list[dict[str, Any]]], bool] | None = None,
    memory_budget: int | None = None,
    compile: bool | str | dict = True,
    verbose: bool = True,
    stream: TextIO | None = None,
    sparse_tables: Mapping[str, str | Sequence[str]] | None = None,
) -> SweepResult:
    """Train N configurations at once with one compiled, vmapped step; evaluate each per epoch.

    Args:
        loss: as for ``make_train_step``: ``loss_fn(params, batch, hparams)`` (or a ``Model``
            whose ``compute_loss`` takes ``hparams``) reads the loss hyperparameters and the
            per-step random key ``hparams["key"]`` from there.
        optimizer: a ``GradientTransformation`` whose hyperparameters are constants (a float
            learning rate, not a schedule, if the learning rate is swept).
        params: the initial parameters, or ``seed -> params`` (e.g. ``lambda s: rs.init(model, s)``)
            so that each configuration's ``"seed"`` also chooses its initialisation.
        configs: N dicts. Keys: an optimizer hyperparameter (``learning_rate``, ``b1``,
            ``weight_decay``, ``momentum``, ... or a full name from ``optim.hparam_names``), a
            loss hyperparameter declared in ``hparams``, or ``"seed"`` (int, default 0: the
            initialisation and the random stream). Every configuration starts from the
            optimizer's and ``hparams``' values for what it does not set.
        loader: an iterable of batches, iterated once per epoch (and chunk); each batch is shared
            by all. A ``data.Loader`` is set to the right epoch for every chunk (``set_epoch``),
            so chunks see the batches one run would; another iterable must give the same batches
            each time it is iterated (a list does, a generator does not).
        epochs: passes over the loader.
        hparams: the loss's hyperparameters and their defaults, e.g. ``{"temperature": 0.1}``.
        eval_fn: ``state -> {name: float}``, called for each running configuration after each
            epoch with its (unstacked) state; the results join its history.
        select: the metric that picks the best configuration (``result.best_index``) and that
            ``patience`` watches: a key of ``eval_fn``'s results or ``"loss"``.
        mode: ``"max"`` (default) or ``"min"``: which end of ``select`` is best.
        patience: stop a configuration after this many epochs without an improvement of
            ``select`` (its state is frozen; the others go on).
        stop_fn: ``(index, history) -> bool``, called after each epoch for each running
            configuration; True stops it.
        memory_budget: bytes available for the stacked states; the N configurations are trained
            in chunks of at most ``budget // (STATE_COPIES * state bytes)``. Default: all at once.
        compile: as for ``make_train_step`` (the vmapped step is compiled once for all chunks).
        verbose: print one line per epoch to ``stream`` (default stderr).
        stream: where ``verbose`` prints.
        sparse_tables: row-sparse updates of embedding tables, as for ``make_train_step``.

    Returns:
        A ``SweepResult``.
    """
    start_time = time.perf_counter()
    configs = [dict(c) for c in configs]
    if not configs:
        raise ValueError("sweep: configs is empty (N = 0); give at least one configuration")
    if not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"sweep: epochs must be an int >= 1, got {epochs!r}")
    if mode not in ("max", "min"):
        raise ValueError(f"sweep: mode must be 'max' or 'min', got {mode!r}")
    if patience is not None and (select is None or not isinstance(patience, int) or patience < 1):
        raise ValueError("sweep: patience needs select= and must be an int >= 1")
    loss_defaults = dict(hparams or {})
    stream = stream if stream is not None else sys.stderr

    def params_for(seed: int) -> Params:
        p = params(seed) if callable(params) else params
        return tree.map(torch.clone, p)

    # One state per configuration, built as a separate run would build it.
    states = []
    opt_names: list[str] | None = None
    for i, config in enumerate(configs):
        seed = _check_seed(i, config.get("seed", 0))
        loss_values = {k: v for k, v in config.items() if k in loss_defaults}
        state = init_state(
            params_for(seed), optimizer, hparams={**loss_defaults, **loss_values}, seed=seed
        )
        if opt_names is None:
            opt_names = hparam_names(state.opt_state)
            _config_names(configs, opt_names, sorted(loss_defaults))
        opt_values = {k: v for k, v in config.items() if k != "seed" and k not in loss_defaults}
        states.append(state._replace(opt_state=set_hparams(state.opt_state, opt_values)))

    n = len(configs)
    chunk = n
    if memory_budget is not None:
        per_config = STATE_COPIES * tree.nbytes(states[0])
        chunk = int(memory_budget) // max(per_config, 1)
        if chunk < 1:
            raise ValueError(
                f"sweep: memory_budget={memory_budget} bytes is less than one configuration needs "
                f"(about {per_config} bytes: {STATE_COPIES} x its {tree.nbytes(states[0])}-byte "
                "train state)"
            )
        chunk = min(chunk, n)
    num_chunks = math.ceil(n / chunk)
    chunk = math.ceil(n / num_chunks)  # balanced chunks, all padded to the same size

    sweep_step = make_sweep_step(loss, optimizer, compile=compile, sparse_tables=sparse_tables)
    history: list[list[dict[str, Any]]] = [[] for _ in range(n)]
    stopped: dict[int, str] = {}
    failed: list[dict[str, Any]] = []
    final_states: list[TrainState] = []  # chunks run in order, so appending keeps the order
    best_so_far: dict[int, tuple[float, int]] = {}

    # Every chunk must see the batches a separate run would see: a loader with epochs (``Loader``)
    # is set back to the sweep's first epoch for each chunk.
    first_epoch = int(loader.epoch) if hasattr(loader, "set_epoch") else None

    for c0 in range(0, n, chunk):
        members = list(range(c0, min(c0 + chunk, n)))
        padded = members + [members[-1]] * (chunk - len(members))
        stacked = stack_states([states[i] for i in padded])
        device = tree.leaves(stacked)[0].device
        active = torch.tensor(
            [j < len(members) for j in range(chunk)], dtype=torch.bool, device=device
        )
        for epoch in range(1, epochs + 1):
            if not bool(active.any()):
                break
            was_active = active.clone()
            if first_epoch is not None:
                loader.set_epoch(first_epoch + epoch - 1)
            t0 = time.perf_counter()
            sums: dict[str, torch.Tensor] = {}
            counts = torch.zeros(chunk, dtype=torch.float64, device=device)
            bad_loss = torch.full((chunk,), float("nan"), dtype=torch.float64, device=device)
            bad_step = torch.full((chunk,), -1, dtype=torch.int64, device=device)
            steps = 0
            for batch in loader:
                step_before = stacked.step
                stacked, logs, applied = sweep_step(stacked, active, batch)
                size = float(_batch_size(batch))
                newly_bad = active & ~applied
                bad_loss = torch.where(newly_bad, logs["loss"].to(torch.float64), bad_loss)
                bad_step = torch.where(newly_bad, step_before, bad_step)
                weight = applied.to(torch.float64) * size
                for k, v in logs.items():
                    v64 = torch.where(applied, v.to(torch.float64), 0.0)
                    sums[k] = sums.get(k, 0.0) + v64 * weight
                counts = counts + weight
                active = applied
                steps += 1
            if steps == 0:
                raise ValueError("sweep: the loader yielded no batch")
            seconds = time.perf_counter() - t0
            was, now = was_active.tolist(), active.tolist()
            bad_l, bad_s = bad_loss.tolist(), bad_step.tolist()
            means = {k: (v / counts.clamp(min=1.0)).tolist() for k, v in sums.items()}
            count_l = counts.tolist()
            for j, i in enumerate(members):
                if not was[j]:
                    continue
                record: dict[str, Any] = {"epoch": epoch}
                for k, v in means.items():
                    record[k] = v[j] if count_l[j] > 0 else float("nan")
                record["epoch_seconds"] = seconds
                record["steps"] = steps
                if not now[j]:
                    failed.append(
                        {
                            "index": i,
                            "config": configs[i],
                            "epoch": epoch,
                            "step": int(bad_s[j]),
                            "loss": bad_l[j],
                        }
                    )
                    stopped[i] = f"non-finite loss {bad_l[j]} at step {int(bad_s[j])}"
                    record["status"] = "failed"
                elif eval_fn is not None:
                    record.update(eval_fn(tree.map(lambda x, j=j: x[j], stacked)))
                history[i].append(record)
            # Early stopping, after the epoch's records are complete.
            stop_now = []
            for j, i in enumerate(members):
                if not now[j]:
                    continue
                records = history[i]
                if patience is not None and select in records[-1]:
                    value = records[-1][select]
                    score = value if mode == "max" else -value
                    best, at = best_so_far.get(i, (-math.inf, 0))
                    if score > best:
                        best_so_far[i] = (score, epoch)
                    elif epoch - at >= patience:
                        stop_now.append(j)
                        stopped[i] = f"no improvement of {select} for {patience} epochs"
                        continue
                if stop_fn is not None and epoch < epochs and stop_fn(i, records):
                    stop_now.append(j)
                    stopped[i] = f"stop_fn at epoch {epoch}"
            if stop_now:
                mask = torch.ones(chunk, dtype=torch.bool, device=device)
                mask[stop_now] = False
                active = active & mask
            if verbose:
                running = int(active[: len(members)].sum())
                line = f"sweep configs {members[0]}-{members[-1]} · epoch {epoch}/{epochs} · "
                line += f"running {running}/{len(members)} · {seconds:.2f} s"
                if select is not None:
                    vals = [
                        (history[i][-1].get(select, float("nan")), i) for i in members if history[i]
                    ]
                    vals = [v for v in vals if not math.isnan(v[0])]
                    if vals:
                        v, i = max(vals) if mode == "max" else min(vals)
                        line += f" · best {select} {v:.4g} (config {i})"
                stream.write(line + "\n")
                stream.flush()
        final_states.extend(tree.map(lambda x, j=j: x[j], stacked) for j in range(len(members)))

    if first_epoch is not None:
        loader.set_epoch(first_epoch + epochs)  # where a separate run's loader would be now
    return SweepResult(
        configs,
        history,
        final_states,
        stopped,
        failed,
        select,
        mode,
        time.perf_counter() - start_time,
    )
