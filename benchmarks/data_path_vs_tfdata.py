"""Side-by-side benchmark of the data path: torchrs_fn vs tf.data / Keras, in one run.

What is measured, on deterministic synthetic data generated into a temporary folder (``--rows``
rows, default 1,000,000, seeded):

* ``ids.parquet``: ``user_id`` / ``item_id`` int64 columns with a Zipf-like skew (100,000 users,
  exponent 0.8; 50,000 items, exponent 1.0; ids are shuffled labels, so popular ids are not the
  small ones);
* ``strings.parquet``: one ``token`` string column, ``"item_NNNNNN"`` drawn Zipf-like (exponent
  1.0) from ``--distinct-tokens`` (default 50,000) tokens, so about 47,000 distinct ones appear.

Batching (shuffle, batch ``--batch-size`` = 8192, to tensors, one full epoch):

* torchrs_fn: ``Loader(ids.parquet, 8192, shuffle=True, seed=...)``; construction (which reads the
  Parquet file) and ``--epochs`` epochs (epoch 1, then warm epochs) are timed separately;
* tf.data: ``pyarrow.parquet.read_table`` + ``to_numpy`` + ``from_tensor_slices`` +
  ``shuffle(buffer = all rows)`` + ``batch(8192)`` is the construction, then the same epochs.

The Parquet read is inside "construction" on both sides; the epoch figures exclude it. The table
also gives rows/s for construction + epoch 1.

Vocabulary (the ``token`` column, read from Parquet outside every timing on both sides):

* fit: ``StringLookup.fit(column)`` vs ``tf.keras.layers.StringLookup().adapt(strings)`` with Keras's
  defaults (a numpy input is adapted in batches of 32). That adapt is slow (minutes), so after the
  first round it is measured again only if it took at most ``--adapt-once-above`` seconds (the
  report says so); ``--adapt-rows N`` times it on the first N strings and extrapolates linearly
  (also stated). For reference, ``adapt(strings, batch_size=8192)`` is measured every round;
* apply: the fitted lookup on all strings as one array / one ``tf.string`` tensor (built outside
  the timing), to an int64 tensor (``torch.from_numpy`` of the ids for torchrs_fn): one first call,
  then ``--apply-reps`` calls whose median is reported (and, as a check against machine load, the
  median over rounds of each round's fastest call). Both sides must give the same ids (Keras
  semantics); the sums of the ids are compared.

Each side runs in a fresh process per round (the torchrs_fn side is this script with ``--side
torch``; the TF side is ``benchmarks/tfdata_side.py`` in the TensorFlow virtualenv), alternating
torchrs_fn, TF, torchrs_fn, TF, ... for ``--repeats`` rounds, never concurrently. The table shows
medians over rounds with [min–max]; ratios are "how many times faster torchrs_fn is".

Usage (from the repository root)::

    benchmarks/setup_tfrs_venv.sh       # once: creates .venv-tfrs
    python benchmarks/data_path_vs_tfdata.py --repeats 3 --json-out /tmp/data_path.json

The TF interpreter is ``--tf-python`` if given, else ``.venv-tfrs/bin/python`` if it exists, else
``$TFRS_PYTHON``. The Markdown report goes to stdout, progress to stderr.
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
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from _sidebyside import (  # this script's folder is on sys.path
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

TF_SCRIPT = REPO_ROOT / "benchmarks" / "tfdata_side.py"
STRING_COLUMN = "token"

# Goals from the issue.
BATCH_RATIO_GOAL = 20.0
BATCH_ROWS_PER_S_GOAL = 5_000_000.0
FIT_RATIO_GOAL = 100.0
APPLY_RATIO_GOAL = 1.0

T = TypeVar("T")


def timed(fn: Callable[[], T]) -> tuple[T, float, float]:
    """Runs ``fn`` once: (result, wall seconds, process CPU seconds)."""
    cpu0, wall0 = time.process_time(), time.perf_counter()
    result = fn()
    return result, time.perf_counter() - wall0, time.process_time() - cpu0


# -- data ---------------------------------------------------------------------------------------


def _zipf_draws(rng: np.random.Generator, universe: int, exponent: float, size: int) -> np.ndarray:
    """``size`` draws from ranks ``0..universe-1`` with P(rank r) proportional to (r+1)^-exponent."""
    weights = np.arange(1, universe + 1, dtype=np.float64) ** -exponent
    return rng.choice(universe, size=size, p=weights / weights.sum())


def generate_data(out_dir: Path, rows: int, distinct_tokens: int, seed: int) -> dict[str, Any]:
    """Writes ``ids.parquet`` and ``strings.parquet`` (deterministic for a given seed)."""
    rng = np.random.default_rng(seed)
    user_labels = rng.permutation(1_000_000)[:100_000].astype(np.int64)
    item_labels = rng.permutation(1_000_000)[:50_000].astype(np.int64)
    user_id = user_labels[_zipf_draws(rng, len(user_labels), 0.8, rows)]
    item_id = item_labels[_zipf_draws(rng, len(item_labels), 1.0, rows)]
    token_numbers = rng.choice(1_000_000, size=distinct_tokens, replace=False)
    tokens = pa.array([f"item_{x:06d}" for x in token_numbers], type=pa.string())
    token = tokens.take(pa.array(_zipf_draws(rng, distinct_tokens, 1.0, rows)))
    ids_path, strings_path = out_dir / "ids.parquet", out_dir / "strings.parquet"
    pq.write_table(pa.table({"user_id": user_id, "item_id": item_id}), ids_path)
    pq.write_table(pa.table({STRING_COLUMN: token}), strings_path)
    return {
        "ids": str(ids_path),
        "strings": str(strings_path),
        "rows": rows,
        "distinct_users": len(np.unique(user_id)),
        "distinct_items": len(np.unique(item_id)),
        "distinct_tokens": len(token.unique()),
        "ids_bytes": ids_path.stat().st_size,
        "strings_bytes": strings_path.stat().st_size,
    }


# -- the torchrs_fn side (run in a child process: --side torch) --------------------------------


def torch_side(args: argparse.Namespace) -> dict[str, Any]:
    """Every torchrs_fn measurement of one round, as a JSON-able dict."""
    import torch

    from torchrs_fn.data import Loader, StringLookup

    result: dict[str, Any] = {"side": "torch", "torch_threads": torch.get_num_threads()}
    loader, construct_s, construct_cpu = timed(
        lambda: Loader(args.ids, args.batch_size, shuffle=True, seed=args.seed)
    )
    result.update(
        rows=loader.num_rows,
        batch_size=args.batch_size,
        construct_seconds=construct_s,
        construct_cpu_seconds=construct_cpu,
        epoch_seconds=[],
        epoch_cpu_seconds=[],
        epoch_rows=[],
    )
    log(f"[torch] construction {construct_s:.4f} s")

    def run_epoch() -> int:
        rows = 0
        for batch in loader:
            rows += len(batch["user_id"])
        return rows

    for epoch in range(args.epochs):
        rows, seconds, cpu = timed(run_epoch)
        result["epoch_seconds"].append(seconds)
        result["epoch_cpu_seconds"].append(cpu)
        result["epoch_rows"].append(rows)
        log(f"[torch] epoch {epoch + 1}: {seconds:.4f} s, {rows / seconds:,.0f} rows/s")

    # One contiguous Arrow array, as the TF side gets one tensor; read outside the timing.
    column = pq.read_table(args.strings, columns=[STRING_COLUMN]).column(STRING_COLUMN)
    column = column.combine_chunks()
    result["strings"] = len(column)
    lookup, seconds, cpu = timed(lambda: StringLookup.fit(column))
    result.update(fit_seconds=seconds, fit_cpu_seconds=cpu)
    result["vocabulary_size"] = lookup.vocabulary_size()
    log(f"[torch] fit {seconds:.4f} s")

    def apply() -> torch.Tensor:
        return torch.from_numpy(lookup(column).to_numpy(zero_copy_only=False))

    ids, seconds, _ = timed(apply)
    result["apply_first_seconds"] = seconds
    result["apply_seconds"] = []
    result["apply_cpu_seconds"] = []
    for _ in range(args.apply_reps):
        ids, seconds, cpu = timed(apply)
        result["apply_seconds"].append(seconds)
        result["apply_cpu_seconds"].append(cpu)
    result["apply_ids_sum"] = int(ids.sum())
    result["apply_ids_dtype"] = str(ids.dtype)
    log(
        f"[torch] apply: first {result['apply_first_seconds']:.4f} s, then {result['apply_seconds']}"
    )
    return result


# -- driver -------------------------------------------------------------------------------------


def torch_env() -> dict[str, str]:
    """Environment of the torchrs_fn process: this checkout first on the Python path."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p)
    return env


