"""TensorFlow Recommenders reference run of the "basic ranking" tutorial recipe.

TFRS side of the torchrs_fn side-by-side benchmarks. Runs **only** in the TensorFlow
virtualenv (``benchmarks/setup_tfrs_venv.sh``) with ``TF_USE_LEGACY_KERAS=1`` (TFRS 0.7.7 needs
the Keras 2 API; the variable is set here when absent, and Keras 3 is refused).

What it reproduces (https://www.tensorflow.org/recommenders/examples/basic_ranking):

* vocabularies: the sorted unique ``user_id`` and ``movie_title`` values of train + test
  (the tutorial takes ``np.unique`` over the whole ratings set, which is train + test here);
* two ``StringLookup(vocabulary, mask_token=None)`` + ``Embedding(len(vocabulary) + 1, 32)``
  towers (row 0 is the out-of-vocabulary row);
* the rating head ``Dense(256, relu) -> Dense(64, relu) -> Dense(1)`` on the concatenated
  user and title embeddings;
* ``tfrs.tasks.Ranking(loss=MeanSquaredError(), metrics=[RootMeanSquaredError()])``; the RMSE
  metric is updated during training too, as in the tutorial (it is cheap);
* ``Adagrad(learning_rate=0.1)``; training data ``shuffle(100_000, seed).batch(8192).cache()``
  -- the shuffle sits *before* the cache, as in the tutorial, so every epoch sees the batches
  of the first epoch in the same order; test data ``batch(4096).cache()``; 3 epochs.

Decisions: ``--seed`` goes to ``tf.keras.utils.set_random_seed`` (Python, NumPy and
``tf.random.set_seed``) and to the shuffle, so a run is repeatable; the tutorial's own
80 000 / 20 000 split is *not* made here -- the caller supplies it, so that both frameworks
train and test on exactly the same rows.

What it measures:

* ``rmse``: test RMSE from ``model.evaluate`` after the last epoch;
* ``epoch_seconds`` / ``epoch_cpu_seconds``: wall-clock and process CPU seconds (all threads)
  of each ``model.fit(epochs=1)`` call, one call per epoch (the first one includes tf.function
  tracing and filling the dataset cache);
* ``eval_seconds``: wall-clock time of a second ``model.evaluate`` over the test set (warm);
  ``eval_seconds_first`` is the first one, which includes tracing.

Input contract (Parquet, written by our side's benchmark driver):

``--train`` / ``--test``: columns ``user_id`` (string), ``movie_title`` (string),
``user_rating`` (float32 or any float/integer type; read as float32); no nulls.

Usage::

    TF_USE_LEGACY_KERAS=1 .venv-tfrs/bin/python benchmarks/tfrs_basic_ranking.py \\
        --train train.parquet --test test.parquet [--epochs 3] [--seed 42] --json

With ``--json`` exactly one JSON line goes to stdout, with the keys ``rmse``,
``epoch_seconds``, ``epoch_cpu_seconds``, ``eval_seconds``, ``tf_version``, ``tfrs_version``
(plus a few context keys: ``framework``, ``eval_seconds_first``, ``epochs``, ``seed``,
``num_train``, ``num_test``, ``num_users``, ``num_movie_titles``, ``train_loss``);
everything else goes to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
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
HIDDEN_UNITS = (256, 64)
LEARNING_RATE = 0.1
TRAIN_BATCH_SIZE = 8192
TEST_BATCH_SIZE = 4096
SHUFFLE_BUFFER = 100_000


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


def read_ratings(path: str) -> dict[str, np.ndarray]:
    """``user_id`` / ``movie_title`` as object arrays of ``str``, ``user_rating`` as float32.

    Raises:
        ValueError: a column is missing, has the wrong type, or contains nulls.
    """
    table = pq.read_table(path)
    out: dict[str, np.ndarray] = {}
    for name in ("user_id", "movie_title", "user_rating"):
        if name not in table.column_names:
            raise ValueError(f"{path}: missing column {name!r} (has {table.column_names})")
        column = table.column(name)
        if column.null_count:
            raise ValueError(f"{path}: column {name!r} has {column.null_count} nulls")
        if name == "user_rating":
            if not (pa.types.is_floating(column.type) or pa.types.is_integer(column.type)):
                raise ValueError(f"{path}: column {name!r} has type {column.type}, expected float")
            out[name] = column.to_numpy().astype(np.float32)
        else:
            if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
                raise ValueError(f"{path}: column {name!r} has type {column.type}, expected string")
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


class RatingModel(tf.keras.Model):
    """User and title embeddings, concatenated, through the 256-64-1 MLP."""

    def __init__(self, user_vocabulary: np.ndarray, title_vocabulary: np.ndarray) -> None:
        super().__init__()
        self.user_embeddings = embedding_tower(user_vocabulary)
        self.movie_embeddings = embedding_tower(title_vocabulary)
        self.ratings = tf.keras.Sequential(
            [tf.keras.layers.Dense(units, activation="relu") for units in HIDDEN_UNITS]
            + [tf.keras.layers.Dense(1)]
        )

    def call(self, inputs: tuple[tf.Tensor, tf.Tensor]) -> tf.Tensor:
        user_id, movie_title = inputs
        both = tf.concat(
            [self.user_embeddings(user_id), self.movie_embeddings(movie_title)], axis=1
        )
        return self.ratings(both)


class MovielensRankingModel(tfrs.models.Model):
    """The tutorial's wrapper: the rating model plus a Ranking task (MSE loss, RMSE metric)."""

    def __init__(self, user_vocabulary: np.ndarray, title_vocabulary: np.ndarray) -> None:
        super().__init__()
        self.ranking_model = RatingModel(user_vocabulary, title_vocabulary)
        self.task = tfrs.tasks.Ranking(
            loss=tf.keras.losses.MeanSquaredError(),
            metrics=[tf.keras.metrics.RootMeanSquaredError()],
        )

    def call(self, features: dict[str, tf.Tensor]) -> tf.Tensor:
        return self.ranking_model((features["user_id"], features["movie_title"]))

    def compute_loss(self, features: dict[str, tf.Tensor], training: bool = False) -> tf.Tensor:
        labels = features["user_rating"]
        return self.task(labels=labels, predictions=self(features))


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Builds the datasets and the model, trains, evaluates and returns the results."""
    tf.keras.utils.set_random_seed(args.seed)  # Python, NumPy and tf.random.set_seed.

    train = read_ratings(args.train)
    test = read_ratings(args.test)
    unique_user_ids = np.unique(np.concatenate([train["user_id"], test["user_id"]]))
    unique_titles = np.unique(np.concatenate([train["movie_title"], test["movie_title"]]))

    train_ds = tf.data.Dataset.from_tensor_slices({k: tf.constant(v) for k, v in train.items()})
    test_ds = tf.data.Dataset.from_tensor_slices({k: tf.constant(v) for k, v in test.items()})
    cached_train = train_ds.shuffle(SHUFFLE_BUFFER, seed=args.seed).batch(TRAIN_BATCH_SIZE).cache()
    cached_test = test_ds.batch(TEST_BATCH_SIZE).cache()

    model = MovielensRankingModel(unique_user_ids, unique_titles)
    model.compile(optimizer=tf.keras.optimizers.Adagrad(learning_rate=LEARNING_RATE))

    epoch_seconds: list[float] = []
    epoch_cpu_seconds: list[float] = []
    train_loss: list[float] = []
    for _ in range(args.epochs):
        with timed() as watch:
            history = model.fit(cached_train, epochs=1, verbose=0)
        epoch_seconds.append(watch.wall)
        epoch_cpu_seconds.append(watch.cpu)
        train_loss.append(float(history.history["loss"][-1]))

    with timed() as first_eval:
        model.evaluate(cached_test, return_dict=True, verbose=0)
    with timed() as second_eval:
        logs = model.evaluate(cached_test, return_dict=True, verbose=0)

    return {
        "framework": "tfrs",
        "rmse": float(logs["root_mean_squared_error"]),
        "epoch_seconds": epoch_seconds,
        "epoch_cpu_seconds": epoch_cpu_seconds,
        "eval_seconds": second_eval.wall,
        "tf_version": tf.__version__,
        "tfrs_version": tfrs.__version__.lstrip("v"),
        "eval_seconds_first": first_eval.wall,
        "epochs": args.epochs,
        "seed": args.seed,
        "num_train": len(train["user_id"]),
        "num_test": len(test["user_id"]),
        "num_users": len(unique_user_ids),
        "num_movie_titles": len(unique_titles),
        # Keras reports the MSE of the *last batch* of each epoch.
        "train_loss": train_loss,
    }


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Input columns: user_id (string), movie_title (string), user_rating (float).",
    )
    parser.add_argument("--train", required=True, help="Parquet: user_id, movie_title, user_rating")
    parser.add_argument("--test", required=True, help="Parquet: user_id, movie_title, user_rating")
    parser.add_argument("--epochs", type=int, default=3, help="training epochs (default 3)")
    parser.add_argument("--seed", type=int, default=42, help="random seed (default 42)")
    parser.add_argument("--json", action="store_true", help="print one JSON line on stdout")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    require_tf_keras(tf)
    run_and_report(run, args, key_width=20)


if __name__ == "__main__":
    main()
