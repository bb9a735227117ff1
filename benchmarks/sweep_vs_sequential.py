"""Sweeps vs sequential runs: N configurations in one vmapped compiled step, or one at a time.

Prints one JSON line per workload with ``workload``, ``configs``, ``sweep_seconds``,
``sequential_seconds``, ``ratio`` (sequential time / sweep time: above 1 the sweep is faster; for
the step workloads the median of the ratios of back-to-back blocks, which this shared VM's
changing speed affects least) and ``peak_rss_mb``, then a Markdown table for ``docs/benchmarks.md``.

Workloads:

- ``end_to_end``: ``examples/sweep.py`` (a 4 × 4 grid of learning rates × temperatures, 3 epochs,
  FactorizedTopK evaluation of every configuration after every epoch) as one process, against the
  same 16 configurations as 16 processes of ``examples/movielens_retrieval.py --json
  --learning-rate LR --temperature T`` run one after the other (each evaluates once at the end,
  twice in fact: the example times a second, warm evaluation). Both sides first run once,
  untimed, with ``--epochs 1``, so that torch.compile's on-disk caches (inductor, FX graph) are
  warm for the timed runs. Wall seconds include process start, data loading and (cached)
  compilation. Peak RSS is each process's own maximum resident set (``os.wait4``), not counting
  compile worker subprocesses; for the sequential side the largest of the 16.
- ``step_b8192`` and ``step_b256``: the train step alone, in this process, on synthetic batches of
  MovieLens-sized ids (943 users, 1,664 titles) with the basic retrieval model (embeddings of 32,
  summed in-batch softmax loss with a temperature, Adagrad): ``train.make_sweep_step`` over the 16
  stacked states against ``train.make_train_step`` called 16 times (once per configuration's state)
  per batch. Both are compiled and warmed up first; then blocks of ``--steps`` batches alternate
  between the two sides, ``--repeats`` times, and the medians are reported, as milliseconds per
  configuration per step. Each step workload runs in a child process of its own. Peak RSS: the
  process's high-water mark over each side's warm-up steps, reset before them
  (``/proc/self/clear_refs``), so it includes the process's baseline (torch, compiled code); the
  sequential side is measured first, the sweep's figure also holds the sequential side's states.

    python benchmarks/sweep_vs_sequential.py --data-dir ../shared/data/ml-100k
    python benchmarks/sweep_vs_sequential.py --skip-end-to-end --repeats 7
    python benchmarks/sweep_vs_sequential.py --device cuda --data-dir <ml-100k>
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

import torchrs_fn as rs
from torchrs_fn import layers, optim, train
from torchrs_fn.tasks import Retrieval

REPO_ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = REPO_ROOT / "examples"
NUM_USERS, NUM_TITLES = 943, 1664
LEARNING_RATES = [0.05, 0.1, 0.2, 0.5]
TEMPERATURES = [0.05, 0.1, 0.5, 1.0]


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- end to end (processes)


def _run_process(cmd: list[str], timeout: float, echo: bool = False) -> dict[str, Any]:
    """Run ``cmd`` in the repository root; wall seconds, its own peak RSS, its stdout lines."""
    log(f"$ {shlex.join(cmd)}")
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=out, stderr=err, text=True)
        deadline = start + timeout
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                proc.kill()
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.02)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if echo:
        for line in stderr.splitlines():
            if line.startswith(("step_b", "  ")):
                log(line)
    if proc.returncode != 0:
        tail = "\n".join(stderr.splitlines()[-30:])
        raise RuntimeError(f"{shlex.join(cmd)} failed (exit {proc.returncode}):\n{tail}")
    lines = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    return {
        "seconds": wall,
        "cpu_seconds": usage.ru_utime + usage.ru_stime,
        "peak_rss_mb": usage.ru_maxrss / 1024,
        "lines": lines,
    }


def end_to_end(args: argparse.Namespace) -> dict[str, Any]:
    py = sys.executable
    common = ["--json", "--seed", str(args.seed)]
    if args.data_dir:
        common += ["--data-dir", args.data_dir]
    if args.device:
        common += ["--device", args.device]
    lrs, temps = LEARNING_RATES, TEMPERATURES
    sweep_cmd = [
        py, str(EXAMPLES / "sweep.py"), *common,
        "--learning-rates", ",".join(map(str, lrs)),
        "--temperatures", ",".join(map(str, temps)),
    ]  # fmt: skip

    def single_cmd(lr: float, t: float) -> list[str]:
        return [
            py, str(EXAMPLES / "movielens_retrieval.py"), *common,
            "--learning-rate", str(lr), "--temperature", str(t),
        ]  # fmt: skip

    if not args.no_warm:
        log("warming the compile caches (one untimed run of each side, --epochs 1)")
        _run_process([*sweep_cmd, "--epochs", "1"], args.timeout)
        _run_process([*single_cmd(lrs[0], temps[0]), "--epochs", "1"], args.timeout)

    sweeps, sequentials, sweep_rss, seq_rss, sweep_cpu, seq_cpu = [], [], [], [], [], []
    sweep_lines, seq_lines = [], []
    for r in range(args.e2e_repeats):
        log(f"end_to_end round {r + 1}/{args.e2e_repeats}: sweep")
        if args.quiet_wait > 0:
            wait_quiet(args.quiet_wait)
        res = _run_process(sweep_cmd, args.timeout)
        sweeps.append(res["seconds"])
        sweep_cpu.append(res["cpu_seconds"])
        sweep_rss.append(res["peak_rss_mb"])
        sweep_lines = res["lines"]
        log(f"  {res['seconds']:.1f} s, peak RSS {res['peak_rss_mb']:.0f} MB")
        log(f"end_to_end round {r + 1}/{args.e2e_repeats}: 16 sequential processes")
        total, cpu, peak, lines = 0.0, 0.0, 0.0, []
        for lr in lrs:
            for t in temps:
                if args.quiet_wait > 0:
                    wait_quiet(args.quiet_wait)
                one = _run_process(single_cmd(lr, t), args.timeout)
                total += one["seconds"]
                cpu += one["cpu_seconds"]
                peak = max(peak, one["peak_rss_mb"])
                lines.append({"learning_rate": lr, "temperature": t, **one["lines"][-1]})
        sequentials.append(total)
        seq_cpu.append(cpu)
        seq_rss.append(peak)
        seq_lines = lines
        log(f"  {total:.1f} s, peak RSS {peak:.0f} MB")

    # The two sides should agree configuration by configuration (same init, same batches).
    sweep_top = {(r["learning_rate"], r["temperature"]): r["top_100"] for r in sweep_lines}
    diffs = [
        abs(sweep_top[(s["learning_rate"], s["temperature"])] - s["top_100"]) for s in seq_lines
    ]
    best = max(sweep_lines, key=lambda r: r["top_100"])
    sweep_s, seq_s = statistics.median(sweeps), statistics.median(sequentials)
    return {
        "workload": "end_to_end",
        "configs": len(lrs) * len(temps),
        "epochs": 3,
        "sweep_seconds": sweep_s,
        "sequential_seconds": seq_s,
        "ratio": seq_s / sweep_s,
        "peak_rss_mb": max(max(sweep_rss), max(seq_rss)),
        "sweep_peak_rss_mb": max(sweep_rss),
        "sequential_peak_rss_mb": max(seq_rss),
        "sweep_seconds_all": sweeps,
        "sequential_seconds_all": sequentials,
        "sequential_seconds_per_run": seq_s / len(seq_lines),
        "sweep_cpu_seconds": statistics.median(sweep_cpu),
        "sequential_cpu_seconds": statistics.median(seq_cpu),
        "sweep_epoch_seconds": sweep_lines[0]["epoch_seconds"],
        "sequential_epoch_seconds_median": [
            statistics.median(s["epoch_seconds"][e] for s in seq_lines)
            for e in range(len(seq_lines[0]["epoch_seconds"]))
        ],
        "sweep_seconds_in_process": sweep_lines[0]["sweep_seconds"],
        "best_config": {k: best[k] for k in ("learning_rate", "temperature", "top_100")},
        "max_top_100_difference_sweep_vs_sequential": max(diffs),
        "warm_compile_cache": not args.no_warm,
        "loadavg_after": os.getloadavg()[0],
        "device": args.device or ("cuda" if torch.cuda.is_available() else "cpu"),
    }


# ---------------------------------------------------------------- train step (in process)


class _Model(rs.Model):
    """The basic retrieval model; the temperature comes from the train state's hparams."""

    def __init__(self) -> None:
        super().__init__()
        self.user_model = layers.Embedding(NUM_USERS, 32)
        self.movie_model = layers.Embedding(NUM_TITLES, 32)
        self.task = Retrieval()

    def compute_loss(self, batch, training: bool = False, hparams=None):
        return self.task(
            self.user_model(batch["user_id"]),
            self.movie_model(batch["movie_title"]),
            temperature=None if hparams is None else hparams["temperature"],
        )