def run_side(cmd: Sequence[str], env: dict[str, str], timeout: float) -> dict[str, Any]:
    """``run_json`` for one side, recording the 1-minute load average around it."""
    load_before = os.getloadavg()[0]
    result = run_json(cmd, env, timeout, echo_prefixes=("[torch]", "[tf]"))
    wall = result["process_wall_seconds"]
    result["loadavg_1min_before"] = load_before
    result["loadavg_1min_after"] = os.getloadavg()[0]
    log(f"  process done in {wall:.1f} s")
    return result


def side_args(args: argparse.Namespace, data: dict[str, Any]) -> list[str]:
    """Arguments both sides take."""
    return [
        "--ids", data["ids"], "--strings", data["strings"],
        "--batch-size", str(args.batch_size), "--seed", str(args.seed),
        "--epochs", str(args.epochs), "--apply-reps", str(args.apply_reps),
    ]  # fmt: skip


def torch_command(args: argparse.Namespace, data: dict[str, Any]) -> list[str]:
    return [
        sys.executable,
        str(Path(__file__).resolve()),
        "--side",
        "torch",
        *side_args(args, data),
    ]


def tf_command(
    args: argparse.Namespace, tf_python: str, data: dict[str, Any], skip_adapt: bool
) -> list[str]:
    cmd = [
        tf_python, str(TF_SCRIPT), *side_args(args, data), "--column", STRING_COLUMN,
        "--adapt-batch-size", str(args.adapt_batch_size),
    ]  # fmt: skip
    if skip_adapt:
        cmd.append("--skip-adapt")
    elif args.adapt_rows is not None:
        cmd += ["--adapt-rows", str(args.adapt_rows)]
    return cmd


