"""Side-by-side benchmark: TensorFlow Recommenders vs torchrs_fn on MovieLens 100K retrieval.

Both sides train the TFRS "basic retrieval" tutorial model (32-d user and movie embeddings,
in-batch softmax retrieval loss, Adagrad(0.1), batch 8192, 3 epochs) and evaluate factorized
top-K accuracy (K = 1, 5, 10, 50, 100) over all movies on the same 80/20 split:

* TFRS: ``benchmarks/tfrs_basic_retrieval.py`` in the TensorFlow virtualenv
  (``benchmarks/setup_tfrs_venv.sh`` creates ``.venv-tfrs``), run with ``TF_USE_LEGACY_KERAS=1``;
* torchrs_fn: ``examples/movielens_retrieval.py`` in this (the current) Python environment.

This script runs in the torchrs_fn environment. It loads MovieLens 100K and splits it with the
torchrs_fn public API (``movielens.load`` + ``random_split``), writes the split to Parquet in a
temporary folder for the TFRS script, then runs the two programs one after the other (never
concurrently), alternating TFRS, torchrs_fn, TFRS, ... for ``--repeats`` rounds. Each program
reports wall-clock seconds per training epoch (the first includes warm-up: tracing/compilation
and data caching) and for one pass over the test set; the table shows medians over repeats.

Time to result (issue "first run"): each round runs every program twice, *cold* then *warm*.
torchrs_fn runs in each ``--torch-modes`` mode: ``auto`` (the default: the step compiles only
when the run pays it back) and ``on`` (``--compile on``, always compiled). Its cold run gets an
empty torch.compile cache (a fresh ``TORCHINDUCTOR_CACHE_DIR``), its warm run the cache the cold
run just filled, as a user's second run would. TensorFlow keeps no compile cache between
processes, so TFRS's two runs differ only by the operating system's file cache. The second
table gives, per run, epoch 1, the steady-state epoch (median of epochs 2+) and the whole
process's wall time (interpreter start to exit, data loading and evaluation included).

Usage (from the repository root)::

    benchmarks/setup_tfrs_venv.sh            # once
    python benchmarks/compare_tfrs.py --repeats 3 --json-out /tmp/bench.json

Output: a Markdown block (machine, date, command, versions, results table) ready to paste into
``docs/benchmarks.md``; progress goes to stderr. ``--json-out`` saves every raw result.

The TFRS interpreter is ``--tfrs-python`` if given, else ``.venv-tfrs/bin/python`` if it exists,
else ``$TFRS_PYTHON``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shlex
import statistics
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from _sidebyside import (
    REPO_ROOT,
    cpu_model,
    git_commit,
    log,
    package_version,
    resolve_tf_python,
    run_json,
    tf_env,
    usable_cpus,
)

try:
    import torchrs_fn
except ModuleNotFoundError:  # Not installed: use the checkout this script belongs to.
    sys.path.insert(0, str(REPO_ROOT))
    import torchrs_fn

    # The torchrs_fn example runs as a subprocess; let it import the same checkout.
    os.environ["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH")) if p
    )

from torchrs_fn.data import random_split
from torchrs_fn.data.datasets import movielens

TFRS_SCRIPT = REPO_ROOT / "benchmarks" / "tfrs_basic_retrieval.py"
TORCH_SCRIPT = REPO_ROOT / "examples" / "movielens_retrieval.py"

TOP_KS = (1, 5, 10, 50, 100)
FRAMEWORKS = ("tfrs", "torchrs_fn")
TEMPERATURES = ("cold", "warm")
REQUIRED_KEYS = (*(f"top_{k}" for k in TOP_KS), "epoch_seconds", "eval_seconds")


def write_split(data_dir: str | None, seed: int, out_dir: Path) -> dict[str, Any]:
    """Loads and splits MovieLens 100K with torchrs_fn; writes the TFRS script's inputs.

    Returns the paths of ``train``/``test``/``movies`` Parquet files and the row counts.
    """
    ratings, movies = movielens.load("100k", data_dir=data_dir)
    train, test = random_split(ratings, (0.8, 0.2), seed=seed)
    paths = {name: out_dir / f"{name}.parquet" for name in ("train", "test", "movies")}
    for name, table in (("train", train), ("test", test)):
        pq.write_table(
            pa.table(
                {
                    "user_id": table.column("user_id").cast(pa.string()),
                    "movie_title": table.column("movie_title").cast(pa.string()),
                }
            ),
            paths[name],
        )
    pq.write_table(
        pa.table({"movie_title": movies.column("movie_title").cast(pa.string())}), paths["movies"]
    )
    return {
        "paths": {name: str(path) for name, path in paths.items()},
        "rows": {"train": train.num_rows, "test": test.num_rows, "movies": movies.num_rows},
    }


def run_json_command(cmd: Sequence[str], env: dict[str, str], timeout: float) -> dict[str, Any]:
    """``run_json`` plus a check that the result has every key the report needs."""
    result = run_json(cmd, env, timeout)
    missing = [key for key in REQUIRED_KEYS if key not in result]
    if missing:
        raise RuntimeError(f"{shlex.join(cmd)}: result lacks {missing}: {result}")
    wall = result["process_wall_seconds"]
    log(
        f"  done in {wall:.1f} s: top_100={result['top_100']:.4f} "
        f"epochs={[round(s, 2) for s in result['epoch_seconds']]} eval={result['eval_seconds']:.2f}"
    )
    return result


def tfrs_command(args: argparse.Namespace, tfrs_python: str, split: dict[str, Any]) -> list[str]:
    paths = split["paths"]
    return [
        tfrs_python, str(TFRS_SCRIPT),
        "--train", paths["train"], "--test", paths["test"], "--movies", paths["movies"],
        "--epochs", str(args.epochs), "--seed", str(args.seed), "--json",
    ]  # fmt: skip


def torch_command(args: argparse.Namespace, mode: str = "auto") -> list[str]:
    cmd = [
        sys.executable, str(args.torch_script),
        "--json", "--seed", str(args.seed), "--epochs", str(args.epochs), "--compile", mode,
    ]  # fmt: skip
    if args.data_dir:
        cmd += ["--data-dir", args.data_dir]
    return cmd


def _median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def summarize(results: Sequence[dict[str, Any]]) -> dict[str, float | None]:
    """Medians over repeats: accuracies, first epoch, later epochs (pooled), evaluation.

    Optional keys (``eval_seconds_first``, ``epoch_cpu_seconds``, ``eval_cpu_seconds``) are
    summarized when a result has them, else give ``None``.
    """
    summary: dict[str, float | None] = {
        f"top_{k}": _median([r[f"top_{k}"] for r in results]) for k in TOP_KS
    }
    for prefix, key in (("", "epoch_seconds"), ("cpu_", "epoch_cpu_seconds")):
        epochs = [r[key] for r in results if r.get(key)]
        summary[f"first_epoch_{prefix}seconds"] = _median([e[0] for e in epochs])
        summary[f"later_epoch_{prefix}seconds"] = _median([s for e in epochs for s in e[1:]])
    for key in ("eval_seconds", "eval_seconds_first", "eval_cpu_seconds"):
        summary[key] = _median([r[key] for r in results if r.get(key) is not None])
    return summary


ROWS: tuple[tuple[str, str, bool], ...] = (
    *((f"top_{k}", f"top-{k} accuracy", False) for k in TOP_KS),
    ("first_epoch_seconds", "epoch 1 seconds (incl. warm-up)", True),
    ("later_epoch_seconds", "epoch 2+ seconds (median)", True),
    ("eval_seconds", "eval seconds (test set)", True),
    ("eval_seconds_first", "first eval seconds (incl. warm-up)", True),
    ("later_epoch_cpu_seconds", "epoch 2+ process CPU seconds (median)", True),
    ("eval_cpu_seconds", "eval process CPU seconds", True),
)


def format_table(summaries: dict[str, dict[str, float | None]]) -> str:
    """Markdown table: one row per figure; ratio = TFRS / torchrs_fn for times."""

    def cell(value: float | None, is_time: bool) -> str:
        if value is None:
            return "—"
        return f"{value:.2f}" if is_time else f"{value:.4f}"

    lines = ["| | TFRS | torchrs_fn | ratio (TFRS / torchrs_fn) |", "|---|---:|---:|---:|"]
    for key, label, is_time in ROWS:
        tf_value, torch_value = summaries["tfrs"][key], summaries["torchrs_fn"][key]
        if tf_value is None and torch_value is None:
            continue
        ratio = "—"
        if is_time and tf_value is not None and torch_value:
            ratio = f"{tf_value / torch_value:.2f}×"
        lines.append(
            f"| {label} | {cell(tf_value, is_time)} | {cell(torch_value, is_time)} | {ratio} |"
        )
    return "\n".join(lines)


def time_to_result_table(runs: dict[str, list[dict[str, Any]]], torch_modes: Sequence[str]) -> str:
    """Markdown table: epoch 1, steady-state epoch and whole-process seconds, cold and warm.

    Medians over rounds; the last column is TFRS's whole process (same temperature) divided by
    the row's.
    """
    lines = [
        "| program | caches | epoch 1 s | epoch 2+ s (median) | whole process s "
        "| TFRS whole / this |",
        "|---|---|---:|---:|---:|---:|",
    ]
    programs = [("TFRS", "tfrs")] + [
        (f"torchrs_fn `--compile {mode}`", f"torchrs_fn/{mode}") for mode in torch_modes
    ]
    for temperature in TEMPERATURES:
        tf_whole = _median([r["process_wall_seconds"] for r in runs[f"tfrs/{temperature}"]])
        for label, key in programs:
            results = runs[f"{key}/{temperature}"]
            first = _median([r["epoch_seconds"][0] for r in results])
            later = _median([s for r in results for s in r["epoch_seconds"][1:]])
            whole = _median([r["process_wall_seconds"] for r in results])
            ratio = f"{tf_whole / whole:.2f}×" if tf_whole and whole else "—"
            later_cell = f"{later:.2f}" if later is not None else "—"
            lines.append(
                f"| {label} | {temperature} | {first:.2f} | {later_cell} | {whole:.2f} | {ratio} |"
            )
    return "\n".join(lines)


def machine_info() -> dict[str, Any]:
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_model": cpu_model(),
        "nproc": usable_cpus(),
        "torch_version": package_version("torch"),
        "torchrs_fn_version": getattr(torchrs_fn, "__version__", None)
        or package_version("torchrs_fn"),
        "torchrs_fn_path": next(iter(torchrs_fn.__path__), None),
    }


def report(
    args: argparse.Namespace,
    command: str,
    date: str,
    machine: dict[str, Any],
    runs: dict[str, list[dict[str, Any]]],
    summaries: dict[str, dict[str, float | None]],
) -> str:
    """The Markdown block printed on stdout."""
    tf_run = runs["tfrs/cold"][0]
    commit = git_commit()
    versions = (
        f"- Python {machine['python']}; torch {machine['torch_version']}; "
        f"torchrs_fn {machine['torchrs_fn_version']}{f' (commit {commit})' if commit else ''}; "
        f"TensorFlow {tf_run.get('tf_version', '?')}; TFRS {tf_run.get('tfrs_version', '?')}"
    )
    lines = [
        (
            f"MovieLens 100K retrieval (TFRS basic_retrieval recipe), {args.epochs} epoch(s), "
            f"seed {args.seed}, median of {args.repeats} run(s) each, run one after the other."
        ),
        "",
        f"- Date: {date}",
        f"- Machine: {machine['platform']}; CPU: {machine['cpu_model']}; "
        + f"nproc: {machine['nproc']}",
        versions,
        f"- Command: `{command}`",
        "",
        format_table(summaries),
        "",
        f"Time to result (torchrs_fn rows above: `--compile {args.torch_modes[0]}`, warm):",
        "",
        time_to_result_table(runs, args.torch_modes),
        "",
        (
            "Times are wall-clock seconds unless marked CPU (user + system seconds of the "
            "process, all threads); ratio > 1 means torchrs_fn is faster. Top-K metrics are "
            "computed only at evaluation time on both sides; rows a side does not report "
            "show —."
        ),
    ]
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--data-dir", default=None, help="MovieLens files (movielens.load)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=1, help="rounds of (TFRS, torchrs_fn)")
    parser.add_argument("--tfrs-python", default=None, help="TensorFlow virtualenv's python")
    parser.add_argument("--torch-script", type=Path, default=TORCH_SCRIPT)
    parser.add_argument("--json-out", type=Path, default=None, help="write raw results here")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds per program run")
    parser.add_argument(
        "--torch-modes",
        default="auto,on",
        help="comma-separated --compile modes of the torchrs_fn runs (auto, on, off)",
    )
    args = parser.parse_args(argv)
    args.torch_modes = [m for m in args.torch_modes.split(",") if m]
    if not args.torch_modes or set(args.torch_modes) - {"auto", "on", "off"}:
        parser.error("--torch-modes takes a comma-separated subset of auto, on, off")
    if args.repeats < 1 or args.epochs < 1:
        parser.error("--repeats and --epochs must be >= 1")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    command = shlex.join(["python", *(sys.argv if argv is None else ["compare_tfrs.py", *argv])])
    date = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    tfrs_python = resolve_tf_python(args.tfrs_python, "--tfrs-python")
    machine = machine_info()

    keys = ["tfrs", *(f"torchrs_fn/{mode}" for mode in args.torch_modes)]
    runs: dict[str, list[dict[str, Any]]] = {
        f"{key}/{temperature}": [] for key in keys for temperature in TEMPERATURES
    }
    with tempfile.TemporaryDirectory(prefix="compare_tfrs_") as tmp:
        split = write_split(args.data_dir, args.seed, Path(tmp))
        log(f"split: {split['rows']}")
        for repeat in range(args.repeats):
            log(f"round {repeat + 1}/{args.repeats}")
            for temperature in TEMPERATURES:
                runs[f"tfrs/{temperature}"].append(
                    run_json_command(tfrs_command(args, tfrs_python, split), tf_env(), args.timeout)
                )
            for mode in args.torch_modes:
                # A fresh, empty compile cache for the cold run; the warm run reuses it.
                cache = Path(tempfile.mkdtemp(prefix=f"inductor_{mode}_", dir=tmp))
                env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": str(cache)}
                for temperature in TEMPERATURES:
                    runs[f"torchrs_fn/{mode}/{temperature}"].append(
                        run_json_command(torch_command(args, mode), env, args.timeout)
                    )

    # The accuracy/speed table: TFRS's runs against torchrs_fn's first mode, warm.
    main_runs = {
        "tfrs": runs["tfrs/cold"] + runs["tfrs/warm"],
        "torchrs_fn": runs[f"torchrs_fn/{args.torch_modes[0]}/warm"],
    }
    summaries = {name: summarize(results) for name, results in main_runs.items()}
    print(report(args, command, date, machine, runs, summaries))

    if args.json_out is not None:
        args.json_out.write_text(
            json.dumps(
                {
                    "date": date,
                    "command": command,
                    "args": {
                        k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()
                    },
                    "tfrs_python": tfrs_python,
                    "machine": machine,
                    "split_rows": split["rows"],
                    "runs": runs,
                    "summary": summaries,
                },
                indent=2,
            )
            + "\n",
            encoding="utf-8",
        )
        log(f"raw results written to {args.json_out}")


if __name__ == "__main__":
    main()
