"""The train and eval steps: pure functions of (state, batch), compiled with ``torch.compile``.

``step(state, batch) -> (state, logs)`` is built from ``torch.func.grad_and_value`` over a loss
function ``loss_fn(params, batch)`` (or ``loss_fn(params, batch, hparams)``), followed by an
optimizer update. The state is a ``TrainState`` NamedTuple (params, optimizer state with its
hyperparameters as tensors, step count, the loss's hyperparameters as tensors, a random key): a
pytree that can be checkpointed, stacked and vmapped. The step does not mutate the state it is given; it
returns a new one (callers should drop the old one, as JAX users do with donated buffers).
"""

from __future__ import annotations

import contextlib
import inspect
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import torch
from torch import nn

from .. import random, tree
from .._transforms import differentiating_levels, inside_transforms, vmap_levels
from ..models.base import Params, _allow_row_views, loss_fn_of
from ..optim.base import GradientTransformation, apply_updates, hparam
from ..optim.sparse import RowIds, RowView, unique_ids
from . import distributed as _distributed
from ._allocator import keep_freed_memory
from .autocompile import AutoCompile

__all__ = [
    "TrainState",
    "init_state",
    "make_train_step",
    "make_eval_step",
    "maybe_compile",
    "step_hparams",
]

Batch = Any
Logs = dict[str, torch.Tensor]


class TrainState(NamedTuple):
    """Everything a train step reads and writes.

    ``params``; ``opt_state`` (its hyperparameters as tensors); ``step`` (int64 count);
    ``hparams``, the loss's own hyperparameters as float32 0-d tensors (temperature, loss weights,
    L2 penalty, dropout rate: ``{}`` when the loss has none); ``key``, the random key of the run
    (``torchrs_fn.random``; ``init_state`` always sets one).

    No field is ever None (``()`` stands for "nothing", an empty node in every pytree library), so
    ``torch.vmap(step, in_dims=(0, None))`` over states stacked with ``tree.stack`` works as it is.
    """

    params: Params
    opt_state: Any
    step: torch.Tensor
    hparams: dict[str, torch.Tensor] = {}  # noqa: RUF012 (never mutated: states are replaced)
    key: torch.Tensor | tuple = ()


def init_state(
    params: Params,
    optimizer: GradientTransformation,
    *,
    hparams: dict[str, float | torch.Tensor] | None = None,
    seed: int = 0,
) -> TrainState:
    """A fresh ``TrainState``: the optimizer's ``init(params)`` and a step count of 0.

    Args:
        params: the parameter tree (e.g. from ``torchrs_fn.init``).
        optimizer: a ``GradientTransformation``.
        hparams: the loss's hyperparameters, e.g. ``{"temperature": 0.1, "l2": 1e-4}``; stored
            as float32 0-d tensors and handed to a loss function that takes a third argument
            (``loss_fn(params, batch, hparams)``), so a sweep can vary them.
        seed: seeds the run's random stream (dropout, sampled negatives; default 0): a loss that
            takes ``hparams`` receives a fresh key each step as ``hparams["key"]``
            (``random.fold_in(key, step)``).
    """
    if not isinstance(optimizer, GradientTransformation):
        raise TypeError(
            f"init_state: optimizer must be a GradientTransformation (e.g. optim.adagrad(0.1)), "
            f"got {type(optimizer).__name__}"
        )
    leaves = [x for x in tree.leaves(params) if isinstance(x, torch.Tensor)]
    like = leaves[0] if leaves else None
    device = like.device if like is not None else None
    loss_hparams = {}
    for name, value in (hparams or {}).items():
        if not isinstance(name, str) or name == "key":
            raise ValueError(
                f"init_state: hparams names must be strings other than 'key', got {name!r}"
            )
        loss_hparams[name] = hparam(value, like)
    return TrainState(
        params,
        optimizer.init(params),
        torch.zeros((), dtype=torch.int64, device=device),
        loss_hparams,
        random.key(seed, device=device),
    )


_MIN_COMPILE = (2, 13)


def compile_supported(version: str | None = None) -> bool:
    """Whether ``torch`` (or the release ``version``) is new enough to compile the steps."""
    release = (version or torch.__version__).split("+")[0].split(".")
    try:
        major, minor = int(release[0]), int(release[1])
    except (IndexError, ValueError):
        return True  # an unusual local build: assume it is recent
    return (major, minor) >= _MIN_COMPILE


