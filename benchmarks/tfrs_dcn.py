"""TensorFlow Recommenders reference run of the "Deep & Cross Network" (dcn) tutorial recipe.

TFRS side of the torchrs_fn side-by-side benchmarks. Runs **only** in the TensorFlow
virtualenv (``benchmarks/setup_tfrs_venv.sh``) with ``TF_USE_LEGACY_KERAS=1`` (set here when
absent; Keras 3 is refused).

What it reproduces (https://www.tensorflow.org/recommenders/examples/dcn, the MovieLens 100K
part): rating prediction from six features, each looked up in its own vocabulary and embedded
in 32 dimensions, concatenated (192 values, in the tutorial's order ``movie_id``, ``user_id``,
``user_zip_code``, ``user_occupation_text``, ``user_gender``, ``bucketized_user_age``), then

* ``dcn``: ``tfrs.layers.dcn.Cross(projection_dim=None, kernel_initializer="glorot_uniform")``
  followed by ``Dense(192, relu) -> Dense(192, relu)`` (``use_cross_layer=True,
  deep_layer_sizes=[192, 192]``), i.e. the stacked structure;
* ``dcn_low_rank``: the same with ``Cross(projection_dim=20)``;
* ``dnn``: no cross layer, ``Dense(192, relu)`` x 3;

each ending in ``Dense(1)``, trained with ``tfrs.tasks.Ranking(loss=MeanSquaredError(),
metrics=[RootMeanSquaredError("RMSE")])`` and ``Adam(learning_rate=0.01)`` for 8 epochs on
``shuffle(100_000, seed).batch(8192).cache()`` (shuffled once, before the cache, as in the
tutorial), evaluated on ``batch(4096).cache()``. Each model is trained ``--num-runs`` times
(5 in the tutorial) from fresh weights; the mean and the population standard deviation
(``np.std``, as the tutorial) of the test RMSE are reported.

Featurization, as in the tutorial: the four id/text features go through
``StringLookup(vocabulary, mask_token=None)``, ``user_gender`` (bool in TFDS, cast with
``int()``) and ``bucketized_user_age`` (float32 in TFDS, cast with ``int()``) through
``IntegerLookup(vocabulary, mask_token=None)`` (the tutorial's ``mask_value=None``, a deprecated
alias of the same setting); each is followed by
``Embedding(len(vocabulary) + 1, 32)``. Vocabularies are the sorted unique values of
train + test (the tutorial takes them from the whole ratings set).

Decisions: run ``r`` (0-based) of every model starts with
``tf.keras.utils.set_random_seed(seed + r)``, so the ``r``-th runs of the three models share
their seed; the train/test datasets (and so the batch order) are built once and shared by all
runs and models, as in the tutorial.

``epoch_seconds`` is the wall-clock time of each ``model.fit(epochs=1)`` call **flattened over
runs** (run-major: run 0 epochs 1..E, run 1 epochs 1..E, ...); the first epoch of each run
includes tf.function tracing, and the very first one also fills the dataset cache.
``epoch_cpu_seconds`` is the process CPU time (all threads) of the same calls.

Input contract (Parquet, written by our side's benchmark driver), ``--train`` / ``--test``:
``movie_id`` (string), ``user_id`` (string), ``user_rating`` (float32), ``user_gender`` (bool
or integer 0/1), ``user_zip_code`` (string), ``user_occupation_text`` (string),
``bucketized_user_age`` (float32 or integer; values such as 1, 18, 25, ... are cast to int64);
no nulls.

Usage::

    TF_USE_LEGACY_KERAS=1 .venv-tfrs/bin/python benchmarks/tfrs_dcn.py \\
        --train train.parquet --test test.parquet [--epochs 8] [--num-runs 5] \\
        [--models dcn,dcn_low_rank,dnn] [--seed 42] --json

With ``--json`` one JSON line per model goes to stdout, with the keys ``model``,
``rmse_mean``, ``rmse_std``, ``rmse`` (list over runs), ``epoch_seconds`` (flattened, see
above), ``tf_version`` (plus context keys: ``framework``, ``tfrs_version``,
``epoch_cpu_seconds``, ``eval_seconds`` (one per run, first evaluate of the run), ``epochs``,
``num_runs``, ``seeds``, ``num_params``); everything else goes to stderr.
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
LEARNING_RATE = 0.01
TRAIN_BATCH_SIZE = 8192
TEST_BATCH_SIZE = 4096
SHUFFLE_BUFFER = 100_000
STRING_FEATURES = ("movie_id", "user_id", "user_zip_code", "user_occupation_text")
INTEGER_FEATURES = ("user_gender", "bucketized_user_age")
LABEL = "user_rating"

# name -> (use_cross_layer, deep_layer_sizes, projection_dim), as in the tutorial.
MODELS: dict[str, tuple[bool, tuple[int, ...], int | None]] = {
    "dcn": (True, (192, 192), None),
    "dcn_low_rank": (True, (192, 192), 20),
    "dnn": (False, (192, 192, 192), None),
}


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


def read_features(path: str) -> dict[str, np.ndarray]:
    """Strings as object arrays of ``str``, the integer features as int64, the label float32.

    Raises:
        ValueError: a column is missing, has an unexpected type, or contains nulls.
    """
    table = pq.read_table(path)
    out: dict[str, np.ndarray] = {}
    for name in (*STRING_FEATURES, *INTEGER_FEATURES, LABEL):
        if name not in table.column_names:
            raise ValueError(f"{path}: missing column {name!r} (has {table.column_names})")
        column = table.column(name)
        if column.null_count:
            raise ValueError(f"{path}: column {name!r} has {column.null_count} nulls")
        kind = column.type
        if name in STRING_FEATURES:
            if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
                raise ValueError(f"{path}: column {name!r} has type {kind}, expected string")
            out[name] = np.asarray(column.to_pylist(), dtype=object)
        elif name in INTEGER_FEATURES:
            if not (pa.types.is_boolean(kind) or pa.types.is_integer(kind)
                    or pa.types.is_floating(kind)):  # fmt: skip
                raise ValueError(
                    f"{path}: column {name!r} has type {kind}, expected bool/int/float"
                )
            values = column.to_numpy(zero_copy_only=False)
            # The tutorial's int(): booleans to 0/1, float ages truncated toward zero.
            out[name] = np.trunc(values.astype(np.float64)).astype(np.int64)
        else:
            if not (pa.types.is_floating(kind) or pa.types.is_integer(kind)):
                raise ValueError(f"{path}: column {name!r} has type {kind}, expected float")
            out[name] = column.to_numpy().astype(np.float32)
    return out


class DCN(tfrs.Model):
    """The tutorial's model: per-feature lookup + embedding, optional cross layer, deep layers."""

    def __init__(
        self,
        vocabularies: dict[str, np.ndarray],
        use_cross_layer: bool,
        deep_layer_sizes: Sequence[int],
        projection_dim: int | None = None,
    ) -> None:
        super().__init__()
        self._all_features = (*STRING_FEATURES, *INTEGER_FEATURES)
        self._embeddings: dict[str, tf.keras.Model] = {}
        for name in self._all_features:
            vocabulary = vocabularies[name]
            if name in STRING_FEATURES:
                lookup = tf.keras.layers.StringLookup(vocabulary=vocabulary, mask_token=None)
            else:
                lookup = tf.keras.layers.IntegerLookup(vocabulary=vocabulary, mask_token=None)
            self._embeddings[name] = tf.keras.Sequential(
                [lookup, tf.keras.layers.Embedding(len(vocabulary) + 1, EMBEDDING_DIMENSION)]
            )
        self._cross_layer = (
            tfrs.layers.dcn.Cross(
                projection_dim=projection_dim, kernel_initializer="glorot_uniform"
            )
            if use_cross_layer
            else None
        )
        self._deep_layers = [tf.keras.layers.Dense(n, activation="relu") for n in deep_layer_sizes]
        self._logit_layer = tf.keras.layers.Dense(1)
        self.task = tfrs.tasks.Ranking(
            loss=tf.keras.losses.MeanSquaredError(),
            metrics=[tf.keras.metrics.RootMeanSquaredError("RMSE")],
        )

    def call(self, features: dict[str, tf.Tensor]) -> tf.Tensor:
        x = tf.concat([self._embeddings[n](features[n]) for n in self._all_features], axis=1)
        if self._cross_layer is not None:
            x = self._cross_layer(x)
        for layer in self._deep_layers:
            x = layer(x)
        return self._logit_layer(x)

    def compute_loss(self, features: dict[str, tf.Tensor], training: bool = False) -> tf.Tensor:
        return self.task(labels=features[LABEL], predictions=self(features))


