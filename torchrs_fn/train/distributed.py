"""Data-parallel training on ``torch.distributed``: one process per device, started by ``torchrun``.

Every rank holds the whole model and the same train state; each trains on its own shard of every
batch (``data.Loader`` shards by rank), the gradients are averaged across ranks before the
optimizer update, so the states stay identical. On CPU the backend is gloo, on CUDA NCCL (the
same code path; only gloo is tested here).

    from torchrs_fn import train
    from torchrs_fn.train import distributed

    distributed.init_from_env()          # torchrun's RANK / WORLD_SIZE / LOCAL_RANK; no-op alone
    loader = Loader(table, 4096, shuffle=True, seed=0)   # sharded by rank when initialised
    step = train.make_train_step(model, optimizer)       # distributed="auto": averages gradients
    state, history = train.fit(step, state, loader, epochs=3, verbose=distributed.is_main())

What 2 ranks x batch B equal (``make_train_step(distributed=...)``):

- ``"mean"`` (what ``"auto"`` and ``True`` choose): the applied gradient is the mean of the ranks'
  gradients, as ``DistributedDataParallel`` does. For a loss that is a *mean* over its batch
  this is the gradient of the mean over the global batch of ``world_size * B`` rows: training
  equals one process with batch ``world_size * B``. For a *sum* loss (TFRS's retrieval loss) it
  is ``1 / world_size`` of the global sum's gradient, the scale of one rank's batch.
- ``"sum"``: the applied gradient is the sum of the ranks' gradients. For a sum loss this equals
  one process with batch ``world_size * B`` (for the retrieval loss only when every query's
  softmax sees the same candidates: use ``gather_candidates``).

The loss each rank computes stays local; ``fit`` reports the mean over all ranks' batches of a
sharded loader, ``evaluate`` merges its accumulators across ranks of a sharded loader.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Sequence
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from .. import tree
from .._transforms import vmap_levels
from ..metrics.aggregate import MeanState
from ..metrics.ranking import AUCState
from ..optim.base import GradientTransformation
from ..optim.sparse import RowIds, unique_ids
from .checkpoint import Checkpoint, Checkpointer

__all__ = [
    "init_from_env",
    "shutdown",
    "is_active",
    "rank",
    "world_size",
    "local_rank",
    "is_main",
    "barrier",
    "all_reduce_mean",
    "all_reduce_sum",
    "average_gradients",
    "reduce_row_gradients",
    "resolve_gradient_reduction",
    "all_gather_rows",
    "gather_candidates",
    "merge_accumulators",
    "shard_configs",
    "MainRankCheckpointer",
    "BUCKET_BYTES",
]

BUCKET_BYTES = 25 * 1024 * 1024
"""Gradients are all-reduced in buckets of about this many bytes (as ``DistributedDataParallel``
does): few enough collectives to amortise their latency, each launched asynchronously so that
flattening the next bucket overlaps the reduction of the one before."""

T = TypeVar("T")


# --- process group --------------------------------------------------------------------------------


def _env_int(name: str) -> int | None:
    value = os.environ.get(name)
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"init_from_env: ${name} must be an integer, got {value!r}") from None


def init_from_env(backend: str | None = None, *, timeout: datetime.timedelta | None = None) -> bool:
    """Join the process group ``torchrun`` describes in the environment; returns whether it did.

    Reads ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` (and ``MASTER_ADDR`` / ``MASTER_PORT``
    through ``init_method="env://"``). Without them, or with ``WORLD_SIZE=1``, it does nothing
    and returns False: the same script runs as a single process. When a process group exists
    already, it is used as it is (True). ``backend`` defaults to ``"nccl"`` when CUDA is
    available (each process then uses the GPU ``cuda:LOCAL_RANK``) and ``"gloo"`` otherwise.
    """
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size() > 1
    size = _env_int("WORLD_SIZE")
    if size is None or size == 1:
        return False
    if not dist.is_available():
        raise RuntimeError("init_from_env: this torch build has no torch.distributed")
    if _env_int("RANK") is None:
        raise ValueError(f"init_from_env: $WORLD_SIZE is {size} but $RANK is not set")
    local = _env_int("LOCAL_RANK") or 0
    if backend is None:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        gpus = torch.cuda.device_count()
        if local >= gpus:
            raise ValueError(
                f"init_from_env: NCCL needs one GPU per process, but $LOCAL_RANK is {local} and "
                f"this machine has {gpus} CUDA device(s); start at most {gpus} processes per "
                "machine, or pass backend='gloo' (CPU tensors)"
            )
        torch.cuda.set_device(local)
    kwargs: dict[str, Any] = {"backend": backend, "init_method": "env://"}
    if timeout is not None:
        kwargs["timeout"] = timeout
    dist.init_process_group(**kwargs)
    return True


def shutdown() -> None:
    """Leave the process group (``destroy_process_group``); nothing when there is none."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def is_active() -> bool:
    """True when a process group with more than one rank is initialised."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's rank (0 without a process group)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def world_size() -> int:
    """The number of ranks (1 without a process group)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


_this_rank, _this_world_size = rank, world_size


def local_rank() -> int:
    """This process's rank on its machine (``$LOCAL_RANK``; 0 when unset)."""
    return _env_int("LOCAL_RANK") or 0


def is_main() -> bool:
    """True on rank 0 (and in a single process): the rank that prints and saves."""
    return rank() == 0


def barrier() -> None:
    """Wait for every rank (nothing in a single process)."""
    if is_active():
        dist.barrier()


# --- gradients ------------------------------------------------------------------------------------


def _all_reduce_tree(x: T, average: bool, bucket_bytes: int) -> T:
    if not is_active():
        return x
    if vmap_levels():
        raise RuntimeError(
            "distributed: cannot all-reduce inside torch.vmap (a sweep's step); spread sweep "
            "configurations over ranks with distributed.shard_configs instead"
        )
    leaves, spec = tree.leaves(x), tree.structure(x)
    out: list[Any] = list(leaves)
    # Buckets of one dtype and device each, in leaf order (the same on every rank).
    groups: dict[tuple, list[int]] = {}
    for i, leaf in enumerate(leaves):
        if isinstance(leaf, torch.Tensor) and leaf.is_floating_point():
            groups.setdefault((leaf.dtype, leaf.device), []).append(i)
    buckets: list[list[int]] = []
    for idx in groups.values():
        current, size = [], 0
        for i in idx:
            nbytes = leaves[i].numel() * leaves[i].element_size()
            if current and size + nbytes > bucket_bytes:
                buckets.append(current)
                current, size = [], 0
            current.append(i)
            size += nbytes
        if current:
            buckets.append(current)
    pending = []
    for bucket in buckets:
        # cat copies: the caller's tensors are never written into.
        flat = torch.cat([leaves[i].detach().reshape(-1) for i in bucket])
        pending.append((bucket, flat, dist.all_reduce(flat, async_op=True)))
    n = dist.get_world_size()
    for bucket, flat, handle in pending:
        handle.wait()
        if average:
            flat.div_(n)
        offset = 0
        for i in bucket:
            k = leaves[i].numel()
            out[i] = flat[offset : offset + k].view_as(leaves[i])
            offset += k
    return tree.unflatten(spec, out)


def all_reduce_mean(x: T, *, bucket_bytes: int = BUCKET_BYTES) -> T:
    """The mean over ranks of every floating-point leaf of the pytree ``x`` (a gradient tree).

    The leaves are flattened into buckets of about ``bucket_bytes`` (one dtype and device each),
    one asynchronous ``all_reduce`` per bucket, then unflattened into new tensors (``x`` itself is
    not modified). Other leaves (integers, non-tensors) come back as they are. In a single process
    it returns ``x``. Every rank must call it with trees of the same structure, shapes and dtypes.
    Not differentiable (the result is detached), and not usable inside ``torch.vmap``.
    """
    return _all_reduce_tree(x, True, bucket_bytes)


def all_reduce_sum(x: T, *, bucket_bytes: int = BUCKET_BYTES) -> T:
    """As ``all_reduce_mean``, the sum over ranks."""
    return _all_reduce_tree(x, False, bucket_bytes)


REDUCTIONS = ("mean", "sum")


def resolve_gradient_reduction(distributed: bool | str, where: str) -> str | None:
    """What ``make_train_step(distributed=...)`` does: ``"mean"``, ``"sum"`` or None (nothing).

    ``"auto"`` is ``"mean"`` when a process group of several ranks is initialised (at the time the
    step is built), else None; ``True`` is ``"mean"`` (or nothing in a single process); False is
    None.
    """
    if distributed is False:
        return None
    if distributed == "auto" or distributed is True:
        return "mean" if is_active() else None
    if distributed in REDUCTIONS:
        return distributed if is_active() else None
    raise ValueError(
        f"{where}: distributed must be 'auto', True, False, 'mean' or 'sum', got {distributed!r}"
    )


def average_gradients(
    optimizer: GradientTransformation,
    *,
    reduce: str = "mean",
    bucket_bytes: int = BUCKET_BYTES,
    outside_compile: bool = False,
    _skip_under_vmap: bool = False,
) -> GradientTransformation:
    """``optimizer`` whose ``update`` first all-reduces the gradients across ranks.

    ``reduce="mean"`` averages them (``DistributedDataParallel``'s rule), ``"sum"`` adds them up
    (see the module docstring for what each equals). The optimizer state is ``optimizer``'s own,
    so states, checkpoints and ``init_state`` are unchanged. In a single process the update is
    ``optimizer``'s. ``make_train_step(..., distributed=...)`` applies it for you.

    ``outside_compile=True`` wraps the collective in ``torch.compiler.disable`` (a graph break),
    for a step that ``torch.compile`` traces; it imports Dynamo (seconds), so an eager step
    leaves it False. ``make_train_step`` sets it when it compiles.
    """
    if reduce not in REDUCTIONS:
        raise ValueError(f"average_gradients: reduce must be 'mean' or 'sum', got {reduce!r}")
    if not isinstance(optimizer, GradientTransformation):
        raise TypeError(
            "average_gradients: optimizer must be a GradientTransformation, got "
            f"{type(optimizer).__name__}"
        )
    average = reduce == "mean"

    def reduce_grads(grads: Any) -> Any:
        if _skip_under_vmap and vmap_levels():
            return grads  # distributed="auto" in a vmapped (sweep) step: never averaged
        return _all_reduce_tree(grads, average, bucket_bytes)

    if outside_compile:
        # The collective is a host-side call: keep it out of the graph torch.compile traces.
        reduce_grads = torch.compiler.disable(reduce_grads)

    def update(grads: Any, state: Any, params: Any = None, *args: Any, **kwargs: Any):
        return optimizer.update(reduce_grads(grads), state, params, *args, **kwargs)

    return GradientTransformation(optimizer.init, update)


def reduce_row_gradients(
    rows: dict[str, RowIds], grads: dict[str, torch.Tensor], *, average: bool
) -> tuple[dict[str, RowIds], dict[str, torch.Tensor]]:
    """Row-sparse table gradients combined across ranks (``make_train_step(sparse_tables=...)``).

    Each rank holds, per table, the rows its own batch touched (``rows[path]``, ``N_r`` slots)
    and their gradient ``grads[path]`` (``[N_r, ...]``). Returns, identically on every rank, the
    union of all ranks' rows (``RowIds`` of ``N_0 + ... + N_{W-1} + 1`` slots) and each row's
    gradient summed over ranks (divided by the number of ranks with ``average``): the table
    gradient that the dense all-reduce would give, restricted to the rows it can be non-zero
    in. Per table: one small ``all_gather`` of the row counts, then one of the ids and one of
    the rows; no differentiation. In a single process it returns its inputs.
    """
    if not is_active():
        return dict(rows), dict(grads)
    if vmap_levels():
        raise RuntimeError(
            "distributed: cannot combine row gradients inside torch.vmap (a sweep's step)"
        )
    n = dist.get_world_size()
    out_rows: dict[str, RowIds] = {}
    out_grads: dict[str, torch.Tensor] = {}
    for name, r in rows.items():
        g = grads[name].detach()
        sizes = _gather_sizes(g.shape[0], g.device)
        # Unused slots become padding (-1), which unique_ids passes through.
        ids = _gather_rows(torch.where(r.valid, r.ids, -1), sizes)
        every = _gather_rows(g, sizes)
        union = unique_ids(ids)
        slot = union.inverse
        keep = (slot >= 0).reshape((-1,) + (1,) * (g.ndim - 1))
        total = g.new_zeros((union.ids.shape[0], *g.shape[1:]))
        total.index_add_(0, slot.clamp(min=0), torch.where(keep, every, 0))
        out_rows[name] = union
        out_grads[name] = total / n if average else total
    return out_rows, out_grads


# --- gathering rows (cross-device negatives, AUC states) -----------------------------------------


def _gather_sizes(n: int, device: torch.device) -> list[int]:
    sizes = torch.tensor([n], dtype=torch.int64, device=device)
    out = [torch.empty_like(sizes) for _ in range(dist.get_world_size())]
    dist.all_gather(out, sizes)
    return [int(s) for s in out]


def _pad_rows(x: torch.Tensor, rows: int) -> torch.Tensor:
    if x.shape[0] == rows:
        return x.contiguous()
    pad = x.new_zeros((rows - x.shape[0], *x.shape[1:]))
    return torch.cat([x, pad]).contiguous()


class _AllGatherRows(torch.autograd.Function):
    """``[M, ...]`` (padded to the same M on every rank) -> ``[world, M, ...]``.

    Backward: the gradient of every rank's loss with respect to this rank's rows is the sum over
    ranks of their output gradients' slot ``rank``: one all_reduce (sum) of the output gradient
    (gloo has no reduce_scatter), then this rank's slot.
    """

    @staticmethod
    def forward(x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x.contiguous())
        return torch.stack(parts)

    @staticmethod
    def setup_context(ctx: Any, inputs: Any, output: Any) -> None:
        pass

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        grad = grad.contiguous().clone()
        dist.all_reduce(grad)
        return grad[dist.get_rank()]


def all_gather_rows(x: torch.Tensor, *, include_self: bool = True) -> torch.Tensor:
    """Every rank's rows of ``x`` (``[N_r, ...]``, ``N_r`` may differ by rank), concatenated.

    With ``include_self`` (default) in rank order ``[N_0 + ... + N_{W-1}, ...]``; without, this
    rank's rows are left out (the other ranks' in rank order). Differentiable for floating-point
    ``x``: the gradient that reaches rank r's rows is the sum over all ranks of the gradients of
    their outputs with respect to those rows, so a loss summed over ranks trains exactly. Every
    rank must call it (the same number of times, with the same trailing shape and dtype). Costs
    one small extra all_gather for the row counts. In a single process it returns ``x`` (or an
    empty ``[0, ...]`` without ``include_self``).
    """
    if not is_active():
        return x if include_self else x[:0]
    return _gather_rows(x, _gather_sizes(x.shape[0], x.device), include_self)


def _gather_rows(x: torch.Tensor, sizes: list[int], include_self: bool = True) -> torch.Tensor:
    """``all_gather_rows`` given every rank's row count (``_gather_sizes``): callers gathering
    several tensors of the same rows gather the counts once."""
    m = max(sizes)
    padded = _pad_rows(x, m)
    if x.is_floating_point() or x.is_complex():
        stacked = _AllGatherRows.apply(padded)
    else:
        parts = [torch.empty_like(padded) for _ in sizes]
        dist.all_gather(parts, padded)
        stacked = torch.stack(parts)
    me = dist.get_rank()
    pieces = [stacked[r, : sizes[r]] for r in range(len(sizes)) if include_self or r != me]
    return torch.cat(pieces) if pieces else x[:0]


def gather_candidates(
    embeddings: torch.Tensor,
    probability: torch.Tensor | None = None,
    ids: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """Cross-device negatives: this rank's candidates followed by every other rank's.

    Made for ``tasks.Retrieval(extra_candidates=distributed.gather_candidates)``: ``[N, D]``
    embeddings (and ``[N]`` sampling probabilities / ids when given) -> ``[N_total, D]`` with this
    rank's N rows first (its queries' positives stay on the diagonal), then the other ranks' rows
    in rank order. Each query's softmax then runs over the candidates of the whole global batch,
    as in one process with the global batch. Gradients flow back to the rank that owns each row
    (see ``all_gather_rows``): with ``make_train_step(distributed="sum")`` training equals one
    process with the global batch, up to the order of floating-point sums. In a single process
    it returns its inputs unchanged.
    """
    if not is_active():
        return embeddings, probability, ids
    n = embeddings.shape[0]
    for name, x in (("probability", probability), ("ids", ids)):
        if x is not None and x.shape[:1] != (n,):
            raise ValueError(
                f"gather_candidates: {name} must have one entry per candidate row ({n}), got "
                f"shape {tuple(x.shape)}"
            )
    sizes = _gather_sizes(n, embeddings.device)
    out = [
        None if x is None else torch.cat([x, _gather_rows(x, sizes, include_self=False)])
        for x in (embeddings, probability, ids)
    ]
    return out[0], out[1], out[2]


# --- metrics ----------------------------------------------------------------------------------------


def merge_accumulators(sums: dict[str, Any]) -> dict[str, Any]:
    """Merge ``{name: accumulator}`` across ranks: every rank gets the merge of all ranks'.

    ``MeanState`` (and anything holding sums: ``metrics.aggregate`` states, a ``MetricTerms``
    accumulated with ``mean_update``) are summed, ``AUCState``s concatenated in rank order, so
    the merged result is exactly the accumulator of all ranks' examples. Every rank must hold
    the same names (``evaluate`` / ``fit`` over a sharded ``data.Loader`` do). In a single
    process it returns ``sums``.
    """
    if not is_active():
        return sums
    names = sorted(sums)
    gathered = _gather_names(names)
    if any(g != names for g in gathered):
        raise ValueError(
            f"merge_accumulators: the ranks hold different metric names: {gathered} (every "
            "rank must accumulate the same values)"
        )
    out: dict[str, Any] = {}
    mean_names = [k for k in names if isinstance(sums[k], MeanState)]
    if mean_names:
        reduced = all_reduce_sum({k: tuple(sums[k]) for k in mean_names})
        out.update({k: MeanState(*reduced[k]) for k in mean_names})
    for k in names:
        v = sums[k]
        if isinstance(v, AUCState):
            sizes = _gather_sizes(v.scores.shape[0], v.scores.device)
            out[k] = AUCState(*(_gather_rows(x.detach(), sizes) for x in v))
        elif k not in out:
            raise TypeError(
                f"merge_accumulators: {k!r} is a {type(v).__name__}; expected a MeanState or "
                "an AUCState"
            )
    return {k: out[k] for k in sums}


def _gather_names(names: list[str]) -> list[list[str]]:
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, names)
    return out


# --- sweeps and checkpoints ---------------------------------------------------------------------


def shard_configs(
    configs: Sequence[T], *, rank: int | None = None, world_size: int | None = None
) -> list[T]:
    """This rank's share of sweep configurations: ``configs[rank::world_size]``.

    Round-robin, so the shares differ by at most one configuration and neighbouring configurations
    (often similar in cost) land on different ranks. Each rank trains its share with
    ``train.sweep`` on the *whole* training data (a ``Loader(..., rank=0, world_size=1)``: a
    sweep's ranks do not split the data) and without gradient averaging (a sweep's step is never
    averaged). Configuration ``configs[i]`` lands on rank ``i % world_size`` as entry
    ``i // world_size``; gather the results with ``torch.distributed.all_gather_object`` or write
    one file per rank.
    """
    r = _this_rank() if rank is None else rank
    w = _this_world_size() if world_size is None else world_size
    if not isinstance(w, int) or w < 1 or not isinstance(r, int) or not 0 <= r < w:
        raise ValueError(
            f"shard_configs: need 0 <= rank < world_size, got rank={r}, world_size={w}"
        )
    return list(configs)[r::w]


class MainRankCheckpointer(Checkpointer):
    """A ``train.Checkpointer`` that writes only on rank 0 (in a single process: always).

    Under data parallelism every rank holds the same state, so one copy is enough, and several
    ranks writing the same files would race. Every rank still calls ``save`` (as ``fit`` does) and
    reads ``latest`` on resume, so the directory must be visible to every rank (one machine, or a
    shared file system). ``save`` returns the path written (or that rank 0 writes).
    """

    def save(self, checkpoint: Checkpoint) -> Any:
        if is_main():
            return super().save(checkpoint)
        return self.path_for(checkpoint.step)


def _is_sharded(loader: Any) -> bool:
    """Whether ``loader`` yields only this rank's share (``data.Loader`` with world_size > 1)."""
    size = getattr(loader, "world_size", 1)
    return isinstance(size, int) and size > 1 and is_active()