def _reset_peak_rss() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _peak_rss_mb() -> float:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _busy_jiffies() -> tuple[int, int]:
    """(all CPUs' busy jiffies, this process's jiffies), from /proc."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    busy = sum(fields) - fields[3] - fields[4]  # minus idle and iowait
    with open("/proc/self/stat") as f:
        own = f.read().rsplit(")", 1)[1].split()
    return busy, int(own[11]) + int(own[12])  # utime + stime


def _others_busy(seconds: float = 0.5) -> float:
    """Cores' worth of CPU that other processes used over ``seconds`` (Linux; 0.0 elsewhere)."""
    try:
        b0, o0 = _busy_jiffies()
        time.sleep(seconds)
        b1, o1 = _busy_jiffies()
    except (OSError, ValueError, IndexError):
        return 0.0
    return ((b1 - b0) - (o1 - o0)) / (os.sysconf("SC_CLK_TCK") * seconds)


def wait_quiet(max_wait: float) -> bool:
    """Wait (up to ``max_wait`` s) until other processes use under 0.15 cores; True if quiet."""
    deadline = time.perf_counter() + max_wait
    while True:
        others = _others_busy()
        if others < 0.15:
            return True
        if time.perf_counter() > deadline:
            log(f"  machine busy (others use {others:.2f} cores): timing anyway")
            return False
        time.sleep(2.0)


