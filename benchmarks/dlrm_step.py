"""The DLRM train step on synthetic Criteo-like data: seconds per step, GFLOP/s, share of peak.

The model of TFRS's ``tfrs.experimental.models.Ranking`` with its DLRM settings: 13 dense
features through a bottom MLP 512-256-16 (relu), 26 categorical features through one
``Embedding(vocab_size, 16)`` table each (row counts from ``synth_criteo.vocab_sizes(0)``), the
dot interaction of the 27 vectors (351 products) concatenated to the bottom output, a top MLP
512-256-1, binary cross-entropy from logits, Adagrad 0.01. Built from the public API:
``models.DLRM``, ``torchrs_fn.init``, ``train.make_train_step(..., compile=True,
precision=...)``, ``optim.adagrad(0.01)``; the loss is ``tasks.Ranking(loss=
"binary_crossentropy", from_logits=True).loss`` when the package has it, else
``torch.nn.functional.binary_cross_entropy_with_logits`` (mean), and ``loss_impl`` says which.

Data: ``synth_criteo.make_data`` (numpy, seed 0; byte-identical to what the TFRS side reads),
imported from ``/work/shared/bench`` or ``--synth-path``. ``--batches`` batches are preloaded as
tensors and cycled through, so data loading is not in the step time.

Timing: the first call (``compile_seconds``: tracing and compiling, plus one step), then
``--warmup`` steps, then ``--repeats`` timed blocks of ``--steps`` steps, each followed by one
timed ``torch.mm`` of two ``--peak-size`` square matrices in float32 and one in bfloat16, so the
step and the matmul peak see the same phase of a shared machine. ``step_seconds`` is the median
over blocks of the block's seconds per step; ``matmul_peak_gflops`` the median of the matmuls
in the step's dtype (float32, or bfloat16 for ``--precision bf16``; both are reported as
``matmul_peak_gflops_fp32`` / ``_bf16``); ``fraction_of_peak`` is ``gflops_per_second /
matmul_peak_gflops``.

A neighbour on a small machine distorts the figures badly (one busy core slows a two-thread
torch step several times over: the OpenMP threads wait at every kernel for the one that lost
its core). So each block records ``others_busy_cores``, the cores' worth of CPU other
processes used meanwhile (from ``/proc``), ``step_seconds_quiet`` is the median over the
blocks where that stayed under 0.3 (``quiet_blocks`` of them), and ``--quiet-wait S`` waits up
to S seconds before each block for the other processes to leave.

``gflops_per_step`` counts 2 flops per multiply-add of the dense layers (bottom and top MLPs)
and of the interaction's ``X X^T`` (27 x 27 x 16 per example, the whole product as it is
computed), times 3 for the forward and the two backward products; embedding lookups, the
optimizer update and element-wise work count nothing.

    python benchmarks/dlrm_step.py --json
    python benchmarks/dlrm_step.py --precision bf16 --json
    python benchmarks/dlrm_step.py --profile            # torch.profiler table on stderr
    python benchmarks/dlrm_step.py --compile off --profile
    TORCHINDUCTOR_CPP_ENABLE_KERNEL_PROFILE=1 python benchmarks/dlrm_step.py --profile  # per kernel

Prints one JSON line (``--json``) or a short table. ``benchmarks/dlrm_vs_tfrs.py`` runs it
side by side with TFRS's ``tfrs_dlrm_step.py``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

import torchrs_fn as rs
from torchrs_fn import optim, train
from torchrs_fn.models import DLRM

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _sidebyside import matmul_gflops, matmul_operands

DEFAULT_SYNTH_PATH = "/work/shared/bench"
EMBEDDING_DIM = 16
BOTTOM_UNITS = (512, 256, EMBEDDING_DIM)
TOP_UNITS = (512, 256, 1)
LEARNING_RATE = 0.01
QUIET_CORES = 0.3  # a block during which other processes used less than this counts as quiet


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def load_synth(path: str | None) -> Any:
    """The ``synth_criteo`` module, from ``path`` (or ``/work/shared/bench``)."""
    folder = str(Path(path or DEFAULT_SYNTH_PATH).resolve())
    if folder not in sys.path:
        sys.path.insert(0, folder)
    try:
        return importlib.import_module("synth_criteo")
    except ImportError as err:
        raise SystemExit(
            f"error: cannot import synth_criteo from {folder}; pass --synth-path FOLDER"
        ) from err


def bce_loss() -> tuple[Any, str]:
    """``(loss(labels, logits), name)``: the Ranking task's loss when there is one."""
    try:
        from torchrs_fn.tasks import Ranking
    except ImportError:
        Ranking = None
    if Ranking is not None:
        task = Ranking(loss="binary_crossentropy", from_logits=True)
        return task.loss, "tasks.Ranking(loss='binary_crossentropy', from_logits=True).loss"

    def loss(labels: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(logits, labels)

    return loss, "F.binary_cross_entropy_with_logits (mean)"


def flops_per_example(num_dense: int, num_sparse: int) -> int:
    """Flops of one example's forward pass through the dense layers and the interaction."""
    macs, width = 0, num_dense
    for units in BOTTOM_UNITS:
        macs += width * units
        width = units
    f = num_sparse + 1
    macs += f * f * EMBEDDING_DIM  # X X^T, [F, D] x [D, F]
    width = BOTTOM_UNITS[-1] + f * (f - 1) // 2
    for units in TOP_UNITS:
        macs += width * units
        width = units
    return 2 * macs


def _busy_jiffies() -> tuple[int, int]:
    """(all CPUs' busy jiffies, this process's jiffies), from /proc (Linux)."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    busy = sum(fields) - fields[3] - fields[4]  # minus idle and iowait
    with open("/proc/self/stat") as f:
        own = f.read().rsplit(")", 1)[1].split()
    return busy, int(own[11]) + int(own[12])  # utime + stime (all threads)


class OthersProbe:
    """``with OthersProbe() as p: ...``; then ``p.cores``: the cores' worth of CPU that other
    processes used meanwhile (None where /proc is not readable)."""

    def __enter__(self) -> OthersProbe:
        self.cores: float | None = None
        try:
            self._start = (time.perf_counter(), *_busy_jiffies())
        except (OSError, ValueError, IndexError):
            self._start = None
        return self

    def __exit__(self, *exc: object) -> None:
        if self._start is None:
            return
        t0, busy0, own0 = self._start
        try:
            busy1, own1 = _busy_jiffies()
        except (OSError, ValueError, IndexError):
            return
        wall = max(time.perf_counter() - t0, 1e-9)
        self.cores = max(0.0, ((busy1 - busy0) - (own1 - own0)) / os.sysconf("SC_CLK_TCK") / wall)


def wait_quiet(max_wait: float, threshold: float = 0.25) -> float | None:
    """Wait up to ``max_wait`` seconds until other processes use under ``threshold`` cores
    (sampled over 0.5 s); returns the last sample (None without /proc)."""
    deadline = time.perf_counter() + max_wait
    while True:
        with OthersProbe() as probe:
            time.sleep(0.5)
        if probe.cores is None or probe.cores < threshold or time.perf_counter() > deadline:
            return probe.cores
        time.sleep(1.0)


def build(args: argparse.Namespace, synth: Any) -> dict[str, Any]:
    """The model, the state, the compiled step and the preloaded batches."""
    data = synth.make_data(args.batch_size * args.batches, seed=args.seed)
    vocab_sizes = data["vocab_sizes"]
    dense = torch.from_numpy(data["dense"])
    sparse = torch.from_numpy(data["sparse"])
    labels = torch.from_numpy(data["labels"])
    num_sparse = sparse.shape[1]
    if args.sparse:
        # One batch column per categorical feature, so that each table names its own ids.
        batches = [
            {
                "dense": dense[s : s + args.batch_size],
                "labels": labels[s : s + args.batch_size],
                **{
                    f"sparse_{i}": sparse[s : s + args.batch_size, i].contiguous()
                    for i in range(num_sparse)
                },
            }
            for s in range(0, dense.shape[0], args.batch_size)
        ]
    else:
        batches = [
            (
                dense[s : s + args.batch_size],
                sparse[s : s + args.batch_size],
                labels[s : s + args.batch_size],
            )
            for s in range(0, dense.shape[0], args.batch_size)
        ]
    model = DLRM(
        dense.shape[1],
        vocab_sizes,
        EMBEDDING_DIM,
        bottom_units=BOTTOM_UNITS,
        top_units=TOP_UNITS,
        interaction="dot",
    )
    loss, loss_impl = bce_loss()

    def loss_fn(params: rs.Params, batch: tuple | dict) -> torch.Tensor:
        if isinstance(batch, dict):
            x, y = batch["dense"], batch["labels"]
            ids = torch.stack([batch[f"sparse_{i}"] for i in range(num_sparse)], dim=-1)
        else:
            x, ids, y = batch
        return loss(y, rs.apply(model, params, x, ids))

    optimizer = optim.adagrad(LEARNING_RATE)
    params = rs.init(model, seed=args.seed)
    compile_ = {"on": True, "off": False, "auto": "auto"}[args.compile]
    tables = None
    if args.sparse:
        # params["embeddings"] holds one table per feature, in the order of the ids' columns.
        # Only tables of at least --sparse-min-rows rows: a small table is cheaper dense.
        names = list(params["embeddings"])
        tables = {
            f"embeddings.{n}.weight": f"sparse_{i}"
            for i, n in enumerate(names)
            if vocab_sizes[i] >= args.sparse_min_rows
        }
    step = train.make_train_step(
        loss_fn, optimizer, compile=compile_, precision=args.precision, sparse_tables=tables
    )
    return {
        "model": model,
        "state": train.init_state(params, optimizer),
        "step": step,
        "batches": batches,
        "vocab_sizes": vocab_sizes,
        "loss_impl": loss_impl,
        "num_params": sum(p.numel() for p in rs.tree.leaves(params)),
        "embedding_rows": sum(vocab_sizes),
    }


def profile(step, state, batches, steps: int, row_limit: int) -> Any:
    """Run ``steps`` steps under torch.profiler; print the op table to stderr."""
    from torch.profiler import ProfilerActivity, record_function
    from torch.profiler import profile as torch_profile

    with torch_profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        for i in range(steps):
            with record_function("train_step"):
                state, _ = step(state, batches[i % len(batches)])
    by_shape = os.environ.get("DLRM_PROFILE_BY_SHAPE") == "1"
    table = prof.key_averages(group_by_input_shape=by_shape).table(
        sort_by="self_cpu_time_total", row_limit=row_limit
    )
    log(table)
    return state


def run(args: argparse.Namespace) -> dict[str, Any]:
    if args.threads:
        torch.set_num_threads(args.threads)
    synth = load_synth(args.synth_path)
    b = build(args, synth)
    step, state, batches = b["step"], b["state"], b["batches"]

    t0 = time.perf_counter()
    state, logs = step(state, batches[0])
    first_loss = float(logs["loss"])
    compile_seconds = time.perf_counter() - t0
    log(f"first call (compile + 1 step): {compile_seconds:.1f} s, loss {first_loss:.4f}")
    for i in range(args.warmup):
        state, logs = step(state, batches[(i + 1) % len(batches)])
    float(logs["loss"])

    if args.profile:
        state = profile(step, state, batches, args.profile_steps, args.profile_rows)

    step_dtype = torch.bfloat16 if args.precision == "bf16" else torch.float32
    mats = {dt: matmul_operands(dt, args.peak_size) for dt in (torch.float32, torch.bfloat16)}
    for dt, (a, m) in mats.items():
        matmul_gflops(dt, args.peak_size, a, m)  # warm the matmul's code paths

    block_seconds: list[float] = []
    peaks: dict[torch.dtype, list[float]] = {torch.float32: [], torch.bfloat16: []}
    busy: list[float | None] = []
    losses: list[float] = []
    i = 0
    for r in range(args.repeats):
        if args.quiet_wait > 0:
            wait_quiet(args.quiet_wait)
        with OthersProbe() as probe:
            t = time.perf_counter()
            for _ in range(args.steps):
                state, logs = step(state, batches[i % len(batches)])
                i += 1
            losses.append(float(logs["loss"]))  # waits for the step (needed on a GPU)
            block_seconds.append((time.perf_counter() - t) / args.steps)
        busy.append(probe.cores)
        # One matmul of each dtype after each block, the step's own dtype first.
        for dt in sorted(mats, key=lambda d: d != step_dtype):
            peaks[dt].append(matmul_gflops(dt, args.peak_size, *mats[dt]))
        others = "?" if probe.cores is None else f"{probe.cores:.2f}"
        log(
            f"block {r + 1}/{args.repeats}: {block_seconds[-1]:.4f} s/step, "
            f"mm fp32 {peaks[torch.float32][-1]:.0f} / bf16 {peaks[torch.bfloat16][-1]:.0f} "
            f"GFLOP/s, other processes used {others} cores"
        )

    quiet = [s for s, b in zip(block_seconds, busy) if b is not None and b < QUIET_CORES]
    step_seconds = statistics.median(block_seconds)
    gflops = flops_per_example(13, len(b["vocab_sizes"])) * 3 * args.batch_size / 1e9
    peak = statistics.median(peaks[step_dtype])
    return {
        "batch_size": args.batch_size,
        "precision": args.precision,
        "sparse": args.sparse,
        "sparse_min_rows": args.sparse_min_rows if args.sparse else None,
        "step_seconds": step_seconds,
        "steps": args.steps * args.repeats,
        "warmup": args.warmup,
        "compile_seconds": compile_seconds,
        "gflops_per_step": gflops,
        "gflops_per_second": gflops / step_seconds,
        "matmul_peak_gflops": peak,
        "fraction_of_peak": gflops / step_seconds / peak,
        "matmul_peak_gflops_fp32": statistics.median(peaks[torch.float32]),
        "matmul_peak_gflops_bf16": statistics.median(peaks[torch.bfloat16]),
        "peak_size": args.peak_size,
        "step_seconds_blocks": block_seconds,
        "steps_per_block": args.steps,
        "examples_per_second": args.batch_size / step_seconds,
        "compile": args.compile,
        "loss_impl": b["loss_impl"],
        "first_loss": first_loss,
        "last_loss": losses[-1],
        "num_params": b["num_params"],
        "embedding_rows": b["embedding_rows"],
        "threads": torch.get_num_threads(),
        "step_seconds_quiet": statistics.median(quiet) if quiet else None,
        "quiet_blocks": len(quiet),
        "others_busy_cores": busy,
        "framework": "torchrs_fn",
        "torch": torch.__version__,
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch-size", type=int, default=8192)
    p.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    p.add_argument("--steps", type=int, default=5, help="steps per timed block")
    p.add_argument("--repeats", type=int, default=5, help="timed blocks")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps after the first call")
    p.add_argument("--batches", type=int, default=4, help="distinct preloaded batches, cycled")
    p.add_argument("--compile", choices=("on", "off", "auto"), default="on")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--peak-size", type=int, default=4096, help="side of the peak matmul")
    p.add_argument(
        "--synth-path", default=None, help=f"folder of synth_criteo.py ({DEFAULT_SYNTH_PATH})"
    )
    p.add_argument("--seed", type=int, default=0, help="data and init seed")
    p.add_argument("--profile", action="store_true", help="torch.profiler op table on stderr")
    p.add_argument("--profile-steps", type=int, default=3)
    p.add_argument("--profile-rows", type=int, default=30)
    p.add_argument(
        "--quiet-wait",
        type=float,
        default=0.0,
        help="before each timed block wait up to this many seconds for other processes to "
        "leave the CPUs (0: never wait)",
    )
    p.add_argument(
        "--sparse",
        action="store_true",
        help="row-sparse embedding updates (make_train_step(sparse_tables=...))",
    )
    p.add_argument(
        "--sparse-min-rows",
        type=int,
        default=0,
        help="with --sparse: only the tables of at least this many rows (default: all)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON line")
    args = p.parse_args(argv)
    for name in ("batch_size", "steps", "repeats", "batches", "peak_size"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    result = run(args)
    if args.json:
        print(json.dumps(result), flush=True)
        return 0
    print(
        f"DLRM train step, batch {result['batch_size']}, {result['precision']}, {result['threads']} threads"
    )
    for key in (
        "step_seconds",
        "compile_seconds",
        "gflops_per_step",
        "gflops_per_second",
        "matmul_peak_gflops",
        "fraction_of_peak",
    ):
        print(f"{key:<20}{result[key]:>12.4g}")
    print(f"loss: {result['loss_impl']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
