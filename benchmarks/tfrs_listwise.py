"""TensorFlow Recommenders reference run of the "listwise ranking" tutorial recipe.

TFRS side of the torchrs_fn side-by-side benchmarks. Runs **only** in the TensorFlow
virtualenv (``benchmarks/setup_tfrs_venv.sh``) with ``TF_USE_LEGACY_KERAS=1`` (set here when
absent; Keras 3 is refused), and needs TF-Ranking 0.5.5 installed there without its
dependencies: ``.venv-tfrs/bin/pip install --no-deps tensorflow-ranking==0.5.5``.

What it reproduces (https://www.tensorflow.org/recommenders/examples/listwise_ranking):

* the model scores every item of a list: the user embedding is repeated along the list,
  concatenated with each title's embedding and passed through
  ``Dense(256, relu) -> Dense(64, relu) -> Dense(1)``; both embeddings are 32-d behind a
  ``StringLookup(vocabulary)`` with the default mask token, hence
  ``Embedding(len(vocabulary) + 2, 32)`` (index 0 = mask, 1 = OOV), as in the tutorial;
* ``tfrs.tasks.Ranking(loss, metrics=[tfr.keras.metrics.NDCGMetric(name="ndcg_metric"),
  tf.keras.metrics.RootMeanSquaredError()])`` on the squeezed ``[batch, list]`` scores;
* one model per loss: ``tf.keras.losses.MeanSquaredError()`` (``mean_squared``),
  ``tfr.keras.losses.PairwiseHingeLoss()`` (``pairwise_hinge``),
  ``tfr.keras.losses.ListMLELoss()`` (``list_mle``);
* ``Adagrad(0.1)``, 30 epochs, training data ``shuffle(100_000, seed).batch(8192).cache()``
  (shuffled once, before the cache, as in the tutorial), test data ``batch(4096).cache()``.

The lists themselves are *not* built here. The tutorial builds them with
``tfrs.examples.movielens.sample_listwise`` (50 lists of 5 rated movies per user from the
training ratings, 1 list of 5 per user from the test ratings, users with fewer than 5 ratings
dropped); our side's benchmark driver builds them the same way and writes them to Parquet so
that both frameworks see the same lists.

Decisions:

* vocabularies: sorted unique user ids of train + test, and sorted unique titles of
  ``--movies`` when given (the tutorial uses the movies table) else of train + test;
* ``--seed`` goes to ``tf.keras.utils.set_random_seed`` before each model is built (the three
  models start from the same seed) and to the shuffle;
* ``ndcg`` is the tutorial's metric (``NDCGMetric``, whole list, gain ``2^rating - 1``,
  discount ``1 / log2(rank + 1)``) from ``model.evaluate``; ``ndcg_at_3``
  (``NDCGMetric(topn=3)``) and ``mrr`` (``MRRMetric()``) are computed afterwards from
  ``model.predict`` on the test lists, so they add nothing to the training time. Note that
  TF-Ranking's MRR counts an item as relevant when its label is >= 1, so with 1-5 star ratings
  every item is relevant and ``mrr`` is 1.0 by construction; it is reported because it was asked
  for, not because it is informative.

TF-Ranking on TF 2.21: ``import tensorflow_ranking`` fails (its ``__init__`` imports the
estimator modules, and ``tf.estimator`` is gone). The Keras losses and metrics themselves
only need ``losses_impl`` / ``metrics_impl`` / ``utils``, so when the full import fails this
script registers empty stand-in packages for ``tensorflow_ranking``,
``tensorflow_ranking.python`` and ``tensorflow_ranking.python.keras`` (with the real
``__path__``) and imports ``tensorflow_ranking.python.keras.losses`` / ``.metrics`` directly.
``tfr_import`` in the output says which way was used.

Input contract (Parquet, one row per list, written by our side's benchmark driver),
``--train`` / ``--test``: ``user_id`` (string), ``movie_title`` (list<string>),
``user_rating`` (list<float32>), both lists of the same fixed length (5) on every row; no
nulls. ``--movies`` (optional): ``movie_title`` (string; duplicates allowed).

Usage::

    TF_USE_LEGACY_KERAS=1 .venv-tfrs/bin/python benchmarks/tfrs_listwise.py \\
        --train train_lists.parquet --test test_lists.parquet [--movies movies.parquet] \\
        [--epochs 30] [--losses mean_squared,pairwise_hinge,list_mle] [--seed 42] --json

With ``--json`` one JSON line per loss goes to stdout, with the keys ``loss``, ``ndcg``,
``ndcg_at_3``, ``mrr``, ``epoch_seconds`` (one ``model.fit(epochs=1)`` call per epoch;
the first includes tracing) (plus context keys: ``framework``, ``rmse``,
``epoch_cpu_seconds``, ``eval_seconds``, ``tf_version``, ``tfrs_version``, ``tfr_version``,
``tfr_import``, ``epochs``, ``seed``, ``num_train_lists``, ``num_test_lists``,
``list_length``); everything else goes to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib
import importlib.metadata
import importlib.util
import json
import os
import sys
import time
import types
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
HIDDEN_UNITS = (256, 64)
LEARNING_RATE = 0.1
TRAIN_BATCH_SIZE = 8192
TEST_BATCH_SIZE = 4096
SHUFFLE_BUFFER = 100_000
LOSSES = ("mean_squared", "pairwise_hinge", "list_mle")


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


def import_tfr_keras() -> tuple[types.ModuleType, types.ModuleType, str]:
    """Returns TF-Ranking's ``keras.losses`` and ``keras.metrics`` modules and how they came.

    Tries ``import tensorflow_ranking`` first; when that fails (it does on TF >= 2.16, where
    ``tf.estimator`` no longer exists), stands in empty parent packages so that the two
    submodules import without running the package ``__init__`` files.
    """
    try:
        import tensorflow_ranking as tfr

        return tfr.keras.losses, tfr.keras.metrics, "package"
    except Exception as err:  # any failure of the full import: fall back to the stubs
        reason = f"{type(err).__name__}: {err}"
    for name in [n for n in sys.modules if n.split(".")[0] == "tensorflow_ranking"]:
        del sys.modules[name]
    spec = importlib.util.find_spec("tensorflow_ranking")
    if spec is None or spec.origin is None:
        raise ImportError("tensorflow_ranking is not installed in this environment")
    root = os.path.dirname(spec.origin)
    for package, path in (
        ("tensorflow_ranking", root),
        ("tensorflow_ranking.python", os.path.join(root, "python")),
        ("tensorflow_ranking.python.keras", os.path.join(root, "python", "keras")),
    ):
        stub = types.ModuleType(package)
        stub.__path__ = [path]  # a package: submodules are found, __init__.py is not run
        sys.modules[package] = stub
    losses = importlib.import_module("tensorflow_ranking.python.keras.losses")
    metrics = importlib.import_module("tensorflow_ranking.python.keras.metrics")
    print(f"tensorflow_ranking: full import failed ({reason}); using stub parents", file=sys.stderr)
    return losses, metrics, "stub"


def read_lists(path: str) -> dict[str, np.ndarray]:
    """``user_id`` [N] str, ``movie_title`` [N, L] str, ``user_rating`` [N, L] float32.

    Raises:
        ValueError: a column is missing, has the wrong type, has nulls or ragged lists.
    """
    table = pq.read_table(path)
    out: dict[str, np.ndarray] = {}
    for name in ("user_id", "movie_title", "user_rating"):
        if name not in table.column_names:
            raise ValueError(f"{path}: missing column {name!r} (has {table.column_names})")
        column = table.column(name)
        if column.null_count:
            raise ValueError(f"{path}: column {name!r} has {column.null_count} nulls")
        kind = column.type
        if name == "user_id":
            if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
                raise ValueError(f"{path}: column {name!r} has type {kind}, expected string")
            out[name] = np.asarray(column.to_pylist(), dtype=object)
            continue
        if not (pa.types.is_list(kind) or pa.types.is_large_list(kind)
                or pa.types.is_fixed_size_list(kind)):  # fmt: skip
            raise ValueError(f"{path}: column {name!r} has type {kind}, expected a list")
        rows = column.to_pylist()
        lengths = {len(r) for r in rows}
        if len(lengths) != 1:
            raise ValueError(f"{path}: column {name!r} has lists of lengths {sorted(lengths)}")
        if name == "movie_title":
            out[name] = np.asarray(rows, dtype=object)
        else:
            out[name] = np.asarray(rows, dtype=np.float32)
    if out["movie_title"].shape != out["user_rating"].shape:
        raise ValueError(f"{path}: movie_title and user_rating lists differ in length")
    return out


class ListwiseRankingModel(tfrs.Model):
    """The tutorial's model: one score per (user, title) pair of each list."""

    def __init__(
        self,
        user_vocabulary: np.ndarray,
        title_vocabulary: np.ndarray,
        loss: tf.keras.losses.Loss,
        ndcg_metric: tf.keras.metrics.Metric,
    ) -> None:
        super().__init__()
        # Default StringLookup: index 0 is the mask token "", 1 the OOV token; hence + 2.
        self.user_embeddings = tf.keras.Sequential(
            [
                tf.keras.layers.StringLookup(vocabulary=user_vocabulary),
                tf.keras.layers.Embedding(len(user_vocabulary) + 2, EMBEDDING_DIMENSION),
            ]
        )
        self.movie_embeddings = tf.keras.Sequential(
            [
                tf.keras.layers.StringLookup(vocabulary=title_vocabulary),
                tf.keras.layers.Embedding(len(title_vocabulary) + 2, EMBEDDING_DIMENSION),
            ]
        )
        self.score_model = tf.keras.Sequential(
            [tf.keras.layers.Dense(units, activation="relu") for units in HIDDEN_UNITS]
            + [tf.keras.layers.Dense(1)]
        )
        self.task = tfrs.tasks.Ranking(
            loss=loss, metrics=[ndcg_metric, tf.keras.metrics.RootMeanSquaredError()]
        )

    def call(self, features: dict[str, tf.Tensor]) -> tf.Tensor:
        user = self.user_embeddings(features["user_id"])  # [batch, dim]
        titles = self.movie_embeddings(features["movie_title"])  # [batch, list, dim]
        list_length = features["movie_title"].shape[1]
        user_repeated = tf.repeat(tf.expand_dims(user, 1), [list_length], axis=1)
        return self.score_model(tf.concat([user_repeated, titles], 2))  # [batch, list, 1]

    def compute_loss(self, features: dict[str, tf.Tensor], training: bool = False) -> tf.Tensor:
        scores = tf.squeeze(self(features), axis=-1)
        return self.task(labels=features["user_rating"], predictions=scores)