def step_workload(args: argparse.Namespace, batch_size: int) -> dict[str, Any]:
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    cuda = device.type == "cuda"

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize(device)

    model = _Model()
    optimizer = optim.adagrad(0.1)
    configs = [(lr, t) for lr in LEARNING_RATES for t in TEMPERATURES][: args.configs]
    n = len(configs)
    states = [
        train.init_state(
            rs.init(model, seed=args.seed, device=device),
            optim.adagrad(lr),
            hparams={"temperature": t},
            seed=args.seed,
        )
        for lr, t in configs
    ]
    g = torch.Generator().manual_seed(args.seed)
    batches = [
        {
            "user_id": torch.randint(0, NUM_USERS, (batch_size,), generator=g).to(device),
            "movie_title": torch.randint(0, NUM_TITLES, (batch_size,), generator=g).to(device),
        }
        for _ in range(args.steps)
    ]
    compile_ = not args.no_compile
    step = train.make_train_step(model, optimizer, compile=compile_)
    sweep_step = train.make_sweep_step(model, optimizer, compile=compile_)
    stacked = train.stack_states(states)
    active = torch.ones(n, dtype=torch.bool, device=device)

    # Each side: the first call (compiles), then warm-up steps with the peak RSS reset before
    # them. The sequential side goes first, so its figure never includes the sweep's memory;
    # the sweep's includes what the sequential side left allocated (its states, compiled code).
    can_reset = _reset_peak_rss()
    t0 = time.perf_counter()
    for i in range(n):
        states[i], _ = step(states[i], batches[0])
    sync()
    sequential_first = time.perf_counter() - t0
    _reset_peak_rss()
    for b in batches[1:3]:
        for i in range(n):
            states[i], _ = step(states[i], b)
    sync()
    seq_rss = _peak_rss_mb()
    t0 = time.perf_counter()
    stacked, _, _ = sweep_step(stacked, active, batches[0])
    sync()
    sweep_first = time.perf_counter() - t0
    _reset_peak_rss()
    for b in batches[1:3]:
        stacked, _, _ = sweep_step(stacked, active, b)
    sync()
    sweep_rss = _peak_rss_mb()
    log(
        f"step_b{batch_size}: first calls (compile) sequential {sequential_first:.1f} s "
        f"({n} states), sweep {sweep_first:.1f} s; peak RSS of the warm-up steps: sequential "
        f"{seq_rss:.0f} MB, sweep {sweep_rss:.0f} MB"
    )

    def run_sequential() -> tuple[float, float]:
        nonlocal states
        sync()
        t, c = time.perf_counter(), time.process_time()
        for b in batches:
            for i in range(n):
                states[i], _ = step(states[i], b)
        sync()
        return time.perf_counter() - t, time.process_time() - c

    def run_sweep() -> tuple[float, float]:
        nonlocal stacked
        sync()
        t, c = time.perf_counter(), time.process_time()
        for b in batches:
            stacked, _, _ = sweep_step(stacked, active, b)
        sync()
        return time.perf_counter() - t, time.process_time() - c

    seq_times, sweep_times = [], []
    cpu_times: dict[str, list[float]] = {"sweep": [], "sequential": []}
    contended = {"sweep": 0, "sequential": 0}
    cuda_peak = {"sweep": 0.0, "sequential": 0.0}
    for r in range(args.repeats):
        order = [("sweep", run_sweep), ("sequential", run_sequential)]
        if r % 2:
            order.reverse()
        for name, fn in order:
            quiet = wait_quiet(args.quiet_wait) if args.quiet_wait > 0 else None
            if quiet is False:
                contended[name] += 1
            if cuda:
                torch.cuda.reset_peak_memory_stats(device)
            seconds, cpu_seconds = fn()
            cpu_times[name].append(cpu_seconds)
            (sweep_times if name == "sweep" else seq_times).append(seconds)
            if cuda:
                cuda_peak[name] = max(
                    cuda_peak[name], torch.cuda.max_memory_allocated(device) / 2**20
                )
        log(
            f"  repeat {r + 1}/{args.repeats}: sweep {sweep_times[-1]:.3f} s, "
            f"sequential {seq_times[-1]:.3f} s ({args.steps} steps × {n} configs)"
        )
    per = args.steps * n
    sweep_s, seq_s = statistics.median(sweep_times), statistics.median(seq_times)
    out = {
        "workload": f"step_b{batch_size}",
        "configs": n,
        "batch_size": batch_size,
        "steps": args.steps,
        "repeats": args.repeats,
        "sweep_seconds": sweep_s,
        "sequential_seconds": seq_s,
        # Each repeat runs the two sides back to back (order alternating), so the ratio within a
        # repeat sees one phase of this shared VM (whose speed halves at times): the median of
        # those paired ratios is the robust figure; the ratio of the medians is kept beside it.
        "ratio": statistics.median(q / w for q, w in zip(seq_times, sweep_times)),
        "ratio_of_medians": seq_s / sweep_s,
        "sweep_ms_per_config_step": 1e3 * sweep_s / per,
        "sequential_ms_per_config_step": 1e3 * seq_s / per,
        "sweep_cpu_ms_per_config_step": 1e3 * statistics.median(cpu_times["sweep"]) / per,
        "sequential_cpu_ms_per_config_step": 1e3 * statistics.median(cpu_times["sequential"]) / per,
        "sweep_seconds_all": sweep_times,
        "sequential_seconds_all": seq_times,
        "peak_rss_mb": max(sweep_rss, seq_rss),
        "sweep_peak_rss_mb": sweep_rss,
        "sequential_peak_rss_mb": seq_rss,
        "peak_rss_reset": can_reset,
        "sweep_first_call_seconds": sweep_first,
        "sequential_first_calls_seconds": sequential_first,
        "compiled": compile_,
        "device": str(device),
        "loadavg_after": os.getloadavg()[0],
        "blocks_started_while_busy": contended,
    }
    if cuda:
        out["sweep_cuda_peak_mb"] = cuda_peak["sweep"]
        out["sequential_cuda_peak_mb"] = cuda_peak["sequential"]
    return out