# -- summary and report -------------------------------------------------------------------------


def _stats(values: Sequence[float]) -> dict[str, float] | None:
    values = [v for v in values if v is not None]
    if not values:
        return None
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def summarize(runs: Sequence[dict[str, Any]]) -> dict[str, dict[str, float] | None]:
    """Per metric: median / min / max over rounds (warm epochs and apply calls pooled)."""

    def rate(rows: int, seconds: float) -> float:
        return rows / seconds

    out: dict[str, dict[str, float] | None] = {
        "construct_seconds": _stats([r["construct_seconds"] for r in runs]),
        "epoch1_rows_per_s": _stats(
            [rate(r["epoch_rows"][0], r["epoch_seconds"][0]) for r in runs]
        ),
        "warm_epoch_rows_per_s": _stats(
            [rate(n, s) for r in runs for n, s in zip(r["epoch_rows"][1:], r["epoch_seconds"][1:])]
        ),
        "with_construct_rows_per_s": _stats(
            [rate(r["epoch_rows"][0], r["construct_seconds"] + r["epoch_seconds"][0]) for r in runs]
        ),
        "apply_first_seconds": _stats([r["apply_first_seconds"] for r in runs]),
        "apply_seconds": _stats([s for r in runs for s in r["apply_seconds"]]),
        "apply_best_seconds": _stats([min(r["apply_seconds"]) for r in runs]),
    }
    if runs and runs[0]["side"] == "torch":
        out["fit_seconds"] = _stats([r["fit_seconds"] for r in runs])
    else:
        out["fit_seconds"] = _stats([r.get("adapt_seconds") for r in runs])
        out["adapt_batched_seconds"] = _stats([r["adapt_batched_seconds"] for r in runs])
    return out


