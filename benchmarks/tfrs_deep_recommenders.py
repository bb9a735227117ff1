"""TensorFlow Recommenders reference run of the "deep recommenders" tutorial, and its driver.

Two modes in one file:

* **TFRS side** (``--train``/``--test``/``--movies``): runs **only** in the TensorFlow virtualenv
  (``benchmarks/setup_tfrs_venv.sh``) with ``TF_USE_LEGACY_KERAS=1`` (set here when absent;
  Keras 3 is refused). It imports nothing of torchrs_fn.
* **driver** (``--compare``): runs in the torchrs_fn environment. It splits MovieLens 100K with
  ``load_split`` of ``examples/movielens_deep.py`` (imported from the example, so the rows are
  the example's), writes train / test / movies to Parquet in a temporary folder, checks the row
  counts both programs report, and runs this file's TFRS side, then the example (never at the
  same time), both for ``--epochs`` epochs on every depth of ``--layers``. It prints a Markdown
  table of test top-K and epoch times side by side; ``--json-out`` keeps the raw lines.

What the TFRS side reproduces (https://www.tensorflow.org/recommenders/examples/deep_recommenders),
one fresh model per depth:

* query tower: ``StringLookup(unique user ids, mask_token=None)`` + ``Embedding(n + 1, 32)``;
  ``Discretization(np.linspace(min, max, 1000))`` + ``Embedding(1001, 32)`` of the timestamp;
  ``Normalization(axis=None)`` of the timestamp (adapted on every rating's timestamp, train +
  test, as the tutorial adapts on all ratings), reshaped to ``[B, 1]``; concatenated (65 wide);
* candidate tower: ``StringLookup(unique titles of --movies)`` + ``Embedding(n + 1, 32)``;
  ``TextVectorization(max_tokens=10_000)`` adapted on ``--movies`` + ``Embedding(10_000, 32,
  mask_zero=True)`` + ``GlobalAveragePooling1D()``; concatenated (64 wide);
* each tower then ``Dense`` layers of the depth's sizes (1: [32], 2: [64, 32], 3: [128, 64,
  32]), ReLU on all but the last;
* ``tfrs.tasks.Retrieval(metrics=FactorizedTopK(candidates=movies.batch(128).map(
  candidate_model)))`` over every row of ``--movies`` (duplicated titles appear twice, as in the
  tutorial), ``compute_metrics=not training``;
* ``Adagrad(0.1)``; training data ``shuffle(100_000, seed).batch(2048)`` (reshuffled every
  epoch, not cached, as in the tutorial), test data ``batch(4096).cache()``.

Decisions: the tutorial trains 300 epochs and validates every 5; here ``--epochs`` (default 30)
and one evaluation after the last epoch (the number the tutorial prints is its last
validation, also after the last epoch). ``--seed`` goes to ``tf.keras.utils.set_random_seed``
before each model is built and to the shuffle. One ``model.fit(epochs=1)`` call per epoch,
timed.

Input contract (Parquet, written by the driver): ``--train`` / ``--test``: ``user_id``
(string), ``movie_title`` (string), ``timestamp`` (integer seconds); ``--movies``:
``movie_title`` (string; every row is a candidate); no nulls.

Usage::

    # side by side, from the repository root, in the torchrs_fn environment:
    python benchmarks/tfrs_deep_recommenders.py --compare --data-dir ../shared/data/ml-100k \\
        --epochs 30 [--layers 1,2,3] [--json-out /tmp/deep.json]
    # the TFRS side alone:
    TF_USE_LEGACY_KERAS=1 .venv-tfrs/bin/python benchmarks/tfrs_deep_recommenders.py \\
        --train train.parquet --test test.parquet --movies movies.parquet --epochs 30 --json

With ``--json`` the TFRS side prints one JSON line per depth to stdout with the example's keys
``layers``, ``layer_sizes``, ``top_100``, ``top_50``, ``top_10``, ``epoch_seconds`` (plus
``framework``, ``top_1``, ``top_5``, ``epoch_cpu_seconds``, ``last_batch_loss`` (per epoch: what
``tfrs.Model`` logs as ``loss``, the last batch's), ``eval_seconds``,
``num_train``, ``num_test``, ``num_candidates``, ``num_params``, ``epochs``, ``seed``,
``tf_version``, ``tfrs_version``); everything else goes to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import importlib.util
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

LAYER_SIZES = {1: (32,), 2: (64, 32), 3: (128, 64, 32)}  # as examples/movielens_deep.py
EMBEDDING_DIMENSION = 32
MAX_TOKENS = 10_000
LEARNING_RATE = 0.1
TRAIN_BATCH_SIZE = 2048
TEST_BATCH_SIZE = 4096
CANDIDATE_BATCH_SIZE = 128
SHUFFLE_BUFFER = 100_000
TOP_KS = (1, 5, 10, 50, 100)
DEFAULT_EPOCHS = 30

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
EXAMPLE = REPO_ROOT / "examples" / "movielens_deep.py"


# --------------------------------------------------------------------------------------------
# The TFRS side (TensorFlow virtualenv only).


@dataclasses.dataclass
class Timing:
    """Wall-clock and process CPU seconds (all threads) of a block; see ``timed``."""

    wall: float = 0.0
    cpu: float = 0.0


@contextlib.contextmanager
def timed() -> Iterator[Timing]:
    """``with timed() as t: ...`` fills ``t.wall`` and ``t.cpu`` when the block ends."""
    timing = Timing()
    wall, cpu = time.perf_counter(), time.process_time()
    try:
        yield timing
    finally:
        timing.wall = time.perf_counter() - wall
        timing.cpu = time.process_time() - cpu


def read_columns(
    path: str, strings: Sequence[str], integers: Sequence[str]
) -> dict[str, np.ndarray]:
    """String columns as object arrays of ``str``, integer columns as int64.

    Raises:
        ValueError: a column is missing, has the wrong type, or contains nulls.
    """
    table = pq.read_table(path)
    out: dict[str, np.ndarray] = {}
    for name in (*strings, *integers):
        if name not in table.column_names:
            raise ValueError(f"{path}: missing column {name!r} (has {table.column_names})")
        column = table.column(name)
        if column.null_count:
            raise ValueError(f"{path}: column {name!r} has {column.null_count} nulls")
        if name in strings:
            if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
                raise ValueError(f"{path}: column {name!r} has type {column.type}, expected string")
            out[name] = np.asarray(column.to_pylist(), dtype=object)
        else:
            if not pa.types.is_integer(column.type):
                raise ValueError(
                    f"{path}: column {name!r} has type {column.type}, expected integer"
                )
            out[name] = column.to_numpy().astype(np.int64)
    return out


def build_tfrs_model(tf: Any, tfrs: Any, data: dict[str, Any], layer_sizes: Sequence[int]) -> Any:
    """The tutorial's ``MovielensModel(layer_sizes)``."""

    def dense_stack() -> Any:
        stack = tf.keras.Sequential()
        for units in layer_sizes[:-1]:
            stack.add(tf.keras.layers.Dense(units, activation="relu"))
        stack.add(tf.keras.layers.Dense(layer_sizes[-1]))
        return stack

    class UserModel(tf.keras.Model):
        def __init__(self) -> None:
            super().__init__()
            self.user_embedding = tf.keras.Sequential(
                [
                    tf.keras.layers.StringLookup(vocabulary=data["user_ids"], mask_token=None),
                    tf.keras.layers.Embedding(len(data["user_ids"]) + 1, EMBEDDING_DIMENSION),
                ]
            )
            buckets = data["timestamp_buckets"]
            self.timestamp_embedding = tf.keras.Sequential(
                [
                    tf.keras.layers.Discretization(buckets.tolist()),
                    tf.keras.layers.Embedding(len(buckets) + 1, EMBEDDING_DIMENSION),
                ]
            )
            self.normalized_timestamp = tf.keras.layers.Normalization(axis=None)
            self.normalized_timestamp.adapt(data["timestamps"])

        def call(self, inputs: dict[str, Any]) -> Any:
            return tf.concat(
                [
                    self.user_embedding(inputs["user_id"]),
                    self.timestamp_embedding(inputs["timestamp"]),
                    tf.reshape(self.normalized_timestamp(inputs["timestamp"]), (-1, 1)),
                ],
                axis=1,
            )

    class MovieModel(tf.keras.Model):
        def __init__(self) -> None:
            super().__init__()
            self.title_embedding = tf.keras.Sequential(
                [
                    tf.keras.layers.StringLookup(vocabulary=data["titles"], mask_token=None),
                    tf.keras.layers.Embedding(len(data["titles"]) + 1, EMBEDDING_DIMENSION),
                ]
            )
            self.title_vectorizer = tf.keras.layers.TextVectorization(max_tokens=MAX_TOKENS)
            self.title_text_embedding = tf.keras.Sequential(
                [
                    self.title_vectorizer,
                    tf.keras.layers.Embedding(MAX_TOKENS, EMBEDDING_DIMENSION, mask_zero=True),
                    tf.keras.layers.GlobalAveragePooling1D(),
                ]
            )
            self.title_vectorizer.adapt(data["candidate_titles"])

        def call(self, titles: Any) -> Any:
            return tf.concat(
                [self.title_embedding(titles), self.title_text_embedding(titles)], axis=1
            )

    class QueryModel(tf.keras.Model):
        def __init__(self) -> None:
            super().__init__()
            self.embedding_model = UserModel()
            self.dense_layers = dense_stack()

        def call(self, inputs: dict[str, Any]) -> Any:
            return self.dense_layers(self.embedding_model(inputs))

    class CandidateModel(tf.keras.Model):
        def __init__(self) -> None:
            super().__init__()
            self.embedding_model = MovieModel()
            self.dense_layers = dense_stack()

        def call(self, titles: Any) -> Any:
            return self.dense_layers(self.embedding_model(titles))

    class MovielensModel(tfrs.models.Model):
        def __init__(self) -> None:
            super().__init__()
            self.query_model = QueryModel()
            self.candidate_model = CandidateModel()
            candidates = tf.data.Dataset.from_tensor_slices(tf.constant(data["candidate_titles"]))
            self.task = tfrs.tasks.Retrieval(
                metrics=tfrs.metrics.FactorizedTopK(
                    candidates=candidates.batch(CANDIDATE_BATCH_SIZE).map(self.candidate_model),
                    ks=TOP_KS,
                )
            )

        def compute_loss(self, features: dict[str, Any], training: bool = False) -> Any:
            query_embeddings = self.query_model(
                {"user_id": features["user_id"], "timestamp": features["timestamp"]}
            )
            movie_embeddings = self.candidate_model(features["movie_title"])
            return self.task(query_embeddings, movie_embeddings, compute_metrics=not training)

    return MovielensModel()


