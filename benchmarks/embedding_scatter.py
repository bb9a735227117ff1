"""The backward of embedding lookups: Inductor's compiled scatter against ATen's eager kernels.

What: for one batch, the gradient of every table of a model's lookups, ``grad[table] =
scatter-add of the looked-up rows' gradients`` (``aten.embedding_dense_backward``), computed

* as ``torch.compile`` compiles it (``inductor``: one atomic add per float, since the threads
  may hit the same row; what a compiled train step runs);
* eagerly with ``scatter_add_``, ``index_add_``, ``index_put_(accumulate=True)`` and
  ``embedding_dense_backward`` (no atomics);
* and the whole lookup compiled, forward and backward, with the tables' outputs concatenated
  as a model concatenates them: through ``F.embedding`` (``inductor_lookup_F.embedding``) and
  through ``layers.embedding_lookup`` (``inductor_lookup_embedding_lookup``), whose gather
  hands its gradient to ATen's ``scatter_add``.

Every variant is checked against ``index_add_`` (to 1e-3, the float32 sums of one batch in
another order). Shapes (``--model``):

* ``dlrm``: the 26 tables of ``../shared/bench/synth_criteo.py`` (seed 0, 230,000 rows in all),
  its ids for one batch of ``--batch-size`` (8192), 16 columns;
* ``dcn``: six small tables like the DCN tutorial's (2 to 1,683 rows), uniform ids, 32 columns.

Prints one JSON line: the median and minimum milliseconds of ``--repeats`` calls per variant.

    python benchmarks/embedding_scatter.py --model dlrm
    python benchmarks/embedding_scatter.py --model dcn
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

from torchrs_fn.layers import embedding_lookup

SHARED_BENCH = Path(__file__).resolve().parents[2] / "shared" / "bench"
DCN_TABLES = [1683, 944, 2, 795, 22, 8]  # movie, user, gender, zip code, occupation, age


def tables(model: str, batch_size: int) -> tuple[list[int], list[torch.Tensor], int]:
    """``(rows per table, ids [B] per table, columns)``."""
    if model == "dlrm":
        sys.path.insert(0, str(SHARED_BENCH))
        import synth_criteo

        data = synth_criteo.make_data(batch_size, seed=0)
        ids = torch.from_numpy(data["sparse"])
        return data["vocab_sizes"], [ids[:, i].contiguous() for i in range(ids.shape[1])], 16
    g = torch.Generator().manual_seed(0)
    return DCN_TABLES, [torch.randint(0, s, (batch_size,), generator=g) for s in DCN_TABLES], 32


def time_ms(fn: Callable[[], object], repeats: int) -> dict[str, float]:
    fn()  # warm-up (the compile, for the compiled variant)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return {"median_ms": statistics.median(times), "min_ms": min(times)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", choices=("dlrm", "dcn"), default="dlrm")
    p.add_argument("--batch-size", type=int, default=8192)
    p.add_argument("--repeats", type=int, default=15)
    args = p.parse_args(argv)
    sizes, ids, dim = tables(args.model, args.batch_size)
    g = torch.Generator().manual_seed(1)
    grads = [torch.randn(args.batch_size, dim, generator=g) for _ in sizes]

    def dense_backward(gs: list[torch.Tensor], idl: list[torch.Tensor]) -> list[torch.Tensor]:
        return [
            torch.ops.aten.embedding_dense_backward(x, i, s, -1, False)
            for s, i, x in zip(sizes, idl, gs)
        ]

    compiled = torch.compile(dense_backward)
    variants: dict[str, Callable[[], list[torch.Tensor]]] = {
        "inductor": lambda: compiled(grads, ids),
        "scatter_add_": lambda: [
            torch.zeros(s, dim).scatter_add_(0, i[:, None].expand(-1, dim), x)
            for s, i, x in zip(sizes, ids, grads)
        ],
        "index_add_": lambda: [
            torch.zeros(s, dim).index_add_(0, i, x) for s, i, x in zip(sizes, ids, grads)
        ],
        "index_put_accumulate": lambda: [
            torch.zeros(s, dim).index_put_((i,), x, accumulate=True)
            for s, i, x in zip(sizes, ids, grads)
        ],
        "embedding_dense_backward_eager": lambda: dense_backward(grads, ids),
    }
    # The whole lookup, forward and backward, as a compiled train step runs it: the tables'
    # outputs concatenated (so each gradient arrives as a strided slice), against a cotangent.
    cotangent = torch.cat(grads, dim=-1)
    tables_ = [torch.zeros(s, dim) for s in sizes]

    def lookups(lookup: Callable) -> Callable[[], list[torch.Tensor]]:
        def loss(ws: list[torch.Tensor]) -> torch.Tensor:
            out = torch.cat([lookup(w, i) for w, i in zip(ws, ids)], dim=-1)
            return (out * cotangent).sum()

        step = torch.compile(torch.func.grad(loss))
        return lambda: step(tables_)

    variants["inductor_lookup_F.embedding"] = lookups(lambda w, i: F.embedding(i, w))
    variants["inductor_lookup_embedding_lookup"] = lookups(embedding_lookup)
    reference = variants["index_add_"]()
    out: dict[str, object] = {
        "model": args.model,
        "batch_size": args.batch_size,
        "tables": len(sizes),
        "rows": sum(sizes),
        "columns": dim,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }
    for name, fn in variants.items():
        error = max(float((a - b).abs().max()) for a, b in zip(fn(), reference))
        if error > 1e-3:
            raise AssertionError(f"{name} differs from index_add_ by {error}")
        out[name] = time_ms(fn, args.repeats)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