def maybe_compile(fn: Callable, compile: bool | str | dict, name: str) -> Callable:
    """``fn`` compiled as ``compile`` says: ``"auto"`` (``AutoCompile``: compile once it pays back),
    ``True`` (``torch.compile`` now), ``False`` (eager) or a dict of ``torch.compile`` options.

    Shapes are static by default (``dynamic=False``): under ``True`` a final smaller batch
    compiles once more instead of switching the whole step to symbolic shapes; under ``"auto"``
    it runs eagerly.
    """
    if compile is False:
        return fn
    if not compile_supported():
        message = (
            f"{name}: torch.compile of this library's steps needs torch {_MIN_COMPILE[0]}."
            f"{_MIN_COMPILE[1]} or newer, found {torch.__version__}: older Dynamo releases fail "
            "on functorch's transform levels and named tuples, and one compiled gradient came "
            "out wrong (docs/reliability.md)"
        )
        if compile == "auto":  # a speed choice: run eagerly instead
            warnings.warn(message + "; running eagerly", RuntimeWarning, stacklevel=3)
            return fn
        raise RuntimeError(message + "; pass compile=False")
    if compile == "auto":
        return AutoCompile(fn, name)
    options = {"dynamic": False}
    if isinstance(compile, dict):
        options.update(compile)
    elif compile is not True:
        raise TypeError(
            f"{name}: compile must be 'auto', True, False or a dict of torch.compile options, "
            f"got {compile!r}"
        )
    return torch.compile(fn, **options)