def top_k_results(logs: dict[str, Any]) -> dict[str, float]:
    """Picks ``top_K`` accuracies out of ``model.evaluate(..., return_dict=True)`` logs."""
    results: dict[str, float] = {}
    for k in TOP_KS:
        suffix = f"top_{k}_categorical_accuracy"
        matches = [value for key, value in logs.items() if key.endswith(suffix)]
        if len(matches) != 1:
            raise RuntimeError(f"expected one metric ending in {suffix!r}, got {sorted(logs)}")
        results[f"top_{k}"] = float(matches[0])
    return results


def tfrs_run_depth(tf: Any, tfrs: Any, depth: int, data: dict[str, Any], args: Any) -> dict:
    """Trains and evaluates one fresh ``depth``-layer model."""
    layer_sizes = LAYER_SIZES[depth]
    tf.keras.utils.set_random_seed(args.seed)
    model = build_tfrs_model(tf, tfrs, data, layer_sizes)
    model.compile(optimizer=tf.keras.optimizers.Adagrad(LEARNING_RATE))
    epoch_seconds: list[float] = []
    epoch_cpu_seconds: list[float] = []
    last_batch_loss: list[float] = []
    for epoch in range(args.epochs):
        with timed() as watch:
            history = model.fit(data["train"], epochs=1, verbose=0)
        epoch_seconds.append(watch.wall)
        epoch_cpu_seconds.append(watch.cpu)
        # tfrs.Model's "loss" log is the last batch's loss (not an epoch mean).
        last_batch_loss.append(float(history.history["loss"][-1]))
        print(
            f"{layer_sizes} epoch {epoch + 1}/{args.epochs}: {watch.wall:.2f} s, "
            f"last batch loss {last_batch_loss[-1]:,.1f}",
            file=sys.stderr,
        )
    with timed() as watch:
        logs = model.evaluate(data["test"], return_dict=True, verbose=0)
    accuracies = top_k_results(logs)
    return {
        "layers": depth,
        "layer_sizes": list(layer_sizes),
        "top_100": accuracies["top_100"],
        "top_50": accuracies["top_50"],
        "top_10": accuracies["top_10"],
        "epoch_seconds": epoch_seconds,
        "framework": "tfrs",
        "top_1": accuracies["top_1"],
        "top_5": accuracies["top_5"],
        "epoch_cpu_seconds": epoch_cpu_seconds,
        "last_batch_loss": last_batch_loss,
        "eval_seconds": watch.wall,
        "num_train": data["num_train"],
        "num_test": data["num_test"],
        "num_candidates": len(data["candidate_titles"]),
        "num_params": sum(int(np.prod(v.shape)) for v in model.trainable_variables),
        "epochs": args.epochs,
        "seed": args.seed,
        "tf_version": tf.__version__,
        "tfrs_version": tfrs.__version__.lstrip("v"),
    }


