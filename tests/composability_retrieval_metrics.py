"""Composability cases of the retrieval metrics with exclusions (a part of
``composability_cases.CASES``).

The brute-force references live here (``ref_*``) and serve ``tests/test_metrics/
test_retrieval_metrics.py`` too. They compute the full ``[B, N]`` score matrix once and walk it
in Python: each query's candidate rows without its excluded ones, ``sorted`` by ``(-score, row)``,
then the textbook formulas with plain ``math``.
"""

from __future__ import annotations

import math

import composability_cases as cc
import torch

from torchrs_fn.metrics.retrieval import (
    RetrievalMetricsState,
    factorized_top_k,
    factorized_top_k_ids,
    retrieval_metrics,
    retrieval_metrics_init,
    retrieval_metrics_merge,
    retrieval_metrics_update,
)

_F64 = torch.float64
_AT_K = ("recall", "precision", "hit_rate", "ndcg", "map")


# --- references ----------------------------------------------------------------------------------


def _rows(tensor, b: int) -> set[int]:
    """Query b's rows of a padded ``[B, E]`` tensor (negative entries are padding)."""
    return set() if tensor is None else {int(x) for x in tensor[b] if int(x) >= 0}


def ref_ranking(scores: list[list[float]], b: int, excluded: set[int]) -> list[int]:
    """Query b's candidate rows, best first, ties lower row first, excluded rows left out."""
    rows = [j for j in range(len(scores[b])) if j not in excluded]
    return sorted(rows, key=lambda j: (-scores[b][j], j))


def metric_names(ks) -> list[str]:
    """The per-query metrics' names, ``weight`` last."""
    return [*(f"{m}@{k}" for k in ks for m in _AT_K), "mrr", "weight"]


def ref_retrieval_lists(q, c, relevant, ks, exclude=None) -> dict[str, list]:
    """``retrieval_metrics`` as Python lists: ``{name: [B] floats, "top_rows": [B][max k]}``."""
    scores = (q.detach() @ c.detach().T).tolist()
    kmax = max(ks)
    out: dict[str, list] = {name: [] for name in metric_names(ks)}
    out["top_rows"] = []
    for b in range(q.shape[0]):
        order = ref_ranking(scores, b, _rows(exclude, b))
        rel = _rows(relevant, b)
        for k in ks:
            hits = [1 if j in rel else 0 for j in order[:k]]
            found = sum(hits)
            out[f"recall@{k}"].append(found / len(rel) if rel else 0.0)
            out[f"precision@{k}"].append(found / k)
            out[f"hit_rate@{k}"].append(1.0 if found else 0.0)
            dcg = sum(h / math.log2(i + 2) for i, h in enumerate(hits))
            idcg = sum(1 / math.log2(i + 2) for i in range(min(len(rel), k)))
            out[f"ndcg@{k}"].append(dcg / idcg if idcg else 0.0)
            so_far, ap = 0, 0.0
            for i, h in enumerate(hits):
                if h:
                    so_far += 1
                    ap += so_far / (i + 1)
            out[f"map@{k}"].append(ap / min(len(rel), k) if rel else 0.0)
        firsts = [i for i, j in enumerate(order) if j in rel]
        out["mrr"].append(1 / (firsts[0] + 1) if firsts else 0.0)
        out["weight"].append(1.0 if rel else 0.0)
        top = order[:kmax]
        out["top_rows"].append(top + [-1] * (kmax - len(top)))
    return out


def ref_retrieval_metrics(q, c, relevant, ks, exclude=None) -> dict[str, torch.Tensor]:
    lists = ref_retrieval_lists(q, c, relevant, ks, exclude)
    out = {name: torch.tensor(v, dtype=q.dtype) for name, v in lists.items() if name != "top_rows"}
    out["top_rows"] = torch.tensor(lists["top_rows"], dtype=torch.int64).reshape(-1, max(ks))
    return out


def ref_ranks(q, c, positives, exclude=None) -> list[int]:
    """TFRS's rule: rows (not excluded, not the positive) scoring strictly higher than the
    positive; N when the positive itself is excluded."""
    scores = (q.detach() @ c.detach().T).tolist()
    n = c.shape[0]
    out = []
    for b in range(q.shape[0]):
        p, excluded = int(positives[b]), _rows(exclude, b)
        if p in excluded:
            out.append(n)
            continue
        own = scores[b][p]
        out.append(sum(1 for j in range(n) if j not in excluded and j != p and scores[b][j] > own))
    return out


