"""The DLRM train step side by side: torchrs_fn (fp32, bf16) against TFRS (fp32).

Runs ``benchmarks/dlrm_step.py --json`` (this virtualenv) at each ``--precisions`` and
``benchmarks/tfrs_dlrm_step.py --json`` (the TFRS virtualenv, ``TF_USE_LEGACY_KERAS=1``) as
separate processes, one after the other, for ``--rounds`` rounds (the order reversed every other
round), on the same synthetic Criteo-like data (``synth_criteo.make_data``, seed 0) and batch
size. Before each process it waits (up to ``--quiet-wait`` seconds) for other processes to
leave the CPUs: on a small shared machine a neighbour taking one core slows a two-thread torch
step several times over, so a figure taken then says little.

Reported per side: the median over rounds of ``step_seconds`` (each itself a median over the
process's timed steps), the GFLOP/s that gives (the FLOP count of ``dlrm_step.py``, the same as
TFRS's script), and the speed-up over TFRS fp32: the median over rounds of ``tfrs / ours``
within a round (back-to-back processes see the same phase of the machine), with the ratio of
medians beside it.

    python benchmarks/dlrm_vs_tfrs.py --rounds 3
    python benchmarks/dlrm_vs_tfrs.py --rounds 5 --quiet-wait 120 --json
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shlex
import statistics
import sys
from pathlib import Path
from typing import Any

from _sidebyside import (
    cpu_model,
    git_commit,
    log,
    package_version,
    resolve_tf_python,
    run_json,
    tf_env,
    usable_cpus,
)
from dlrm_step import wait_quiet

HERE = Path(__file__).resolve().parent


def ours_cmd(args: argparse.Namespace, precision: str) -> list[str]:
    cmd = [sys.executable, str(HERE / "dlrm_step.py"), "--json", "--precision", precision]
    cmd += ["--batch-size", str(args.batch_size), "--steps", str(args.steps)]
    cmd += ["--repeats", str(args.repeats), "--quiet-wait", str(args.block_quiet_wait)]
    if args.synth_path:
        cmd += ["--synth-path", args.synth_path]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    if args.sparse:
        cmd += ["--sparse"]
    return cmd


def tfrs_cmd(args: argparse.Namespace, tf_python: str) -> list[str]:
    cmd = [tf_python, str(HERE / "tfrs_dlrm_step.py"), "--json"]
    cmd += ["--batch-size", str(args.batch_size), "--steps", str(args.tfrs_steps)]
    cmd += ["--warmup", str(args.tfrs_warmup)]
    if args.synth_path:
        cmd += ["--synth-dir", args.synth_path]
    return cmd


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=8192)
    p.add_argument("--precisions", default="fp32,bf16", help="our side's precisions")
    p.add_argument("--steps", type=int, default=5, help="ours: steps per timed block")
    p.add_argument("--repeats", type=int, default=5, help="ours: timed blocks")
    p.add_argument("--tfrs-steps", type=int, default=20, help="TFRS: timed steps")
    p.add_argument("--tfrs-warmup", type=int, default=5, help="TFRS: untimed first steps")
    p.add_argument("--threads", type=int, default=0, help="ours: torch threads (0: default)")
    p.add_argument("--synth-path", default=None, help="folder of synth_criteo.py")
    p.add_argument("--tf-python", default=None, help="the TFRS virtualenv's python")
    p.add_argument("--quiet-wait", type=float, default=60.0, help="before each process")
    p.add_argument("--block-quiet-wait", type=float, default=10.0, help="ours: before each block")
    p.add_argument("--timeout", type=float, default=900.0, help="seconds per process")
    p.add_argument("--sparse", action="store_true", help="ours: row-sparse embedding updates")
    p.add_argument("--json", action="store_true", help="one JSON line after the table")
    args = p.parse_args(argv)
    tf_python = resolve_tf_python(args.tf_python, "--tf-python")
    precisions = [x for x in args.precisions.split(",") if x]
    sides = [f"torchrs_fn {x}" for x in precisions] + ["tfrs fp32"]
    started = dt.datetime.now(dt.timezone.utc)
    results: dict[str, list[dict[str, Any]]] = {s: [] for s in sides}
    for r in range(args.rounds):
        order = sides if r % 2 == 0 else sides[::-1]
        for side in order:
            if args.quiet_wait > 0:
                others = wait_quiet(args.quiet_wait)
                if others is not None and others >= 0.25:
                    log(f"  other processes use {others:.2f} cores: timing anyway")
            if side.startswith("tfrs"):
                res = run_json(tfrs_cmd(args, tf_python), tf_env(), args.timeout)
            else:
                precision = side.split()[1]
                res = run_json(ours_cmd(args, precision), None, args.timeout)
            log(f"round {r + 1}/{args.rounds} {side}: {res['step_seconds']:.4f} s/step")
            results[side].append(res)

    tfrs = [x["step_seconds"] for x in results["tfrs fp32"]]
    gflops = results[sides[0]][0]["gflops_per_step"]
    rows = []
    for side in sides:
        secs = [x["step_seconds"] for x in results[side]]
        row = {
            "side": side,
            "step_seconds": statistics.median(secs),
            "step_seconds_all": secs,
            "gflops_per_second": gflops / statistics.median(secs),
            "speedup_vs_tfrs_fp32": statistics.median(t / s for t, s in zip(tfrs, secs)),
            "ratio_of_medians": statistics.median(tfrs) / statistics.median(secs),
        }
        if not side.startswith("tfrs"):
            busy = [b for x in results[side] for b in x["others_busy_cores"] if b is not None]
            row["others_busy_cores_median"] = statistics.median(busy) if busy else None
            row["matmul_peak_gflops"] = statistics.median(
                x["matmul_peak_gflops"] for x in results[side]
            )
            row["compile_seconds"] = statistics.median(x["compile_seconds"] for x in results[side])
        rows.append(row)

    print(
        f"\n{started:%Y-%m-%d %H:%M} UTC; CPU: {cpu_model()} ({usable_cpus()} usable); "
        f"torch {package_version('torch')}; commit {git_commit()}"
    )
    print(f"Command: python benchmarks/dlrm_vs_tfrs.py {shlex.join(argv or sys.argv[1:])}\n")
    print(
        "| side | s / step (median) | per round | GFLOP/s | speed-up vs TFRS fp32 "
        "| matmul peak GFLOP/s | others' cores |"
    )
    print("|---|---:|---|---:|---:|---:|---:|")
    for row in rows:
        peak, busy = row.get("matmul_peak_gflops"), row.get("others_busy_cores_median")
        print(
            f"| {row['side']} | {row['step_seconds']:.4f} "
            f"| {', '.join(f'{x:.3f}' for x in row['step_seconds_all'])} "
            f"| {row['gflops_per_second']:.0f} | {row['speedup_vs_tfrs_fp32']:.2f}x "
            f"| {'—' if peak is None else f'{peak:.0f}'} "
            f"| {'—' if busy is None else f'{busy:.2f}'} |"
        )
    if args.json:
        print(json.dumps({"batch_size": args.batch_size, "rounds": args.rounds, "sides": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
