"""FactorizedTopK evaluation with and without exclusions: ``metrics.factorized_top_k(exclude=)``.

What: the time of ``metrics.factorized_top_k(queries, candidates, positives, ks=(1, 5, 10, 50,
100))`` with ``exclude=`` (each query's already-seen rows left out of its ranking, as an
evaluation that excludes training items does) over the time of the same call without it.

Data (numpy, seed 0), three scales by default (``--scales``):

* ``movielens``: 20,000 queries x 1,682 candidates, D = 32 (MovieLens-100K's catalogue; its
  test split has about 20,000 ratings). Exclusions per query: a count drawn from a power law
  (Pareto, shape 0.9, minimum 20, capped at 737: mean about 107, median 43) like the rating
  counts of MovieLens-100K's users (at least 20, mean 106, at most 737), padded with -1 to the
  longest row (737);
* ``movielens_e100``: the same, but exactly 100 exclusions per query (no padding), to show what
  the padded width costs;
* ``large``: 10,000 queries x 100,000 candidates, D = 64, 100 exclusions per query.

At every scale the excluded rows of a query are distinct and drawn by popularity: a Zipf law
(weight of the i-th most popular item proportional to 1 / (i + 1)) over a random permutation of
the rows (so popular rows are not the low row numbers); the positive of each query is drawn from
the same law among the rows it does not exclude (a held-out rating is of an unseen item).
Embeddings: the clustered data of ``topk_vs_faiss.make_data`` (1,000 Gaussian centres + 0.3
noise).

A third call passes the same exclusions as ``(query_rows, candidate_rows)`` pairs (the form
``data.UserPositives.gather`` returns; built before timing, as the padded tensor is), with
``ratio_pairs`` and ``ratio_pairs_paired_median``; its results must equal the padded call's.

How: the calls alternate, ``--repeats`` times each after one warm-up of each; the figure is
the median, and ``ratio = with / without`` (medians); ``ratio_paired_median`` is the median of
each with-call over the without-call just before it, which a drift of the machine's speed
between calls does not move. If a ratio exceeds ``--profile-above`` (1.5, the
issue's bound), the call with exclusions is profiled once (``torch.profiler``, CPU) and the top
operators by self CPU time are printed to stderr and saved in the JSON line (``profile``).

Before each scale the script waits (at most ``--max-wait`` s) until the 1-minute load average is
at most ``--max-load`` and the CPUs were at most ``--max-busy`` busy over 5 s. It records the load
average at the start and end of each scale (it counts this benchmark's own two threads, so it ends
near 2) and the CPU seconds other programs used while it was timed (``others_cpu_seconds``,
``/proc/stat`` minus this process): more than ``--max-others`` of the CPUs makes it time that
scale again (``--retries`` times at most; ``attempts`` in the output).

    python benchmarks/topk_exclusions.py                  # all three scales, a short table
    python benchmarks/topk_exclusions.py --json           # one JSON line
    python benchmarks/topk_exclusions.py --scales movielens --repeats 9
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))
try:
    import torchrs_fn  # noqa: F401
except ModuleNotFoundError:  # Not installed: use the checkout this script belongs to.
    sys.path.insert(0, str(BENCH_DIR.parent))

from _sidebyside import (  # noqa: E402
    library_version,
    log,
    machine_busy_seconds,
    wait_for_quiet,
)
from topk_vs_faiss import make_data  # noqa: E402

from torchrs_fn import metrics  # noqa: E402

SCALES = {
    # name: queries, candidates, dim, exclusions ("powerlaw": MovieLens-like counts)
    "movielens": (20_000, 1_682, 32, "powerlaw"),
    "movielens_e100": (20_000, 1_682, 32, 100),
    "large": (10_000, 100_000, 64, 100),
}
KS = (1, 5, 10, 50, 100)


def popularity(n: int, rng: np.random.Generator) -> np.ndarray:
    """``[n]`` probabilities: Zipf (1 / rank) over a random permutation of the rows."""
    weight = 1.0 / np.arange(1, n + 1)
    p = np.empty(n)
    p[rng.permutation(n)] = weight / weight.sum()
    return p


def exclusion_counts(b: int, spec: int | str, n: int, rng: np.random.Generator) -> np.ndarray:
    if spec == "powerlaw":
        # Pareto of shape 0.9 (infinite mean uncapped), minimum 20, capped at 737: mean ~107,
        # median 43; MovieLens-100K's users rated at least 20, on average 106, at most 737.
        counts = (20 * (1 + rng.pareto(0.9, b))).astype(np.int64)
        return np.minimum(counts, min(737, n - 1))
    return np.full(b, int(spec), dtype=np.int64)


def draw_exclusions(counts: np.ndarray, p: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``[B, max(counts)]`` int64: ``counts[i]`` distinct rows per query drawn by popularity
    ``p`` (without replacement), padded with -1."""
    b, n = len(counts), len(p)
    width = int(counts.max())
    out = np.full((b, width), -1, dtype=np.int64)
    if b * n <= 50_000_000:
        # Gumbel top-k: the first counts[i] rows by log p + Gumbel noise are a draw without
        # replacement by p.
        for lo in range(0, b, 2048):
            hi = min(b, lo + 2048)
            keys = np.log(p)[None, :] + rng.gumbel(size=(hi - lo, n))
            order = np.argsort(-keys, axis=1)[:, :width]
            mask = np.arange(width)[None, :] < counts[lo:hi, None]
            out[lo:hi] = np.where(mask, order, -1)
        return out
    # Large catalogues: draw with replacement by inverse CDF, keep the first distinct ones.
    cdf = np.cumsum(p)
    for i, c in enumerate(counts):
        m = 4 * int(c)
        while True:
            draws = np.minimum(np.searchsorted(cdf, rng.random(m)), n - 1)
            _, first = np.unique(draws, return_index=True)
            if len(first) >= c:
                break
            m *= 2
        out[i, :c] = draws[np.sort(first)[:c]]
    return out


