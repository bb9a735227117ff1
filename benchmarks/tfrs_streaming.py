"""TensorFlow Recommenders ``layers.factorized_top_k.Streaming`` over candidates read from Parquet.

TFRS side of ``benchmarks/streaming_vs_tfrs.py``. Runs **only** in the TensorFlow virtualenv
(``benchmarks/setup_tfrs_venv.sh``) with ``TF_USE_LEGACY_KERAS=1`` (set here when absent).

Data (written by the driver into ``--data-dir``): ``candidates/`` (or ``candidates.parquet``), a
Parquet file or directory with columns ``id`` (int64) and ``embedding`` (a list of ``D`` float32
per row), and ``queries.npy`` (``[B, D]`` float32).

Candidate dataset (``--input``):

* ``generator`` (default): the Parquet data read batch by batch on every query call, as our
  ``index.Streaming(path)`` does: ``pyarrow.dataset.dataset(path).to_batches(batch_size=
  --batch-rows)`` (pyarrow is installed in the TFRS venv), each record batch turned into
  ``(ids [n] int64, embeddings [n, D] float32)`` NumPy arrays and fed to
  ``tf.data.Dataset.from_generator``. Nothing but one batch (plus tf.data's prefetch) is held.
* ``memory``: the whole file read once into NumPy (outside the timing) and served by
  ``tf.data.Dataset.from_tensor_slices((ids, embeddings)).batch(--batch-rows)``, the TFRS
  tutorials' way (``movies.batch(100).map(...)``). Faster for TFRS, but it holds every candidate
  in memory, which ``Streaming`` exists to avoid.

Model: ``tfrs.layers.factorized_top_k.Streaming(query_model=tf.keras.layers.Lambda(lambda x: x),
k=--k)`` (the identity query model: queries are the raw embeddings; TFRS's defaults otherwise:
``handle_incomplete_batches=True``, ``num_parallel_calls=AUTOTUNE``, ``sorted_order=True``),
``.index_from_dataset(dataset)``, then ``streaming(queries)`` called eagerly as the TFRS
tutorials do: one warm-up call, then ``--repeats`` timed calls; ``seconds`` is their median.

Peak memory (Linux): the resident size is read after the warm-up call, the peak (``VmHWM``) is
reset to it through ``/proc/self/clear_refs``, and ``peak_extra_mib`` is the peak during the
timed calls minus that size. ``first_call_peak_extra_mib`` is the same for the warm-up call
(measured from the size before it).

Usage::

    TF_USE_LEGACY_KERAS=1 .venv-tfrs/bin/python benchmarks/tfrs_streaming.py \\
        --data-dir /tmp/streaming_bench/... [--k 100] [--batch-rows 65536] [--repeats 3] \\
        [--input generator|memory] [--out-prefix /tmp/x/tfrs] --json

With ``--json`` one JSON line goes to stdout (``seconds``, ``all_seconds``, ``peak_extra_mib``,
``first_call_peak_extra_mib``, ``rss_mib``, ``peak_mib``, ``queries``, ``candidates``,
``tf_version``, ``tfrs_version``, ...); ``--out-prefix`` saves the last call's top-k as
``<prefix>_ids.npy`` and ``<prefix>_scores.npy`` for the driver's agreement check.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

# Must happen before TensorFlow is imported.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pyarrow as pa
import pyarrow.dataset as pads
import tensorflow as tf
import tensorflow_recommenders as tfrs


def status_kib(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def reset_peak() -> None:
    """Reset the process's peak resident size (VmHWM) to its current size (Linux >= 4.0)."""
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")


def candidates_path(data_dir: Path) -> Path:
    for name in ("candidates", "candidates.parquet"):
        if (data_dir / name).exists():
            return data_dir / name
    raise FileNotFoundError(f"no candidates/ or candidates.parquet in {data_dir}")