def run_model(
    name: str,
    vocabularies: dict[str, np.ndarray],
    cached_train: tf.data.Dataset,
    cached_test: tf.data.Dataset,
    args: argparse.Namespace,
) -> dict[str, Any]:
    """Trains and evaluates ``args.num_runs`` fresh copies of model ``name``."""
    use_cross_layer, deep_layer_sizes, projection_dim = MODELS[name]
    rmses: list[float] = []
    epoch_seconds: list[float] = []
    epoch_cpu_seconds: list[float] = []
    eval_seconds: list[float] = []
    seeds: list[int] = []
    num_params = 0
    for run_index in range(args.num_runs):
        seed = args.seed + run_index
        seeds.append(seed)
        tf.keras.utils.set_random_seed(seed)
        model = DCN(vocabularies, use_cross_layer, deep_layer_sizes, projection_dim)
        model.compile(optimizer=tf.keras.optimizers.Adam(LEARNING_RATE))
        for _ in range(args.epochs):
            with timed() as watch:
                model.fit(cached_train, epochs=1, verbose=0)
            epoch_seconds.append(watch.wall)
            epoch_cpu_seconds.append(watch.cpu)
        with timed() as watch:
            logs = model.evaluate(cached_test, return_dict=True, verbose=0)
        eval_seconds.append(watch.wall)
        rmses.append(float(logs["RMSE"]))
        num_params = int(model.count_params())
        print(f"{name} run {run_index} (seed {seed}): RMSE {rmses[-1]:.4f}", file=sys.stderr)
    return {
        "framework": "tfrs",
        "model": name,
        "rmse_mean": float(np.average(rmses)),
        "rmse_std": float(np.std(rmses)),
        "rmse": rmses,
        "epoch_seconds": epoch_seconds,
        "tf_version": tf.__version__,
        "tfrs_version": tfrs.__version__.lstrip("v"),
        "epoch_cpu_seconds": epoch_cpu_seconds,
        "eval_seconds": eval_seconds,
        "epochs": args.epochs,
        "num_runs": args.num_runs,
        "seeds": seeds,
        "num_params": num_params,
    }


