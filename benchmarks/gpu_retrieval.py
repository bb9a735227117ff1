"""GPU check: the MovieLens retrieval example's train step on CUDA, compiled and eager.

Runs ``examples/movielens_retrieval.py`` in-process with ``--device cuda`` (loader with pinned
memory and non-blocking copies, compiled step, FactorizedTopK evaluation on the GPU) and prints
one JSON line per mode plus a Markdown table for ``docs/benchmarks.md``. Epoch 1 includes
compilation; epochs 2+ are the steady state.

    python benchmarks/gpu_retrieval.py --data-dir ../shared/data/ml-100k [--epochs 5]

On a machine without the network or without optree, carry what it needs (see docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import json
import statistics
import sys
from pathlib import Path

import torch

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "movielens_retrieval.py"


def _example():
    spec = importlib.util.spec_from_file_location("movielens_retrieval", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # torch.compile looks the module up by name
    spec.loader.exec_module(module)
    return module


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", required=True)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--modes", default="compiled,eager")
    args = p.parse_args()
    if not torch.cuda.is_available():
        print("no CUDA device: nothing to measure", file=sys.stderr)
        return 1
    example = _example()
    name = torch.cuda.get_device_name(0)
    rows = []
    for mode in args.modes.split(","):
        argv = [
            "--data-dir",
            args.data_dir,
            "--device",
            "cuda",
            "--json",
            "--epochs",
            str(args.epochs),
        ]
        if mode == "eager":
            argv.append("--no-compile")
        result = example.run(example.parse_args(argv))
        result.update({"mode": mode, "gpu": name})
        print(json.dumps(result), flush=True)
        rows.append(result)
    print(
        f"\nGPU: {name}; torch {torch.__version__}; {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC"
    )
    print("| mode | epoch 1 s (incl. compile) | epoch 2+ s (median) | eval s | top-100 |")
    print("|---|---:|---:|---:|---:|")
    for r in rows:
        later = (
            statistics.median(r["epoch_seconds"][1:])
            if len(r["epoch_seconds"]) > 1
            else float("nan")
        )
        print(
            f"| {r['mode']} | {r['epoch_seconds'][0]:.3f} | {later:.4f} | "
            f"{r['eval_seconds']:.4f} | {r['top_100']:.4f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
