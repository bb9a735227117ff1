"""TensorFlow Recommenders reference run of the "basic retrieval" tutorial recipe.

This is the TFRS side of the torchrs_fn side-by-side benchmark. It runs **only** in the
TensorFlow virtualenv (see ``benchmarks/setup_tfrs_venv.sh``), never in the torchrs_fn one,
and must be started with ``TF_USE_LEGACY_KERAS=1`` (TFRS 0.7.7 needs the Keras 2 API; the
script sets the variable itself when it is absent, and refuses to run under Keras 3).

What it reproduces (https://www.tensorflow.org/recommenders/examples/basic_retrieval):

* two towers, each ``StringLookup(vocabulary, mask_token=None)`` followed by
  ``Embedding(len(vocabulary) + 1, 32)`` (row 0 is the out-of-vocabulary row);
  the user vocabulary is the sorted unique user ids of train + test, the movie vocabulary
  the sorted unique titles of ``--movies`` (the tutorial's ``np.unique``);
* ``tfrs.tasks.Retrieval`` with ``tfrs.metrics.FactorizedTopK(candidates=...)`` over every row
  of the movies table batched by 128 and mapped through the movie tower, as the tutorial does
  (so the 18 duplicated 100K titles appear twice; ``--candidates unique`` uses each title once);
* ``Adagrad(learning_rate=0.1)``; training data ``shuffle(100_000, seed).batch(8192).cache()``;
  test data ``batch(4096).cache()``; 3 epochs by default.

One deliberate change from the tutorial, for a fair speed comparison: the top-K metrics are
computed only at evaluation time (``compute_metrics=not training``), so training epochs
measure the training step alone.

What it measures:

* ``epoch_seconds``: wall-clock time of each ``model.fit(epochs=1)`` call (one call per
  epoch, so the first includes tf.function tracing and filling the dataset cache);
* ``eval_seconds_first`` / ``eval_seconds``: wall-clock time of the first and of a second
  ``model.evaluate`` over the whole test set (the first includes tracing);
* ``epoch_cpu_seconds`` / ``eval_cpu_seconds[_first]``: process CPU seconds (all threads) of
  the same intervals, a cross-check when the machine is shared or throttled;
* ``top_1`` ... ``top_100``: factorized top-K categorical accuracy on the test set.

It does not load or split MovieLens itself: the caller supplies Parquet files, so that both
frameworks see exactly the same split (``benchmarks/compare_tfrs.py`` does this).

Usage::

    TF_USE_LEGACY_KERAS=1 .venv-tfrs/bin/python benchmarks/tfrs_basic_retrieval.py \\
        --train train.parquet --test test.parquet --movies movies.parquet --json

``--train`` / ``--test``: columns ``user_id`` and ``movie_title`` (strings);
``--movies``: column ``movie_title`` (strings; duplicates allowed). With ``--json`` exactly
one JSON line is written to stdout; everything else goes to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import sys
import time
from collections.abc import Iterator, Sequence
from typing import Any

# Must happen before TensorFlow is imported.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import tensorflow as tf
import tensorflow_recommenders as tfrs
from _sidebyside import require_tf_keras, run_and_report

EMBEDDING_DIMENSION = 32
LEARNING_RATE = 0.1
TRAIN_BATCH_SIZE = 8192
TEST_BATCH_SIZE = 4096
CANDIDATE_BATCH_SIZE = 128
SHUFFLE_BUFFER = 100_000
TOP_KS = (1, 5, 10, 50, 100)


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


def read_string_columns(path: str, columns: Sequence[str]) -> dict[str, np.ndarray]:
    """Reads ``columns`` of a Parquet file as numpy object arrays of Python ``str``.

    Raises:
        ValueError: a column is missing, is not a string column, or contains nulls.
    """
    table = pq.read_table(path)
    out: dict[str, np.ndarray] = {}
    for name in columns:
        if name not in table.column_names:
            raise ValueError(f"{path}: missing column {name!r} (has {table.column_names})")
        column = table.column(name)
        if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
            raise ValueError(f"{path}: column {name!r} has type {column.type}, expected string")
        if column.null_count:
            raise ValueError(f"{path}: column {name!r} has {column.null_count} nulls")
        out[name] = np.asarray(column.to_pylist(), dtype=object)
    return out


def embedding_tower(vocabulary: np.ndarray) -> tf.keras.Model:
    """StringLookup (index 0 = OOV, vocabulary at 1..N) followed by a 32-d embedding."""
    return tf.keras.Sequential(
        [
            tf.keras.layers.StringLookup(vocabulary=vocabulary, mask_token=None),
            tf.keras.layers.Embedding(len(vocabulary) + 1, EMBEDDING_DIMENSION),
        ]
    )


class MovielensModel(tfrs.Model):
    """The tutorial's two-tower model, with top-K metrics computed only when evaluating."""

    def __init__(
        self, user_model: tf.keras.Model, movie_model: tf.keras.Model, task: tfrs.tasks.Retrieval
    ) -> None:
        super().__init__()
        self.user_model = user_model
        self.movie_model = movie_model
        self.task = task

    def compute_loss(self, features: dict[str, tf.Tensor], training: bool = False) -> tf.Tensor:
        user_embeddings = self.user_model(features["user_id"])
        movie_embeddings = self.movie_model(features["movie_title"])
        return self.task(user_embeddings, movie_embeddings, compute_metrics=not training)


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


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Builds the datasets and the model, trains, evaluates and returns the results."""
    tf.keras.utils.set_random_seed(args.seed)  # Python, NumPy and tf.random.set_seed.

    columns = ("user_id", "movie_title")
    train = read_string_columns(args.train, columns)
    test = read_string_columns(args.test, columns)
    movie_rows = read_string_columns(args.movies, ("movie_title",))["movie_title"]

    unique_user_ids = np.unique(np.concatenate([train["user_id"], test["user_id"]]))
    unique_movie_titles = np.unique(movie_rows)
    candidate_titles = unique_movie_titles if args.candidates == "unique" else movie_rows
    known_titles = set(unique_movie_titles.tolist())
    oov_titles = sum(t not in known_titles for split in (train, test) for t in split["movie_title"])
    if oov_titles:
        print(
            f"warning: {oov_titles} train/test rows have titles missing from --movies; "
            "they map to the OOV embedding row",
            file=sys.stderr,
        )

    train_ds = tf.data.Dataset.from_tensor_slices({k: tf.constant(v) for k, v in train.items()})
    test_ds = tf.data.Dataset.from_tensor_slices({k: tf.constant(v) for k, v in test.items()})
    movies_ds = tf.data.Dataset.from_tensor_slices(tf.constant(candidate_titles))

    cached_train = train_ds.shuffle(SHUFFLE_BUFFER, seed=args.seed).batch(TRAIN_BATCH_SIZE).cache()
    cached_test = test_ds.batch(TEST_BATCH_SIZE).cache()

    user_model = embedding_tower(unique_user_ids)
    movie_model = embedding_tower(unique_movie_titles)
    task = tfrs.tasks.Retrieval(
        metrics=tfrs.metrics.FactorizedTopK(
            candidates=movies_ds.batch(CANDIDATE_BATCH_SIZE).map(movie_model), ks=TOP_KS
        )
    )
    model = MovielensModel(user_model, movie_model, task)
    model.compile(optimizer=tf.keras.optimizers.Adagrad(learning_rate=LEARNING_RATE))

    epoch_seconds: list[float] = []
    epoch_cpu_seconds: list[float] = []
    epoch_loss: list[float] = []
    for _ in range(args.epochs):
        with timed() as watch:
            history = model.fit(cached_train, epochs=1, verbose=0)
        epoch_seconds.append(watch.wall)
        epoch_cpu_seconds.append(watch.cpu)
        epoch_loss.append(float(history.history["loss"][-1]))

    with timed() as first_eval:
        first_logs = model.evaluate(cached_test, return_dict=True, verbose=0)
    with timed() as second_eval:
        logs = model.evaluate(cached_test, return_dict=True, verbose=0)

    accuracies = top_k_results(logs)
    if accuracies != top_k_results(first_logs):
        print(
            f"warning: the two evaluations differ: {top_k_results(first_logs)} vs {accuracies}",
            file=sys.stderr,
        )

    return {
        "framework": "tfrs",
        **accuracies,
        "epoch_seconds": epoch_seconds,
        "eval_seconds": second_eval.wall,
        "eval_seconds_first": first_eval.wall,
        "tf_version": tf.__version__,
        "tfrs_version": tfrs.__version__.lstrip("v"),
        # Extra context. CPU seconds (user + system, all threads) of this process for the same
        # intervals are less sensitive than wall-clock time to other load on a shared machine.
        "epoch_cpu_seconds": epoch_cpu_seconds,
        "eval_cpu_seconds": second_eval.cpu,
        "eval_cpu_seconds_first": first_eval.cpu,
        "epochs": args.epochs,
        "seed": args.seed,
        "num_train": len(train["user_id"]),
        "num_test": len(test["user_id"]),
        "num_users": len(unique_user_ids),
        "num_movie_titles": len(unique_movie_titles),
        "num_candidates": len(candidate_titles),
        # Keras reports the loss of the *last batch* of the epoch / of the test set, and the
        # Retrieval loss is a SUM over the batch (not a mean).
        "train_last_batch_loss": epoch_loss,
        "test_last_batch_loss": float(logs["loss"]),
        "optimizer": type(model.optimizer).__module__ + "." + type(model.optimizer).__name__,
    }


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train", required=True, help="Parquet with user_id, movie_title")
    parser.add_argument("--test", required=True, help="Parquet with user_id, movie_title")
    parser.add_argument("--movies", required=True, help="Parquet with movie_title")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--candidates",
        choices=("unique", "all"),
        default="all",
        help="top-K candidate set: every row of --movies including duplicate titles (default, "
        "what the tutorial does), or the unique titles",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON line on stdout")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    require_tf_keras(tf)
    run_and_report(run, args, key_width=22)


if __name__ == "__main__":
    main()
