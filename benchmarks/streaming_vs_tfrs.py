"""Streaming exact top-k from Parquet: ``index.Streaming`` against TFRS ``factorized_top_k.Streaming``.

Data (numpy, seed 0, ``make_data`` of ``benchmarks/topk_vs_faiss.py``): ``--candidates``
clustered candidates of dimension ``--dim`` (1,000 cluster centres drawn from N(0, 1), each
candidate a centre plus N(0, 0.3²) noise) and ``--queries`` queries drawn the same way; float32.
The candidates are written once (cached in ``--data-dir``) to Parquet with columns ``id`` (int64,
a random permutation of 0..N-1, so that ids are not row numbers) and ``embedding``
(``fixed_size_list<float32>[D]``), in ``--files`` files (one file ``candidates.parquet``, or a
directory ``candidates/``) of ``--row-group-rows`` rows per row group; the queries go to
``queries.npy``.

Each side runs in its own process, one after the other (never together), and reads the same
files on every call:

* torchrs_fn (this script, ``--side torchrs_fn``, this venv): ``index.Streaming(path,
  batch_rows=--batch-rows)(queries, k)``;
* TFRS (``benchmarks/tfrs_streaming.py`` in the TensorFlow venv, ``TF_USE_LEGACY_KERAS=1``):
  ``tfrs.layers.factorized_top_k.Streaming(query_model=Lambda(identity), k)
  .index_from_dataset(ds)`` with ``ds`` a ``tf.data.Dataset.from_generator`` over
  ``pyarrow.dataset`` record batches of the same Parquet data (``--tfrs-input generator``), and
  optionally also the tutorials' in-memory ``from_tensor_slices(...).batch()`` (``memory``).

Each side times ``--repeats`` calls after one warm-up call and reports the median. Peak memory
(``peak_mib``, "peak MiB"): the process's peak resident size (``VmHWM``, reset through
``/proc/self/clear_refs`` once the queries are loaded and the index is built) over the warm-up and
timed calls, minus its resident size at that reset. Memory that an allocator keeps after a call
(glibc's heap, Arrow's mimalloc pool) counts, since the process holds it. ``peak_extra_mib``
("timed MiB", as in ``topk_vs_faiss.py``): the growth during the timed calls only, over the
resident size after the warm-up call (which already includes what the allocators kept).

Before each run the driver waits (at most ``--max-wait`` s) until the 1-minute load average is
at most ``--max-load`` and the CPUs were at most ``--max-busy`` busy over 5 s (the load average
lags); it records both, the load average after the run (which counts the run's own threads), and
the CPU seconds other programs used during the run (``others_cpu_seconds``, from ``/proc/stat``
minus the child's own). A run during which other programs used more than ``--max-others`` of the
CPUs is run again (``--retries`` times at most; ``attempts`` in the output).

Agreement (as ``topk_vs_faiss.py``): for every query the score lists agree to 1e-4 and the id
sets differ only where the k-th score is tied.

    python benchmarks/streaming_vs_tfrs.py                   # 1,000 queries x 1,000,000 x 64, k 100
    python benchmarks/streaming_vs_tfrs.py --json            # one JSON line
    python benchmarks/streaming_vs_tfrs.py --tfrs-input generator,memory --max-load 1.2
    python benchmarks/streaming_vs_tfrs.py --candidates 100000 --repeats 2   # a quick look

The TFRS interpreter is ``--tfrs-python``, else ``.venv-tfrs/bin/python``, else ``$TFRS_PYTHON``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import json
import os
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
sys.path.insert(0, str(BENCH_DIR))

from _sidebyside import (  # noqa: E402
    cpu_model,
    library_version,
    log,
    machine_busy_seconds,
    package_version,
    resolve_tf_python,
    tf_env,
    wait_for_quiet,
)
from topk_vs_faiss import agreement, make_data  # noqa: E402

# --- data ----------------------------------------------------------------------------------------


def data_dir_for(args: argparse.Namespace) -> Path:
    if args.data_dir is not None:
        return args.data_dir
    name = f"n{args.candidates}_b{args.queries}_d{args.dim}_rg{args.row_group_rows}_f{args.files}"
    return Path(tempfile.gettempdir()) / "torchrs_streaming_bench" / name


def write_data(args: argparse.Namespace, data_dir: Path) -> dict[str, Any]:
    """Writes (once) the Parquet candidates and ``queries.npy``; returns a description."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    done = data_dir / "done.json"
    if done.exists():
        return json.loads(done.read_text())
    data_dir.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    candidates, queries = make_data(args.candidates, args.queries, args.dim)
    ids = np.random.default_rng(1).permutation(args.candidates).astype(np.int64)
    np.save(data_dir / "queries.npy", queries)
    embedding = pa.FixedSizeListArray.from_arrays(pa.array(candidates.reshape(-1)), args.dim)
    table = pa.table({"id": pa.array(ids), "embedding": embedding})
    if args.files == 1:
        pq.write_table(table, data_dir / "candidates.parquet", row_group_size=args.row_group_rows)
    else:
        (data_dir / "candidates").mkdir(exist_ok=True)
        bounds = np.linspace(0, args.candidates, args.files + 1).astype(int)
        for i, (lo, hi) in enumerate(itertools.pairwise(bounds)):
            pq.write_table(
                table.slice(lo, hi - lo),
                data_dir / "candidates" / f"part-{i:03d}.parquet",
                row_group_size=args.row_group_rows,
            )
    info = {
        "candidates": args.candidates,
        "queries": args.queries,
        "dim": args.dim,
        "files": args.files,
        "row_group_rows": args.row_group_rows,
        "parquet_bytes": sum(f.stat().st_size for f in data_dir.rglob("*.parquet")),
        "write_seconds": time.perf_counter() - t,
    }
    done.write_text(json.dumps(info))
    return info


