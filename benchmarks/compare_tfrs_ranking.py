"""Side-by-side benchmark: TensorFlow Recommenders vs torchrs_fn on the MovieLens 100K ranking tutorials.

Four TFRS tutorials, each trained by both frameworks on exactly the same rows:

* ``basic_ranking``: rating prediction (user and title embeddings, MLP 256-64-1, MSE, Adagrad
  0.1, 3 epochs); quality: test RMSE (TFRS's tutorial publishes 1.11);
* ``dcn``: Deep & Cross Network, three models (``dcn``, ``dcn_low_rank``, ``dnn``), each trained
  ``--dcn-runs`` times for 8 epochs; quality: mean (± std over runs) test RMSE;
* ``listwise``: listwise ranking on lists of 5 rated movies, one model per loss
  (``--listwise-losses``, by default TFRS's three: mean_squared, pairwise_hinge, list_mle),
  ``--listwise-epochs`` epochs; quality: test NDCG (whole list) and NDCG@3;
* ``multitask``: a rating task and a retrieval task with the tutorial's three loss weightings
  (rating, retrieval) = (1, 0), (0, 1), (1, 1), 3 epochs; quality: top-100 accuracy and RMSE.

Programs:

* TFRS: ``benchmarks/tfrs_<tutorial>.py`` in the TensorFlow virtualenv
  (``benchmarks/setup_tfrs_venv.sh``; the listwise script also needs TF-Ranking there), run with
  ``TF_USE_LEGACY_KERAS=1``;
* torchrs_fn: ``examples/movielens_{ranking,dcn,listwise,multitask}.py`` in this (the current)
  Python environment, with ``--compile on`` by default (``--torch-compile``), so that the
  steady-state epochs time the compiled step. Every torchrs_fn run gets a fresh, empty
  ``TORCHINDUCTOR_CACHE_DIR``: its epoch 1 includes the whole compilation, as TFRS's includes
  tf.function tracing (TensorFlow keeps no cache between processes).

This script runs in the torchrs_fn environment. For each tutorial it loads MovieLens 100K and
splits it with the same public-API calls as the torchrs_fn example (``movielens.load`` and
``random_split(table.select(columns), (0.8, 0.2), seed=seed)`` on the example's columns; for
listwise the example's own ``make_lists``, imported from the example file), writes the split
to Parquet in a temporary folder in the column layout the TFRS script's docstring specifies,
and checks the row counts against those both programs report (where they report them). Then it
runs the two programs one after the other (never concurrently), TFRS then torchrs_fn, for
``--repeats`` rounds. ``--max-load`` makes it wait, before every run, until the 1-minute load
average is at most that value, and ``--max-busy`` until the CPUs are at most that busy (a
fraction, sampled over 5 s; the load average lags), so that both sides are timed on a quiet
machine (at most ``--max-wait`` seconds). Each run records the CPU seconds other programs used
while it ran (``others_cpu_seconds``): anything but a small number means the timings are not
fair (torch's OpenMP threads slow down much more than TensorFlow's thread pool when another
program takes a core).

Figures (medians over repeats; epochs pooled over runs and repeats):

* quality: the tutorial's test metrics, both sides, and the difference torchrs_fn - TFRS;
* ``epoch 1 s``: wall-clock seconds of the first training epoch of the first run (includes
  tracing / compilation and, for TFRS, filling the dataset cache);
* ``epoch 2+ s``: the steady state, median of the epochs 2+ of every run;
* ``epoch 2+ CPU s``: process CPU seconds (user + system, all threads) of the same epochs,
  where the script reports them (every TFRS script; on our side the ranking example);
* ``epoch 2+ GFLOP/s``: the dense layers' products of one epoch (``train_gflop_per_row``
  times the training rows) over the steady-state epoch, both sides; the report heads them with
  this CPU's matmul peak (``torch.mm`` of 4096 x 4096, float32 and bfloat16, measured before
  and after the runs);
* whole process: wall-clock and CPU seconds (``getrusage`` of the child) of each program,
  interpreter start to exit.

Speed ratios are TFRS / torchrs_fn: above 1 means torchrs_fn is faster.

Usage (from the repository root)::

    benchmarks/setup_tfrs_venv.sh            # once
    python benchmarks/compare_tfrs_ranking.py --data-dir ../shared/data/ml-100k
    python benchmarks/compare_tfrs_ranking.py --tutorials basic_ranking,dcn --dcn-runs 2 \\
        --max-load 1.5 --json-out /tmp/ranking.json

Output: a Markdown block (machine, date, command, versions, one quality table and one speed
table per tutorial, and the issue's targets with pass/fail) ready to paste into
``docs/benchmarks.md``; progress goes to stderr. ``--json-out`` saves every raw result.

The TFRS interpreter is ``--tfrs-python`` if given, else ``.venv-tfrs/bin/python`` if it exists,
else ``$TFRS_PYTHON``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import importlib.util
import itertools
import json
import os
import platform
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
import types
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from _sidebyside import (
    REPO_ROOT,
    cpu_model,
    git_commit,
    log,
    machine_busy_seconds,
    matmul_peak,
    package_version,
    resolve_tf_python,
    tf_env,
    usable_cpus,
    wait_for_quiet,
)

try:
    import torchrs_fn
except ModuleNotFoundError:  # Not installed: use the checkout this script belongs to.
    sys.path.insert(0, str(REPO_ROOT))
    import torchrs_fn

    # The torchrs_fn examples run as subprocesses; let them import the same checkout.
    os.environ["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH")) if p
    )

from torchrs_fn.data import random_split
from torchrs_fn.data.datasets import movielens

TUTORIALS = ("basic_ranking", "dcn", "listwise", "multitask")
FRAMEWORKS = ("tfrs", "torchrs_fn")
TFRS_SCRIPTS = {name: REPO_ROOT / "benchmarks" / f"tfrs_{name}.py" for name in TUTORIALS}
TORCH_SCRIPTS = {
    "basic_ranking": REPO_ROOT / "examples" / "movielens_ranking.py",
    "dcn": REPO_ROOT / "examples" / "movielens_dcn.py",
    "listwise": REPO_ROOT / "examples" / "movielens_listwise.py",
    "multitask": REPO_ROOT / "examples" / "movielens_multitask.py",
}
RATING_COLUMNS = ["user_id", "movie_title", "user_rating"]
TFRS_LISTWISE_LOSSES = ("mean_squared", "pairwise_hinge", "list_mle")
MULTITASK_WEIGHTS = ("1,0", "0,1", "1,1")

# The targets (see ``check_targets``).
BASIC_RANKING_RMSE = (1.11, 0.03)  # published test RMSE, tolerance
DCN_RMSE_TOLERANCE = 0.01  # |ours - TFRS| per model
MULTITASK_TOLERANCES = {"top_100": 0.02, "rmse": 0.1}  # |ours - TFRS| per weighting
SPEED_TARGETS = {"basic_ranking": 1.5, "dcn": 1.3}  # steady-state epoch, TFRS / ours
# With --torch-precision bf16 our DCN step runs in mixed precision against TFRS's float32.
BF16_SPEED_TARGETS = {"dcn": 2.0}

# basic_ranking's and listwise's scoring MLP: two 32-wide embeddings in, Dense 256, 64, 1.
RATING_MLP_WIDTHS = (64, 256, 64, 1)


def _dense_macs(widths: Sequence[int]) -> int:
    """Multiply-adds per example of a stack of dense layers ``widths[0] -> widths[1] -> ...``."""
    return sum(a * b for a, b in itertools.pairwise(widths))


def train_gflop_per_row(tutorial: str, item: str) -> float | None:
    """GFLOP one training row (a rating, or for listwise a list) costs in the dense layers'
    products: 2 flops per multiply-add, times 3 for the forward product and the two backward
    ones (the first layer's input gradient included, since the embeddings train). Embedding
    lookups, element-wise work and the optimizer count nothing. The DCN models and the list
    length come from the examples themselves. None where not modelled: multitask adds its
    retrieval task's in-batch scores, whose count depends on the batch, and has no speed
    target."""
    if tutorial in ("basic_ranking", "listwise"):
        macs = _dense_macs(RATING_MLP_WIDTHS)
        if tutorial == "listwise":
            macs *= load_example("listwise").LIST_LENGTH
    elif tutorial == "dcn":
        example = load_example("dcn")
        if item not in example.MODELS:
            return None
        use_cross, projection_dim, deep = example.MODELS[item]
        width = example.EMBEDDING_DIM * len(example.FEATURES)
        macs = _dense_macs((width, *deep, 1))
        if use_cross:  # full: [width, width]; low rank: [width, r] then [r, width]
            macs += width * width if projection_dim is None else 2 * width * projection_dim
    else:
        return None
    return 2 * 3 * macs / 1e9


# --------------------------------------------------------------------------------------------
# Running the programs.


def run_json_lines(cmd: Sequence[str], env: dict[str, str], timeout: float) -> dict[str, Any]:
    """Runs ``cmd`` in the repository root; parses every JSON line of its stdout.

    ``_sidebyside.run_json`` reads only the last stdout line; three of the four programs here
    print one JSON line per model, so this is its many-lines variant. Returns ``{"lines": [...],
    "process_wall_seconds": ..., "process_cpu_seconds": ..., "others_cpu_seconds": ...}``: the
    child's user + system time (all threads, from ``getrusage``), and the CPU seconds the rest
    of the machine used meanwhile (``/proc/stat`` minus the child: another program running at
    the same time makes the timings unfair; None where unknown). A failed process, or one that
    prints no JSON line, is an error.
    """
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
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    others = (
        max(0.0, busy_after - busy_before - cpu)
        if busy_before is not None and busy_after is not None
        else None
    )
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.splitlines()[-30:])
        raise RuntimeError(f"{shlex.join(cmd)} failed (exit {proc.returncode}):\n{tail}")
    lines = []
    for line in proc.stdout.splitlines():
        if line.strip().startswith("{"):
            try:
                lines.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise RuntimeError(f"{shlex.join(cmd)}: bad JSON line {line!r}") from err
    if not lines:
        raise RuntimeError(f"{shlex.join(cmd)}: no JSON line on stdout: {proc.stdout[-2000:]!r}")
    return {
        "lines": lines,
        "process_wall_seconds": wall,
        "process_cpu_seconds": cpu,
        "others_cpu_seconds": others,
    }


@functools.cache
def load_example(tutorial: str) -> types.ModuleType:
    """Imports the torchrs_fn example file of ``tutorial`` (not a package) by path, once."""
    path = TORCH_SCRIPTS[tutorial]
    spec = importlib.util.spec_from_file_location(f"_example_{path.stem}", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --------------------------------------------------------------------------------------------
# The data: exactly what each torchrs_fn example trains and tests on, as Parquet for TFRS.


def _strings(column: pa.ChunkedArray) -> pa.ChunkedArray:
    return column.cast(pa.string())


def write_inputs(tutorial: str, data_dir: str | None, seed: int, out_dir: Path) -> dict[str, Any]:
    """Splits MovieLens 100K as the ``tutorial``'s example does; writes the TFRS script's inputs.

    Returns the Parquet paths (``train``, ``test`` and, where the TFRS script takes one,
    ``movies``) and the row counts written.
    """
    ratings, movies = movielens.load("100k", data_dir=data_dir)
    folder = out_dir / tutorial
    folder.mkdir(parents=True, exist_ok=True)
    tables: dict[str, pa.Table] = {}
    if tutorial in ("basic_ranking", "multitask"):
        # movielens_ranking.py / movielens_multitask.py: the same three columns, same split.
        train, test = random_split(ratings.select(RATING_COLUMNS), (0.8, 0.2), seed=seed)
        for name, table in (("train", train), ("test", test)):
            tables[name] = pa.table(
                {
                    "user_id": _strings(table["user_id"]),
                    "movie_title": _strings(table["movie_title"]),
                    "user_rating": table["user_rating"].cast(pa.float32()),
                }
            )
        if tutorial == "multitask":
            # FactorizedTopK's candidates: every row of the movies table, as in the example.
            tables["movies"] = pa.table({"movie_title": _strings(movies["movie_title"])})
    elif tutorial == "dcn":
        example = load_example("dcn")
        columns = [*example.FEATURES, "user_rating"]
        train, test = random_split(ratings.select(columns), (0.8, 0.2), seed=seed)
        for name, table in (("train", train), ("test", test)):
            out = {f: _strings(table[f]) for f in example.STRING_FEATURES}
            out.update({f: table[f] for f in example.INT_FEATURES})  # bool / float, cast by TFRS
            out["user_rating"] = table["user_rating"].cast(pa.float32())
            tables[name] = pa.table(out)
    elif tutorial == "listwise":
        example = load_example("listwise")
        train, test = example.make_lists(ratings, seed)
        length = example.LIST_LENGTH
        for name, table in (("train", train), ("test", test)):
            tables[name] = pa.table(
                {
                    "user_id": _strings(table["user_id"]),
                    "movie_title": table["movie_title"].cast(pa.list_(pa.string(), length)),
                    "user_rating": table["user_rating"].cast(pa.list_(pa.float32(), length)),
                }
            )
        # The example's title vocabulary: the unique titles of all ratings.
        tables["movies"] = pa.table(
            {"movie_title": _strings(pc.unique(ratings["movie_title"]).sort())}
        )
    else:
        raise ValueError(tutorial)
    paths = {}
    for name, table in tables.items():
        paths[name] = folder / f"{name}.parquet"
        pq.write_table(table, paths[name])
    return {
        "paths": {name: str(path) for name, path in paths.items()},
        "rows": {name: table.num_rows for name, table in tables.items()},
    }


# --------------------------------------------------------------------------------------------
# Commands.


def tfrs_command(
    tutorial: str, args: argparse.Namespace, tfrs_python: str, inputs: dict[str, Any]
) -> list[str]:
    paths = inputs["paths"]
    cmd = [tfrs_python, str(TFRS_SCRIPTS[tutorial]), "--train", paths["train"],
           "--test", paths["test"], "--seed", str(args.seed), "--json"]  # fmt: skip
    if "movies" in paths:
        cmd += ["--movies", paths["movies"]]
    if tutorial == "dcn":
        cmd += ["--num-runs", str(args.dcn_runs)]
    elif tutorial == "listwise":
        cmd += ["--epochs", str(args.listwise_epochs), "--losses", ",".join(args.listwise_losses)]
    elif tutorial == "multitask":
        cmd += ["--weights", *MULTITASK_WEIGHTS]
    return cmd


def torch_command(tutorial: str, args: argparse.Namespace) -> list[str]:
    cmd = [sys.executable, str(TORCH_SCRIPTS[tutorial]), "--json", "--seed", str(args.seed),
           "--compile", args.torch_compile]  # fmt: skip
    if args.data_dir:  # The example runs in the repository root: pass an absolute path.
        cmd += ["--data-dir", str(Path(args.data_dir).resolve())]
    if tutorial == "dcn":
        cmd += ["--num-runs", str(args.dcn_runs), "--precision", args.torch_precision]
    elif tutorial == "listwise":
        cmd += ["--epochs", str(args.listwise_epochs), "--losses", ",".join(args.listwise_losses)]
    elif tutorial == "multitask":
        cmd += ["--weights", *MULTITASK_WEIGHTS]
    return cmd


# --------------------------------------------------------------------------------------------
# Normalizing the programs' outputs: one "item" per model / loss / weighting.


def _weighting(line: dict[str, Any]) -> str:
    return f"({line['rating_weight']:g}, {line['retrieval_weight']:g})"


def _chunks(flat: Sequence[float], size: int) -> list[list[float]]:
    return [list(flat[i : i + size]) for i in range(0, len(flat), size)]


def normalize(tutorial: str, framework: str, line: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """``(item name, {"quality": {...}, "epochs": [[run 0 epochs], ...], "epoch_cpu": ...})``.

    ``epoch_cpu`` is ``None`` where the program does not report per-epoch CPU seconds.
    """
    cpu = line.get("epoch_cpu_seconds")
    if tutorial == "basic_ranking":
        return "rating model", {
            "quality": {"rmse": line["rmse"]},
            "epochs": [line["epoch_seconds"]],
            "epoch_cpu": [cpu] if cpu else None,
        }
    if tutorial == "dcn":
        epochs = line["epoch_seconds"]
        if framework == "tfrs":  # Flattened run-major: run 0 epochs 1..E, run 1 ...
            epochs = _chunks(epochs, line["epochs"])
            cpu = _chunks(cpu, line["epochs"]) if cpu else None
        return line["model"], {
            "quality": {"rmse": line["rmse_mean"], "rmse_std": line["rmse_std"]},
            "epochs": epochs,
            "epoch_cpu": cpu if cpu and isinstance(cpu[0], list) else None,
        }
    if tutorial == "listwise":
        return line["loss"], {
            "quality": {"ndcg": line["ndcg"], "ndcg_at_3": line["ndcg_at_3"]},
            "epochs": [line["epoch_seconds"]],
            "epoch_cpu": [cpu] if cpu else None,
        }
    if tutorial == "multitask":
        return _weighting(line), {
            "quality": {"top_100": line["top_100"], "rmse": line["rmse"]},
            "epochs": [line["epoch_seconds"]],
            "epoch_cpu": [cpu] if cpu else None,
        }
    raise ValueError(tutorial)


def _median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def summarize(runs: Sequence[dict[str, Any]], tutorial: str, framework: str) -> dict[str, Any]:
    """Per item: medians over repeats of the quality figures, epoch 1 (of the first run), the
    steady-state epoch (epochs 2+ of every run pooled) and its CPU seconds; plus the whole
    process's wall and CPU seconds."""
    per_item: dict[str, list[dict[str, Any]]] = {}
    for run in runs:
        for line in run["lines"]:
            name, figures = normalize(tutorial, framework, line)
            per_item.setdefault(name, []).append(figures)
    items: dict[str, dict[str, float | None]] = {}
    for name, repeats in per_item.items():
        summary: dict[str, float | None] = {
            key: _median([r["quality"][key] for r in repeats]) for key in repeats[0]["quality"]
        }
        summary["epoch_1_seconds"] = _median([r["epochs"][0][0] for r in repeats])
        summary["steady_seconds"] = _median(
            [s for r in repeats for epochs in r["epochs"] for s in epochs[1:]]
        )
        summary["steady_cpu_seconds"] = _median(
            [s for r in repeats if r["epoch_cpu"] for epochs in r["epoch_cpu"] for s in epochs[1:]]
        )
        items[name] = summary
    return {
        "items": items,
        "process_wall_seconds": _median([r["process_wall_seconds"] for r in runs]),
        "process_cpu_seconds": _median([r["process_cpu_seconds"] for r in runs]),
        "others_cpu_seconds": _median(
            [r["others_cpu_seconds"] for r in runs if r.get("others_cpu_seconds") is not None]
        ),
    }


def add_gflops(tutorial: str, summary: dict[str, dict[str, Any]], train_rows: int) -> None:
    """Adds ``steady_gflops`` (GFLOP/s of a steady-state epoch over ``train_rows`` rows) to
    every item of both sides that ``train_gflop_per_row`` models."""
    for side in summary.values():
        for name, item in side["items"].items():
            per_row = train_gflop_per_row(tutorial, name)
            seconds = item.get("steady_seconds")
            if per_row is not None and seconds:
                item["steady_gflops"] = per_row * train_rows / seconds


# --------------------------------------------------------------------------------------------
# The report.

QUALITY: dict[str, list[tuple[str, str]]] = {
    "basic_ranking": [("rmse", "test RMSE")],
    "dcn": [("rmse", "test RMSE (mean over runs)")],
    "listwise": [("ndcg", "test NDCG"), ("ndcg_at_3", "test NDCG@3")],
    "multitask": [("top_100", "top-100 accuracy"), ("rmse", "test RMSE")],
}
ITEM_LABEL = {
    "basic_ranking": "model",
    "dcn": "model",
    "listwise": "loss",
    "multitask": "weights (rating, retrieval)",
}


def _num(value: float | None, digits: int = 4) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _ratio(tf_value: float | None, torch_value: float | None) -> str:
    return f"{tf_value / torch_value:.2f}×" if tf_value and torch_value else "—"


def quality_table(tutorial: str, summaries: dict[str, dict[str, Any]]) -> str:
    tf_items, torch_items = summaries["tfrs"]["items"], summaries["torchrs_fn"]["items"]
    lines = [
        f"| {ITEM_LABEL[tutorial]} | metric | TFRS | torchrs_fn | torchrs_fn − TFRS |",
        "|---|---|---:|---:|---:|",
    ]
    for name in tf_items:
        tf_item, torch_item = tf_items[name], torch_items.get(name, {})
        for key, label in QUALITY[tutorial]:
            tf_value, torch_value = tf_item.get(key), torch_item.get(key)
            tf_cell, torch_cell = _num(tf_value), _num(torch_value)
            if tutorial == "dcn":  # mean ± std over runs
                tf_cell += f" ± {_num(tf_item.get('rmse_std'))}"
                torch_cell += f" ± {_num(torch_item.get('rmse_std'))}"
            diff = (
                f"{torch_value - tf_value:+.4f}"
                if tf_value is not None and torch_value is not None
                else "—"
            )
            lines.append(f"| {name} | {label} | {tf_cell} | {torch_cell} | {diff} |")
    return "\n".join(lines)


def speed_table(tutorial: str, summaries: dict[str, dict[str, Any]]) -> str:
    tf_items, torch_items = summaries["tfrs"]["items"], summaries["torchrs_fn"]["items"]
    lines = [
        f"| {ITEM_LABEL[tutorial]} | epoch 1 s TFRS | epoch 1 s torchrs_fn | ratio "
        "| epoch 2+ s TFRS | epoch 2+ s torchrs_fn | ratio "
        "| epoch 2+ CPU s TFRS | epoch 2+ CPU s torchrs_fn "
        "| epoch 2+ GFLOP/s TFRS | epoch 2+ GFLOP/s torchrs_fn |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name in tf_items:
        tf_item, torch_item = tf_items[name], torch_items.get(name, {})
        cells = []
        for key in ("epoch_1_seconds", "steady_seconds"):
            tf_value, torch_value = tf_item.get(key), torch_item.get(key)
            cells += [_num(tf_value, 3), _num(torch_value, 3), _ratio(tf_value, torch_value)]
        cells += [
            _num(tf_item.get("steady_cpu_seconds"), 3),
            _num(torch_item.get("steady_cpu_seconds"), 3),
            _num(tf_item.get("steady_gflops"), 0),
            _num(torch_item.get("steady_gflops"), 0),
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    tf, torch_ = summaries["tfrs"], summaries["torchrs_fn"]
    lines += [
        "",
        (
            f"Whole process: TFRS {_num(tf['process_wall_seconds'], 1)} s wall / "
            f"{_num(tf['process_cpu_seconds'], 1)} s CPU; torchrs_fn "
            f"{_num(torch_['process_wall_seconds'], 1)} s wall / "
            f"{_num(torch_['process_cpu_seconds'], 1)} s CPU (wall ratio "
            f"{_ratio(tf['process_wall_seconds'], torch_['process_wall_seconds'])}). "
            f"Other programs used {_num(tf['others_cpu_seconds'], 1)} / "
            f"{_num(torch_['others_cpu_seconds'], 1)} CPU s during these runs."
        ),
    ]
    return "\n".join(lines)


def check_targets(
    summaries: dict[str, dict[str, dict[str, Any]]], precision: str = "fp32"
) -> list[tuple[str, str, bool]]:
    """The issue's targets: ``(target, measured, passed)`` for each tutorial that ran
    (``precision``: the torchrs_fn DCN run's, which sets the DCN speed target)."""
    checks: list[tuple[str, str, bool]] = []

    def item(tutorial: str, framework: str, name: str) -> dict[str, Any]:
        return summaries[tutorial][framework]["items"].get(name, {})

    if "basic_ranking" in summaries:
        target, tolerance = BASIC_RANKING_RMSE
        rmse = item("basic_ranking", "torchrs_fn", "rating model").get("rmse")
        checks.append(
            (
                f"basic_ranking: test RMSE within ±{tolerance} of {target}",
                _num(rmse),
                rmse is not None and abs(rmse - target) <= tolerance,
            )
        )
    if "dcn" in summaries:
        for name in summaries["dcn"]["tfrs"]["items"]:
            tf_rmse = item("dcn", "tfrs", name).get("rmse")
            torch_rmse = item("dcn", "torchrs_fn", name).get("rmse")
            ok = tf_rmse is not None and torch_rmse is not None
            checks.append(
                (
                    f"dcn/{name}: RMSE within ±{DCN_RMSE_TOLERANCE} of TFRS",
                    f"{_num(torch_rmse)} vs {_num(tf_rmse)}"
                    + (f" ({torch_rmse - tf_rmse:+.4f})" if ok else ""),
                    ok and abs(torch_rmse - tf_rmse) <= DCN_RMSE_TOLERANCE,
                )
            )
        dcn = item("dcn", "torchrs_fn", "dcn").get("rmse")
        dnn = item("dcn", "torchrs_fn", "dnn").get("rmse")
        if dcn is not None and dnn is not None:
            checks.append(
                ("dcn: DCN ahead of DNN (lower RMSE)", f"{dcn:.4f} vs {dnn:.4f}", dcn < dnn)
            )
    if "multitask" in summaries:
        for name in summaries["multitask"]["tfrs"]["items"]:
            for key, tolerance in MULTITASK_TOLERANCES.items():
                tf_value = item("multitask", "tfrs", name).get(key)
                torch_value = item("multitask", "torchrs_fn", name).get(key)
                ok = tf_value is not None and torch_value is not None
                checks.append(
                    (
                        f"multitask {name}: {key} within ±{tolerance} of TFRS",
                        f"{_num(torch_value)} vs {_num(tf_value)}"
                        + (f" ({torch_value - tf_value:+.4f})" if ok else ""),
                        ok and abs(torch_value - tf_value) <= tolerance,
                    )
                )
    targets = SPEED_TARGETS
    if precision == "bf16":
        targets = {**SPEED_TARGETS, **BF16_SPEED_TARGETS}
    for tutorial, target in targets.items():
        if tutorial not in summaries:
            continue
        for name in summaries[tutorial]["tfrs"]["items"]:
            tf_value = item(tutorial, "tfrs", name).get("steady_seconds")
            torch_value = item(tutorial, "torchrs_fn", name).get("steady_seconds")
            ratio = tf_value / torch_value if tf_value and torch_value else None
            checks.append(
                (
                    f"{tutorial}/{name}: steady-state epoch ≥ {target}× faster than TFRS"
                    + (
                        " (ours bf16, TFRS fp32)"
                        if tutorial in BF16_SPEED_TARGETS and precision == "bf16"
                        else ""
                    ),
                    f"{ratio:.3f}×" if ratio is not None else "—",
                    ratio is not None and ratio >= target,
                )
            )
    return checks


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


def tf_versions(runs: dict[str, dict[str, list[dict[str, Any]]]]) -> str:
    lines = [
        line for tutorial in runs.values() for run in tutorial["tfrs"] for line in run["lines"]
    ]
    tf_version = next((x["tf_version"] for x in lines if "tf_version" in x), "?")
    tfrs_version = next((x["tfrs_version"] for x in lines if "tfrs_version" in x), "?")
    text = f"TensorFlow {tf_version}; TFRS {tfrs_version}"
    tfr = next((x for x in lines if "tfr_version" in x), None)
    if tfr is not None:
        text += f"; TF-Ranking {tfr['tfr_version']} ({tfr.get('tfr_import', '?')} import)"
    return text


def report(
    args: argparse.Namespace,
    command: str,
    date: str,
    machine: dict[str, Any],
    runs: dict[str, dict[str, list[dict[str, Any]]]],
    inputs: dict[str, dict[str, Any]],
    summaries: dict[str, dict[str, dict[str, Any]]],
    checks: Sequence[tuple[str, str, bool]],
    peaks: dict[str, dict[str, float]],
) -> str:
    """The Markdown block printed on stdout."""
    commit = git_commit()
    settings = {
        "basic_ranking": "3 epochs",
        "dcn": f"3 models × {args.dcn_runs} run(s) × 8 epochs",
        "listwise": f"losses {', '.join(args.listwise_losses)}; {args.listwise_epochs} epochs",
        "multitask": "weightings (1, 0), (0, 1), (1, 1); 3 epochs",
    }
    lines = [
        (
            f"MovieLens 100K ranking tutorials (TFRS basic_ranking, dcn, listwise, multitask "
            f"recipes): {', '.join(args.tutorials)}; seed {args.seed}; median of "
            f"{args.repeats} run(s) each side, run one after the other; torchrs_fn "
            f"`--compile {args.torch_compile}` (empty compile cache per run); torchrs_fn DCN "
            f"precision {args.torch_precision}."
        ),
        "",
        f"- Date: {date}",
        f"- Machine: {machine['platform']}; CPU: {machine['cpu_model']}; nproc: {machine['nproc']}",
        f"- Python {machine['python']}; torch {machine['torch_version']}; "
        f"torchrs_fn {machine['torchrs_fn_version']}{f' (commit {commit})' if commit else ''}; "
        + tf_versions(runs),
        f"- Command: `{command}`",
        "- This CPU's matmul peak (`torch.mm` 4096 x 4096, median of 5; before / after the "
        f"runs): float32 {peaks['before']['fp32']:.0f} / {peaks['after']['fp32']:.0f} GFLOP/s, "
        f"bfloat16 {peaks['before']['bf16']:.0f} / {peaks['after']['bf16']:.0f} GFLOP/s",
    ]
    for tutorial in args.tutorials:
        rows = ", ".join(f"{k} {v:,}" for k, v in inputs[tutorial]["rows"].items())
        lines += [
            "",
            f"**{tutorial}** ({settings[tutorial]}; rows: {rows})",
            "",
            quality_table(tutorial, summaries[tutorial]),
            "",
            speed_table(tutorial, summaries[tutorial]),
        ]
    if checks:
        lines += ["", "Targets:", "", "| target | measured | result |", "|---|---|---|"]
        lines += [f"| {t} | {m} | {'pass' if ok else 'FAIL'} |" for t, m, ok in checks]
    lines += [
        "",
        (
            "Epoch 1 is the first epoch of the first run (tracing / compilation included); "
            "epoch 2+ is the median of the epochs 2+ of every run. Times are wall-clock seconds "
            "unless marked CPU (user + system seconds of the process, all threads); ratio = "
            "TFRS / torchrs_fn, > 1 means torchrs_fn is faster. Rows a side does not report "
            "show —. GFLOP/s counts the dense layers' products only (forward and both "
            "backward products; `train_gflop_per_row`), over the training rows of one epoch; "
            "compare it with the matmul peak above (bfloat16's for a bf16 run)."
        ),
    ]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------


def check_rows(tutorial: str, inputs: dict[str, Any], framework: str, run: dict[str, Any]) -> None:
    """Raises when a program reports other train/test row counts than those written."""
    rows = inputs["rows"]
    reported: dict[str, int] = {}
    for line in run["lines"]:
        for key, split in (
            ("num_train", "train"),
            ("num_test", "test"),
            ("num_train_lists", "train"),
            ("num_test_lists", "test"),
        ):
            if key in line:
                reported[split] = line[key]
    for split, count in reported.items():
        if count != rows[split]:
            raise RuntimeError(
                f"{tutorial}: {framework} reports {count} {split} rows, {rows[split]} written"
            )
    if reported:
        log(f"  rows agree: {reported}")


def _comma_list(choices: Sequence[str]) -> Callable[[str], list[str]]:
    def parse(text: str) -> list[str]:
        names = [n.strip() for n in text.split(",") if n.strip()]
        unknown = sorted(set(names) - set(choices))
        if unknown or not names:
            raise argparse.ArgumentTypeError(f"unknown {unknown}; choose from {list(choices)}")
        return names

    return parse


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--data-dir", default=None, help="MovieLens files (movielens.load)")
    parser.add_argument(
        "--tutorials",
        type=_comma_list(TUTORIALS),
        default=",".join(TUTORIALS),
        help=f"comma-separated subset of {','.join(TUTORIALS)}",
    )
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--repeats", type=int, default=1, help="rounds of (TFRS, torchrs_fn)")
    parser.add_argument(
        "--torch-compile",
        choices=("auto", "on", "off"),
        default="on",
        help="--compile of the torchrs_fn examples",
    )
    parser.add_argument(
        "--torch-precision",
        choices=("fp32", "bf16"),
        default="fp32",
        help="--precision of the torchrs_fn DCN example (bf16: its speed target becomes 2x "
        "TFRS's float32 epoch)",
    )
    parser.add_argument("--dcn-runs", type=int, default=5, help="runs per DCN model")
    parser.add_argument("--listwise-epochs", type=int, default=30)
    parser.add_argument(
        "--listwise-losses",
        type=_comma_list(("mean_squared", "pairwise_hinge", "list_mle")),
        default=",".join(TFRS_LISTWISE_LOSSES),
        help="comma-separated listwise losses (those both sides have)",
    )
    parser.add_argument(
        "--max-load",
        type=float,
        default=None,
        help="before each run, wait while the 1-minute load average is above this",
    )
    parser.add_argument(
        "--max-busy",
        type=float,
        default=None,
        help="before each run, wait while the CPUs are busier than this fraction (sampled 5 s)",
    )
    parser.add_argument(
        "--max-wait", type=float, default=600.0, help="seconds --max-load/--max-busy wait at most"
    )
    parser.add_argument("--tfrs-python", default=None, help="TensorFlow virtualenv's python")
    parser.add_argument("--json-out", type=Path, default=None, help="write raw results here")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds per program run")
    args = parser.parse_args(argv)
    if min(args.repeats, args.dcn_runs, args.listwise_epochs) < 1:
        parser.error("--repeats, --dcn-runs and --listwise-epochs must be >= 1")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    command = shlex.join(
        ["python", *(sys.argv if argv is None else ["compare_tfrs_ranking.py", *argv])]
    )
    date = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    tfrs_python = resolve_tf_python(args.tfrs_python, "--tfrs-python")
    machine = machine_info()

    runs: dict[str, dict[str, list[dict[str, Any]]]] = {
        t: {f: [] for f in FRAMEWORKS} for t in args.tutorials
    }
    inputs: dict[str, dict[str, Any]] = {}
    peaks = {"before": matmul_peak()}
    with tempfile.TemporaryDirectory(prefix="compare_tfrs_ranking_") as tmp:
        for tutorial in args.tutorials:
            inputs[tutorial] = write_inputs(tutorial, args.data_dir, args.seed, Path(tmp))
            log(f"{tutorial}: wrote {inputs[tutorial]['rows']}")
        for repeat in range(args.repeats):
            log(f"round {repeat + 1}/{args.repeats}")
            for tutorial in args.tutorials:
                for framework in FRAMEWORKS:
                    if framework == "tfrs":
                        cmd = tfrs_command(tutorial, args, tfrs_python, inputs[tutorial])
                        env = tf_env()
                    else:
                        cmd = torch_command(tutorial, args)
                        # An empty compile cache: epoch 1 includes the whole compilation.
                        cache = tempfile.mkdtemp(prefix=f"inductor_{tutorial}_", dir=tmp)
                        env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": cache}
                    quiet = wait_for_quiet(args.max_load, args.max_busy, args.max_wait)
                    result = run_json_lines(cmd, env, args.timeout)
                    result["load_average_at_start"] = load = quiet["load_average"]
                    result["busy_fraction_at_start"] = quiet["busy_fraction"]
                    check_rows(tutorial, inputs[tutorial], framework, result)
                    others = result["others_cpu_seconds"]
                    log(
                        f"  {framework} done in {result['process_wall_seconds']:.1f} s "
                        f"({result['process_cpu_seconds']:.1f} s CPU; load {load:.2f} at start; "
                        f"other programs used {_num(others, 1)} CPU s meanwhile)"
                    )
                    runs[tutorial][framework].append(result)

    summaries = {
        tutorial: {f: summarize(runs[tutorial][f], tutorial, f) for f in FRAMEWORKS}
        for tutorial in args.tutorials
    }
    peaks["after"] = matmul_peak()
    for tutorial in args.tutorials:
        add_gflops(tutorial, summaries[tutorial], inputs[tutorial]["rows"]["train"])
    checks = check_targets(summaries, args.torch_precision)
    print(report(args, command, date, machine, runs, inputs, summaries, checks, peaks))

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
                    "matmul_peak_gflops": peaks,
                    "rows": {t: inputs[t]["rows"] for t in args.tutorials},
                    "runs": runs,
                    "summary": summaries,
                    "targets": [{"target": t, "measured": m, "passed": ok} for t, m, ok in checks],
                },
                indent=2,
            )
            + "\n",
            encoding="utf-8",
        )
        log(f"raw results written to {args.json_out}")


if __name__ == "__main__":
    main()