def batch_arrays(batch: pa.RecordBatch) -> tuple[np.ndarray, np.ndarray]:
    """``(ids [n] int64, embeddings [n, D] float32)`` from a record batch."""
    emb = batch.column("embedding")
    values = emb.flatten().to_numpy(zero_copy_only=False)
    return (
        batch.column("id").to_numpy().astype(np.int64, copy=False),
        np.asarray(values, dtype=np.float32).reshape(len(batch), -1),
    )


def candidate_dataset(path: Path, dim: int, batch_rows: int, mode: str) -> tf.data.Dataset:
    dataset = pads.dataset(path, format="parquet")
    if mode == "generator":

        def gen():
            for batch in dataset.to_batches(columns=["id", "embedding"], batch_size=batch_rows):
                yield batch_arrays(batch)

        return tf.data.Dataset.from_generator(
            gen,
            output_signature=(
                tf.TensorSpec([None], tf.int64),
                tf.TensorSpec([None, dim], tf.float32),
            ),
        )
    table = dataset.to_table(columns=["id", "embedding"]).combine_chunks()
    ids, embeddings = batch_arrays(table.to_batches()[0])
    return tf.data.Dataset.from_tensor_slices((ids, embeddings)).batch(batch_rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", type=Path, required=True)
    p.add_argument("--k", type=int, default=100)
    p.add_argument("--batch-rows", type=int, default=65536)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--input", choices=("generator", "memory"), default="generator")
    p.add_argument("--queries", type=int, default=None, help="use the first N queries only")
    p.add_argument("--out-prefix", default=None)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)

    queries_np = np.load(args.data_dir / "queries.npy")
    if args.queries is not None:
        queries_np = queries_np[: args.queries]
    dim = queries_np.shape[1]
    path = candidates_path(args.data_dir)
    queries = tf.constant(queries_np)
    dataset = candidate_dataset(path, dim, args.batch_rows, args.input)
    streaming = tfrs.layers.factorized_top_k.Streaming(
        query_model=tf.keras.layers.Lambda(lambda x: x), k=args.k
    )
    streaming.index_from_dataset(dataset)

    base0 = status_kib("VmRSS")
    reset_peak()
    t = time.perf_counter()
    scores, ids = streaming(queries)
    first_seconds = time.perf_counter() - t
    first_peak = status_kib("VmHWM")
    del scores, ids
    base = status_kib("VmRSS")
    reset_peak()
    times = []
    cpu = []
    for _ in range(args.repeats):
        c = time.process_time()
        t = time.perf_counter()
        scores, ids = streaming(queries)
        scores, ids = scores.numpy(), ids.numpy()
        times.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    peak = status_kib("VmHWM")
    overall = max(first_peak, peak)  # VmHWM since setup (the warm-up call included)
    if args.out_prefix:
        np.save(f"{args.out_prefix}_ids.npy", ids)
        np.save(f"{args.out_prefix}_scores.npy", scores)
    result: dict[str, Any] = {
        "framework": "tfrs",
        "input": args.input,
        "queries": int(queries_np.shape[0]),
        "candidates": int(pads.dataset(path, format="parquet").count_rows()),
        "dim": int(dim),
        "k": args.k,
        "batch_rows": args.batch_rows,
        "seconds": statistics.median(times),
        "all_seconds": times,
        "cpu_seconds": statistics.median(cpu),
        "first_call_seconds": first_seconds,
        "peak_extra_mib": max(0, peak - base) / 1024,
        "first_call_peak_extra_mib": max(0, first_peak - base0) / 1024,
        "peak_over_setup_mib": max(0, overall - base0) / 1024,
        "setup_rss_mib": base0 / 1024,
        "rss_mib": base / 1024,
        "peak_mib": peak / 1024,
        "tf_version": tf.__version__,
        "tfrs_version": getattr(tfrs, "__version__", "unknown"),
        "pyarrow_version": pa.__version__,
        "tf_intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
    }
    print(json.dumps(result) if args.json else result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
