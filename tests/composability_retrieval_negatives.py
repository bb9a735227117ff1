"""Composability cases of negatives beyond the batch (a part of ``composability_cases.CASES``):
``tasks.mixed_sampling_probability`` and ``tasks.Retrieval`` with an ``extra_candidates`` hook.

References: the mixture probability one candidate at a time, and the logQ-corrected softmax of
``composability_cases.ref_row_losses`` over the concatenated candidates (never the library).

This module needs torch and torchrs_fn only (not pytest), so the docs build can import it.
"""

from __future__ import annotations

import composability_cases as cc
import torch

from torchrs_fn.tasks import Retrieval, mixed_sampling_probability

_F64 = torch.float64
_V, _B, _M, _D = 12, 5, 7, 3


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(900 + seed)


def _mixture_inputs(seed: int) -> tuple:
    g = _gen(seed)
    ids = torch.randint(0, _V, (_B + _M,), generator=g)
    p_batch = torch.rand(_V, generator=g, dtype=_F64) + 0.1
    p_sample = torch.rand(_V, generator=g, dtype=_F64) + 0.1
    return ids, p_batch / p_batch.sum(), p_sample / p_sample.sum()


def _mixture(ids, p_batch, p_sample):
    return mixed_sampling_probability(
        ids, num_in_batch=_B, in_batch_probabilities=p_batch, sampled_probabilities=p_sample
    )


def _mixture_reference(ids, p_batch, p_sample):
    n = ids.shape[0]
    return torch.stack([(_B * p_batch[i] + (n - _B) * p_sample[i]) / n for i in ids])


def _hook_inputs(seed: int) -> tuple:
    g = _gen(50 + seed)
    q = torch.randn(_B, _D, generator=g, dtype=_F64)
    c = torch.randn(_B, _D, generator=g, dtype=_F64)
    other = torch.randn(_M, _D, generator=g, dtype=_F64)
    p = torch.rand(_B + _M, generator=g, dtype=_F64) * 0.5 + 0.1
    ids = torch.randint(0, 6, (_B + _M,), generator=g)
    return q, c, other, p, ids


def _hooked(q, c, other, p, ids):
    def append(emb, prob, cand_ids):
        return torch.cat([emb, other]), p, ids

    task = Retrieval(remove_accidental_hits=True, extra_candidates=append)
    return task(q, c, candidate_sampling_probability=p[:_B], candidate_ids=ids[:_B])


def _hooked_reference(q, c, other, p, ids):
    return cc.ref_row_losses(q, torch.cat([c, other]), None, None, p, ids).sum()


_NO_HPARAMS = "no hyperparameters"
_ZERO = "gradient exactly 0 (a count)"


def _batch_metric_inputs(seed: int) -> tuple:
    g = _gen(80 + seed)
    q = torch.randint(-2, 3, (_B, _D), generator=g).to(_F64)  # integer scores: exact ties
    c = torch.randint(-2, 3, (_B + 3, _D), generator=g).to(_F64)
    t = torch.tensor(0.5, dtype=_F64)
    p = torch.rand(_B + 3, generator=g, dtype=_F64) * 0.5 + 0.25
    ids = torch.randint(0, 4, (_B + 3,), generator=g)
    return q, c, t, p, ids


_BATCH_TASK = Retrieval(remove_accidental_hits=True)


def _batch_metrics(q, c, t, p, ids):
    return _BATCH_TASK.batch_metrics(
        q, c, ks=(1, 3), candidate_sampling_probability=p, candidate_ids=ids, temperature=t
    )


def _batch_metrics_reference(q, c, t, p, ids):
    out = {"batch_top_1": [], "batch_top_3": []}
    for i in range(q.shape[0]):
        logits = [(q[i] @ c[j]) / t - torch.log(p[j]) for j in range(c.shape[0])]
        higher = sum(
            1
            for j in range(c.shape[0])
            if not (j != i and int(ids[j]) == int(ids[i])) and bool(logits[j] > logits[i])
        )
        out["batch_top_1"].append(float(higher < 1))
        out["batch_top_3"].append(float(higher < 3))
    return {k: torch.tensor(v, dtype=_F64) for k, v in out.items()}


def _temperatures() -> tuple:
    return (torch.tensor([0.5, 1.0, 2.0], dtype=_F64),)


CASES = [
    cc.Case(
        name="tasks.mixed_sampling_probability",
        variant="in-batch popularity + corpus sampler",
        kind="loss",
        make_inputs=_mixture_inputs,
        fn=_mixture,
        reference=_mixture_reference,
        grad_argnums=(1, 2),
        transforms=cc.statuses(vmap_hparams=cc.NotApplicable(_NO_HPARAMS)),
    ),
    cc.Case(
        name="tasks.Retrieval",
        variant="extra_candidates hook (another device's rows), logQ, accidental hits",
        kind="loss",
        make_inputs=_hook_inputs,
        fn=_hooked,
        reference=_hooked_reference,
        grad_argnums=(0, 1, 2, 3),
        transforms=cc.statuses(vmap_hparams=cc.NotApplicable(_NO_HPARAMS)),
    ),
]

CASES.append(
    cc.Case(
        name="tasks.Retrieval",
        variant="batch_metrics: in-batch top-k, logQ, accidental hits, temperature, ties",
        kind="metric",
        make_inputs=_batch_metric_inputs,
        fn=_batch_metrics,
        reference=_batch_metrics_reference,
        grad_argnums=(0, 1, 2, 3),
        hparam_argnums=(2,),
        hparam_values=_temperatures,
        nonzero_grad=False,
        transforms=cc.statuses(
            grad=cc.Checked(_ZERO),
            vmap_grad=cc.Checked(_ZERO),
            compile_vmap_grad=cc.Checked(_ZERO),
        ),
    )
)

NOT_FUNCTIONS_OF_TENSORS: dict[str, str] = {}