def _fmt_rate(value: float) -> str:
    if value >= 1e6:
        return f"{value / 1e6:.2f} M"
    return f"{value / 1e3:.1f} k"


def _fmt_seconds(value: float) -> str:
    if value >= 10:
        return f"{value:.1f}"
    if value >= 1:
        return f"{value:.2f}"
    return f"{value:.4f}"


def _cell(stats: dict[str, float] | None, is_rate: bool) -> str:
    if stats is None:
        return "—"
    fmt = _fmt_rate if is_rate else _fmt_seconds
    if stats["min"] == stats["max"]:
        return fmt(stats["median"])
    return f"{fmt(stats['median'])} [{fmt(stats['min'])}–{fmt(stats['max'])}]"


def _ratio(
    torch_stats: dict[str, float] | None, tf_stats: dict[str, float] | None, is_rate: bool
) -> float | None:
    if torch_stats is None or tf_stats is None:
        return None
    t, f = torch_stats["median"], tf_stats["median"]
    return t / f if is_rate else f / t


def table_rows(
    summaries: dict[str, dict[str, dict[str, float] | None]],
    adapt_label: str,
    batch_size: int,
    num_strings: int,
) -> list[dict[str, Any]]:
    """One dict per table row: label, cells, ratio, goal text and whether it is met."""
    torch_s, tf_s = summaries["torchrs_fn"], summaries["tf"]
    rows: list[dict[str, Any]] = []

    def add(label: str, torch_key: str, tf_key: str, is_rate: bool, goal: str,
            check: Callable[[float | None, dict[str, float] | None], bool | None]) -> None:  # fmt: skip
        ratio = _ratio(torch_s[torch_key], tf_s[tf_key], is_rate)
        rows.append({
            "metric": label,
            "torchrs_fn": _cell(torch_s[torch_key], is_rate),
            "tf": _cell(tf_s[tf_key], is_rate),
            "ratio": ratio,
            "goal": goal,
            "met": check(ratio, torch_s[torch_key]),
        })  # fmt: skip

    def batching_goal(ratio: float | None, stats: dict[str, float] | None) -> bool | None:
        if ratio is None or stats is None:
            return None
        return ratio >= BATCH_RATIO_GOAL and stats["median"] >= BATCH_ROWS_PER_S_GOAL

    def ratio_goal(minimum: float) -> Callable[[float | None, Any], bool | None]:
        return lambda ratio, _stats: None if ratio is None else ratio >= minimum

    def no_goal(_ratio: float | None, _stats: Any) -> None:
        return None

    batch_goal_text = f"≥ {BATCH_RATIO_GOAL:g}× and ≥ {BATCH_ROWS_PER_S_GOAL / 1e6:g} M rows/s"
    add(f"batching rows/s, epoch 1 (shuffle, batch {batch_size}, to tensors)",
        "epoch1_rows_per_s", "epoch1_rows_per_s", True, batch_goal_text, batching_goal)  # fmt: skip
    add("batching rows/s, warm epochs (2+)",
        "warm_epoch_rows_per_s", "warm_epoch_rows_per_s", True, batch_goal_text, batching_goal)  # fmt: skip
    add("batching rows/s incl. construction (Parquet read + setup + epoch 1)",
        "with_construct_rows_per_s", "with_construct_rows_per_s", True, batch_goal_text,
        batching_goal)  # fmt: skip
    add("construction s (Parquet read + Loader / from_tensor_slices+shuffle+batch)",
        "construct_seconds", "construct_seconds", False, "—", no_goal)  # fmt: skip
    add(f"vocabulary fit s: `StringLookup.fit` vs {adapt_label}",
        "fit_seconds", "fit_seconds", False, f"≥ {FIT_RATIO_GOAL:g}×", ratio_goal(FIT_RATIO_GOAL))  # fmt: skip
    add("vocabulary fit s: `StringLookup.fit` vs Keras `adapt(strings, batch_size=8192)` (reference)",
        "fit_seconds", "adapt_batched_seconds", False, "—", no_goal)  # fmt: skip
    add(f"lookup apply s, {num_strings:,} strings → int64 tensor (median after a warm-up)",
        "apply_seconds", "apply_seconds", False, f"≥ {APPLY_RATIO_GOAL:g}× (no slower)",
        ratio_goal(APPLY_RATIO_GOAL))  # fmt: skip
    add("lookup apply s, fastest call of each round (less sensitive to machine load)",
        "apply_best_seconds", "apply_best_seconds", False, f"≥ {APPLY_RATIO_GOAL:g}× (no slower)",
        ratio_goal(APPLY_RATIO_GOAL))  # fmt: skip
    add("lookup apply s, first call", "apply_first_seconds", "apply_first_seconds", False, "—",
        no_goal)  # fmt: skip
    return rows


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    lines = [
        "| metric | torchrs_fn | tf.data / Keras | ratio | goal | met? |",
        "|---|---:|---:|---:|---|---|",
    ]
    for row in rows:
        ratio = "—" if row["ratio"] is None else f"{row['ratio']:,.1f}×"
        met = {True: "yes", False: "**no**", None: "—"}[row["met"]]
        lines.append(
            f"| {row['metric']} | {row['torchrs_fn']} | {row['tf']} | {ratio} | {row['goal']} "
            f"| {met} |"
        )
    return "\n".join(lines)


