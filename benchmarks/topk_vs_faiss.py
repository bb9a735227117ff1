"""Exact top-k: ``index.brute_force_top_k`` against faiss ``IndexFlatIP`` on the same data.

Data (numpy, seed 0): ``--candidates`` clustered candidates of dimension ``--dim`` (1,000 cluster
centres drawn from N(0, 1), each candidate a centre plus N(0, 0.3²) noise) and ``--queries``
queries drawn the same way; float32. Each method runs in its own child process so that its peak
memory (the child's peak resident size during the timed calls, reset after loading the data and
a warm-up call, minus its resident size then) is its own.
Each child times ``--repeats`` calls after one warm-up call and reports the median.

Agreement: for every query the two methods' score lists must agree to 1e-4 (relative), and their
id sets may differ only among candidates whose score ties the k-th score (exact ties make either
choice right).

    python benchmarks/topk_vs_faiss.py                 # 1,000 queries x 1,000,000 x 64, top 100
    python benchmarks/topk_vs_faiss.py --json          # one JSON line
    python benchmarks/topk_vs_faiss.py --candidates 100000 --repeats 2   # a quick look

faiss is an optional extra (``pip install faiss-cpu==1.15.1``); without it only our side runs.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import statistics
import sys
import time
from typing import Any

import numpy as np


def make_data(n: int, b: int, d: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(1000, d)).astype(np.float32)
    candidates = centres[rng.integers(0, 1000, n)] + 0.3 * rng.normal(size=(n, d)).astype(
        np.float32
    )
    queries = centres[rng.integers(0, 1000, b)] + 0.3 * rng.normal(size=(b, d)).astype(np.float32)
    return np.ascontiguousarray(candidates, np.float32), np.ascontiguousarray(queries, np.float32)


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def _reset_peak() -> None:
    """Reset the process's peak resident size (VmHWM) to its current size (Linux >= 4.0)."""
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")


def _child(method: str, args: dict[str, Any], out: Any) -> None:
    candidates, queries = make_data(args["candidates"], args["queries"], args["dim"])
    k = args["k"]
    if method == "torchrs_fn":
        import torch

        from torchrs_fn.index import brute_force_top_k

        c, q = torch.from_numpy(candidates), torch.from_numpy(queries)

        def run() -> tuple[np.ndarray, np.ndarray]:
            s, i = brute_force_top_k(q, c, k)
            return s.numpy(), i.numpy()

        threads = torch.get_num_threads()
    else:
        import faiss

        index = faiss.IndexFlatIP(candidates.shape[1])
        index.add(candidates)

        def run() -> tuple[np.ndarray, np.ndarray]:
            return index.search(queries, k)

        threads = faiss.omp_get_max_threads()
    scores, ids = run()  # warm-up
    del scores, ids
    base = _status_kib("VmRSS")
    _reset_peak()  # the data generation's temporaries peaked higher than any search
    times = []
    for _ in range(args["repeats"]):
        t = time.perf_counter()
        scores, ids = run()
        times.append(time.perf_counter() - t)
    peak = _status_kib("VmHWM")
    out.put(
        {
            "method": method,
            "seconds": statistics.median(times),
            "all_seconds": times,
            "peak_extra_mib": max(0, peak - base) / 1024,
            "threads": threads,
            "scores": scores,
            "ids": ids,
        }
    )


def run_method(method: str, args: dict[str, Any]) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(method, args, queue))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def agreement(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """Whether two top-k results agree up to exact ties at the k-th score."""
    sa, sb = a["scores"].astype(np.float64), b["scores"].astype(np.float64)
    score_ok = bool(np.allclose(sa, sb, rtol=1e-4, atol=1e-4))
    same_sets = 0
    tie_only = 0
    for ia, ib, row_a in zip(a["ids"], b["ids"], sa):
        diff = set(ia.tolist()) ^ set(ib.tolist())
        if not diff:
            same_sets += 1
        elif np.isclose(row_a[-1], row_a, rtol=1e-5, atol=1e-5).sum() > 1:
            tie_only += 1  # differences only where the k-th score is tied
    n = len(a["ids"])
    return {
        "scores_agree": score_ok,
        "identical_id_sets": same_sets / n,
        "differ_only_at_ties": tie_only / n,
        "agree": score_ok and same_sets + tie_only == n,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--candidates", type=int, default=1_000_000)
    p.add_argument("--queries", type=int, default=1000)
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--k", type=int, default=100)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    config = vars(args).copy()
    results = {"torchrs_fn": run_method("torchrs_fn", config)}
    try:
        import faiss  # noqa: F401

        results["faiss"] = run_method("faiss", config)
    except ImportError:
        print("faiss is not installed: only torchrs_fn ran", file=sys.stderr)
    flops = 2.0 * args.candidates * args.queries * args.dim
    line: dict[str, Any] = {
        "candidates": args.candidates,
        "queries": args.queries,
        "dim": args.dim,
        "k": args.k,
        "cpus": os.cpu_count(),
    }
    for name, r in results.items():
        line[f"{name}_seconds"] = r["seconds"]
        line[f"{name}_all_seconds"] = r["all_seconds"]
        line[f"{name}_gflops"] = flops / r["seconds"] / 1e9
        line[f"{name}_peak_extra_mib"] = r["peak_extra_mib"]
        line[f"{name}_threads"] = r["threads"]
    if "faiss" in results:
        line["speedup_vs_faiss"] = results["faiss"]["seconds"] / results["torchrs_fn"]["seconds"]
        line.update(agreement(results["torchrs_fn"], results["faiss"]))
    if args.json:
        print(json.dumps(line))
    else:
        for key, value in line.items():
            print(f"{key:28s} {value:.4g}" if isinstance(value, float) else f"{key:28s} {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