def tfrs_main(args: argparse.Namespace) -> int:
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")  # before TensorFlow is imported
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf
    import tensorflow_recommenders as tfrs
    from _sidebyside import require_tf_keras

    require_tf_keras(tf)
    if args.threads:
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    stdout = sys.stdout
    sys.stdout = sys.stderr  # Keep stdout for the JSON lines.
    try:
        strings, integers = ("user_id", "movie_title"), ("timestamp",)
        train = read_columns(args.train, strings, integers)
        test = read_columns(args.test, strings, integers)
        candidate_titles = read_columns(args.movies, ("movie_title",), ())["movie_title"]
        timestamps = np.concatenate([train["timestamp"], test["timestamp"]])
        train_ds = tf.data.Dataset.from_tensor_slices({k: tf.constant(v) for k, v in train.items()})
        test_ds = tf.data.Dataset.from_tensor_slices({k: tf.constant(v) for k, v in test.items()})
        data = {
            "user_ids": np.unique(np.concatenate([train["user_id"], test["user_id"]])),
            "titles": np.unique(candidate_titles),
            "candidate_titles": candidate_titles,
            "timestamps": timestamps,
            "timestamp_buckets": np.linspace(timestamps.min(), timestamps.max(), num=1000),
            # As in the tutorial: reshuffled every epoch, not cached.
            "train": train_ds.shuffle(SHUFFLE_BUFFER, seed=args.seed).batch(TRAIN_BATCH_SIZE),
            "test": test_ds.batch(TEST_BATCH_SIZE).cache(),
            "num_train": len(train["user_id"]),
            "num_test": len(test["user_id"]),
        }
        for depth in args.layers:
            result = tfrs_run_depth(tf, tfrs, depth, data, args)
            if args.json:
                print(json.dumps(result), file=stdout, flush=True)
            else:
                print(
                    f"{result['layer_sizes']}: top-100 {result['top_100']:.4f}, median epoch "
                    f"{np.median(result['epoch_seconds']):.2f} s",
                    file=stdout,
                    flush=True,
                )
    finally:
        sys.stdout = stdout
    return 0