# ---------------------------------------------------------------- report


def machine() -> str:
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(
                (ln.split(":", 1)[1].strip() for ln in f if ln.lower().startswith("model name")),
                cpu,
            )
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (
        f"{platform.platform()}; CPU: {cpu}; nproc: {os.cpu_count()}; {gpu}; "
        f"Python {platform.python_version()}; torch {torch.__version__}"
    )


def _ms(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:.1f}" if value >= 10 else f"{value:.3f}"


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| workload | configs | sweep s | sequential s | ratio (seq / sweep) "
        "| sweep ms / config / step | sequential ms / config / step | peak RSS MB (sweep / seq) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        per_sweep = r.get("sweep_ms_per_config_step")
        per_seq = r.get("sequential_ms_per_config_step")
        lines.append(
            f"| {r['workload']} | {r['configs']} | {r['sweep_seconds']:.2f} "
            f"| {r['sequential_seconds']:.2f} | {r['ratio']:.2f}× "
            f"| {_ms(per_sweep)} | {_ms(per_seq)} "
            f"| {r['sweep_peak_rss_mb']:,.0f} / {r['sequential_peak_rss_mb']:,.0f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", default=None, help="GroupLens ml-100k folder (end_to_end)")
    p.add_argument("--workloads", default="end_to_end,step_b8192,step_b256")
    p.add_argument("--skip-end-to-end", action="store_true")
    p.add_argument("--repeats", type=int, default=9, help="timed blocks per side (step workloads)")
    p.add_argument("--e2e-repeats", type=int, default=1, help="timed rounds of end_to_end")
    p.add_argument("--no-warm", action="store_true", help="end_to_end: no untimed warm-up runs")
    p.add_argument("--steps", type=int, default=None, help="batches per timed block (default: "
                   "batches >= 4096: 2 on CPU, 10 on GPU; smaller: 50)")  # fmt: skip
    p.add_argument("--configs", type=int, default=16, help="step workloads: how many configs")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument("--no-compile", action="store_true", help="step workloads: eager steps")
    p.add_argument(
        "--quiet-wait",
        type=float,
        default=60.0,
        help="before each timed block (step workloads) or timed process (end_to_end) wait up to "
        "this many seconds for other processes to leave the CPUs (0: never wait)",
    )
    p.add_argument(
        "--in-process",
        action="store_true",
        help="run the step workloads in this process (default: one child process each)",
    )
    p.add_argument("--timeout", type=float, default=1800.0, help="seconds per process")
    args = p.parse_args(argv)
    workloads = [w for w in args.workloads.split(",") if w]
    if args.skip_end_to_end:
        workloads = [w for w in workloads if w != "end_to_end"]
    started = dt.datetime.now(dt.timezone.utc)
    log(f"{started:%Y-%m-%d %H:%M} UTC · {machine()}")
    steps_given = args.steps
    rows = []
    for w in workloads:
        if w == "end_to_end":
            row = end_to_end(args)
        elif w.startswith("step_b") and args.in_process:
            batch = int(w.removeprefix("step_b"))
            cpu = (args.device or ("cuda" if torch.cuda.is_available() else "cpu")) == "cpu"
            if steps_given is None:
                args.steps = (2 if cpu else 10) if batch >= 4096 else 50
            row = step_workload(args, batch)
        elif w.startswith("step_b"):
            # A fresh process per step workload: its own compile, its own peak RSS.
            cmd = [sys.executable, str(Path(__file__).resolve()), "--workloads", w, "--in-process"]
            cmd += ["--repeats", str(args.repeats), "--configs", str(args.configs)]
            cmd += ["--seed", str(args.seed), "--quiet-wait", str(args.quiet_wait)]
            cmd += [] if steps_given is None else ["--steps", str(steps_given)]
            cmd += [] if args.device is None else ["--device", args.device]
            cmd += ["--no-compile"] if args.no_compile else []
            row = _run_process(cmd, args.timeout, echo=True)["lines"][-1]
        else:
            p.error(f"unknown workload {w!r}")
        print(json.dumps(row), flush=True)
        rows.append(row)
    print(f"\n{started:%Y-%m-%d %H:%M} UTC; {machine()}")
    print(f"Command: python benchmarks/sweep_vs_sequential.py {shlex.join(argv or sys.argv[1:])}\n")
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