def ref_top_k_ids(top_ids, true_ids, ks) -> dict[str, torch.Tensor]:
    dtype = torch.get_default_dtype()
    return {
        f"top_{k}": torch.tensor(
            [
                1.0 if int(true_ids[b]) in top_ids[b, :k].tolist() else 0.0
                for b in range(len(true_ids))
            ],
            dtype=dtype,
        )
        for k in ks
    }


def ref_update(state: RetrievalMetricsState, q, c, relevant, exclude=None) -> RetrievalMetricsState:
    """The state plus this batch: per-query values summed over the queries with a relevant row,
    coverage vectors OR the rows seen in each top k."""
    ks = [int(name.split("@")[1]) for name in state.retrieved]
    lists = ref_retrieval_lists(q, c, relevant, ks, exclude)
    weights = lists["weight"]
    sums = {
        name: total + sum(v * w for v, w in zip(lists[name], weights))
        for name, total in state.sums.items()
    }
    retrieved = {}
    for k in ks:
        seen = state.retrieved[f"coverage@{k}"].clone()
        for top in lists["top_rows"]:
            for row in top[:k]:
                if row >= 0:
                    seen[row] = True
        retrieved[f"coverage@{k}"] = seen
    return RetrievalMetricsState(sums, state.count + sum(weights), retrieved)


# --- inputs ---------------------------------------------------------------------------------------

_B, _N, _D = 7, 11, 3
_KS = (1, 3)


def retrieval_inputs(seed: int) -> tuple:
    """(queries [7, 3], candidates [11, 3], relevant [7, 3], exclude [7, 2]): integer-valued
    float64 embeddings (many exact ties), padding, a query without relevant rows, relevant rows
    that are excluded."""
    g = cc._gen(800 + seed)
    q = torch.randint(-2, 3, (_B, _D), generator=g).to(_F64)
    c = torch.randint(-2, 3, (_N, _D), generator=g).to(_F64)
    relevant = torch.randint(-2, _N, (_B, 3), generator=g).clamp(min=-1)
    relevant[1] = -1
    exclude = torch.randint(-2, _N, (_B, 2), generator=g).clamp(min=-1)
    exclude[2, 0] = relevant[2, 0].clamp(min=0)
    return q, c, relevant, exclude


def _retrieval_metrics(q, c, relevant, exclude):
    return retrieval_metrics(q, c, relevant, ks=_KS, exclude=exclude)


def _retrieval_metrics_reference(q, c, relevant, exclude):
    return ref_retrieval_metrics(q, c, relevant, _KS, exclude)


def _top_k_inputs(seed: int) -> tuple:
    """(queries, candidates, positives [7], exclude [7, 2]); query 3's positive is excluded."""
    q, c, _, exclude = retrieval_inputs(seed)
    positives = torch.randint(0, _N, (_B,), generator=cc._gen(850 + seed))
    exclude[3, 1] = positives[3]
    return q, c, positives, exclude


def _top_k(q, c, positives, exclude):
    return factorized_top_k(q, c, positives, ks=(1, 3, 5), exclude=exclude)


def _top_k_reference(q, c, positives, exclude):
    ranks = ref_ranks(q, c, positives, exclude)
    return {
        f"top_{k}": torch.tensor([1.0 if r < k else 0.0 for r in ranks], dtype=q.dtype)
        for k in (1, 3, 5)
    }


def _ids_inputs(seed: int) -> tuple:
    g = cc._gen(870 + seed)
    return torch.randint(-1, 9, (9, 5), generator=g), torch.randint(0, 9, (9,), generator=g)


def _ids(top_ids, true_ids):
    return factorized_top_k_ids(top_ids, true_ids, ks=(1, 3, 5))


def _state(seed: int) -> RetrievalMetricsState:
    """A state partway through: random sums and count, random coverage."""
    g = cc._gen(890 + seed)
    init = retrieval_metrics_init(_KS, _N)
    sums = {name: torch.rand((), generator=g, dtype=_F64) * 3 for name in init.sums}
    retrieved = {name: torch.rand(_N, generator=g) < 0.3 for name in init.retrieved}
    return RetrievalMetricsState(sums, torch.tensor(4.0, dtype=_F64), retrieved)


def _update_inputs(seed: int) -> tuple:
    """(sums, count, retrieved, queries, candidates, relevant, exclude): the state's fields apart,
    so that grad takes the float ones and leaves the bool coverage vectors."""
    return (*_state(seed), *retrieval_inputs(seed))


def _update(sums, count, retrieved, q, c, relevant, exclude):
    return retrieval_metrics_update(
        RetrievalMetricsState(sums, count, retrieved), q, c, relevant, exclude
    )