def make_loss(name: str, tfr_losses: types.ModuleType) -> tf.keras.losses.Loss:
    if name == "mean_squared":
        return tf.keras.losses.MeanSquaredError()
    if name == "pairwise_hinge":
        return tfr_losses.PairwiseHingeLoss()
    if name == "list_mle":
        return tfr_losses.ListMLELoss()
    raise ValueError(name)


def run_loss(
    name: str,
    data: dict[str, Any],
    tfr_losses: types.ModuleType,
    tfr_metrics: types.ModuleType,
    args: argparse.Namespace,
) -> dict[str, Any]:
    """Trains one model with loss ``name`` and evaluates it on the test lists."""
    tf.keras.utils.set_random_seed(args.seed)
    model = ListwiseRankingModel(
        data["user_vocabulary"],
        data["title_vocabulary"],
        make_loss(name, tfr_losses),
        tfr_metrics.NDCGMetric(name="ndcg_metric"),
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

    # Extra metrics from the predicted scores, outside of training.
    scores = np.squeeze(model.predict(data["cached_test"], verbose=0), axis=-1)
    labels = data["test"]["user_rating"]
    extra: dict[str, float] = {}
    for key, metric in (
        ("ndcg_at_3", tfr_metrics.NDCGMetric(topn=3, name="ndcg_at_3")),
        ("mrr", tfr_metrics.MRRMetric(name="mrr")),
    ):
        metric.update_state(labels, scores)
        extra[key] = float(metric.result())

    print(f"{name}: NDCG {float(logs['ndcg_metric']):.4f}", file=sys.stderr)
    return {
        "framework": "tfrs",
        "loss": name,
        "ndcg": float(logs["ndcg_metric"]),
        **extra,
        "epoch_seconds": epoch_seconds,
        "rmse": float(logs["root_mean_squared_error"]),
        "epoch_cpu_seconds": epoch_cpu_seconds,
        "eval_seconds": watch.wall,
        "tf_version": tf.__version__,
        "tfrs_version": tfrs.__version__.lstrip("v"),
        "tfr_version": data["tfr_version"],
        "tfr_import": data["tfr_import"],
        "epochs": args.epochs,
        "seed": args.seed,
        "num_train_lists": len(data["train"]["user_id"]),
        "num_test_lists": len(labels),
        "list_length": int(labels.shape[1]),
    }


def parse_losses(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = sorted(set(names) - set(LOSSES))
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown loss(es) {unknown}; choose from {list(LOSSES)}")
    return names


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Input columns (one row per list): user_id (string), movie_title (list<string>), "
        "user_rating (list<float>), lists of one fixed length.",
    )
    parser.add_argument("--train", required=True, help="Parquet of training lists")
    parser.add_argument("--test", required=True, help="Parquet of test lists")
    parser.add_argument(
        "--movies", help="optional Parquet with movie_title: title vocabulary (else train+test)"
    )
    parser.add_argument("--epochs", type=int, default=30, help="epochs per model (default 30)")
    parser.add_argument(
        "--losses",
        type=parse_losses,
        default=list(LOSSES),
        help="comma-separated subset of mean_squared,pairwise_hinge,list_mle (default: all)",
    )
    parser.add_argument("--seed", type=int, default=42, help="random seed (default 42)")
    parser.add_argument("--json", action="store_true", help="print one JSON line per loss")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    require_tf_keras(tf)
    stdout = sys.stdout
    sys.stdout = sys.stderr  # Keep stdout for the JSON lines.
    try:
        tfr_losses, tfr_metrics, how = import_tfr_keras()
        train = read_lists(args.train)
        test = read_lists(args.test)
        if args.movies:
            titles = pq.read_table(args.movies, columns=["movie_title"]).column("movie_title")
            title_vocabulary = np.unique(np.asarray(titles.to_pylist(), dtype=object))
        else:
            title_vocabulary = np.unique(
                np.concatenate([train["movie_title"].ravel(), test["movie_title"].ravel()])
            )
        train_ds = tf.data.Dataset.from_tensor_slices({k: tf.constant(v) for k, v in train.items()})
        test_ds = tf.data.Dataset.from_tensor_slices({k: tf.constant(v) for k, v in test.items()})
        data = {
            "train": train,
            "test": test,
            "user_vocabulary": np.unique(np.concatenate([train["user_id"], test["user_id"]])),
            "title_vocabulary": title_vocabulary,
            "cached_train": train_ds.shuffle(SHUFFLE_BUFFER, seed=args.seed)
            .batch(TRAIN_BATCH_SIZE)
            .cache(),
            "cached_test": test_ds.batch(TEST_BATCH_SIZE).cache(),
            "tfr_import": how,
            "tfr_version": importlib.metadata.version("tensorflow-ranking"),
        }
        for name in args.losses:
            result = run_loss(name, data, tfr_losses, tfr_metrics, args)
            if args.json:
                print(json.dumps(result), file=stdout, flush=True)
            else:
                print(
                    f"{name:>15}: NDCG {result['ndcg']:.4f}, NDCG@3 {result['ndcg_at_3']:.4f}, "
                    f"median epoch {np.median(result['epoch_seconds']):.3f} s",
                    file=stdout,
                    flush=True,
                )
    finally:
        sys.stdout = stdout


if __name__ == "__main__":
    main()
