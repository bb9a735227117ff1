"""TensorFlow Recommenders DLRM training-step timing (``tfrs.experimental.models.Ranking``).

TFRS side of the torchrs_fn side-by-side benchmarks. Runs **only** in the TensorFlow
virtualenv (``benchmarks/setup_tfrs_venv.sh``) with ``TF_USE_LEGACY_KERAS=1`` (set here when
absent; Keras 3 is refused).

Data: the synthetic Criteo-like arrays of ``/work/shared/bench/synth_criteo.py``
(``make_data(--rows, seed=0)``: 13 dense float32 features, 26 categorical ids with their own
vocabulary sizes, binary labels), generated with NumPy so that every framework trains on
byte-identical arrays (``data_fingerprint`` in the output). ``--synth-dir`` points at another
copy of that file.

Model: TFRS's pre-built ``tfrs.experimental.models.Ranking`` configured as DLRM:

* ``embedding_layer``: one ``tf.keras.layers.Embedding(vocab_size, 16)`` per categorical
  feature (default uniform initializer), fed a dict ``{"cat_00": ids, ..., "cat_25": ids}``
  and returning the dict of ``[batch, 16]`` embeddings, as ``Ranking`` expects;
* ``bottom_stack``: ``tfrs.layers.blocks.MLP([512, 256, 16], final_activation="relu")``
  (13 -> 512 -> 256 -> 16);
* ``feature_interaction``: ``tfrs.layers.feature_interaction.DotInteraction()`` over the 26
  embeddings and the bottom output (27 vectors -> 351 pairwise dot products); ``Ranking``
  concatenates the bottom output again (``concat_dense=True``) -> 367 inputs to
* ``top_stack``: ``tfrs.layers.blocks.MLP([512, 256, 1], final_activation="sigmoid")``, the
  ``Ranking`` default head: the model outputs probabilities, and the loss is
  ``BinaryCrossentropy`` on probabilities (TFRS's default task), not from logits;
* task (``--task``): ``bce`` (default) = ``tfrs.tasks.Ranking(loss=BinaryCrossentropy(
  reduction=NONE))`` with no metrics, so that the step is forward + backward + update only;
  ``default`` = ``Ranking``'s own default task, which also updates AUC, accuracy and
  prediction/label means on every step;
* ``Adagrad(learning_rate=0.01)`` on all variables (sparse updates for the embeddings, since
  Keras embedding gradients are ``IndexedSlices``); fp32 throughout.

Timing path: TFRS's normal one, ``model.fit`` (Keras' compiled ``tf.function`` train step,
``steps_per_execution=1``) on a ``tf.data`` pipeline over preloaded tensors: the arrays are cut
into ``--batch-size`` batches in NumPy (a trailing partial batch is dropped), turned into a
dataset with ``from_tensor_slices`` and ``repeat()``-ed with ``prefetch``. A single
``fit(steps_per_epoch=warmup + steps)`` call runs; a callback takes ``time.perf_counter()``
at the end of every step. The callback does not accept tensor logs, so Keras converts each
step's logs to NumPy first, which waits for the step to finish. Step ``i`` lasts from the end
of step ``i - 1`` to the end of step ``i`` (input fetch included); the first ``--warmup`` steps
(tracing, first touches) are dropped and ``step_seconds`` is the median over the next
``--steps``.

FLOP count (``gflops_per_step``): multiply-adds of the dense layers
(13*512 + 512*256 + 256*16 + 367*512 + 512*256 + 256*1 = 461 056 per example) plus the
interaction's batched matmul as TFRS computes it (the full 27 x 27 Gram matrix of 16-d
vectors: 27*27*16 = 11 664 per example), times 2 FLOPs per multiply-add, times 3 for forward +
backward, times the batch size. Embedding gathers, activations, the loss and the optimizer
update are not counted. ``gflops_per_second = gflops_per_step / step_seconds``.

Usage::

    TF_USE_LEGACY_KERAS=1 .venv-tfrs/bin/python benchmarks/tfrs_dlrm_step.py \\
        [--batch-size 8192] [--steps 20] [--warmup 5] [--rows 245760] [--task bce] --json

With ``--json`` exactly one JSON line goes to stdout with the keys ``batch_size``,
``precision`` (``"fp32"``), ``step_seconds`` (median), ``steps``, ``gflops_per_step``,
``gflops_per_second``, ``tf_version``, ``tfrs_version`` (plus context keys: ``framework``,
``warmup``, ``rows``, ``task``, ``step_seconds_all`` (every timed step), ``step_seconds_mean``,
``timed_cpu_seconds``, ``final_loss``, ``data_fingerprint``, ``vocab_sizes_sum``,
``device``); everything else goes to stderr.
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

# Must happen before TensorFlow is imported.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import tensorflow as tf
import tensorflow_recommenders as tfrs
from _sidebyside import require_tf_keras, run_and_report

DEFAULT_SYNTH_DIR = "/work/shared/bench"
EMBEDDING_DIMENSION = 16
BOTTOM_UNITS = (512, 256, EMBEDDING_DIMENSION)
TOP_UNITS = (512, 256, 1)
LEARNING_RATE = 0.01
DEFAULT_BATCH_SIZE = 8192


class PerFeatureEmbedding(tf.keras.layers.Layer):
    """One ``Embedding(vocab_size, dim)`` per categorical feature; dict in, dict out."""

    def __init__(self, vocab_sizes: dict[str, int], dim: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._tables = {
            name: tf.keras.layers.Embedding(size, dim, name=f"embedding_{name}")
            for name, size in vocab_sizes.items()
        }

    def call(self, features: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        return {name: table(features[name]) for name, table in self._tables.items()}


class StepTimer(tf.keras.callbacks.Callback):
    """Records ``time.perf_counter()`` at the start of training and after every step.

    It leaves ``_supports_tf_logs`` False, so Keras turns the step's logs into NumPy values
    before calling it, which waits for the step to complete.
    """

    def __init__(self) -> None:
        super().__init__()
        self.start = 0.0
        self.ends: list[float] = []
        self.cpu: list[float] = []
        self.last_loss = float("nan")

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self.start = time.perf_counter()

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self.ends.append(time.perf_counter())
        self.cpu.append(time.process_time())
        if logs and "loss" in logs:
            self.last_loss = float(logs["loss"])


def feature_name(index: int) -> str:
    return f"cat_{index:02d}"  # zero-padded: tf.nest sorts dict keys


def gflops_per_step(batch_size: int, num_sparse: int, num_dense: int) -> float:
    """Dense-layer and interaction multiply-adds x 2 (FLOPs) x 3 (forward + backward)."""
    num_vectors = num_sparse + 1
    interaction_out = num_vectors * (num_vectors - 1) // 2
    dense_macs = 0
    for units in (
        (num_dense, *BOTTOM_UNITS),
        (EMBEDDING_DIMENSION + interaction_out, *TOP_UNITS),
    ):
        dense_macs += sum(a * b for a, b in itertools.pairwise(units))
    interaction_macs = num_vectors * num_vectors * EMBEDDING_DIMENSION
    return 2 * 3 * batch_size * (dense_macs + interaction_macs) / 1e9


def make_dataset(data: dict[str, Any], batch_size: int) -> tf.data.Dataset:
    """Pre-batched, preloaded tensors, repeated forever."""
    num_batches = len(data["labels"]) // batch_size
    if num_batches == 0:
        raise ValueError(f"--rows {len(data['labels'])} is smaller than --batch-size {batch_size}")
    rows = num_batches * batch_size
    dense = data["dense"][:rows].reshape(num_batches, batch_size, -1)
    sparse = data["sparse"][:rows].reshape(num_batches, batch_size, -1)
    labels = data["labels"][:rows].reshape(num_batches, batch_size)
    features = {
        "dense_features": dense,
        "sparse_features": {feature_name(j): sparse[:, :, j] for j in range(sparse.shape[2])},
    }
    return (
        tf.data.Dataset.from_tensor_slices((features, labels)).repeat().prefetch(tf.data.AUTOTUNE)
    )


def build_model(vocab_sizes: Sequence[int], task: str) -> tfrs.experimental.models.Ranking:
    embedding = PerFeatureEmbedding(
        {feature_name(j): size for j, size in enumerate(vocab_sizes)}, EMBEDDING_DIMENSION
    )
    ranking_task = (
        tfrs.tasks.Ranking(
            loss=tf.keras.losses.BinaryCrossentropy(reduction=tf.keras.losses.Reduction.NONE)
        )
        if task == "bce"
        else None  # Ranking's default: the same loss plus AUC, accuracy and means.
    )
    model = tfrs.experimental.models.Ranking(
        embedding_layer=embedding,
        bottom_stack=tfrs.layers.blocks.MLP(units=list(BOTTOM_UNITS), final_activation="relu"),
        feature_interaction=tfrs.layers.feature_interaction.DotInteraction(),
        top_stack=tfrs.layers.blocks.MLP(units=list(TOP_UNITS), final_activation="sigmoid"),
        task=ranking_task,
    )
    model.compile(optimizer=tf.keras.optimizers.Adagrad(learning_rate=LEARNING_RATE))
    return model


def run(args: argparse.Namespace) -> dict[str, Any]:
    sys.path.insert(0, args.synth_dir)
    import synth_criteo  # found through --synth-dir

    tf.keras.utils.set_random_seed(args.seed)
    data = synth_criteo.make_data(args.rows)
    fingerprint = synth_criteo.fingerprint(data)
    dataset = make_dataset(data, args.batch_size)
    model = build_model(data["vocab_sizes"], args.task)

    timer = StepTimer()
    total = args.warmup + args.steps
    model.fit(dataset, epochs=1, steps_per_epoch=total, verbose=0, callbacks=[timer])
    if len(timer.ends) != total:
        raise RuntimeError(f"expected {total} step ends, got {len(timer.ends)}")
    ends = [timer.start, *timer.ends]
    durations = np.diff(ends)[args.warmup :]
    step_seconds = float(np.median(durations))
    gflops = gflops_per_step(args.batch_size, data["sparse"].shape[1], data["dense"].shape[1])
    first_timed = args.warmup - 1
    timed_cpu = timer.cpu[-1] - timer.cpu[first_timed] if first_timed >= 0 else None
    devices = [d.device_type for d in tf.config.list_logical_devices()]
    return {
        "framework": "tfrs",
        "batch_size": args.batch_size,
        "precision": "fp32",
        "step_seconds": step_seconds,
        "steps": args.steps,
        "gflops_per_step": gflops,
        "gflops_per_second": gflops / step_seconds,
        "tf_version": tf.__version__,
        "tfrs_version": tfrs.__version__.lstrip("v"),
        "warmup": args.warmup,
        "rows": args.rows,
        "task": args.task,
        "step_seconds_all": [float(x) for x in durations],
        "step_seconds_mean": float(np.mean(durations)),
        "timed_cpu_seconds": timed_cpu,
        "final_loss": timer.last_loss if np.isfinite(timer.last_loss) else None,
        "data_fingerprint": fingerprint,
        "vocab_sizes_sum": int(sum(data["vocab_sizes"])),
        "device": "GPU" if "GPU" in devices else "CPU",
    }


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE, help="default 8192")
    parser.add_argument("--steps", type=int, default=20, help="timed steps (default 20)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed first steps (default 5)")
    parser.add_argument(
        "--rows", type=int, default=DEFAULT_BATCH_SIZE * 30, help="rows generated (default 245760)"
    )
    parser.add_argument(
        "--task",
        choices=("bce", "default"),
        default="bce",
        help="bce: BCE loss only (default); default: Ranking's default task with AUC etc.",
    )
    parser.add_argument("--seed", type=int, default=0, help="weight-initialisation seed")
    parser.add_argument(
        "--synth-dir", default=DEFAULT_SYNTH_DIR, help="folder holding synth_criteo.py"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON line on stdout")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.warmup < 0 or args.batch_size < 1:
        parser.error("--steps must be >= 1, --warmup >= 0, --batch-size >= 1")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    require_tf_keras(tf)
    run_and_report(run, args, key_width=20)


if __name__ == "__main__":
    main()