def _update_reference(sums, count, retrieved, q, c, relevant, exclude):
    return ref_update(RetrievalMetricsState(sums, count, retrieved), q, c, relevant, exclude)


def _merge_inputs(seed: int) -> tuple:
    return (*_state(seed), *_state(seed + 20))


def _merge(sums_a, count_a, retrieved_a, sums_b, count_b, retrieved_b):
    return retrieval_metrics_merge(
        RetrievalMetricsState(sums_a, count_a, retrieved_a),
        RetrievalMetricsState(sums_b, count_b, retrieved_b),
    )


def _merge_reference(sums_a, count_a, retrieved_a, sums_b, count_b, retrieved_b):
    return RetrievalMetricsState(
        {name: sums_a[name] + sums_b[name] for name in sums_a},
        count_a + count_b,
        {
            name: torch.tensor(
                [bool(x) or bool(y) for x, y in zip(retrieved_a[name], retrieved_b[name])]
            )
            for name in retrieved_a
        },
    )


_ZERO = "exact: 0 in the embeddings (piecewise constant)"
_KS_STATIC = "ks are Python ints (they name the outputs)"
_NO_HPARAMS = "no hyperparameters"
_INT_IN = "integer inputs (ids)"

CASES: list = [
    cc.Case(
        name="metrics.factorized_top_k",
        variant="ks=(1, 3, 5), exclusions (one excluded positive), tied scores",
        kind="metric",
        make_inputs=_top_k_inputs,
        fn=_top_k,
        reference=_top_k_reference,
        grad_argnums=(0, 1),
        nonzero_grad=False,
        transforms=cc.statuses(
            grad=cc.Checked(_ZERO),
            vmap_hparams=cc.NotApplicable(_KS_STATIC),
            vmap_grad=cc.Checked(_ZERO),
            compile_vmap_grad=cc.Checked(_ZERO),
        ),
    ),
    cc.Case(
        name="metrics.factorized_top_k_ids",
        variant="ks=(1, 3, 5), padded retrieved ids",
        kind="metric",
        make_inputs=_ids_inputs,
        fn=_ids,
        reference=lambda top_ids, true_ids: ref_top_k_ids(top_ids, true_ids, (1, 3, 5)),
        transforms=cc.statuses(
            grad=cc.NotApplicable(_INT_IN),
            vmap_hparams=cc.NotApplicable(_KS_STATIC),
            vmap_grad=cc.NotApplicable(_INT_IN),
            compile_vmap_grad=cc.NotApplicable(_INT_IN),
        ),
    ),
    cc.Case(
        name="metrics.retrieval_metrics",
        variant="ks=(1, 3), exclusions, tied scores, a query without relevant rows",
        kind="metric",
        make_inputs=retrieval_inputs,
        fn=_retrieval_metrics,
        reference=_retrieval_metrics_reference,
        grad_argnums=(0, 1),
        nonzero_grad=False,
        transforms=cc.statuses(
            grad=cc.Checked(_ZERO),
            vmap_hparams=cc.NotApplicable(_KS_STATIC),
            vmap_grad=cc.Checked(_ZERO),
            compile_vmap_grad=cc.Checked(_ZERO),
        ),
    ),
    cc.Case(
        name="metrics.retrieval_metrics_update",
        variant="a partial state (fields passed apart) and a batch with exclusions",
        kind="metric",
        make_inputs=_update_inputs,
        fn=_update,
        reference=_update_reference,
        grad_argnums=(0, 1, 3, 4),
        nonzero_grad=False,  # 1 in the sums and count, exactly 0 in the embeddings
        transforms=cc.statuses(vmap_hparams=cc.NotApplicable(_NO_HPARAMS)),
    ),
    cc.Case(
        name="metrics.retrieval_metrics_merge",
        variant="two partial states (fields passed apart)",
        kind="metric",
        make_inputs=_merge_inputs,
        fn=_merge,
        reference=_merge_reference,
        grad_argnums=(0, 1, 3, 4),
        transforms=cc.statuses(vmap_hparams=cc.NotApplicable(_NO_HPARAMS)),
    ),
]

NOT_FUNCTIONS_OF_TENSORS: dict[str, str] = {
    "metrics.RetrievalMetricsState": "a NamedTuple type (the retrieval metrics' accumulator state)",
    "metrics.retrieval_metrics_init": "a constructor: ks and N in, zeros out",
    "metrics.retrieval_metrics_result": "host-side reader: returns Python floats (one sync, by design)",
}
