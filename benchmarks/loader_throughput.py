"""Throughput of ``data.Loader``: rows per second for a 1,000,000-row table of two int64 id columns.

Shuffled and unshuffled epochs at batch 8192, from an in-memory Arrow table and from a Parquet
file (read once at construction, which is timed separately). Prints medians over epochs.

    python benchmarks/loader_throughput.py [--rows 1000000] [--epochs 7]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from torchrs_fn.data import Loader


def epoch_seconds(loader: Loader, epochs: int) -> list[float]:
    times = []
    for _ in range(epochs):
        start = time.perf_counter()
        for _batch in loader:
            pass
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--batch-size", type=int, default=8192)
    p.add_argument("--epochs", type=int, default=7)
    args = p.parse_args()
    rng = np.random.default_rng(0)
    table = pa.table(
        {
            "user_id": rng.integers(0, 100_000, args.rows),
            "item_id": rng.integers(0, 1_000_000, args.rows),
        }
    )
    print(f"{args.rows:,} rows, batch {args.batch_size}, median of {args.epochs} epochs")
    print("| source | shuffle | construction s | epoch s | rows/s |")
    print("|---|---|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "ids.parquet"
        pq.write_table(table, path)
        for source_name, source in (("Arrow table", table), ("Parquet file", path)):
            for shuffle in (True, False):
                t0 = time.perf_counter()
                loader = Loader(source, args.batch_size, shuffle=shuffle, seed=0)
                built = time.perf_counter() - t0
                secs = statistics.median(epoch_seconds(loader, args.epochs))
                print(
                    f"| {source_name} | {shuffle} | {built:.3f} | {secs:.4f} | "
                    f"{args.rows / secs / 1e6:.1f} M |"
                )


if __name__ == "__main__":
    main()