def _takes_hparams(fn: Callable) -> bool:
    """Whether ``fn`` accepts a third positional argument (the hyperparameters)."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return False
    positional = [
        p
        for p in sig.parameters.values()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)
    ]
    return len(positional) >= 3 or any(p.kind == p.VAR_POSITIONAL for p in positional)


def _as_loss_fn(loss: Callable | nn.Module) -> tuple[Callable, bool]:
    """``(loss_fn, takes_hparams)`` for a loss function or a ``Model``."""
    if isinstance(loss, nn.Module):
        compute = getattr(loss, "compute_loss", None)
        takes = compute is not None and "hparams" in inspect.signature(compute).parameters
        return loss_fn_of(loss, training=True), takes
    if not callable(loss):
        raise TypeError(
            f"expected a loss function (params, batch) -> loss or a Model, got {type(loss).__name__}"
        )
    return loss, _takes_hparams(loss)


def step_hparams(state: TrainState) -> dict[str, torch.Tensor]:
    """What the loss receives as ``hparams`` at this step: the state's loss hyperparameters and,
    when the state has a key, ``"key"``: ``random.fold_in(state.key, state.step)``."""
    out = dict(state.hparams)
    if isinstance(state.key, torch.Tensor):
        out["key"] = random.fold_in(state.key, state.step)
    return out


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


PRECISIONS = ("fp32", "bf16")


def _precision_context(precision: str, like: Any) -> Any:
    """``torch.autocast`` to bfloat16 on the device of ``like``'s tensors for ``"bf16"``; else a
    no-op context."""
    if precision == "fp32":
        return contextlib.nullcontext()
    leaves = [x for x in tree.leaves(like) if isinstance(x, torch.Tensor)]
    device_type = leaves[0].device.type if leaves else "cpu"
    return torch.autocast(device_type=device_type, dtype=torch.bfloat16)


def _check_precision(precision: str, name: str) -> None:
    if precision not in PRECISIONS:
        raise ValueError(f"{name}: precision must be one of {PRECISIONS}, got {precision!r}")


def _plain_autograd_applies(state: TrainState, batch: Batch) -> bool:
    """Whether the eager step may take its gradient with plain ``torch.autograd``.

    Outside every transform, with nothing in the state or batch already recording a graph, plain
    autograd gives the gradient ``torch.func.grad_and_value`` gives, without its per-call
    overhead and without importing Dynamo (``torch.func``'s backward imports it, about 1 s on a
    small CPU, which a short eager run would pay for nothing). Traced by ``torch.compile``,
    under an outer ``torch.func`` transform or with leaves that require grad (an outer
    ``torch.autograd`` derivative through the step), the step uses ``torch.func``.
    """
    if torch.compiler.is_compiling() or inside_transforms() or not torch.is_grad_enabled():
        return False
    return not any(
        isinstance(x, torch.Tensor) and x.requires_grad for x in tree.leaves((state, batch))
    )


def _autograd_grad_and_value(
    fn: Callable[..., tuple[torch.Tensor, Logs]], params: Params, batch: Batch, hp: dict
) -> tuple[Params, tuple[torch.Tensor, Logs]]:
    """``torch.func.grad_and_value(fn, has_aux=True)(params, batch, hp)`` with plain autograd
    (for ``_plain_autograd_applies``): gradients of unused parameters are zeros, values are
    detached, as ``torch.func`` returns them."""
    leaves, spec = tree.leaves(params), tree.structure(params)
    diff = [isinstance(x, torch.Tensor) and x.is_floating_point() for x in leaves]
    inputs = [x.detach().requires_grad_() if d else x for x, d in zip(leaves, diff)]
    loss_value, aux = fn(tree.unflatten(spec, inputs), batch, hp)
    wrt = [x for x, d in zip(inputs, diff) if d]
    grads = iter(
        torch.autograd.grad(loss_value, wrt, allow_unused=True, materialize_grads=True)
        if wrt
        else ()
    )
    flat = [next(grads) if d else torch.zeros_like(x) for x, d in zip(leaves, diff)]
    detached = {k: v.detach() if isinstance(v, torch.Tensor) else v for k, v in aux.items()}
    return tree.unflatten(spec, flat), (loss_value.detach(), detached)


def make_train_step(
    loss: Callable[[Params, Batch], Any] | nn.Module,
    optimizer: GradientTransformation,
    *,
    compile: bool | str | dict = "auto",
    precision: str = "fp32",
    distributed: bool | str = "auto",
    sparse_tables: Mapping[str, str | Sequence[str]] | None = None,
) -> Callable[[TrainState, Batch], tuple[TrainState, Logs]]:
    """Build ``step(state, batch) -> (new_state, logs)``.

    Args:
        loss: ``loss_fn(params, batch)`` returning a scalar loss or ``(loss, logs)``; or a
            ``Model`` (its ``compute_loss(batch, training=True)`` is used). A loss function with a
            third parameter, ``loss_fn(params, batch, hparams)``, (or a ``compute_loss`` with an
            ``hparams`` parameter) receives the state's loss hyperparameters as tensors, plus
            ``hparams["key"]``, this step's random key (see ``init_state``).
        optimizer: a ``GradientTransformation`` (e.g. ``optim.adagrad(0.1)``).
        compile: ``"auto"`` (default) runs eagerly and compiles once the rest of the run pays
            back the compile (``train.AutoCompile``: a short run stays eager, a long one
            compiles after a few steps, one graph for the common batch shape); ``True``
            compiles with ``torch.compile(dynamic=False)`` at the first call; ``False`` runs
            eagerly (for debugging); a dict is passed as options to ``torch.compile`` (e.g.
            ``{"fullgraph": True}``).
        precision: ``"fp32"`` (default) or ``"bf16"``: mixed precision. The loss function runs
            under ``torch.autocast(dtype=torch.bfloat16)`` on the parameters' device, so matrix
            products and convolutions run in bfloat16 while the parameters (the master
            weights), their gradients and the optimizer state stay float32. The library's
            losses compute in float32 whatever dtype reaches them (on a CPU, autocast itself
            leaves softmax, ``logsumexp`` and sums in bfloat16), and a loss function's
            bfloat16 result is cast to float32. On a CPU with AVX-512 BF16 / AMX or on a
            GPU this is several times faster for dense layers; results differ from float32 at
            bfloat16's 3 significant digits per product, so compare metrics, not bits.
        distributed: data parallelism (``train.distributed``). When a process group of several
            ranks is initialised as the step is built, the gradients are all-reduced across
            ranks before the optimizer update (``distributed.average_gradients``): ``"auto"``
            (default) and ``True`` average them, ``"sum"`` adds them up (see
            ``train.distributed`` for what 2 ranks x batch B then equal), False never
            reduces. In a single process every choice changes nothing. ``"auto"`` leaves a
            vmapped (sweep) step alone; under data parallelism ``compile="auto"`` runs eagerly
            (each rank would time its steps and switch on its own; pass ``True`` to compile).
        sparse_tables: row-sparse updates for embedding tables (``optim.sparse``):
            ``{table path: batch column or columns holding its ids}``, e.g.
            ``{"query.embedding.weight": "user_id", "candidate.embedding.weight":
            ["item_id", "history"]}``. The step then gathers, differentiates, optimizes and
            writes back only the rows the batch holds, so its cost does not grow with the
            table's size. It **consumes the state**: the tables and their optimizer slots are
            updated in place (keep using the returned state, never the old one). SGD and
            Adagrad give the dense update's numbers; Adam and momentum become lazy (rows not
            in the batch do not move). Every id the loss looks up in a table must come from
            its columns; the first eager call checks it (a dense gradient must vanish outside
            the batch's rows).
            Under data parallelism each rank's row gradients are gathered into the union of
            all ranks' rows (``distributed.reduce_row_gradients``), so every rank applies the
            same update, equal to the dense all-reduced one. The first call builds the
            row view eagerly (under ``torch.compile(fullgraph=True)`` of a function that calls
            the step, call the step once before).

    Building a step raises glibc's mmap and trim thresholds (once per process), so that the
    step's large activations reuse freed heap memory instead of page-faulting fresh memory at
    every step (an eager listwise-tutorial epoch: 0.52-0.58 s against 0.67-0.83 s); the
    process then keeps up to its peak heap. ``TORCHRS_FN_MALLOC_TUNING=0`` opts out.

    ``logs`` holds ``"loss"`` and whatever the loss function reported, as 0-d tensors (no host
    sync inside the step). They are not detached: under an outer ``torch.func`` transform (a
    hypergradient through a step) a logged value keeps its derivative.
    """
    loss_fn, takes_hparams = _as_loss_fn(loss)
    _check_precision(precision, "make_train_step")
    keep_freed_memory()  # large activations reuse freed heap memory (train/_allocator.py)
    reduce = _distributed.resolve_gradient_reduction(distributed, "make_train_step")
    columns = _sparse_columns(sparse_tables)
    if reduce is not None and compile == "auto":
        compile = False
    if reduce is not None and not columns:
        # (A row-sparse step combines its ranks' rows itself: combine_grads below.)
        optimizer = _distributed.average_gradients(
            optimizer,
            reduce=reduce,
            outside_compile=compile is not False,
            _skip_under_vmap=distributed == "auto",
        )

    def with_aux(params: Params, batch: Batch, hp: dict) -> tuple[torch.Tensor, Logs]:
        with _precision_context(precision, params):
            out = loss_fn(params, batch, hp) if takes_hparams else loss_fn(params, batch)
        loss_value, aux = _split_aux(out)
        if loss_value.dtype in (torch.bfloat16, torch.float16):
            loss_value = loss_value.float()  # a float32 loss whatever ran inside
        return loss_value, aux

    grad_fn = torch.func.grad_and_value(with_aux, has_aux=True)

    def grads_and_loss(state: TrainState, params: Params, batch: Batch):
        if _plain_autograd_applies(state, batch):
            return _autograd_grad_and_value(with_aux, params, batch, step_hparams(state))
        return grad_fn(params, batch, step_hparams(state))

    def check_hparams(state: TrainState) -> None:
        if state.hparams and not takes_hparams:
            raise TypeError(
                f"the state carries loss hyperparameters {sorted(state.hparams)}, but the loss "
                "does not take them: define loss_fn(params, batch, hparams) (or "
                "compute_loss(batch, training, hparams) on a Model)"
            )

    def step(state: TrainState, batch: Batch) -> tuple[TrainState, Logs]:
        check_hparams(state)
        grads, (loss_value, aux) = grads_and_loss(state, state.params, batch)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = apply_updates(state.params, updates)
        # Not detached: under an outer torch.func transform a logged value keeps its derivative
        # (torch.func already returns them free of the inner gradient's graph).
        logs = {"loss": loss_value, **aux}
        return state._replace(params=params, opt_state=opt_state, step=state.step + 1), logs

    if not columns:
        return maybe_compile(step, compile, "make_train_step")

    view: list[RowView] = []  # built at the first call, from the state's parameter tree

    def combine_grads(grads: Params, rows: dict[str, RowIds]) -> tuple[Params, dict[str, RowIds]]:
        # Data parallelism: the dense leaves all-reduced as usual, each table's row gradients
        # gathered into the union of every rank's rows. A sweep's vmapped step (distributed=
        # "auto") is never averaged, as in the dense step.
        if reduce is None or (distributed == "auto" and vmap_levels()):
            return grads, rows
        leaves, average = tree.leaves(grads), reduce == "mean"
        table_at = {view[0].index[path]: path for path in columns}
        dense = {i: leaf for i, leaf in enumerate(leaves) if i not in table_at}
        dense = (
            _distributed.all_reduce_mean(dense) if average else _distributed.all_reduce_sum(dense)
        )
        rows, table_grads = _distributed.reduce_row_gradients(
            rows, {path: leaves[i] for i, path in table_at.items()}, average=average
        )
        out = [table_grads[table_at[i]] if i in table_at else dense[i] for i in range(len(leaves))]
        return tree.unflatten(tree.structure(grads), out), rows

    if compile is not False:
        combine_grads = torch.compiler.disable(combine_grads)  # host-side collectives

    def sparse_step(
        state: TrainState, batch: Batch, active: torch.Tensor | None = None
    ) -> tuple[TrainState, Logs]:
        # ``active`` (private, for make_sweep_step): a configuration that is not active or whose
        # loss is not finite writes its old rows back, since the tables are updated in place and
        # the sweep cannot restore them afterwards.
        check_hparams(state)
        rows, view_batch = _row_batch(columns, batch)
        view_params, view_state = view[0].gather(state.params, state.opt_state, rows)
        grads, (loss_value, aux) = grads_and_loss(state, view_params, view_batch)
        if reduce is not None:
            # Under data parallelism the update runs on every rank's rows (the same on each).
            grads, union = combine_grads(grads, rows)
            if union is not rows:
                rows = union
                view_params, view_state = view[0].gather(state.params, state.opt_state, rows)
        updates, new_view_state = optimizer.update(grads, view_state, view_params)
        new_view_params = apply_updates(view_params, updates)
        if active is not None:
            applied = active & torch.isfinite(loss_value)
            keep = lambda n, o: torch.where(applied, n, o)  # noqa: E731
            new_view_params = tree.map(keep, new_view_params, view_params)
            new_view_state = tree.map(keep, new_view_state, view_state)
        params, opt_state = view[0].scatter(
            state.params,
            state.opt_state,
            view_params,
            view_state,
            new_view_params,
            new_view_state,
            rows,
            stacked=active is not None,
        )
        logs = {"loss": loss_value, **aux}
        return state._replace(params=params, opt_state=opt_state, step=state.step + 1), logs

    compiled = maybe_compile(sparse_step, compile, "make_train_step")

    def first_call_checks(state: TrainState, batch: Batch) -> None:
        check_hparams(state)
        rows, view_batch = _row_batch(columns, batch)
        view_params, _ = view[0].gather(state.params, state.opt_state, rows)
        hp = step_hparams(state)
        hint = (
            f"the loss reads rows of a sparse table ({sorted(columns)}) other than those of the "
            "batch columns named for it (sampled negatives? a column missing from the mapping? "
            "ids hashed inside the model? a penalty over the whole table?), or uses the table's "
            "row count"
        )
        # The dense gradient must vanish outside the batch's rows: else the loss reads rows the
        # view does not hold, and the row-sparse step would silently differ from the dense one.
        grads, (dense, _) = _autograd_grad_and_value(with_aux, state.params, batch, hp)
        flat = dict(tree.flatten_with_paths(grads))
        for path in columns:
            g = flat[path]
            touched = torch.zeros(g.shape[0], dtype=torch.bool, device=g.device)
            touched[rows[path].ids[rows[path].valid]] = True
            outside = g[~touched]
            if outside.numel() and bool((outside != 0).any()):
                count = int((outside != 0).reshape(outside.shape[0], -1).any(1).sum())
                raise ValueError(
                    f"make_train_step: sparse table {path!r} has a non-zero gradient in {count} "
                    f"rows the batch's ids do not name: {hint}"
                )
        with torch.no_grad():
            try:
                sparse, _ = with_aux(view_params, view_batch, hp)
            except (IndexError, RuntimeError, ValueError) as e:
                raise ValueError(
                    f"make_train_step: with sparse_tables the loss fails ({e}): {hint}"
                ) from e
        if not torch.allclose(dense, sparse, rtol=1e-4, atol=1e-6, equal_nan=True):
            raise ValueError(
                f"make_train_step: with sparse_tables the loss is {float(sparse)!r}, without it "
                f"{float(dense)!r}: {hint}"
            )

    @torch.compiler.disable
    def build_view(params: Params) -> None:
        # Once, and eagerly even when a caller compiles the step (it traces optimizer.init on
        # meta tensors).
        if not view:
            view.append(RowView(optimizer, params, list(columns)))

    def check_one(state: TrainState, batch: Batch) -> None:
        # The first call's check; make_sweep_step, whose calls all run under vmap, runs it on
        # one configuration's (unstacked) state.
        with _allow_row_views():
            build_view(state.params)
            first_call_checks(state, batch)

    def outer(
        state: TrainState, batch: Batch, _active: torch.Tensor | None = None
    ) -> tuple[TrainState, Logs]:
        if not view and not torch.compiler.is_compiling() and not inside_transforms():
            check_one(state, batch)
        with _allow_row_views():
            if not view:  # read here, so that a compiled caller does not call build_view again
                build_view(state.params)
            if _active is None:
                return compiled(state, batch)
            return compiled(state, batch, _active)

    outer._check_sparse = check_one  # type: ignore[attr-defined]
    return outer


def _sparse_columns(
    sparse_tables: Mapping[str, str | Sequence[str]] | None,
) -> dict[str, tuple[str, ...]]:
    """``sparse_tables`` checked, each value as a tuple of column names."""
    if not sparse_tables:
        return {}
    if not isinstance(sparse_tables, Mapping):
        raise TypeError(
            "make_train_step: sparse_tables must be a mapping {table path: column or columns}, "
            f"got {type(sparse_tables).__name__}"
        )
    out: dict[str, tuple[str, ...]] = {}
    owner: dict[str, str] = {}
    for path, cols in sparse_tables.items():
        names = (cols,) if isinstance(cols, str) else tuple(cols)
        if not names or not all(isinstance(c, str) for c in names):
            raise TypeError(
                f"make_train_step: sparse_tables[{path!r}] must name one or more batch columns, "
                f"got {cols!r}"
            )
        for c in names:
            if c in owner:
                raise ValueError(
                    f"make_train_step: batch column {c!r} is named for two sparse tables, "
                    f"{owner[c]!r} and {path!r}; a column's ids index one table"
                )
            owner[c] = path
        out[path] = names
    return out


def _row_batch(
    columns: dict[str, tuple[str, ...]], batch: Batch
) -> tuple[dict[str, RowIds], Batch]:
    """The rows each table's columns touch, and the batch with those columns as slot numbers."""
    if not isinstance(batch, Mapping):
        raise TypeError(
            f"sparse_tables needs a batch that is a mapping of columns, got {type(batch).__name__}"
        )
    view_batch = dict(batch)
    rows: dict[str, RowIds] = {}
    for path, names in columns.items():
        missing = [c for c in names if c not in batch]
        if missing:
            raise KeyError(
                f"sparse table {path!r}: the batch has no column {missing[0]!r}; it has "
                f"{sorted(batch)}"
            )
        parts = [batch[c] for c in names]
        r = unique_ids(
            torch.cat([p.reshape(-1).to(torch.int64) for p in parts])
            if len(parts) > 1
            else parts[0]
        )
        rows[path] = r
        start = 0
        flat = r.inverse.reshape(-1)
        for c, part in zip(names, parts):
            view_batch[c] = flat[start : start + part.numel()].reshape(part.shape).to(part.dtype)
            start += part.numel()
    return rows, view_batch


def make_eval_step(
    fn: Callable[..., dict[str, torch.Tensor]],
    *,
    compile: bool | str | dict = "auto",
    precision: str = "fp32",
) -> Callable[..., dict[str, torch.Tensor]]:
    """Build ``eval_step(params, batch, *context) -> dict of tensors`` (no gradients).

    ``fn(params, batch, *context)`` returns named values: ``[B]`` per-example values (e.g. top-k
    hits, per-example losses) are averaged over examples by ``evaluate``; 0-d values (e.g. a
    batch loss) are averaged over batches weighted by batch size, as Keras does for its loss.
    ``context`` carries what is computed once per evaluation, e.g. the candidate embeddings.
    ``compile`` and ``precision`` are as for ``make_train_step``; like it, building an eval
    step raises glibc's mmap and trim thresholds once per process (``TORCHRS_FN_MALLOC_TUNING=0``
    opts out), so that large score blocks reuse freed heap memory.
    """
    _check_precision(precision, "make_eval_step")
    keep_freed_memory()  # as make_train_step (train/_allocator.py)

    def eval_step(params: Params, batch: Batch, *context: Any) -> dict[str, torch.Tensor]:
        if differentiating_levels():
            raise RuntimeError(
                "an eval step runs without gradients (torch.no_grad), so a derivative through it "
                "would be silently 0: differentiate the function you passed to make_eval_step "
                "instead"
            )
        with torch.no_grad(), _precision_context(precision, params):
            out = fn(params, batch, *context)
        if not isinstance(out, dict):
            raise TypeError(f"an eval function returns a dict of tensors, got {type(out).__name__}")
        return out

    return maybe_compile(eval_step, compile, "make_eval_step")
