"""Tables of a million rows: the row-sparse two-tower step against TFRS, side by side.

Data (numpy, seed ``--seed``; written once to ``--data-dir``, reused after): ``--interactions``
(5,000,000) rows of ``user_id``, ``item_id`` (int64) over ``--items`` (1,000,000) items and as
many users, as Parquet (``interactions.parquet``, row groups of 1,000,000, rows shuffled). Both
are power-law: a user is drawn from a Zipf(1.2) law over a random permutation of the users; the
user's taste cluster (one of 1,000) shifts a Zipf(1.1) item rank, so that users of one cluster
share popular items and the loss has something to learn.

Model, the same on both sides: two embedding tables of ``R`` rows and ``--dim`` (64) columns,
uniform(-0.05, 0.05); ids folded ``id % R``; TFRS's retrieval loss (in-batch softmax, summed);
Adagrad(0.1) with Keras's defaults (initial accumulator 0.1, epsilon 1e-7); batches of
``--batch-size`` (8192, as TFRS's retrieval tutorial), in file order, the last partial batch
dropped.

* torchrs_fn (this process): ``train.make_train_step(loss, optim.adagrad(0.1), compile=True,
  sparse_tables={"user": "user_id", "item": "item_id"})``: gathers, differentiates, optimizes
  and writes back only the rows a batch holds (``optim.sparse``), batches from
  ``data.Loader`` over the Arrow table.
* TFRS (``benchmarks/tfrs_large_table.py`` in the TensorFlow venv, run after ours, never
  together): Keras ``Embedding`` tables, whose ``IndexedSlices`` gradients make Adagrad
  update only the touched rows.

Measured: ``step_seconds_10k`` and ``step_seconds_1m``, the median of ``--step-repeats`` timed
steps (after 3 untimed ones, which include the compile) at ``R`` = 10,000 and 1,000,000 rows;
``epoch_seconds``, one pass over all interactions at 1,000,000 rows, after the compile (whose
time is ``compile_seconds``); and for TFRS ``tfrs_step_seconds`` and ``tfrs_epoch_seconds``
measured the same way (its tracing excluded). ``--precision bf16`` runs our step in mixed
precision (TFRS stays float32); ``--dense`` adds ``dense_step_seconds_1m``, the same step
without ``sparse_tables`` (every row updated). Before each side the driver waits (at most
``--max-wait`` s) for a quiet machine (``--max-load``, ``--max-busy``).

    python benchmarks/large_table.py                         # one JSON line at the end
    python benchmarks/large_table.py --dense --precision bf16
    python benchmarks/large_table.py --interactions 500000 --no-tfrs   # a quick look

The TFRS interpreter is ``--tfrs-python``, else ``.venv-tfrs/bin/python``, else
``$TFRS_PYTHON``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _sidebyside import (
    cpu_model,
    git_commit,
    log,
    resolve_tf_python,
    run_json,
    tf_env,
    wait_for_quiet,
)

import torchrs_fn as rs
from torchrs_fn import data, optim, train
from torchrs_fn.tasks import retrieval_loss

CLUSTERS = 1000


def write_data(path: Path, interactions: int, items: int, seed: int) -> None:
    """The power-law interactions as Parquet (see the module docstring)."""
    rng = np.random.default_rng(seed)
    users = items
    user_rank = np.minimum(rng.zipf(1.2, interactions) - 1, users - 1)
    user_id = rng.permutation(users)[user_rank]
    item_rank = np.minimum(rng.zipf(1.1, interactions) - 1, items - 1)
    item_perm = rng.permutation(items)
    item_id = item_perm[(item_rank + 7919 * (user_id % CLUSTERS)) % items]
    order = rng.permutation(interactions)
    table = pa.table(
        {"user_id": user_id[order].astype(np.int64), "item_id": item_id[order].astype(np.int64)}
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    pq.write_table(table, tmp, row_group_size=1_000_000)
    tmp.rename(path)


def _loss(params, batch):
    return retrieval_loss(params["user"][batch["user_id"]], params["item"][batch["item_id"]])


def _params(rows: int, dim: int, seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {name: torch.rand(rows, dim, generator=g) * 0.1 - 0.05 for name in ("user", "item")}


def _folded(table: pa.Table, rows: int) -> pa.Table:
    if rows >= 1_000_000:
        return table
    cols = {name: pa.array(table[name].to_numpy() % rows) for name in ("user_id", "item_id")}
    return pa.table(cols)


def torch_side(table: pa.Table, args: argparse.Namespace) -> dict:
    out: dict = {}
    opt = optim.adagrad(args.learning_rate)
    variants = [("10k", 10_000, True), ("1m", 1_000_000, True)]
    if args.dense:
        variants.append(("dense_1m", 1_000_000, False))
    for name, rows, sparse in variants:
        step = train.make_train_step(
            _loss,
            opt,
            compile=True,
            precision=args.precision,
            sparse_tables={"user": "user_id", "item": "item_id"} if sparse else None,
        )
        state = train.init_state(_params(rows, args.dim, args.seed), opt)
        loader = data.Loader(_folded(table, rows), args.batch_size, drop_remainder=True)
        batches = iter(loader)
        first = next(batches)
        start = time.perf_counter()
        for _ in range(3):
            state, logs = step(state, first)
        logs["loss"].item()
        warm = time.perf_counter() - start
        times = []
        for _ in range(args.step_repeats):
            t = time.perf_counter()
            state, logs = step(state, first)
            logs["loss"].item()
            times.append(time.perf_counter() - t)
        key = "dense_step_seconds_1m" if name == "dense_1m" else f"step_seconds_{name}"
        out[key] = statistics.median(times)
        out[f"all_{key}"] = times
        log(f"  ours {name}: step {out[key]:.4f} s (3 warm-up steps incl. compile {warm:.1f} s)")
        if name == "1m":
            out["compile_seconds"] = warm
            state = train.init_state(_params(rows, args.dim, args.seed), opt)
            state, logs = step(state, first)  # the compiled graph is cached: no compile here
            start = time.perf_counter()
            steps = 0
            for batch in loader:
                state, logs = step(state, batch)
                steps += 1
            out["final_loss"] = float(logs["loss"])
            out["epoch_seconds"] = time.perf_counter() - start
            out["epoch_steps"] = steps
            log(f"  ours epoch: {out['epoch_seconds']:.1f} s, {steps} steps")
        del state
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", type=Path, default=Path("/tmp/torchrs_fn_bench/large_table"))
    parser.add_argument("--interactions", type=int, default=5_000_000)
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=8192)
    parser.add_argument("--learning-rate", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--step-repeats", type=int, default=15)
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    parser.add_argument("--dense", action="store_true", help="also time the dense step at 1M")
    parser.add_argument("--no-tfrs", action="store_true")
    parser.add_argument("--tfrs-python")
    parser.add_argument("--max-load", type=float, default=1.5)
    parser.add_argument("--max-busy", type=float, default=0.15)
    parser.add_argument("--max-wait", type=float, default=300.0)
    args = parser.parse_args()

    path = args.data_dir / f"interactions_{args.interactions}_{args.items}_{args.seed}.parquet"
    if not path.exists():
        log(f"writing {path}")
        write_data(path, args.interactions, args.items, args.seed)
    table = pq.read_table(path)

    result: dict = {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": cpu_model(),
        "commit": git_commit(),
        "torch": torch.__version__,
        "torchrs_fn": getattr(rs, "__version__", None),
        "interactions": args.interactions,
        "items": args.items,
        "dim": args.dim,
        "batch_size": args.batch_size,
        "precision": args.precision,
    }
    result["quiet_before_ours"] = wait_for_quiet(args.max_load, args.max_busy, args.max_wait)
    result.update(torch_side(table, args))
    del table
    if not args.no_tfrs:
        tf_python = resolve_tf_python(args.tfrs_python, "--tfrs-python")
        result["quiet_before_tfrs"] = wait_for_quiet(args.max_load, args.max_busy, args.max_wait)
        tfrs = run_json(
            [
                tf_python,
                "benchmarks/tfrs_large_table.py",
                "--data",
                str(path),
                "--rows",
                str(1_000_000),
                "--dim",
                str(args.dim),
                "--batch-size",
                str(args.batch_size),
                "--learning-rate",
                str(args.learning_rate),
                "--seed",
                str(args.seed),
                "--step-repeats",
                str(args.step_repeats),
                "--json",
            ],
            tf_env(),
            timeout=3600,
        )
        result["tfrs_step_seconds"] = tfrs["step_seconds"]
        result["tfrs_epoch_seconds"] = tfrs["epoch_seconds"]
        result["tfrs_epoch_steps"] = tfrs.get("epoch_steps")
        result["tfrs_final_loss"] = tfrs.get("final_loss")
        result["epoch_speedup"] = tfrs["epoch_seconds"] / result["epoch_seconds"]
    result["step_ratio_1m_over_10k"] = result["step_seconds_1m"] / result["step_seconds_10k"]
    log(
        f"step 10k {result['step_seconds_10k']:.4f} s, 1M {result['step_seconds_1m']:.4f} s "
        f"(ratio {result['step_ratio_1m_over_10k']:.2f}, target <= 1.3); epoch "
        f"{result['epoch_seconds']:.1f} s"
        + (
            f" vs TFRS {result['tfrs_epoch_seconds']:.1f} s ({result['epoch_speedup']:.2f}x, "
            "target >= 3)"
            if "tfrs_epoch_seconds" in result
            else ""
        )
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