# --------------------------------------------------------------------------------------------
# The driver (torchrs_fn environment).


def load_example() -> Any:
    """``examples/movielens_deep.py`` (not a package), imported by path."""
    spec = importlib.util.spec_from_file_location("_example_movielens_deep", EXAMPLE)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {EXAMPLE}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def write_inputs(data_dir: str | None, seed: int, folder: Path) -> dict[str, Any]:
    """The example's split, as the TFRS side's Parquet inputs; returns paths and row counts."""
    example = load_example()
    _, movies, train, test = example.load_split(data_dir, seed)
    tables = {
        "train": train.select(["user_id", "movie_title", "timestamp"]),
        "test": test.select(["user_id", "movie_title", "timestamp"]),
        "movies": movies.select(["movie_title"]),
    }
    paths = {}
    for name, table in tables.items():
        paths[name] = str(folder / f"{name}.parquet")
        pq.write_table(table, paths[name])
    return {"paths": paths, "rows": {name: t.num_rows for name, t in tables.items()}}


def _median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def _num(value: float | None, digits: int) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def report(args: argparse.Namespace, results: dict[str, dict[int, dict]], meta: dict) -> str:
    """The Markdown block: machine, date, command, quality and speed tables."""
    lines = [
        f"Deep recommenders (TFRS tutorial), MovieLens 100K, {args.epochs} epochs per model, "
        f"seed {args.seed}; {meta['date']}, {meta['cpu']} ({meta['cpus']} CPUs), "
        f"torch {meta['torch']}, TF {meta['tf']}, TFRS {meta['tfrs']}.",
        "",
        f"`{meta['command']}`",
        "",
        "| layers | torchrs_fn top-100 | TFRS top-100 | diff | torchrs_fn top-10 / top-50 "
        "| TFRS top-10 / top-50 | TFRS published (300 epochs) |",
        "|---|---:|---:|---:|---|---|---:|",
    ]
    published = {1: "0.27", 2: "0.29", 3: "< 1 layer"}
    for depth in args.layers:
        ours, theirs = results["torchrs_fn"][depth], results["tfrs"][depth]
        lines.append(
            f"| {ours['layer_sizes']} | {ours['top_100']:.4f} | {theirs['top_100']:.4f} "
            f"| {ours['top_100'] - theirs['top_100']:+.4f} "
            f"| {ours['top_10']:.4f} / {ours['top_50']:.4f} "
            f"| {theirs['top_10']:.4f} / {theirs['top_50']:.4f} | {published[depth]} |"
        )
    lines += [
        "",
        "| layers | torchrs_fn epoch 1 s | TFRS epoch 1 s | torchrs_fn epoch 2+ s | TFRS epoch 2+ s "
        "| speed (TFRS / ours) | torchrs_fn step | eval s, ours / TFRS |",
        "|---|---:|---:|---:|---:|---:|---|---|",
    ]
    for depth in args.layers:
        ours, theirs = results["torchrs_fn"][depth], results["tfrs"][depth]
        o, t = _median(ours["epoch_seconds"][1:]), _median(theirs["epoch_seconds"][1:])
        lines.append(
            f"| {ours['layer_sizes']} | {ours['epoch_seconds'][0]:.2f} "
            f"| {theirs['epoch_seconds'][0]:.2f} | {_num(o, 2)} | {_num(t, 2)} "
            f"| {_num(t / o if o and t else None, 2)} | {ours['train_step'].split(':')[0]} "
            f"| {ours['eval_seconds']:.2f} / {theirs['eval_seconds']:.2f} |"
        )
    lines += [
        "",
        f"Epoch 2+: median wall-clock seconds of epochs 2..{args.epochs}; torchrs_fn step with "
        f"`--compile {args.torch_compile}`; eval s: the test set's top-K after training. "
        f"Threads: {args.threads or 'library defaults'}. "
        f"Load average at the start of each program: {meta['loads']}.",
    ]
    return "\n".join(lines)