def candidates_path(data_dir: Path) -> Path:
    for name in ("candidates", "candidates.parquet"):
        if (data_dir / name).exists():
            return data_dir / name
    raise FileNotFoundError(f"no candidates/ or candidates.parquet in {data_dir}")


# --- our side (a child process) ------------------------------------------------------------------


def status_kib(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def reset_peak() -> None:
    """Reset the process's peak resident size (VmHWM) to its current size (Linux >= 4.0)."""
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")


def torch_side(args: argparse.Namespace) -> int:
    import torch

    try:
        import torchrs_fn  # noqa: F401
    except ModuleNotFoundError:
        sys.path.insert(0, str(REPO_ROOT))
    from torchrs_fn import index

    data_dir = args.data_dir
    queries = torch.from_numpy(np.load(data_dir / "queries.npy"))
    if args.use_queries is not None:
        queries = queries[: args.use_queries].contiguous()
    path = candidates_path(data_dir)
    streaming = index.Streaming(path, batch_rows=args.batch_rows)

    base0 = status_kib("VmRSS")
    reset_peak()
    t = time.perf_counter()
    scores, ids = streaming(queries, args.k)
    first_seconds = time.perf_counter() - t
    first_peak = status_kib("VmHWM")
    del scores, ids
    base = status_kib("VmRSS")
    reset_peak()
    times, cpu = [], []
    for _ in range(args.repeats):
        c = time.process_time()
        t = time.perf_counter()
        scores, ids = streaming(queries, args.k)
        times.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    peak = status_kib("VmHWM")
    overall = max(first_peak, peak)  # VmHWM since setup (the warm-up call included)
    if args.out_prefix:
        np.save(f"{args.out_prefix}_ids.npy", ids.numpy())
        np.save(f"{args.out_prefix}_scores.npy", scores.numpy())
    import pyarrow as pa

    print(
        json.dumps(
            {
                "framework": "torchrs_fn",
                "queries": int(queries.shape[0]),
                "k": args.k,
                "batch_rows": args.batch_rows,
                "seconds": statistics.median(times),
                "all_seconds": times,
                "cpu_seconds": statistics.median(cpu),
                "first_call_seconds": first_seconds,
                "peak_extra_mib": max(0, peak - base) / 1024,
                "first_call_peak_extra_mib": max(0, first_peak - base0) / 1024,
                "peak_over_setup_mib": max(0, overall - base0) / 1024,
                "setup_rss_mib": base0 / 1024,
                "rss_mib": base / 1024,
                "peak_mib": peak / 1024,
                "torch_version": torch.__version__,
                "torch_threads": torch.get_num_threads(),
                "pyarrow_version": pa.__version__,
                "library": library_version(("index/streaming.py", "index/brute_force.py")),
            }
        )
    )
    return 0


# --- running the sides ---------------------------------------------------------------------------


def run_child(cmd: list[str], env: dict[str, str], timeout: float) -> dict[str, Any]:
    """Runs ``cmd``; returns its last stdout line (JSON) plus the machine's load around it."""
    log(f"$ {shlex.join(cmd)}")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    busy_before = machine_busy_seconds()
    start = time.perf_counter()
    proc = subprocess.run(
        cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    wall = time.perf_counter() - start
    busy_after = machine_busy_seconds()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    lines = [line for line in proc.stdout.splitlines() if line.strip().startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = "\n".join(proc.stderr.splitlines()[-30:])
        raise RuntimeError(f"{shlex.join(cmd)} failed (exit {proc.returncode}):\n{tail}")
    result: dict[str, Any] = json.loads(lines[-1])
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    result["process_wall_seconds"] = wall
    result["process_cpu_seconds"] = cpu
    if busy_before is not None and busy_after is not None:
        result["others_cpu_seconds"] = max(0.0, busy_after - busy_before - cpu)
    result["load_at_end"] = os.getloadavg()[0]
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--candidates", type=int, default=1_000_000)
    p.add_argument("--queries", type=int, default=1000, help="queries generated and written")
    p.add_argument(
        "--use-queries", type=int, default=None, help="time only the first N queries (both sides)"
    )
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--k", type=int, default=100)
    p.add_argument("--files", type=int, default=1, help="Parquet files (>1: a directory)")
    p.add_argument("--row-group-rows", type=int, default=65536)
    p.add_argument("--batch-rows", type=int, default=65536, help="our side's batch_rows")
    p.add_argument(
        "--tfrs-batch-rows", type=int, default=None, help="TFRS candidate batch (default: same)"
    )
    p.add_argument("--tfrs-input", default="generator", help="generator, memory, or both (a,b)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--data-dir", type=Path, default=None, help="cache of the written data")
    p.add_argument("--tfrs-python", default=None)
    p.add_argument("--skip-tfrs", action="store_true")
    p.add_argument("--max-load", type=float, default=1.2)
    p.add_argument("--max-busy", type=float, default=None, help="fraction of all CPUs, e.g. 0.6")
    p.add_argument("--max-wait", type=float, default=900.0)
    p.add_argument(
        "--max-others",
        type=float,
        default=0.05,
        help="rerun a side when other programs used more than this share of the CPUs meanwhile",
    )
    p.add_argument("--retries", type=int, default=3, help="reruns per side at most")
    p.add_argument("--timeout", type=float, default=3600.0, help="seconds per side")
    p.add_argument("--json", action="store_true")
    p.add_argument("--side", choices=("torchrs_fn",), default=None, help=argparse.SUPPRESS)
    p.add_argument("--out-prefix", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.side == "torchrs_fn":
        return torch_side(args)

    data_dir = data_dir_for(args)
    log(f"data in {data_dir}")
    data = write_data(args, data_dir)
    tfrs_batch = args.tfrs_batch_rows or args.batch_rows
    common = ["--data-dir", str(data_dir), "--k", str(args.k), "--repeats", str(args.repeats)]
    if args.use_queries is not None:
        common += ["--use-queries", str(args.use_queries)]
    out_dir = Path(tempfile.mkdtemp(prefix="streaming_vs_tfrs_"))
    runs: dict[str, dict[str, Any]] = {}

    env = dict(os.environ)
    # A PYTHONPATH given to this script comes first (to time another copy of torchrs_fn).
    env["PYTHONPATH"] = os.pathsep.join(p for p in (env.get("PYTHONPATH"), str(REPO_ROOT)) if p)

    def run_quietly(cmd: list[str], env: dict[str, str]) -> dict[str, Any]:
        """Waits for a quiet machine, runs ``cmd``; runs it again (at most ``--retries`` more
        times) when other programs took more than ``--max-others`` of the CPUs meanwhile."""
        for attempt in range(args.retries + 1):
            waited = wait_for_quiet(args.max_load, args.max_busy, args.max_wait, poll=20.0)
            quiet = {
                "load_at_start": waited["load_average"],
                "busy_at_start": waited["busy_fraction"],
                "waited_seconds": waited["waited_seconds"],
            }
            result = {**run_child(cmd, env, args.timeout), **quiet, "attempts": attempt + 1}
            others = result.get("others_cpu_seconds")
            share = None
            if others is not None:
                share = others / (result["process_wall_seconds"] * (os.cpu_count() or 1))
            result["others_cpu_share"] = share
            if share is None or share <= args.max_others:
                break
            log(f"  other programs took {share:.0%} of the CPUs during the run: running it again")
        return result

    cmd = [sys.executable, str(Path(__file__).resolve()), "--side", "torchrs_fn", *common]
    cmd += ["--batch-rows", str(args.batch_rows), "--out-prefix", str(out_dir / "torchrs_fn")]
    runs["torchrs_fn"] = run_quietly(cmd, env)

    if not args.skip_tfrs:
        tf_python = resolve_tf_python(args.tfrs_python, "--tfrs-python")
        for mode in [m.strip() for m in args.tfrs_input.split(",") if m.strip()]:
            cmd = [tf_python, str(BENCH_DIR / "tfrs_streaming.py"), "--json", "--input", mode]
            cmd += [a.replace("--use-queries", "--queries") for a in common]
            cmd += ["--batch-rows", str(tfrs_batch), "--out-prefix", str(out_dir / f"tfrs_{mode}")]
            runs[f"tfrs_{mode}"] = run_quietly(cmd, tf_env())

    def top(name: str) -> dict[str, np.ndarray]:
        return {
            "ids": np.load(out_dir / f"{name}_ids.npy"),
            "scores": np.load(out_dir / f"{name}_scores.npy"),
        }

    ours = runs["torchrs_fn"]
    line: dict[str, Any] = {
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu_model(),
        "cpus": os.cpu_count(),
        "candidates": args.candidates,
        "queries": ours["queries"],
        "dim": args.dim,
        "k": args.k,
        "files": args.files,
        "row_group_rows": args.row_group_rows,
        "parquet_mib": data["parquet_bytes"] / 2**20,
        "batch_rows": args.batch_rows,
        "tfrs_batch_rows": tfrs_batch,
        "repeats": args.repeats,
        "torch": package_version("torch"),
        "pyarrow": package_version("pyarrow"),
        "torchrs_fn_seconds": ours["seconds"],
        "torchrs_fn_all_seconds": ours["all_seconds"],
        "torchrs_fn_qps": ours["queries"] / ours["seconds"],
        "torchrs_fn_peak_mib": ours["peak_over_setup_mib"],
        "torchrs_fn_peak_extra_mib": ours["peak_extra_mib"],
        "torchrs_fn_first_call_peak_extra_mib": ours["first_call_peak_extra_mib"],
        "torchrs_fn_rss_mib": ours["rss_mib"],
        "torchrs_fn_load": [ours["load_at_start"], ours["load_at_end"]],
        "torchrs_fn_others_cpu_seconds": ours.get("others_cpu_seconds"),
        "torchrs_fn_attempts": ours["attempts"],
        "torchrs_fn_library": ours["library"],
    }
    first_tfrs = None
    for name, r in runs.items():
        if name == "torchrs_fn":
            continue
        first_tfrs = first_tfrs or name
        line[f"{name}_seconds"] = r["seconds"]
        line[f"{name}_all_seconds"] = r["all_seconds"]
        line[f"{name}_qps"] = r["queries"] / r["seconds"]
        line[f"{name}_peak_mib"] = r["peak_over_setup_mib"]
        line[f"{name}_peak_extra_mib"] = r["peak_extra_mib"]
        line[f"{name}_first_call_peak_extra_mib"] = r["first_call_peak_extra_mib"]
        line[f"{name}_rss_mib"] = r["rss_mib"]
        line[f"{name}_load"] = [r["load_at_start"], r["load_at_end"]]
        line[f"{name}_others_cpu_seconds"] = r.get("others_cpu_seconds")
        line[f"{name}_attempts"] = r["attempts"]
        line[f"{name}_speedup"] = r["seconds"] / ours["seconds"]
        agree = agreement(top("torchrs_fn"), top(name))
        line[f"{name}_agreement"] = agree
        line["tf_version"], line["tfrs_version"] = r["tf_version"], r["tfrs_version"]
    if first_tfrs is not None:
        # The headline: the first TFRS input mode (the streaming generator by default).
        line["tfrs_input"] = first_tfrs.removeprefix("tfrs_")
        line["tfrs_seconds"] = line[f"{first_tfrs}_seconds"]
        line["tfrs_peak_mib"] = line[f"{first_tfrs}_peak_mib"]
        line["speedup"] = line[f"{first_tfrs}_speedup"]
        line["agree"] = all(line[f"{n}_agreement"]["agree"] for n in runs if n != "torchrs_fn")
    if args.json:
        print(json.dumps(line))
        return 0
    print(
        f"{line['queries']:,} queries x {args.candidates:,} candidates (D={args.dim}) from Parquet, "
        f"top {args.k}; {line['date']}, {line['cpu']} ({line['cpus']} CPUs)"
    )
    lib = ours["library"]
    print(f"torchrs_fn: {lib['path']} (commit {lib.get('git_commit')}, uncommitted changes: "
          f"{lib.get('uncommitted_changes')}, sha1 {lib['files_sha1']})")  # fmt: skip
    print(f"{'side':28s} {'seconds':>9s} {'QPS':>8s} {'peak MiB':>9s} {'timed MiB':>9s} "
          f"{'load':>11s} {'others s':>8s} {'speedup':>8s}  agreement")  # fmt: skip
    for name, r in runs.items():
        label = "torchrs_fn Streaming" if name == "torchrs_fn" else f"TFRS Streaming ({name[5:]})"
        speed = "" if name == "torchrs_fn" else f"{line[f'{name}_speedup']:.2f}x"
        agree = ""
        if name != "torchrs_fn":
            a = line[f"{name}_agreement"]
            agree = f"{a['agree']} (identical sets {a['identical_id_sets']:.1%})"
        print(
            f"{label:28s} {r['seconds']:9.3f} {r['queries'] / r['seconds']:8.1f} "
            f"{r['peak_over_setup_mib']:9.1f} {r['peak_extra_mib']:9.1f} "
            f"{r['load_at_start']:5.2f}-{r['load_at_end']:5.2f} {r.get('others_cpu_seconds', 0):8.1f} "
            f"{speed:>8s}  {agree}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
