"""The DCN tutorial's train step alone: seconds per step, GFLOP/s, share of this CPU's matmul peak.

The model is ``examples/movielens_dcn.py``'s own ``DCN`` class (six 32-wide embeddings, a cross
layer, Dense 192, 192, Dense 1; ``--model dnn`` for Dense 192, 192, 192, ``dcn_low_rank`` for a
rank-20 cross layer), Adam 0.01, mean squared error, batch 8192,
``train.make_train_step(..., compile=True, precision=...)``. Batches hold random ids over the
MovieLens 100K vocabulary sizes (the step's cost does not depend on which ids), so no data files
are needed. ``benchmarks/compare_tfrs_ranking.py`` times whole epochs of the example against
TFRS; this script isolates the step, to say how close it runs to the machine's floor.

Timing: ``--warmup`` steps (the first compiles), then ``--repeats`` blocks of ``--steps`` steps,
each followed by one ``torch.mm`` of two 4096 x 4096 matrices in the step's dtype, so that the
step and the peak see the same phase of a shared machine. ``step_seconds`` is the median block's
seconds per step; ``gflops_per_second`` counts the dense layers' products (forward and both
backward products, 2 flops per multiply-add; ``compare_tfrs_ranking.train_gflop_per_row``);
``matmul_seconds_per_step`` (with ``--profile``) is the time ``torch.profiler`` puts in
``aten::mm`` / ``aten::addmm`` over ``--profile-steps`` steps, and ``matmul_share`` its share
of the step.

    python benchmarks/dcn_step.py --json
    python benchmarks/dcn_step.py --precision bf16 --profile --json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "examples"))
import movielens_dcn  # noqa: E402  (the example's model)
from _sidebyside import cpu_model, git_commit, log, matmul_gflops, matmul_operands  # noqa: E402
from compare_tfrs_ranking import train_gflop_per_row  # noqa: E402

import torchrs_fn as rs  # noqa: E402
from torchrs_fn import optim, train  # noqa: E402

# MovieLens 100K's vocabulary sizes for the six features (with the lookups' out-of-vocabulary row).
VOCAB_SIZES = {
    "movie_id": 1683,
    "user_id": 944,
    "user_zip_code": 796,
    "user_occupation_text": 22,
    "user_gender": 3,
    "bucketized_user_age": 8,
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", choices=tuple(movielens_dcn.MODELS), default="dcn")
    p.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    p.add_argument("--batch-size", type=int, default=8192)
    p.add_argument("--batches", type=int, default=10, help="distinct batches, cycled")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--steps", type=int, default=10, help="steps per timed block")
    p.add_argument("--repeats", type=int, default=5, help="timed blocks")
    p.add_argument("--profile", action="store_true", help="time the matrix products too")
    p.add_argument("--profile-steps", type=int, default=20)
    p.add_argument("--json", action="store_true", help="print one JSON line")
    args = p.parse_args()

    g = torch.Generator().manual_seed(0)
    batches = [
        {
            **{
                k: torch.randint(0, v, (args.batch_size,), generator=g)
                for k, v in VOCAB_SIZES.items()
            },
            "user_rating": torch.randint(1, 6, (args.batch_size,), generator=g).float(),
        }
        for _ in range(args.batches)
    ]
    use_cross, projection_dim, deep = movielens_dcn.MODELS[args.model]
    model = movielens_dcn.DCN(VOCAB_SIZES, use_cross, projection_dim, deep)
    optimizer = optim.adam(0.01)
    step = train.make_train_step(model, optimizer, compile=True, precision=args.precision)
    state = train.init_state(rs.init(model, seed=0), optimizer)
    t0 = time.perf_counter()
    for i in range(args.warmup):
        state, logs = step(state, batches[i % len(batches)])
    float(logs["loss"])
    log(f"{args.warmup} warm-up steps (the first compiles): {time.perf_counter() - t0:.1f} s")

    dtype = torch.bfloat16 if args.precision == "bf16" else torch.float32
    size = 4096
    a, b = matmul_operands(dtype, size)
    matmul_gflops(dtype, size, a, b)
    blocks, peaks, i = [], [], 0
    for r in range(args.repeats):
        t = time.perf_counter()
        for _ in range(args.steps):
            state, logs = step(state, batches[i % len(batches)])
            i += 1
        float(logs["loss"])
        blocks.append((time.perf_counter() - t) / args.steps)
        peaks.append(matmul_gflops(dtype, size, a, b))
        log(
            f"block {r + 1}/{args.repeats}: {blocks[-1] * 1e3:.1f} ms/step, mm {peaks[-1]:.0f} GFLOP/s"
        )

    gflop = train_gflop_per_row("dcn", args.model) * args.batch_size
    step_seconds = statistics.median(blocks)
    peak = statistics.median(peaks)
    result = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": cpu_model(),
        "commit": git_commit(),
        "torch": torch.__version__,
        "model": args.model,
        "precision": args.precision,
        "batch_size": args.batch_size,
        "step_seconds": step_seconds,
        "all_step_seconds": blocks,
        "gflop_per_step": gflop,
        "gflops_per_second": gflop / step_seconds,
        "matmul_peak_gflops": peak,
        "fraction_of_peak": gflop / step_seconds / peak,
        "floor_seconds_at_peak": gflop / peak,
    }
    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(args.profile_steps):
                state, logs = step(state, batches[i % len(batches)])
                i += 1
        mm_us = sum(
            e.self_cpu_time_total
            for e in prof.key_averages()
            if e.key in ("aten::mm", "aten::addmm")
        )
        total_us = sum(e.self_cpu_time_total for e in prof.key_averages())
        result["matmul_seconds_per_step"] = mm_us / 1e6 / args.profile_steps
        result["profiled_seconds_per_step"] = total_us / 1e6 / args.profile_steps
        result["matmul_share"] = mm_us / total_us
        result["matmul_gflops_in_step"] = gflop / result["matmul_seconds_per_step"]
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            if not key.startswith("all_"):
                print(f"{key:28s} {value}")


if __name__ == "__main__":
    main()