def compare_main(args: argparse.Namespace) -> int:
    sys.path.insert(0, str(BENCH_DIR))
    # Imports torchrs_fn (and puts this checkout on the path when it is not installed).
    from _sidebyside import cpu_model, package_version, resolve_tf_python, tf_env, usable_cpus
    from compare_tfrs_ranking import log, run_json_lines, wait_for_quiet

    tfrs_python = resolve_tf_python(args.tfrs_python, "--tfrs-python")
    layers = ",".join(str(d) for d in args.layers)
    common = ["--layers", layers, "--epochs", str(args.epochs), "--seed", str(args.seed), "--json"]
    # --threads: TensorFlow's op thread pools on the TFRS side, OpenMP's threads on ours.
    tfrs_threads = ["--threads", str(args.threads)] if args.threads else []
    torch_threads = {"OMP_NUM_THREADS": str(args.threads)} if args.threads else {}
    results: dict[str, dict[int, dict]] = {}
    raw: dict[str, Any] = {}
    loads = []
    with tempfile.TemporaryDirectory(prefix="tfrs_deep_") as tmp:
        inputs = write_inputs(args.data_dir, args.seed, Path(tmp))
        log(f"rows written: {inputs['rows']}")
        p = inputs["paths"]
        commands = {
            "tfrs": (
                [
                    tfrs_python,
                    str(Path(__file__).resolve()),
                    "--train",
                    p["train"],
                    "--test",
                    p["test"],
                    "--movies",
                    p["movies"],
                    *common,
                    *tfrs_threads,
                ],
                tf_env(),
            ),
            "torchrs_fn": (
                [sys.executable, str(EXAMPLE), "--compile", args.torch_compile, *common]
                + (["--data-dir", str(Path(args.data_dir).resolve())] if args.data_dir else []),
                # An empty compile cache: epoch 1 includes any compilation, as TFRS's its tracing.
                {
                    **os.environ,
                    **torch_threads,
                    "TORCHINDUCTOR_CACHE_DIR": tempfile.mkdtemp(dir=tmp),
                },
            ),
        }
        for framework in args.frameworks:
            cmd, env = commands[framework]
            quiet = wait_for_quiet(args.max_load, None, args.max_wait)
            loads.append(f"{framework} {quiet['load_average']:.2f}")
            out = run_json_lines(cmd, env, args.timeout)
            raw[framework] = out
            log(
                f"  {framework} done in {out['process_wall_seconds']:.0f} s; other programs used "
                f"{_num(out['others_cpu_seconds'], 0)} CPU s meanwhile"
            )
            results[framework] = {line["layers"]: line for line in out["lines"]}
            for line in out["lines"]:
                got = (line["num_train"], line["num_test"], line["num_candidates"])
                want = (inputs["rows"]["train"], inputs["rows"]["test"], inputs["rows"]["movies"])
                if got != want:
                    raise RuntimeError(f"{framework} used {got} rows, the driver wrote {want}")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({"args": vars(args), "raw": raw}, indent=1))
    if set(results) != {"tfrs", "torchrs_fn"}:
        for framework, by_depth in results.items():
            for line in by_depth.values():
                print(json.dumps({"framework": framework, **line}))
        return 0
    meta = {
        "date": dt.date.today().isoformat(),
        "cpu": cpu_model(),
        "cpus": usable_cpus(),
        "torch": package_version("torch"),
        "tf": results["tfrs"][args.layers[0]]["tf_version"],
        "tfrs": results["tfrs"][args.layers[0]]["tfrs_version"],
        "command": "python benchmarks/tfrs_deep_recommenders.py " + " ".join(sys.argv[1:]),
        "loads": ", ".join(loads),
        "python": platform.python_version(),
    }
    print(report(args, results, meta))
    return 0


