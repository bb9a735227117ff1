"""TensorFlow Recommenders reference run of the "multi-task recommenders" tutorial recipe.

TFRS side of the torchrs_fn side-by-side benchmarks. Runs **only** in the TensorFlow
virtualenv (``benchmarks/setup_tfrs_venv.sh``) with ``TF_USE_LEGACY_KERAS=1`` (set here when
absent; Keras 3 is refused).

What it reproduces (https://www.tensorflow.org/recommenders/examples/multitask): one model
with two tasks sharing the user and movie embeddings,

* user and movie towers ``StringLookup(vocabulary, mask_token=None)`` +
  ``Embedding(len(vocabulary) + 1, 32)``; the user vocabulary is the sorted unique user ids of
  train + test (the tutorial: of all ratings), the movie vocabulary the sorted unique titles
  of ``--movies``;
* a rating task: ``Dense(256, relu) -> Dense(128, relu) -> Dense(1)`` on the concatenated
  embeddings (the tutorial's layer sizes; ``--rating-hidden`` changes them, e.g. ``256,64``),
  ``tfrs.tasks.Ranking(loss=MeanSquaredError(), metrics=[RootMeanSquaredError()])``;
* a retrieval task: ``tfrs.tasks.Retrieval(metrics=tfrs.metrics.FactorizedTopK(candidates=
  movies.batch(128).map(movie_model)))`` over every row of ``--movies`` (so duplicated titles
  appear twice among the candidates, as in the tutorial);
* loss = ``rating_weight * rating_loss + retrieval_weight * retrieval_loss``, one fresh model
  per weighting, the tutorial's three being (1, 0), (0, 1) and (1, 1);
* ``Adagrad(0.1)``, 3 epochs, training data ``shuffle(100_000, seed).batch(8192).cache()``
  (shuffled once, before the cache, as in the tutorial), test data ``batch(4096).cache()``.

Decisions:

* like ``tfrs_basic_retrieval.py``, the factorized top-K metrics are computed only when
  evaluating (``compute_metrics=not training``), so training epochs time the training step
  alone; ``--train-metrics`` computes them on every training batch too, as the tutorial does
  (slower, same model). The RMSE metric of the rating task is always updated (cheap);
* ``--seed`` goes to ``tf.keras.utils.set_random_seed`` before each model is built (every
  weighting starts from the same seed) and to the shuffle.

Input contract (Parquet, written by our side's benchmark driver):
``--train`` / ``--test``: ``user_id`` (string), ``movie_title`` (string), ``user_rating``
(float32 or any float/integer type); ``--movies``: ``movie_title`` (string; duplicates
allowed: every row is a retrieval candidate); no nulls.

Usage::

    TF_USE_LEGACY_KERAS=1 .venv-tfrs/bin/python benchmarks/tfrs_multitask.py \\
        --train train.parquet --test test.parquet --movies movies.parquet \\
        [--weights 1,0 0,1 1,1] [--epochs 3] [--seed 42] --json

With ``--json`` one JSON line per weighting goes to stdout, with the keys ``rating_weight``,
``retrieval_weight``, ``top_100`` (test ``factorized_top_k/top_100_categorical_accuracy``),
``rmse`` (test RMSE of the rating head), ``epoch_seconds`` (one ``model.fit(epochs=1)`` call
per epoch; the first includes tracing and, for the first weighting, filling the cache) (plus
context keys: ``framework``, ``top_1`` ... ``top_50``, ``epoch_cpu_seconds``,
``eval_seconds``, ``tf_version``, ``tfrs_version``, ``epochs``, ``seed``, ``rating_hidden``,
``train_metrics``, ``num_candidates``); everything else goes to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
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
from _sidebyside import require_tf_keras

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


def read_columns(path: str, strings: Sequence[str], floats: Sequence[str]) -> dict[str, np.ndarray]:
    """String columns as object arrays of ``str``, float columns as float32.

    Raises:
        ValueError: a column is missing, has the wrong type, or contains nulls.
    """
    table = pq.read_table(path)
    out: dict[str, np.ndarray] = {}
    for name in (*strings, *floats):
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
            if not (pa.types.is_floating(column.type) or pa.types.is_integer(column.type)):
                raise ValueError(f"{path}: column {name!r} has type {column.type}, expected float")
            out[name] = column.to_numpy().astype(np.float32)
    return out


def embedding_tower(vocabulary: np.ndarray) -> tf.keras.Model:
    """StringLookup (index 0 = OOV, vocabulary at 1..N) followed by a 32-d embedding."""
    return tf.keras.Sequential(
        [
            tf.keras.layers.StringLookup(vocabulary=vocabulary, mask_token=None),
            tf.keras.layers.Embedding(len(vocabulary) + 1, EMBEDDING_DIMENSION),
        ]
    )


class MultitaskModel(tfrs.models.Model):
    """Shared embeddings, a rating head and a retrieval task, with weighted losses."""

    def __init__(
        self,
        user_vocabulary: np.ndarray,
        title_vocabulary: np.ndarray,
        candidate_titles: np.ndarray,
        rating_hidden: Sequence[int],
        rating_weight: float,
        retrieval_weight: float,
        train_metrics: bool,
    ) -> None:
        super().__init__()
        self.movie_model = embedding_tower(title_vocabulary)
        self.user_model = embedding_tower(user_vocabulary)
        self.rating_model = tf.keras.Sequential(
            [tf.keras.layers.Dense(units, activation="relu") for units in rating_hidden]
            + [tf.keras.layers.Dense(1)]
        )
        self.rating_task = tfrs.tasks.Ranking(
            loss=tf.keras.losses.MeanSquaredError(),
            metrics=[tf.keras.metrics.RootMeanSquaredError()],
        )
        candidates = tf.data.Dataset.from_tensor_slices(tf.constant(candidate_titles))
        self.retrieval_task = tfrs.tasks.Retrieval(
            metrics=tfrs.metrics.FactorizedTopK(
                candidates=candidates.batch(CANDIDATE_BATCH_SIZE).map(self.movie_model), ks=TOP_KS
            )
        )
        self.rating_weight = rating_weight
        self.retrieval_weight = retrieval_weight
        self.train_metrics = train_metrics

    def call(self, features: dict[str, tf.Tensor]) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        user_embeddings = self.user_model(features["user_id"])
        movie_embeddings = self.movie_model(features["movie_title"])
        ratings = self.rating_model(tf.concat([user_embeddings, movie_embeddings], axis=1))
        return user_embeddings, movie_embeddings, ratings

    def compute_loss(self, features: dict[str, tf.Tensor], training: bool = False) -> tf.Tensor:
        user_embeddings, movie_embeddings, rating_predictions = self(features)
        rating_loss = self.rating_task(
            labels=features["user_rating"], predictions=rating_predictions
        )
        retrieval_loss = self.retrieval_task(
            user_embeddings,
            movie_embeddings,
            compute_metrics=self.train_metrics or not training,
        )
        return self.rating_weight * rating_loss + self.retrieval_weight * retrieval_loss


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


def run_weighting(
    rating_weight: float, retrieval_weight: float, data: dict[str, Any], args: argparse.Namespace
) -> dict[str, Any]:
    """Trains and evaluates one fresh model with the given loss weights."""
    tf.keras.utils.set_random_seed(args.seed)
    model = MultitaskModel(
        data["user_vocabulary"],
        data["title_vocabulary"],
        data["candidate_titles"],
        args.rating_hidden,
        rating_weight,
        retrieval_weight,
        args.train_metrics,
    )
    model.compile(optimizer=tf.keras.optimizers.Adagrad(LEARNING_RATE))

    epoch_seconds: list[float] = []
    epoch_cpu_seconds: list[float] = []
    for _ in range(args.epochs):
        with timed() as watch:
            model.fit(data["cached_train"], epochs=1, verbose=0)
        epoch_seconds.append(watch.wall)
        epoch_cpu_seconds.append(watch.cpu)
    with timed() as watch:
        logs = model.evaluate(data["cached_test"], return_dict=True, verbose=0)

    accuracies = top_k_results(logs)
    print(
        f"weights ({rating_weight:g}, {retrieval_weight:g}): top-100 {accuracies['top_100']:.3f}, "
        f"RMSE {float(logs['root_mean_squared_error']):.3f}",
        file=sys.stderr,
    )
    return {
        "framework": "tfrs",
        "rating_weight": rating_weight,
        "retrieval_weight": retrieval_weight,
        "top_100": accuracies["top_100"],
        "rmse": float(logs["root_mean_squared_error"]),
        "epoch_seconds": epoch_seconds,
        **{k: v for k, v in accuracies.items() if k != "top_100"},
        "epoch_cpu_seconds": epoch_cpu_seconds,
        "eval_seconds": watch.wall,
        "tf_version": tf.__version__,
        "tfrs_version": tfrs.__version__.lstrip("v"),
        "epochs": args.epochs,
        "seed": args.seed,
        "rating_hidden": list(args.rating_hidden),
        "train_metrics": args.train_metrics,
        "num_candidates": len(data["candidate_titles"]),
    }


def parse_weights(text: str) -> tuple[float, float]:
    try:
        rating, retrieval = (float(x) for x in text.split(","))
    except ValueError as err:
        raise argparse.ArgumentTypeError(
            f"expected RATING,RETRIEVAL (e.g. 1,0), got {text!r}"
        ) from err
    return rating, retrieval


def parse_units(text: str) -> tuple[int, ...]:
    try:
        units = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError as err:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from err
    if not units or min(units) <= 0:
        raise argparse.ArgumentTypeError(f"expected positive layer sizes, got {text!r}")
    return units


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Input columns: --train/--test user_id, movie_title (string), user_rating (float); "
        "--movies movie_title (string).",
    )
    parser.add_argument("--train", required=True, help="Parquet: user_id, movie_title, user_rating")
    parser.add_argument("--test", required=True, help="Parquet: user_id, movie_title, user_rating")
    parser.add_argument("--movies", required=True, help="Parquet: movie_title (the candidates)")
    parser.add_argument(
        "--weights",
        nargs="+",
        type=parse_weights,
        default=[(1.0, 0.0), (0.0, 1.0), (1.0, 1.0)],
        metavar="RATING,RETRIEVAL",
        help="loss weightings, one model each (default: 1,0 0,1 1,1)",
    )
    parser.add_argument("--epochs", type=int, default=3, help="epochs per model (default 3)")
    parser.add_argument(
        "--rating-hidden",
        type=parse_units,
        default=(256, 128),
        help="hidden layer sizes of the rating head (default 256,128, the tutorial's)",
    )
    parser.add_argument(
        "--train-metrics",
        action="store_true",
        help="also compute the top-K metrics on training batches, as the tutorial does",
    )
    parser.add_argument("--seed", type=int, default=42, help="random seed (default 42)")
    parser.add_argument("--json", action="store_true", help="print one JSON line per weighting")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    require_tf_keras(tf)
    stdout = sys.stdout
    sys.stdout = sys.stderr  # Keep stdout for the JSON lines.
    try:
        columns = ("user_id", "movie_title")
        train = read_columns(args.train, columns, ("user_rating",))
        test = read_columns(args.test, columns, ("user_rating",))
        candidate_titles = read_columns(args.movies, ("movie_title",), ())["movie_title"]
        title_vocabulary = np.unique(candidate_titles)
        known = set(title_vocabulary.tolist())
        missing = sum(t not in known for split in (train, test) for t in split["movie_title"])
        if missing:
            print(
                f"warning: {missing} train/test rows have titles missing from --movies; "
                "they map to the OOV embedding row",
                file=sys.stderr,
            )
        train_ds = tf.data.Dataset.from_tensor_slices({k: tf.constant(v) for k, v in train.items()})
        test_ds = tf.data.Dataset.from_tensor_slices({k: tf.constant(v) for k, v in test.items()})
        data = {
            "user_vocabulary": np.unique(np.concatenate([train["user_id"], test["user_id"]])),
            "title_vocabulary": title_vocabulary,
            "candidate_titles": candidate_titles,
            "cached_train": train_ds.shuffle(SHUFFLE_BUFFER, seed=args.seed)
            .batch(TRAIN_BATCH_SIZE)
            .cache(),
            "cached_test": test_ds.batch(TEST_BATCH_SIZE).cache(),
        }
        for rating_weight, retrieval_weight in args.weights:
            result = run_weighting(rating_weight, retrieval_weight, data, args)
            if args.json:
                print(json.dumps(result), file=stdout, flush=True)
            else:
                print(
                    f"weights ({rating_weight:g}, {retrieval_weight:g}): "
                    f"top-100 {result['top_100']:.3f}, RMSE {result['rmse']:.3f}, "
                    f"median epoch {np.median(result['epoch_seconds']):.3f} s",
                    file=stdout,
                    flush=True,
                )
    finally:
        sys.stdout = stdout


if __name__ == "__main__":
    main()