def machine_info() -> dict[str, Any]:
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_model": cpu_model(),
        "nproc": usable_cpus(),
        "versions": {
            name: package_version(name) for name in ("torch", "numpy", "pyarrow", "torchrs_fn")
        },
    }


def adapt_description(
    args: argparse.Namespace, tf_runs: Sequence[dict[str, Any]]
) -> tuple[str, str]:
    """(label for the fit row, sentence on how the default adapt was measured)."""
    measured = [r for r in tf_runs if r.get("adapt_seconds") is not None]
    label = "Keras `StringLookup().adapt(strings)` (defaults: batches of 32)"
    if not measured:
        return label, "The default Keras adapt was not measured."
    parts = [f"measured in {len(measured)} of {len(tf_runs)} round(s)"]
    if len(measured) < len(tf_runs):
        parts.append(
            f"(the first took {measured[0]['adapt_measured_seconds']:.1f} s > "
            f"--adapt-once-above {args.adapt_once_above:g} s, so it was not repeated)"
        )
    first = measured[0]
    if first.get("adapt_extrapolated"):
        label += " — extrapolated"
        parts.append(
            f"on the first {first['adapt_rows']:,} of {first['strings']:,} strings and "
            f"EXTRAPOLATED linearly ×{first['strings'] / first['adapt_rows']:g} to all of them"
        )
    else:
        parts.append(f"on all {first['strings']:,} strings (not extrapolated)")
    return label, "Keras default `adapt`: " + " ".join(parts) + "."