def parse_models(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = sorted(set(names) - set(MODELS))
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown model(s) {unknown}; choose from {list(MODELS)}")
    return names


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Input columns: movie_id, user_id, user_zip_code, user_occupation_text (string); "
        "user_gender (bool/int); bucketized_user_age (float/int); user_rating (float).",
    )
    parser.add_argument(
        "--train", required=True, help="Parquet with the six features + user_rating"
    )
    parser.add_argument("--test", required=True, help="Parquet with the six features + user_rating")
    parser.add_argument("--epochs", type=int, default=8, help="epochs per run (default 8)")
    parser.add_argument("--num-runs", type=int, default=5, help="runs per model (default 5)")
    parser.add_argument(
        "--models",
        type=parse_models,
        default=list(MODELS),
        help="comma-separated subset of dcn,dcn_low_rank,dnn (default: all three, in that order)",
    )
    parser.add_argument("--seed", type=int, default=42, help="seed of run 0 (run r uses seed+r)")
    parser.add_argument("--json", action="store_true", help="print one JSON line per model")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    require_tf_keras(tf)
    stdout = sys.stdout
    sys.stdout = sys.stderr  # Keep stdout for the JSON lines.
    try:
        train = read_features(args.train)
        test = read_features(args.test)
        vocabularies = {
            name: np.unique(np.concatenate([train[name], test[name]]))
            for name in (*STRING_FEATURES, *INTEGER_FEATURES)
        }
        train_ds = tf.data.Dataset.from_tensor_slices({k: tf.constant(v) for k, v in train.items()})
        test_ds = tf.data.Dataset.from_tensor_slices({k: tf.constant(v) for k, v in test.items()})
        cached_train = (
            train_ds.shuffle(SHUFFLE_BUFFER, seed=args.seed).batch(TRAIN_BATCH_SIZE).cache()
        )
        cached_test = test_ds.batch(TEST_BATCH_SIZE).cache()
        for name in args.models:
            result = run_model(name, vocabularies, cached_train, cached_test, args)
            if args.json:
                print(json.dumps(result), file=stdout, flush=True)
            else:
                print(
                    f"{name:>13}: RMSE mean {result['rmse_mean']:.4f}, std {result['rmse_std']:.4f}"
                    f", median epoch {np.median(result['epoch_seconds']):.3f} s",
                    file=stdout,
                    flush=True,
                )
    finally:
        sys.stdout = stdout


if __name__ == "__main__":
    main()