# --------------------------------------------------------------------------------------------


def parse_layers(text: str) -> tuple[int, ...]:
    try:
        depths = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        depths = ()
    if not depths or any(d not in LAYER_SIZES for d in depths):
        raise argparse.ArgumentTypeError(
            f"expected a comma-separated subset of 1,2,3, got {text!r}"
        )
    return depths


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--compare", action="store_true", help="driver mode (torchrs_fn environment)")
    p.add_argument("--train", help="TFRS side: Parquet with user_id, movie_title, timestamp")
    p.add_argument("--test", help="TFRS side: Parquet with user_id, movie_title, timestamp")
    p.add_argument("--movies", help="TFRS side: Parquet with movie_title (the candidates)")
    p.add_argument("--layers", type=parse_layers, default=(1, 2, 3), help="depths (default 1,2,3)")
    p.add_argument(
        "--epochs",
        type=int,
        default=DEFAULT_EPOCHS,
        help=f"epochs per model (default {DEFAULT_EPOCHS}; the tutorial's figures are at 300)",
    )
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--json", action="store_true", help="TFRS side: one JSON line per depth")
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="TFRS side: TensorFlow's intra- and inter-op threads; driver: that for TFRS and "
        "OMP_NUM_THREADS for torchrs_fn (default: each library's own default)",
    )
    # Driver options.
    p.add_argument("--data-dir", default=None, help="driver: MovieLens 100K folder or zip")
    p.add_argument("--tfrs-python", default=None, help="driver: the TensorFlow interpreter")
    p.add_argument(
        "--torch-compile",
        choices=("auto", "on", "off"),
        default="auto",
        help="driver: the example's --compile (default auto)",
    )
    p.add_argument(
        "--frameworks",
        type=lambda s: tuple(s.split(",")),
        default=("tfrs", "torchrs_fn"),
        help="driver: which programs to run, in order (default tfrs,torchrs_fn)",
    )
    p.add_argument(
        "--max-load", type=float, default=None, help="driver: wait for a quieter machine"
    )
    p.add_argument("--max-wait", type=float, default=600.0, help="driver: longest wait, seconds")
    p.add_argument("--timeout", type=float, default=4 * 3600.0, help="driver: per program, seconds")
    p.add_argument("--json-out", default=None, help="driver: save every raw result here")
    args = p.parse_args(argv)
    if args.epochs < 1:
        p.error(f"--epochs must be >= 1, got {args.epochs}")
    if not args.compare and not (args.train and args.test and args.movies):
        p.error("give --train, --test and --movies (TFRS side) or --compare (driver)")
    if args.compare and any(f not in ("tfrs", "torchrs_fn") for f in args.frameworks):
        p.error(f"--frameworks takes tfrs and/or torchrs_fn, got {','.join(args.frameworks)}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    return compare_main(args) if args.compare else tfrs_main(args)


if __name__ == "__main__":
    sys.exit(main())
