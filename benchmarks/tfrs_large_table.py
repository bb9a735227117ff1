"""TensorFlow Recommenders two-tower retrieval training on large embedding tables.

TFRS side of a side-by-side benchmark of training with big ID tables (up to 1M rows each),
where only the rows a batch touches should be updated. Runs **only** in the TensorFlow
virtualenv (``benchmarks/setup_tfrs_venv.sh``) with ``TF_USE_LEGACY_KERAS=1`` (set here when
absent; the script refuses to run under Keras 3).

Data (``--data``, written by the driver): a Parquet file or directory, read with
``pyarrow.dataset``, with int64 columns ``user_id`` and ``item_id`` (raw ids in
``[0, 1_000_000)``, rows already shuffled). Both columns are loaded into memory once as NumPy
int64 and folded ``id % --rows``, before anything is timed. The training dataset is
``tf.data.Dataset.from_tensor_slices({"user_id": ..., "item_id": ...})
.batch(--batch-size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)`` (no shuffle).

Model: the standard TFRS two-tower retrieval model, a ``tfrs.Model`` whose ``compute_loss``
is ``task(query_tower(user_id), candidate_tower(item_id))`` with

* query tower ``tf.keras.layers.Embedding(--rows, --dim)`` on ``user_id`` and candidate tower
  ``tf.keras.layers.Embedding(--rows, --dim)`` on ``item_id`` (Keras default initializer,
  uniform(-0.05, 0.05));
* ``tfrs.tasks.Retrieval()`` with no metrics: in-batch softmax cross-entropy, TFRS's default
  reduction (a SUM over the batch, not a mean);
* ``tf.keras.optimizers.Adagrad(--learning-rate)`` (tf-keras defaults otherwise: initial
  accumulator 0.1, epsilon 1e-7; no XLA on CPU), ``model.compile(optimizer=...)``.

The Embedding gradients are ``tf.IndexedSlices``: the optimizer de-duplicates their indices
and Adagrad updates the accumulator and the table with ``scatter_add`` on the touched rows
only, so the cost of a step should not grow with ``--rows``. That is what is compared.

What it measures (after ``tf.keras.utils.set_random_seed(--seed)`` and building the model):

* ``epoch_seconds``: wall-clock time of ``model.fit(ds, epochs=1, verbose=0)`` over the whole
  dataset (or ``steps_per_epoch=--max-steps`` steps), ``epoch_steps`` / ``epoch_examples``
  the steps and examples it ran. It is preceded by a warm-up ``model.fit`` of
  ``WARMUP_STEPS`` batches, so tracing and graph building of the compiled train function (and
  creation of the optimizer slots) are excluded; the timed fit reuses the same traced function
  (``train_function_traces`` lists its tracing count after the warm-up fit, the timed fit
  and the step timing: the three should be equal, so nothing was traced while timing; the
  first call traces twice because the optimizer creates its slot variables then).
  ``epoch_cpu_seconds`` is the process CPU time (all threads) of the same interval.
* ``step_seconds``: median wall-clock time of one training step on a fixed batch (the first
  ``--batch-size`` rows), run through the compiled train function that ``model.fit`` uses
  (``model.make_train_function()``, a ``tf.function`` around ``model.train_step``) fed from
  an iterator over that batch repeated, with the loss fetched to NumPy after each step.
  ``WARMUP_STEPS`` untimed steps, then ``--step-repeats`` individually timed steps
  (``all_step_seconds``). This is TFRS's fastest honest steady state: it avoids the per-call
  Python overhead of ``model.train_on_batch`` (which also wraps the batch in a new
  single-batch dataset on every call).
* ``final_loss``: the last batch loss of the timed epoch (``tfrs.Model.train_step`` reports the
  last batch's loss, summed over the batch; about ``B * ln(B)`` at initialization).

The step measurement runs after the epoch, so ``final_loss`` reflects a model trained only on
the data (plus the warm-up batches).

Usage::

    TF_USE_LEGACY_KERAS=1 .venv-tfrs/bin/python benchmarks/tfrs_large_table.py \\
        --data /tmp/bench/interactions.parquet [--rows 1000000] [--dim 64] \\
        [--batch-size 8192] [--learning-rate 0.1] [--seed 0] [--threads 0] \\
        [--max-steps N] [--step-repeats 20] --json

With ``--json`` exactly one JSON line goes to stdout (``step_seconds``, ``all_step_seconds``,
``epoch_seconds``, ``epoch_steps``, ``epoch_examples``, ``final_loss``, ``rows``, ``dim``,
``batch_size``, ``tf_version``, ``tfrs_version``, ``threads``, ...); everything else goes to
stderr. Without it a readable summary is printed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Sequence
from typing import Any

# Must happen before TensorFlow is imported.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pyarrow.dataset as pads
import tensorflow as tf
import tensorflow_recommenders as tfrs
from _sidebyside import require_tf_keras, run_and_report

WARMUP_STEPS = 3
COLUMNS = ("user_id", "item_id")


def load_ids(path: str, rows: int) -> dict[str, np.ndarray]:
    """Reads ``user_id`` and ``item_id`` as NumPy int64, folded ``% rows``.

    Raises:
        ValueError: a column is missing, has nulls, or holds negative ids.
    """
    table = pads.dataset(path, format="parquet").to_table(columns=list(COLUMNS))
    out: dict[str, np.ndarray] = {}
    for name in COLUMNS:
        column = table.column(name)
        if column.null_count:
            raise ValueError(f"{path}: column {name!r} has {column.null_count} nulls")
        ids = column.to_numpy().astype(np.int64, copy=False)
        if ids.size and ids.min() < 0:
            raise ValueError(f"{path}: column {name!r} has negative ids")
        out[name] = np.remainder(ids, rows)
    return out


def tracing_count(function: Any) -> int | None:
    """How many times a ``tf.function`` has been traced (None if unknown)."""
    count = getattr(function, "experimental_get_tracing_count", None)
    return int(count()) if count else None


class TwoTowerModel(tfrs.Model):
    """Two embedding towers and an in-batch softmax retrieval task, without metrics."""

    def __init__(self, rows: int, dim: int) -> None:
        super().__init__()
        self.query_tower = tf.keras.layers.Embedding(rows, dim, name="query_embedding")
        self.candidate_tower = tf.keras.layers.Embedding(rows, dim, name="candidate_embedding")
        self.task = tfrs.tasks.Retrieval()

    def compute_loss(self, features: dict[str, tf.Tensor], training: bool = False) -> tf.Tensor:
        query = self.query_tower(features["user_id"])
        candidate = self.candidate_tower(features["item_id"])
        return self.task(query, candidate)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Loads the data, builds the model, times an epoch and single steps."""
    if args.threads:
        # Must happen before the TensorFlow runtime starts (before the first op).
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    tf.keras.utils.set_random_seed(args.seed)  # Python, NumPy and tf.random.set_seed.

    data = load_ids(args.data, args.rows)
    num_examples = len(data["user_id"])
    num_batches = num_examples // args.batch_size
    if num_batches == 0:
        raise ValueError(f"{num_examples} rows is less than one batch of {args.batch_size}")
    steps = num_batches if args.max_steps is None else min(args.max_steps, num_batches)

    ds = (
        tf.data.Dataset.from_tensor_slices(data)
        .batch(args.batch_size, drop_remainder=True)
        .prefetch(tf.data.AUTOTUNE)
    )

    model = TwoTowerModel(args.rows, args.dim)
    model.compile(optimizer=tf.keras.optimizers.Adagrad(learning_rate=args.learning_rate))

    # Warm-up: traces the train function, creates the optimizer slots.
    model.fit(ds.take(WARMUP_STEPS), epochs=1, verbose=0)
    traces = [tracing_count(model.train_function)]

    wall, cpu = time.perf_counter(), time.process_time()
    history = model.fit(
        ds, epochs=1, steps_per_epoch=None if steps == num_batches else steps, verbose=0
    )
    epoch_seconds = time.perf_counter() - wall
    epoch_cpu_seconds = time.process_time() - cpu
    final_loss = float(history.history["loss"][-1])
    traces.append(tracing_count(model.train_function))

    # Single steps on a fixed batch through the compiled train function that fit() uses.
    batch = {k: tf.constant(v[: args.batch_size]) for k, v in data.items()}
    train_function = model.make_train_function()
    iterator = iter(tf.data.Dataset.from_tensors(batch).repeat())
    for _ in range(WARMUP_STEPS):
        float(train_function(iterator)["loss"])
    step_seconds: list[float] = []
    for _ in range(args.step_repeats):
        t = time.perf_counter()
        float(train_function(iterator)["loss"])
        step_seconds.append(time.perf_counter() - t)
    traces.append(tracing_count(train_function))

    return {
        "framework": "tfrs",
        "step_seconds": statistics.median(step_seconds),
        "all_step_seconds": step_seconds,
        "epoch_seconds": epoch_seconds,
        "epoch_cpu_seconds": epoch_cpu_seconds,
        "epoch_steps": steps,
        "epoch_examples": steps * args.batch_size,
        "final_loss": final_loss,
        "rows": args.rows,
        "dim": args.dim,
        "batch_size": args.batch_size,
        "learning_rate": args.learning_rate,
        "seed": args.seed,
        "num_examples": num_examples,
        "warmup_steps": WARMUP_STEPS,
        "train_function_traces": traces,
        "tf_version": tf.__version__,
        "tfrs_version": tfrs.__version__.lstrip("v"),
        "threads": args.threads,
        "tf_intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
        "tf_inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads(),
        "optimizer_jit_compile": bool(getattr(model.optimizer, "jit_compile", False)),
    }


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="Parquet file or directory")
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows of each table")
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=8192)
    parser.add_argument("--learning-rate", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--threads", type=int, default=0, help="intra/inter-op threads (0: TF default)"
    )
    parser.add_argument("--max-steps", type=int, default=None, help="stop the epoch early")
    parser.add_argument("--step-repeats", type=int, default=20)
    parser.add_argument("--json", action="store_true", help="print one JSON line on stdout")
    args = parser.parse_args(argv)
    for name in ("rows", "dim", "batch_size", "step_repeats"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be positive")
    if args.threads < 0 or (args.max_steps is not None and args.max_steps < 1):
        parser.error("--threads must be >= 0 and --max-steps positive")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    require_tf_keras(tf)
    run_and_report(run, args, key_width=22)


if __name__ == "__main__":
    main()
