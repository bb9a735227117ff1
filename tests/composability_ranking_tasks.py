"""Composability cases of the ranking task and of task composition (a part of
``composability_cases.CASES``).

References are written from Keras's definitions (``MeanSquaredError`` and ``BinaryCrossentropy``
with the default ``SUM_OVER_BATCH_SIZE`` reduction), one example at a time, and from TFRS's
multitask tutorial (``w_rating * rating_loss + w_retrieval * retrieval_loss``), not from
``torchrs_fn.tasks``.

This module needs torch and torchrs_fn only (not pytest), so the docs build can import it.
"""

from __future__ import annotations

import composability_cases as cc
import torch

from torchrs_fn.tasks import MultiTask, Ranking, Retrieval

_F64 = torch.float64
_B = 7


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(400 + seed)


def ref_keras_loss(kind: str, labels, predictions, weights=None, from_logits=False):
    """Keras ``SUM_OVER_BATCH_SIZE``: ``sum_i w_i loss_i / B``, one example at a time."""
    total = torch.zeros((), dtype=_F64)
    n = predictions.shape[0]
    for i in range(n):
        p, y = predictions[i], labels[i]
        if kind == "mean_squared_error":
            loss = (y - p) * (y - p)
        elif from_logits:
            # -[y log sigmoid(p) + (1 - y) log(1 - sigmoid(p))], written with log1p(exp(-|p|)).
            soft = torch.log1p(torch.exp(-p.abs()))
            loss = torch.clamp(p, min=0) - p * y + soft
        else:
            eps = 1e-7
            q = torch.clamp(p, eps, 1 - eps)
            loss = -(y * torch.log(q + eps) + (1 - y) * torch.log(1 - q + eps))
        total = total + (loss if weights is None else loss * weights[i])
    return total / n


def _ratings(seed: int) -> tuple:
    g = _gen(seed)
    predictions = torch.randn(_B, generator=g, dtype=_F64) * 2 + 3
    labels = torch.randint(1, 6, (_B,), generator=g).to(_F64) - 0.5  # includes a negative: counts
    labels[0] = -1.0
    weights = torch.rand(_B, generator=g, dtype=_F64) + 0.25
    return labels, predictions, weights


def _clicks(seed: int) -> tuple:
    g = _gen(50 + seed)
    logits = torch.randn(_B, generator=g, dtype=_F64) * 2
    labels = (torch.rand(_B, generator=g, dtype=_F64) < 0.4).to(_F64)
    weights = torch.rand(_B, generator=g, dtype=_F64) + 0.25
    return labels, logits, weights


def _probabilities(seed: int) -> tuple:
    labels, logits, weights = _clicks(seed)
    return labels, torch.sigmoid(logits), weights


_MSE = Ranking(loss="mean_squared_error")
_BCE_LOGITS = Ranking(loss="binary_crossentropy", from_logits=True)
_BCE = Ranking()


# Multitask: a rating task and a retrieval task over the same 6 pairs, the weights swept.
def _multitask_inputs(seed: int) -> tuple:
    g = _gen(100 + seed)
    q = torch.randn(6, 3, generator=g, dtype=_F64)
    c = torch.randn(6, 3, generator=g, dtype=_F64)
    labels = torch.randint(1, 6, (6,), generator=g).to(_F64)
    predictions = torch.randn(6, generator=g, dtype=_F64) + 3
    weights = torch.tensor([1.0, 0.5], dtype=_F64)
    return q, c, labels, predictions, weights


_MULTITASK = MultiTask({"rating": Ranking(loss="mean_squared_error"), "retrieval": Retrieval()})


def _multitask(q, c, labels, predictions, weights):
    hparams = {"task_weight/rating": weights[0], "task_weight/retrieval": weights[1]}
    total, logs = _MULTITASK.loss(
        {"rating": (labels, predictions), "retrieval": (q, c)}, hparams=hparams
    )
    return total, logs["rating_loss"], logs["retrieval_loss"]


def _multitask_reference(q, c, labels, predictions, weights):
    rating = ref_keras_loss("mean_squared_error", labels, predictions)
    retrieval = cc.ref_row_losses(q, c).sum()
    return weights[0] * rating + weights[1] * retrieval, rating, retrieval


def _task_weights() -> tuple:
    return (torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], dtype=_F64),)


_NO_HPARAMS = cc.statuses(
    vmap_hparams=cc.NotApplicable("no float hyperparameter: the loss is chosen by name")
)

CASES: list = [
    cc.Case(
        name="tasks.Ranking",
        variant='loss="mean_squared_error", sample_weight (Keras SUM_OVER_BATCH_SIZE)',
        kind="loss",
        make_inputs=_ratings,
        fn=lambda y, p, w: _MSE.loss(y, p, w),
        reference=lambda y, p, w: ref_keras_loss("mean_squared_error", y, p, w),
        grad_argnums=(0, 1, 2),
        transforms=_NO_HPARAMS,
    ),
    cc.Case(
        name="tasks.Ranking",
        variant='loss="binary_crossentropy", from_logits=True, sample_weight',
        kind="loss",
        make_inputs=_clicks,
        fn=lambda y, p, w: _BCE_LOGITS.loss(y, p, w),
        reference=lambda y, p, w: ref_keras_loss("binary_crossentropy", y, p, w, True),
        grad_argnums=(0, 1, 2),
        transforms=_NO_HPARAMS,
    ),
    cc.Case(
        name="tasks.Ranking",
        variant="default: binary cross-entropy on probabilities (Keras clipping)",
        kind="loss",
        make_inputs=_probabilities,
        fn=lambda y, p, w: _BCE.loss(y, p, w),
        reference=lambda y, p, w: ref_keras_loss("binary_crossentropy", y, p, w),
        grad_argnums=(0, 1, 2),
        transforms=_NO_HPARAMS,
    ),
    cc.Case(
        name="tasks.MultiTask",
        variant="rating (MSE) + retrieval, weights swept as state hyperparameters",
        kind="loss",
        make_inputs=_multitask_inputs,
        fn=_multitask,
        reference=_multitask_reference,
        grad_argnums=(0, 1, 2, 3, 4),
        hparam_argnums=(4,),
        hparam_values=_task_weights,
        rtol=1e-7,
    ),
]

NOT_FUNCTIONS_OF_TENSORS: dict[str, str] = {
    "tasks.Task": "a Protocol type (the interface Retrieval, Ranking and MultiTask implement)",
    "tasks.WEIGHT_PREFIX": "a constant (the hyperparameter name prefix of task weights)",
}