def checks(runs: dict[str, list[dict[str, Any]]]) -> list[str]:
    """Sanity checks that the two sides did the same work."""
    torch_runs, tf_runs = runs["torchrs_fn"], runs["tf"]
    lines = []
    rows = {
        r["epoch_rows"][i]
        for side in (torch_runs, tf_runs)
        for r in side
        for i in range(len(r["epoch_rows"]))
    }
    lines.append(f"rows per epoch on both sides: {sorted(rows)}")
    sizes = {side: sorted({r["vocabulary_size"] for r in rs}) for side, rs in runs.items()}
    lines.append(f"vocabulary_size: torchrs_fn {sizes['torchrs_fn']}, Keras {sizes['tf']}")
    sums = {side: sorted({r["apply_ids_sum"] for r in rs}) for side, rs in runs.items()}
    same = sums["torchrs_fn"] == sums["tf"] and len(sums["tf"]) == 1
    lines.append(
        f"sum of the {torch_runs[0]['strings']:,} looked-up ids: torchrs_fn {sums['torchrs_fn']}, Keras "
        f"{sums['tf']} → {'identical' if same else 'DIFFERENT'}"
    )
    equal = [r["adapt_vocabularies_equal"] for r in tf_runs if "adapt_vocabularies_equal" in r]
    if equal:
        lines.append(
            f"Keras adapt (batch 32) and adapt(batch_size=8192) vocabularies equal: {all(equal)}"
        )
    return lines


def report(
    args: argparse.Namespace,
    command: str,
    date: str,
    machine: dict[str, Any],
    data: dict[str, Any],
    runs: dict[str, list[dict[str, Any]]],
    rows: Sequence[dict[str, Any]],
    adapt_note: str,
    elapsed: float,
) -> str:
    """The Markdown block printed on stdout."""
    tf_versions = runs["tf"][0]["versions"]
    v = machine["versions"]
    commit = git_commit()
    loads = [
        r[k]
        for rs in runs.values()
        for r in rs
        for k in ("loadavg_1min_before", "loadavg_1min_after")
    ]
    lines = [
        f"Data path, torchrs_fn vs tf.data / Keras: {data['rows']:,} rows, batch {args.batch_size}, "
        f"{args.epochs} epoch(s) per round, {args.repeats} round(s) alternating torchrs_fn, TF "
        "(each side a fresh process, never concurrent).",
        "",
        f"- Date: {date}; whole run {elapsed:.0f} s",
        f"- Machine: {machine['platform']}; CPU: {machine['cpu_model']}; nproc: {machine['nproc']}; "
        f"1-min load average during the sides {min(loads):.2f}–{max(loads):.2f}",
        f"- torchrs_fn side: Python {machine['python']}; torch {v['torch']}; numpy {v['numpy']}; "
        f"pyarrow {v['pyarrow']}; torchrs_fn {v['torchrs_fn']}"
        + (f" (commit {commit}, working tree as run)" if commit else ""),
        f"- TF side: Python {runs['tf'][0]['python']}; tensorflow {tf_versions['tensorflow']}; "
        f"tf-keras {tf_versions['tf_keras']} (layers from `{tf_versions['keras_used']}`); "
        f"numpy {tf_versions['numpy']}; pyarrow {tf_versions['pyarrow']}",
        f"- Command: `{command}`",
        f"- Data (seed {args.seed}): ids {data['distinct_users']:,} distinct users / "
        f"{data['distinct_items']:,} distinct items (Zipf-like); strings "
        f"{data['distinct_tokens']:,} distinct tokens (Zipf-like)",
        "",
        format_table(rows),
        "",
        "Cells: median over rounds [min–max] (warm epochs and apply calls pooled over rounds). "
        "Ratio = how many times faster torchrs_fn is (rows/s torchrs_fn / TF; seconds TF / "
        "torchrs_fn). Construction includes reading the Parquet file on both sides; epoch figures "
        "exclude it; strings are read outside every timing. " + adapt_note,
        "",
        "Checks: " + "; ".join(checks(runs)) + ".",
    ]
    return "\n".join(lines)


