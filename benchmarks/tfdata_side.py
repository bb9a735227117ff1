"""TensorFlow side of ``benchmarks/data_path_vs_tfdata.py``: tf.data batching and Keras StringLookup.

Runs in the TensorFlow virtualenv (``benchmarks/setup_tfrs_venv.sh`` creates ``.venv-tfrs``) with
``TF_USE_LEGACY_KERAS=1`` (the driver sets it), on the files the driver generated. It measures, in
this order, and prints one JSON line on stdout (progress goes to stderr):

1. construction: ``pyarrow.parquet.read_table`` of the ids file + ``to_numpy`` per column (the
   Parquet read is timed on this side too, because torchrs_fn's ``Loader(path)`` reads the file
   itself) + ``tf.data.Dataset.from_tensor_slices(columns).shuffle(num_rows, seed).batch(B)``;
2. ``--epochs`` full epochs over that dataset (epoch 1 fills the whole-dataset shuffle buffer,
   later epochs are warm); every batch is a dict of eager ``tf.Tensor`` s;
3. ``tf.keras.layers.StringLookup().adapt(strings)`` with Keras's defaults (which batch a numpy
   input by 32), on all strings or, with ``--adapt-rows N``, on the first N and extrapolated
   linearly to all rows (the JSON says which); ``--skip-adapt`` leaves it out;
4. ``StringLookup().adapt(strings, batch_size=--adapt-batch-size)``, the same layer adapted in
   large batches (for reference; it also gives the layer that step 5 applies when step 3 was
   skipped or ran on a subset);
5. applying the adapted layer to all strings as one ``tf.string`` tensor (built outside the
   timing): one first call, then ``--apply-reps`` timed calls.

The strings are read from Parquet into a numpy object array outside every timing.

    TF_USE_LEGACY_KERAS=1 .venv-tfrs/bin/python benchmarks/tfdata_side.py \\
        --ids ids.parquet --strings strings.parquet --column token
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pyarrow.parquet as pq
import tensorflow as tf

T = TypeVar("T")


def log(message: str) -> None:
    """Progress on stderr; stdout carries only the JSON result."""
    print(f"[tf] {message}", file=sys.stderr, flush=True)


def timed(fn: Callable[[], T]) -> tuple[T, float, float]:
    """Runs ``fn`` once: (result, wall seconds, process CPU seconds)."""
    cpu0, wall0 = time.process_time(), time.perf_counter()
    result = fn()
    return result, time.perf_counter() - wall0, time.process_time() - cpu0


def package_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def build_dataset(ids_path: str, batch_size: int, seed: int) -> tuple[tf.data.Dataset, int, float]:
    """Parquet -> numpy columns -> shuffled, batched tf.data pipeline; also the read seconds."""
    start = time.perf_counter()
    table = pq.read_table(ids_path)
    columns = {name: table.column(name).to_numpy() for name in table.column_names}
    read_seconds = time.perf_counter() - start
    num_rows = table.num_rows
    dataset = (
        tf.data.Dataset.from_tensor_slices(columns)
        .shuffle(num_rows, seed=seed, reshuffle_each_iteration=True)
        .batch(batch_size)
    )
    return dataset, num_rows, read_seconds


def run_epoch(dataset: tf.data.Dataset) -> int:
    """Iterates one epoch; returns the number of rows seen (from the batch shapes)."""
    rows = 0
    first: str | None = None
    for batch in dataset:
        if first is None:
            first = next(iter(batch))
        rows += int(batch[first].shape[0])
    return rows


def adapted_layer(strings: np.ndarray, batch_size: int | None) -> Any:
    """A fresh ``tf.keras.layers.StringLookup`` adapted on ``strings``."""
    layer = tf.keras.layers.StringLookup()
    if batch_size is None:
        layer.adapt(strings)  # Keras's default: a numpy input is batched by 32
    else:
        layer.adapt(strings, batch_size=batch_size)
    return layer


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Every measurement of this side, as a JSON-able dict."""
    result: dict[str, Any] = {
        "side": "tf",
        "python": platform.python_version(),
        "versions": {
            "tensorflow": tf.__version__,
            "tf_keras": package_version("tf-keras"),
            "keras_used": type(tf.keras.layers.StringLookup()).__module__.split(".")[0],
            "numpy": np.__version__,
            "pyarrow": package_version("pyarrow"),
        },
        "tf_threads": {
            "inter_op": tf.config.threading.get_inter_op_parallelism_threads(),
            "intra_op": tf.config.threading.get_intra_op_parallelism_threads(),
        },
    }

    # 1-2. tf.data batching.
    (dataset, num_rows, read_seconds), construct_s, construct_cpu = timed(
        lambda: build_dataset(args.ids, args.batch_size, args.seed)
    )
    result.update(
        rows=num_rows,
        batch_size=args.batch_size,
        construct_seconds=construct_s,
        construct_cpu_seconds=construct_cpu,
        parquet_read_seconds=read_seconds,
        epoch_seconds=[],
        epoch_cpu_seconds=[],
        epoch_rows=[],
    )
    log(f"construction {construct_s:.3f} s (Parquet read {read_seconds:.3f} s)")
    for epoch in range(args.epochs):
        rows, seconds, cpu = timed(lambda: run_epoch(dataset))
        result["epoch_seconds"].append(seconds)
        result["epoch_cpu_seconds"].append(cpu)
        result["epoch_rows"].append(rows)
        log(f"epoch {epoch + 1}: {seconds:.3f} s, {rows / seconds:,.0f} rows/s")

    # 3-5. Keras StringLookup.
    strings = pq.read_table(args.strings, columns=[args.column]).column(args.column)
    strings = strings.to_numpy(zero_copy_only=False)  # object array of str, outside the timing
    n = len(strings)
    result["strings"] = n
    adapt_layer = None
    if args.skip_adapt:
        result.update(adapt_seconds=None, adapt_measured_seconds=None, adapt_rows=None)
        log("adapt (default batch size) skipped")
    else:
        adapt_rows = n if args.adapt_rows is None else min(args.adapt_rows, n)
        layer, seconds, cpu = timed(lambda: adapted_layer(strings[:adapt_rows], None))
        result.update(
            adapt_rows=adapt_rows,
            adapt_measured_seconds=seconds,
            adapt_cpu_seconds=cpu,
            adapt_seconds=seconds * n / adapt_rows,
            adapt_extrapolated=adapt_rows < n,
            adapt_vocabulary_size=int(layer.vocabulary_size()),
        )
        if adapt_rows == n:
            adapt_layer = layer
        note = (
            "" if adapt_rows == n else f" on {adapt_rows:,} rows, extrapolated x{n / adapt_rows:g}"
        )
        log(f"adapt (default batch size): {seconds:.2f} s{note}")

    batched, seconds, cpu = timed(lambda: adapted_layer(strings, args.adapt_batch_size))
    result.update(
        adapt_batched_batch_size=args.adapt_batch_size,
        adapt_batched_seconds=seconds,
        adapt_batched_cpu_seconds=cpu,
    )
    log(f"adapt(batch_size={args.adapt_batch_size}): {seconds:.3f} s")
    if adapt_layer is not None:
        result["adapt_vocabularies_equal"] = (
            adapt_layer.get_vocabulary() == batched.get_vocabulary()
        )
    layer = adapt_layer if adapt_layer is not None else batched
    result["vocabulary_size"] = int(layer.vocabulary_size())

    tensor = tf.constant(strings)  # one [N] tf.string tensor, outside the timing
    ids, seconds, _ = timed(lambda: layer(tensor))
    result["apply_first_seconds"] = seconds
    result["apply_seconds"] = []
    result["apply_cpu_seconds"] = []
    for _ in range(args.apply_reps):
        ids, seconds, cpu = timed(lambda: layer(tensor))
        result["apply_seconds"].append(seconds)
        result["apply_cpu_seconds"].append(cpu)
    result["apply_ids_sum"] = int(tf.reduce_sum(ids).numpy())
    result["apply_ids_dtype"] = ids.dtype.name
    log(f"apply: first {result['apply_first_seconds']:.4f} s, then {result['apply_seconds']}")
    return result


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--ids", required=True, help="Parquet file of integer id columns")
    parser.add_argument("--strings", required=True, help="Parquet file holding the string column")
    parser.add_argument("--column", default="token", help="string column in --strings")
    parser.add_argument("--batch-size", type=int, default=8192)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=2, help="epochs over the tf.data pipeline")
    parser.add_argument(
        "--adapt-rows", type=int, default=None,
        help="time the default adapt on the first N strings and extrapolate linearly",
    )  # fmt: skip
    parser.add_argument("--skip-adapt", action="store_true", help="leave the default adapt out")
    parser.add_argument("--adapt-batch-size", type=int, default=8192)
    parser.add_argument("--apply-reps", type=int, default=7, help="timed calls after the first")
    args = parser.parse_args(argv)
    if args.epochs < 1 or args.apply_reps < 1 or args.batch_size < 1:
        parser.error("--epochs, --apply-reps and --batch-size must be >= 1")
    if args.adapt_rows is not None and args.adapt_rows < 1:
        parser.error("--adapt-rows must be >= 1")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    result = measure(parse_args(argv))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
