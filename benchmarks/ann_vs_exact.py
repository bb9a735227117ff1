"""Approximate indexes against the exact top k: build time, queries per second, recall@k.

The data of ``topk_vs_faiss.py`` (numpy, seed 0): ``--candidates`` clustered candidates of
dimension ``--dim`` and ``--queries`` queries. The exact answer is ``index.brute_force_top_k``.
Each approximate index (``index.ScaNN``, ``index.Faiss`` IVF and HNSW, as configured below) is
built once (``build_seconds``), then queried in batches of ``--batch`` for ``--repeats`` passes
over all queries; ``qps`` is queries / median pass time, ``recall`` the mean fraction of the exact
top k returned.

    python benchmarks/ann_vs_exact.py --json           # 1,000,000 x 64, 10,000 queries, top 100
    python benchmarks/ann_vs_exact.py --candidates 100000 --queries 2000 --indexes scann

Needs the optional extras (``pip install "torchrs_fn[faiss,scann]"``); an index whose package is
missing is reported as skipped.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from topk_vs_faiss import make_data

from torchrs_fn.index import Faiss, ScaNN, brute_force_top_k

# name -> (class, settings); the ScaNN settings are ScaNN's recipe for about 1M points.
CONFIGS: dict[str, tuple[type, dict[str, Any]]] = {
    "scann": (ScaNN, {"num_leaves": 2000, "num_leaves_to_search": 100, "reorder": 250}),
    "scann_r100": (ScaNN, {"num_leaves": 2000, "num_leaves_to_search": 100, "reorder": 100}),
    "scann_fast": (ScaNN, {"num_leaves": 2000, "num_leaves_to_search": 50, "reorder": 200}),
    "faiss_ivf": (Faiss, {"kind": "ivf", "nlist": 4096, "nprobe": 64}),
    "faiss_hnsw": (Faiss, {"kind": "hnsw", "hnsw_m": 32, "ef_search": 256}),
}


def measure(
    name: str, candidates: torch.Tensor, queries: torch.Tensor, exact: torch.Tensor, args: Any
) -> dict[str, Any]:
    cls, settings = CONFIGS[name]
    t = time.perf_counter()
    try:
        index = cls(candidates, keep_candidates=False, **settings)
    except ImportError as e:
        return {"index": name, "skipped": str(e)}
    build = time.perf_counter() - t
    index(queries[: args.batch], args.k)  # warm-up
    passes = []
    got = None
    for _ in range(args.repeats):
        parts = []
        t = time.perf_counter()
        for start in range(0, queries.shape[0], args.batch):
            parts.append(index(queries[start : start + args.batch], args.k)[1])
        passes.append(time.perf_counter() - t)
        got = torch.cat(parts)
    hits = (got.unsqueeze(2) == exact.unsqueeze(1)).any(dim=2)
    seconds = statistics.median(passes)
    return {
        "index": name,
        "settings": settings,
        "build_seconds": build,
        "qps": queries.shape[0] / seconds,
        "pass_seconds": passes,
        "recall": float(hits.float().mean()),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--candidates", type=int, default=1_000_000)
    p.add_argument("--queries", type=int, default=10_000)
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--k", type=int, default=100)
    p.add_argument("--batch", type=int, default=1000)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--indexes", default=",".join(CONFIGS), help="comma-separated subset")
    p.add_argument("--json", action="store_true", help="one JSON line per index")
    args = p.parse_args(argv)
    names = [n for n in args.indexes.split(",") if n]
    unknown = sorted(set(names) - set(CONFIGS))
    if unknown:
        p.error(f"unknown indexes {unknown}; choose from {list(CONFIGS)}")
    c_np, q_np = make_data(args.candidates, args.queries, args.dim)
    candidates, queries = torch.from_numpy(c_np), torch.from_numpy(q_np)
    t = time.perf_counter()
    _, exact = brute_force_top_k(queries, candidates, args.k)
    exact_seconds = time.perf_counter() - t
    base = {
        "candidates": args.candidates,
        "queries": args.queries,
        "dim": args.dim,
        "k": args.k,
        "batch": args.batch,
        "exact_qps": args.queries / exact_seconds,
    }
    for name in names:
        line = {**base, **measure(name, candidates, queries, exact, args)}
        if args.json:
            print(json.dumps(line), flush=True)
        else:
            print(
                f"{name:12s} build {line.get('build_seconds', float('nan')):6.1f} s  "
                f"{line.get('qps', float('nan')):9.0f} QPS  recall@{args.k} "
                f"{line.get('recall', float('nan')):.3f}  {line.get('skipped', '')}",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