# -- entry points -------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--distinct-tokens", type=int, default=50_000, help="token universe size")
    parser.add_argument("--batch-size", type=int, default=8192)
    parser.add_argument("--seed", type=int, default=0, help="data generation and shuffles")
    parser.add_argument("--epochs", type=int, default=2, help="epochs per round (>= 2: warm)")
    parser.add_argument("--repeats", type=int, default=3, help="rounds of (torchrs_fn, TF)")
    parser.add_argument("--apply-reps", type=int, default=7, help="timed lookups after the first")
    parser.add_argument("--tf-python", default=None, help="TensorFlow virtualenv's python")
    parser.add_argument(
        "--adapt-rows", type=int, default=None,
        help="time Keras's default adapt on the first N strings and extrapolate linearly",
    )  # fmt: skip
    parser.add_argument(
        "--adapt-once-above", type=float, default=60.0,
        help="measure the default adapt only in round 1 if it took longer than this (seconds)",
    )  # fmt: skip
    parser.add_argument("--adapt-batch-size", type=int, default=8192, help="reference adapt")
    parser.add_argument("--json-out", type=Path, default=None, help="write raw results here")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds per side process")
    parser.add_argument(
        "--keep-data", type=Path, default=None, help="generate data here and keep it"
    )
    # Internal: run one torchrs_fn round on existing files and print one JSON line.
    parser.add_argument("--side", choices=("torch",), default=None, help=argparse.SUPPRESS)
    parser.add_argument("--ids", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--strings", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if min(args.rows, args.distinct_tokens, args.batch_size, args.epochs, args.repeats,
           args.apply_reps) < 1:  # fmt: skip
        parser.error("sizes and counts must be >= 1")
    if args.adapt_rows is not None and args.adapt_rows < 1:
        parser.error("--adapt-rows must be >= 1")
    if args.side is not None and (args.ids is None or args.strings is None):
        parser.error("--side needs --ids and --strings")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    if args.side == "torch":
        print(json.dumps(torch_side(args)), flush=True)
        return

    started = time.perf_counter()
    command = shlex.join([sys.executable, *(sys.argv if argv is None else [__file__, *argv])])
    date = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    tf_python = resolve_tf_python(args.tf_python, "--tf-python")
    machine = machine_info()
    runs: dict[str, list[dict[str, Any]]] = {"torchrs_fn": [], "tf": []}

    with tempfile.TemporaryDirectory(prefix="data_path_vs_tfdata_") as tmp:
        out_dir = args.keep_data or Path(tmp)
        out_dir.mkdir(parents=True, exist_ok=True)
        data, seconds, _ = timed(
            lambda: generate_data(out_dir, args.rows, args.distinct_tokens, args.seed)
        )
        log(f"data generated in {seconds:.1f} s: {json.dumps(data)}")
        skip_adapt = False
        for round_index in range(args.repeats):
            log(f"round {round_index + 1}/{args.repeats}")
            runs["torchrs_fn"].append(
                run_side(torch_command(args, data), torch_env(), args.timeout)
            )
            tf_run = run_side(tf_command(args, tf_python, data, skip_adapt), tf_env(), args.timeout)
            runs["tf"].append(tf_run)
            measured = tf_run.get("adapt_measured_seconds")
            if measured is not None and measured > args.adapt_once_above:
                skip_adapt = True

    summaries = {side: summarize(side_runs) for side, side_runs in runs.items()}
    adapt_label, adapt_note = adapt_description(args, runs["tf"])
    rows = table_rows(summaries, adapt_label, args.batch_size, data["rows"])
    elapsed = time.perf_counter() - started
    print(report(args, command, date, machine, data, runs, rows, adapt_note, elapsed))

    if args.json_out is not None:
        payload = {
            "date": date,
            "command": command,
            "elapsed_seconds": elapsed,
            "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            "tf_python": tf_python,
            "machine": machine,
            "data": data,
            "runs": runs,
            "summary": summaries,
            "table": rows,
        }
        args.json_out.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
        log(f"raw results written to {args.json_out}")


if __name__ == "__main__":
    main()