def draw_positives(exclude: np.ndarray, p: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``[B]``: one row per query drawn by popularity ``p`` among the rows it does not exclude
    (a held-out positive is not among the items a user already rated)."""
    b, n = exclude.shape[0], len(p)
    cdf = np.cumsum(p)
    positives = np.zeros(b, dtype=np.int64)
    todo = np.arange(b)
    for _ in range(1000):
        positives[todo] = np.minimum(np.searchsorted(cdf, rng.random(len(todo))), n - 1)
        todo = todo[(exclude[todo] == positives[todo, None]).any(axis=1)]
        if not len(todo):
            return positives
    for i in todo:  # rare: nearly every popular row excluded; the first row left
        positives[i] = np.setdiff1d(np.arange(n), exclude[i])[0]
    return positives


def make_case(name: str) -> dict[str, Any]:
    b, n, d, spec = SCALES[name]
    candidates, queries = make_data(n, b, d)
    rng = np.random.default_rng(0)
    p = popularity(n, rng)
    counts = exclusion_counts(b, spec, n, rng)
    exclude = draw_exclusions(counts, p, rng)
    positives = draw_positives(exclude, p, rng)
    padded = torch.from_numpy(exclude)
    rows, slots = (padded >= 0).nonzero(as_tuple=True)
    return {
        "queries": torch.from_numpy(queries),
        "candidates": torch.from_numpy(candidates),
        "positives": torch.from_numpy(positives.astype(np.int64)),
        "exclude": padded,
        # The same exclusions as (query row, candidate row) pairs, the form
        # data.UserPositives.gather returns (built before timing, as the padded form is).
        "exclude_pairs": (rows, padded[rows, slots]),
        "shape": {"queries": b, "candidates": n, "dim": d},
        "exclusions": {
            "width": int(exclude.shape[1]),
            "mean": float(counts.mean()),
            "min": int(counts.min()),
            "max": int(counts.max()),
            "positive_excluded_share": float((exclude == positives[:, None]).any(1).mean()),
        },
    }


def time_case(case: dict[str, Any], repeats: int) -> dict[str, Any]:
    q, c, pos, ex = case["queries"], case["candidates"], case["positives"], case["exclude"]

    def without() -> dict[str, torch.Tensor]:
        return metrics.factorized_top_k(q, c, pos, ks=KS)

    def with_exclusions() -> dict[str, torch.Tensor]:
        return metrics.factorized_top_k(q, c, pos, ks=KS, exclude=ex)

    def with_pairs() -> dict[str, torch.Tensor]:
        return metrics.factorized_top_k(q, c, pos, ks=KS, exclude=case["exclude_pairs"])

    plain, excl, paired = without(), with_exclusions(), with_pairs()  # warm-up
    for k in KS:
        assert torch.equal(excl[f"top_{k}"], paired[f"top_{k}"]), "pairs and padded disagree"
    times: dict[str, list[float]] = {"without": [], "with": [], "with_pairs": []}
    for _ in range(repeats):
        for label, fn in (
            ("without", without),
            ("with", with_exclusions),
            ("with_pairs", with_pairs),
        ):
            t = time.perf_counter()
            fn()
            times[label].append(time.perf_counter() - t)
    return {
        "without_seconds": statistics.median(times["without"]),
        "with_seconds": statistics.median(times["with"]),
        "without_all_seconds": times["without"],
        "with_all_seconds": times["with"],
        "with_pairs_seconds": statistics.median(times["with_pairs"]),
        "with_pairs_all_seconds": times["with_pairs"],
        "ratio": statistics.median(times["with"]) / statistics.median(times["without"]),
        "ratio_pairs": statistics.median(times["with_pairs"]) / statistics.median(times["without"]),
        "ratio_pairs_paired_median": statistics.median(
            w / wo for w, wo in zip(times["with_pairs"], times["without"], strict=True)
        ),
        # Each with-call's time over the without-call just before it: robust to the machine's
        # speed drifting between calls (the two alternate).
        "ratio_paired_median": statistics.median(
            w / wo for w, wo in zip(times["with"], times["without"], strict=True)
        ),
        "top_100_without": float(plain["top_100"].mean()),
        "top_100_with": float(excl["top_100"].mean()),
    }


def profile_case(case: dict[str, Any], rows: int = 12) -> list[dict[str, Any]]:
    from torch.profiler import ProfilerActivity, profile

    q, c, pos, ex = case["queries"], case["candidates"], case["positives"], case["exclude"]
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        metrics.factorized_top_k(q, c, pos, ks=KS, exclude=ex)
    log(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows))
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    return [
        {"op": e.key, "self_cpu_ms": e.self_cpu_time_total / 1e3, "calls": e.count}
        for e in events[:rows]
    ]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--scales", default="movielens,movielens_e100,large", help=f"of {', '.join(SCALES)}"
    )
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--profile-above", type=float, default=1.5)
    p.add_argument("--max-load", type=float, default=1.2)
    p.add_argument("--max-busy", type=float, default=0.5, help="fraction of all CPUs")
    p.add_argument("--max-wait", type=float, default=900.0)
    p.add_argument(
        "--max-others",
        type=float,
        default=0.05,
        help="time a scale again when other programs used more than this share of the CPUs",
    )
    p.add_argument("--retries", type=int, default=3, help="re-timings per scale at most")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    line: dict[str, Any] = {
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
        "library": library_version(("metrics/retrieval.py",)),
        "torch_threads": torch.get_num_threads(),
        "ks": list(KS),
        "repeats": args.repeats,
    }
    for name in [s.strip() for s in args.scales.split(",") if s.strip()]:
        log(f"{name}: making data")
        case = make_case(name)
        for attempt in range(args.retries + 1):
            load_start = wait_for_quiet(args.max_load, args.max_busy, args.max_wait, poll=20.0)[
                "load_average"
            ]
            log(f"{name}: timing (load average {load_start:.2f})")
            busy, cpu, wall = machine_busy_seconds(), time.process_time(), time.perf_counter()
            result = {
                **case["shape"],
                "exclusions": case["exclusions"],
                **time_case(case, args.repeats),
            }
            result["load"] = [load_start, os.getloadavg()[0]]
            result["attempts"] = attempt + 1
            if busy is None:
                break
            # CPU seconds other programs used meanwhile: more than a little makes it unfair.
            others = max(0.0, machine_busy_seconds() - busy - (time.process_time() - cpu))
            result["others_cpu_seconds"] = others
            share = others / ((time.perf_counter() - wall) * (os.cpu_count() or 1))
            if share <= args.max_others:
                break
            log(f"{name}: other programs took {share:.0%} of the CPUs meanwhile: timing again")
        if result["ratio"] > args.profile_above:
            log(f"{name}: ratio {result['ratio']:.2f} > {args.profile_above}: profiling")
            result["profile"] = profile_case(case)
        line[name] = result
    if args.json:
        print(json.dumps(line))
        return 0
    print(f"factorized_top_k, ks={KS}; {line['date']}; torch {line['torch']}, "
          f"{line['torch_threads']} threads")  # fmt: skip
    lib = line["library"]
    print(f"torchrs_fn: {lib['path']} (commit {lib.get('git_commit')}, uncommitted changes: "
          f"{lib.get('uncommitted_changes')}, retrieval.py sha1 {lib['files_sha1']})")  # fmt: skip
    print(f"{'scale':14s} {'B x N x D':>22s} {'excl mean/width':>16s} {'without s':>10s} "
          f"{'with s':>8s} {'ratio':>6s} {'paired':>6s} {'load':>11s} {'others s':>8s}")  # fmt: skip
    for name in SCALES:
        if name not in line:
            continue
        r = line[name]
        shape = f"{r['queries']:,} x {r['candidates']:,} x {r['dim']}"
        ex = f"{r['exclusions']['mean']:.0f}/{r['exclusions']['width']}"
        print(
            f"{name:14s} {shape:>22s} {ex:>16s} {r['without_seconds']:10.3f} "
            f"{r['with_seconds']:8.3f} {r['ratio']:6.2f} {r['ratio_paired_median']:6.2f} {r['load'][0]:5.2f}-{r['load'][1]:5.2f} "
            f"{r.get('others_cpu_seconds', float('nan')):8.1f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
