"""The composability matrix's single list: every public loss, metric and step, once.

Each ``Case`` names a public function (``"tasks.retrieval_loss"``), how to build small float64
inputs from a seed, the function under test, an independent reference (plain torch ops or
brute-force loops, never the library function) and, for each transform of ``TRANSFORMS``, whether
it is checked or why it is not. ``tests/test_composability.py`` runs every case under every
transform; the docs page ``docs/composability.md`` shows the same list as a table (built by
``docs/hooks/composability_table.py``). A public name of ``torchrs_fn.tasks``, ``.metrics`` or
``.train`` that is neither here nor in ``NOT_FUNCTIONS_OF_TENSORS`` fails the test suite.

This module needs torch and torchrs_fn only (not pytest), so the docs build can import it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

import torchrs_fn
from torchrs_fn import optim, train
from torchrs_fn.metrics import (
    candidate_rows,
    factorized_top_k,
    mean_merge,
    mean_update,
    positive_ranks,
)
from torchrs_fn.metrics.aggregate import MeanState
from torchrs_fn.optim.transforms import AdagradState
from torchrs_fn.tasks import Retrieval, retrieval_loss, retrieval_scores

# The transforms, in the order of the docs table, with their column headings.
TRANSFORMS: dict[str, str] = {
    "grad": "grad",
    "vmap_inputs": "vmap (inputs)",
    "vmap_hparams": "vmap (hyperparameters)",
    "vmap_grad": "vmap of grad",
    "compile": "compile",
    "compile_vmap_grad": "compile of vmap of grad",
}


# --- what a case says about one transform -----------------------------------------------------


@dataclass(frozen=True)
class Checked:
    """The transform is checked against the reference; ``note`` qualifies the result."""

    note: str = ""


@dataclass(frozen=True)
class NotApplicable:
    """The transform does not apply (e.g. ``grad`` of an integer output)."""

    reason: str


@dataclass(frozen=True)
class Raises:
    """The transform is refused with a clear error: the test asserts ``error`` matching ``match``."""

    reason: str
    error: type[BaseException]
    match: str


@dataclass(frozen=True)
class KnownBug:
    """The check fails today with ``error`` matching ``match`` (a strict expected failure).

    When the bug is fixed the check passes and the test fails until this entry becomes ``Checked``
    (or ``Raises``, if the fix is a clear error).
    """

    reason: str
    error: type[BaseException]
    match: str


Status = Checked | NotApplicable | Raises | KnownBug
CHECKED = Checked()


def statuses(**given: Status) -> dict[str, Status]:
    """One status per transform: ``CHECKED`` unless given."""
    unknown = set(given) - set(TRANSFORMS)
    if unknown:
        raise ValueError(
            f"unknown transforms {sorted(unknown)}; expected some of {list(TRANSFORMS)}"
        )
    return {t: given.get(t, CHECKED) for t in TRANSFORMS}


@dataclass(frozen=True)
class Case:
    """One public function under every transform.

    Attributes:
        name: the public dotted name, e.g. ``"tasks.retrieval_loss"``.
        variant: what this case exercises (several cases may share a name).
        kind: ``"loss"``, ``"metric"`` or ``"step"``.
        make_inputs: ``seed -> args`` (a tuple of tensors or pytrees of tensors, float64).
        fn: the function under test, ``fn(*args)``.
        reference: an independent implementation, ``reference(*args)``, same output structure.
        grad_argnums: the arguments ``grad`` differentiates (every floating-point one).
        hparam_argnums: the hyperparameter arguments ``vmap (hyperparameters)`` batches; the
            other transforms keep them at ``make_inputs(0)``'s values.
        hparam_values: ``() -> tuple`` of stacked values ``[K, ...]``, one per hparam argnum.
        transforms: a status for each name of ``TRANSFORMS``.
        grad_outputs: picks the outputs ``grad`` differentiates (default: all float outputs).
        nonzero_grad: the reference gradient must be nonzero (guards against vacuous checks).
        rtol, atol: the tolerance against the reference.
    """

    name: str
    variant: str
    kind: str
    make_inputs: Callable[[int], tuple]
    fn: Callable[..., Any]
    reference: Callable[..., Any]
    grad_argnums: tuple[int, ...] = ()
    hparam_argnums: tuple[int, ...] = ()
    hparam_values: Callable[[], tuple] | None = None
    transforms: dict[str, Status] = field(default_factory=statuses)
    grad_outputs: Callable[[Any], Any] = lambda out: out
    nonzero_grad: bool = True
    rtol: float = 1e-8
    atol: float = 1e-10

    @property
    def id(self) -> str:
        return f"{self.name}[{self.variant}]"


# --- independent references -------------------------------------------------------------------

_F64 = torch.float64
# TFRS masks accidental hits by adding float32.min / 100, a float32 constant, to the logits
# (retrieval_scores shows it).
_TFRS_MASK = torch.tensor(torch.finfo(torch.float32).min / 100.0, dtype=torch.float32).item()


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def ref_row_losses(q, c, sample_weight=None, temperature=None, sampling_probability=None, ids=None):
    """``[B]`` softmax cross-entropy of row i against column i, one row at a time.

    Accidental hits (other columns holding row i's item) are left out of row i's softmax: the same
    value and gradient as TFRS's large negative mask, computed without it.
    """
    b, n = q.shape[0], c.shape[0]
    losses = []
    for i in range(b):
        keep = [j for j in range(n) if ids is None or j == i or bool(ids[j] != ids[i])]
        logits = c[keep] @ q[i]
        if temperature is not None:
            logits = logits / temperature
        if sampling_probability is not None:
            logits = logits - torch.log(sampling_probability[keep])
        own = keep.index(i)
        top = logits.max().detach()
        lse = top + torch.log(torch.exp(logits - top).sum())
        loss = lse - logits[own]
        losses.append(loss if sample_weight is None else loss * sample_weight[i])
    return torch.stack(losses)


def ref_row_losses_hard_negatives(q, c, k, sample_weight, temperature, sampling_probability, ids):
    """``[B]``: like ``ref_row_losses``, each row's softmax over its positive and the k largest of
    its other (non-accidental-hit) columns, found by sorting. TFRS would fill a row with fewer than
    k such columns with masked hits, which add exactly 0: the same value and gradient."""
    losses = []
    for i in range(q.shape[0]):
        logits = c @ q[i] / temperature - torch.log(sampling_probability)
        values = [float(v) for v in logits.detach()]
        others = [j for j in range(c.shape[0]) if j != i and bool(ids[j] != ids[i])]
        hardest = sorted(others, key=lambda j: -values[j])[:k]
        kept = logits[[i, *hardest]]
        losses.append((torch.logsumexp(kept, dim=0) - kept[0]) * sample_weight[i])
    return torch.stack(losses)


def ref_scores(q, c, temperature=None, sampling_probability=None, ids=None):
    """``[B, N]`` scores entry by entry, with TFRS's mask value on accidental hits."""
    b, n = q.shape[0], c.shape[0]
    rows = []
    for i in range(b):
        row = []
        for j in range(n):
            s = torch.dot(q[i], c[j])
            if temperature is not None:
                s = s / temperature
            if sampling_probability is not None:
                s = s - torch.log(sampling_probability[j])
            if ids is not None and j != i and bool(ids[j] == ids[i]):
                s = s + _TFRS_MASK
            row.append(s)
        rows.append(torch.stack(row))
    return torch.stack(rows)


def ref_ranks(q, c, positives) -> torch.Tensor:
    """``[B]`` int64: candidates scoring strictly higher than the positive (itself excluded)."""
    out = []
    for i in range(q.shape[0]):
        p = int(positives[i])
        own = torch.dot(q[i], c[p])
        out.append(sum(1 for j in range(c.shape[0]) if j != p and torch.dot(q[i], c[j]) > own))
    return torch.tensor(out, dtype=torch.int64)


def ref_top_k(q, c, positives, ks) -> dict[str, torch.Tensor]:
    ranks = ref_ranks(q, c, positives)
    return {
        f"top_{k}": torch.tensor([1.0 if r < k else 0.0 for r in ranks], dtype=q.dtype) for k in ks
    }


def ref_candidate_rows(ids, num_ids) -> torch.Tensor:
    out = []
    for value in range(num_ids):
        rows = [j for j in range(ids.shape[0]) if int(ids[j]) == value]
        out.append(rows[0] if rows else -1)
    return torch.tensor(out, dtype=torch.int64)


def ref_softmax_grad(q, c):
    """Hand-derived gradients of ``sum_i logsumexp(q_i C^T) - q_i . c_i`` (N = B):
    ``dL/dQ = (P - I) C`` and ``dL/dC = (P - I)^T Q`` with ``P = softmax(Q C^T)`` row-wise."""
    s = q @ c.T
    p = torch.exp(s - torch.logsumexp(s, dim=1, keepdim=True))
    g = p - torch.eye(q.shape[0], c.shape[0], dtype=q.dtype)
    return g @ c, g.T @ q


# --- inputs ----------------------------------------------------------------------------------

# B = 70 queries walk the fused loss's eager blocks of 64 rows: two blocks, the second ragged.
_B, _N, _D = 70, 76, 4


def _retrieval_inputs(seed: int) -> tuple:
    """(queries, candidates, sample_weight, temperature, sampling_probability, candidate_ids)."""
    g = _gen(seed)
    q = torch.randn(_B, _D, generator=g, dtype=_F64)
    c = torch.randn(_N, _D, generator=g, dtype=_F64)
    w = torch.rand(_B, generator=g, dtype=_F64) + 0.5
    t = torch.tensor(0.3 + 0.2 * seed, dtype=_F64)
    p = torch.rand(_N, generator=g, dtype=_F64) * 0.9 + 0.05
    ids = torch.randint(0, 25, (_N,), generator=g)  # many accidental hits
    return q, c, w, t, p, ids


def _temperatures() -> tuple:
    return (torch.tensor([0.25, 0.5, 1.0, 2.0], dtype=_F64),)


def _retrieval_all_options(fused: bool) -> Case:
    def fn(q, c, w, t, p, ids):
        return retrieval_loss(
            q,
            c,
            sample_weight=w,
            temperature=t,
            candidate_sampling_probability=p,
            candidate_ids=ids,
            fused=fused,
        )

    def reference(q, c, w, t, p, ids):
        return ref_row_losses(q, c, w, t, p, ids).sum()

    return Case(
        name="tasks.retrieval_loss",
        variant=f"{'fused (default)' if fused else 'fused=False'}: all options, tensor temperature",
        kind="loss",
        make_inputs=_retrieval_inputs,
        fn=fn,
        reference=reference,
        grad_argnums=(0, 1, 2, 3, 4),
        hparam_argnums=(3,),
        hparam_values=_temperatures,
    )


def _retrieval_hard_negatives(q, c, w, t, p, ids):
    return retrieval_loss(
        q,
        c,
        sample_weight=w,
        temperature=t,
        candidate_sampling_probability=p,
        candidate_ids=ids,
        num_hard_negatives=5,
    )


def _retrieval_hard_negatives_reference(q, c, w, t, p, ids):
    return ref_row_losses_hard_negatives(q, c, 5, w, t, p, ids).sum()


def _retrieval_defaults(q, c):
    return retrieval_loss(q, c)


def _retrieval_defaults_reference(q, c):
    return ref_row_losses(q, c).sum()


def _retrieval_reduction(reduction: str) -> Case:
    def fn(q, c, w, t):
        return retrieval_loss(q, c, sample_weight=w, temperature=t, reduction=reduction)

    def reference(q, c, w, t):
        losses = ref_row_losses(q, c, w, t)
        return losses if reduction == "none" else losses.sum() / q.shape[0]

    return Case(
        name="tasks.retrieval_loss",
        variant=f'reduction="{reduction}", sample_weight, temperature',
        kind="loss",
        make_inputs=lambda seed: _retrieval_inputs(seed)[:4],
        fn=fn,
        reference=reference,
        grad_argnums=(0, 1, 2, 3),
        hparam_argnums=(3,),
        hparam_values=_temperatures,
    )


def _scores(q, c, t, p, ids):
    return retrieval_scores(
        q, c, temperature=t, candidate_sampling_probability=p, candidate_ids=ids
    )


def _scores_inputs(seed: int) -> tuple:
    q, c, _, t, p, ids = _retrieval_inputs(seed)
    return q[:6], c[:9], t, p[:9], ids[:9] % 4  # small: the reference is entry by entry


_TASK = Retrieval(temperature=0.5, remove_accidental_hits=True)


def _task(q, c, w, p, ids):
    return _TASK(q, c, w, p, ids)


def _task_reference(q, c, w, p, ids):
    return ref_row_losses(q, c, w, 0.5, p, ids).sum()


def _task_swept(q, c, w, t, p, ids):
    return _TASK(q, c, w, p, ids, temperature=t)


def _task_swept_reference(q, c, w, t, p, ids):
    return ref_row_losses(q, c, w, t, p, ids).sum()


def _task_inputs(seed: int) -> tuple:
    q, c, w, _, p, ids = _retrieval_inputs(seed)
    return q, c, w, p, ids


# Metrics: 9 queries against 15 candidates.
_KS = (1, 3, 5)


def _metric_inputs(seed: int) -> tuple:
    g = _gen(100 + seed)
    q = torch.randn(9, _D, generator=g, dtype=_F64)
    c = torch.randn(15, _D, generator=g, dtype=_F64)
    return q, c, torch.randint(0, 15, (9,), generator=g)


def _top_k(q, c, positives):
    return factorized_top_k(q, c, positives, ks=_KS)


def _top_k_reference(q, c, positives):
    return ref_top_k(q, c, positives, _KS)


def _candidate_rows(ids):
    return candidate_rows(ids, 12)


def _candidate_rows_inputs(seed: int) -> tuple:
    return (torch.randint(0, 12, (10,), generator=_gen(200 + seed)),)


# Mean accumulators: a state of (total, count) and a batch of values with per-value weights.
def _mean_inputs(seed: int) -> tuple:
    g = _gen(300 + seed)
    state = MeanState(
        torch.randn((), generator=g, dtype=_F64), torch.rand((), generator=g, dtype=_F64) + 3
    )
    values = torch.randn(5, generator=g, dtype=_F64)
    weights = torch.rand(5, generator=g, dtype=_F64) + 0.1
    return state, values, weights


def _mean_update_reference(state, values, weights):
    total, count = state.total, state.count
    for v, w in zip(values, weights):
        total = total + v * w
        count = count + w
    return MeanState(total, count)


def _mean_merge_inputs(seed: int) -> tuple:
    a = _mean_inputs(seed)[0]
    b = _mean_inputs(seed + 50)[0]
    return a, b


def _mean_merge_reference(a, b):
    return MeanState(a.total + b.total, a.count + b.count)


# Steps: a two-tower loss over embedding tables (users 10 x 4, items 12 x 4), batches of 6, with
# the temperature as a loss hyperparameter in the state. The learning rate and the temperature are
# put into the state as the given tensors: ``init_state(hparams=...)`` and ``optim.set_hparams``
# store detached float32 copies (see the ``train.init_state`` case).
_OPT = optim.adagrad(0.1)  # Keras defaults: initial accumulator 0.1, epsilon 1e-7
_EPS = torch.tensor(1e-7, dtype=torch.float32)  # Adagrad's epsilon as the state stores it


def _step_loss(params, batch, hparams):
    q, c = params["user"][batch["user_id"]], params["item"][batch["item_id"]]
    return retrieval_loss(q, c, temperature=hparams["temperature"])


_TRAIN_STEP = train.make_train_step(_step_loss, _OPT, compile=False)
_SWEEP_STEP = train.make_sweep_step(_step_loss, _OPT, compile=False)


def _state(params, lr, temperature) -> train.TrainState:
    state = train.init_state(params, _OPT, hparams={"temperature": 1.0})
    opt_state = state.opt_state._replace(hparams={**state.opt_state.hparams, "learning_rate": lr})
    return state._replace(opt_state=opt_state, hparams={"temperature": temperature})


def _train_step(params, lr, temperature, batch):
    return _TRAIN_STEP(_state(params, lr, temperature), batch)


_SPARSE_STEP = train.make_train_step(
    _step_loss, _OPT, compile=False, sparse_tables={"user": "user_id", "item": "item_id"}
)


def _warm_sparse_step() -> None:
    # The first call builds the step's row view eagerly; a fullgraph compile cannot break its
    # graph to do that, so the compiled checks must not be the first to call the step.
    params, lr, temperature, batch = _step_inputs(0)
    _SPARSE_STEP(_state({k: v.clone() for k, v in params.items()}, lr, temperature), batch)


def _sparse_train_step(params, lr, temperature, batch):
    # The row-sparse step writes its tables in place (it consumes the state): give it copies,
    # so the caller's tensors stay as they were. Under a differentiating transform the writes
    # are out of place and the gradient flows through the clones.
    params = {k: v.clone() for k, v in params.items()}
    return _SPARSE_STEP(_state(params, lr, temperature), batch)


def _train_step_logs(params, lr, temperature, batch):
    return _train_step(params, lr, temperature, batch)[1]


def _step_inputs(seed: int) -> tuple:
    """(params, learning rate, temperature, batch)."""
    g = _gen(400 + seed)
    params = {
        "user": torch.randn(10, _D, generator=g, dtype=_F64) * 0.5,
        "item": torch.randn(12, _D, generator=g, dtype=_F64) * 0.5,
    }
    batch = {
        "user_id": torch.randint(0, 10, (6,), generator=g),
        "item_id": torch.randint(0, 12, (6,), generator=g),
    }
    lr, temperature = 0.1 * (seed + 1), 0.5 + 0.25 * seed
    return params, torch.tensor(lr, dtype=_F64), torch.tensor(temperature, dtype=_F64), batch


def _step_hparams() -> tuple:
    lrs = torch.tensor([0.05, 0.1, 0.2], dtype=_F64)
    return lrs, torch.tensor([0.5, 1.0, 2.0], dtype=_F64)


def _train_step_reference(params, lr, temperature, batch):
    """One Adagrad step written out by hand: the in-batch softmax gradient by its formula,
    scattered into the tables, then ``acc = 0.1 + g^2``, ``p -= lr g / (sqrt(acc) + eps)``."""
    uid, iid = batch["user_id"], batch["item_id"]
    users, items = params["user"], params["item"]
    q, c = users[uid], items[iid]
    s = q @ c.T / temperature
    loss = (torch.logsumexp(s, dim=1) - torch.diagonal(s)).sum()
    dq, dc = ref_softmax_grad(q / temperature, c)  # dL/dS = P - I; S = (q / t) c^T
    grads = {
        "user": torch.zeros_like(users).index_add(0, uid, dq / temperature),
        "item": torch.zeros_like(items).index_add(0, iid, dc),
    }
    acc = {k: 0.1 + g * g for k, g in grads.items()}
    new = {k: params[k] - lr * grads[k] / (torch.sqrt(acc[k]) + _EPS) for k in params}
    one = torch.ones((), dtype=torch.int64)
    opt_state = AdagradState(one, {"epsilon": _EPS, "learning_rate": lr}, acc)
    key = torchrs_fn.random.key(0)  # init_state's default seed
    state = train.TrainState(new, opt_state, one, {"temperature": temperature}, key)
    return state, {"loss": loss}


def _stacked_step_inputs(seed: int) -> tuple:
    """Two configurations: stacked params [2, ...], learning rates [2], temperatures [2]."""
    a, b = _step_inputs(seed), _step_inputs(seed + 10)
    params = {k: torch.stack([a[0][k], b[0][k]]) for k in a[0]}
    return params, torch.stack([a[1], b[1]]), torch.stack([a[2], b[2]]), a[3]


def _sweep_step(params, lrs, temperatures, batch):
    states = train.stack_states(
        [_state({k: v[i] for k, v in params.items()}, lrs[i], temperatures[i]) for i in range(2)]
    )
    return _SWEEP_STEP(states, torch.ones(2, dtype=torch.bool), batch)


def _sweep_step_reference(params, lrs, temperatures, batch):
    runs = [
        _train_step_reference({k: v[i] for k, v in params.items()}, lrs[i], temperatures[i], batch)
        for i in range(2)
    ]
    states = [r[0] for r in runs]
    stacked = train.TrainState(
        {k: torch.stack([s.params[k] for s in states]) for k in params},
        AdagradState(
            torch.ones(2, dtype=torch.int64),
            {"epsilon": _EPS.expand(2), "learning_rate": lrs},
            {k: torch.stack([s.opt_state.sum_of_squares[k] for s in states]) for k in params},
        ),
        torch.ones(2, dtype=torch.int64),
        {"temperature": temperatures},
        torchrs_fn.random.key(0).expand(2),
    )
    logs = {"loss": torch.stack([r[1]["loss"] for r in runs])}
    return stacked, logs, torch.ones(2, dtype=torch.bool)


def _sweep_hparams() -> tuple:
    lrs = torch.tensor([[0.05, 0.1], [0.1, 0.2], [0.2, 0.4]], dtype=_F64)
    return lrs, torch.tensor([[0.5, 1.0], [1.0, 2.0], [2.0, 0.25]], dtype=_F64)


def _init_state(params, temperature):
    return train.init_state(params, _OPT, hparams={"temperature": temperature})


def _init_state_inputs(seed: int) -> tuple:
    params, _, temperature, _ = _step_inputs(seed)
    return params, temperature


def _init_state_reference(params, temperature):
    zero = torch.zeros((), dtype=torch.int64)
    lr = torch.tensor(0.1, dtype=torch.float32)
    acc = {k: torch.full_like(v, 0.1) for k, v in params.items()}
    opt_state = AdagradState(zero, {"epsilon": _EPS, "learning_rate": lr}, acc)
    temperature = temperature.to(torch.float32)  # hyperparameters are stored as float32
    key = torchrs_fn.random.key(0)  # init_state's default seed
    return train.TrainState(params, opt_state, zero, {"temperature": temperature}, key)


def _eval_fn(params, batch, candidates):
    q = params["user"][batch["user_id"]]
    out = factorized_top_k(q, candidates, batch["item_id"], ks=(1, 3))
    out["loss"] = retrieval_loss(q, params["item"][batch["item_id"]])
    return out


_EVAL_STEP = train.make_eval_step(_eval_fn, compile=False)


def _eval_step(params, batch):
    return _EVAL_STEP(params, batch, params["item"])


def _eval_step_inputs(seed: int) -> tuple:
    params, _, _, batch = _step_inputs(seed)
    return params, batch


def _eval_step_reference(params, batch):
    q, items = params["user"][batch["user_id"]], params["item"]
    out = ref_top_k(q, items, batch["item_id"], (1, 3))
    s = q @ items[batch["item_id"]].T
    out["loss"] = (torch.logsumexp(s, dim=1) - torch.diagonal(s)).sum()
    return out


# --- the list --------------------------------------------------------------------------------

_INT_OUT = "integer output (ranks): no derivative"
_NO_HPARAMS = "no hyperparameters"
_KS_STATIC = "ks are Python ints (they name the outputs)"
_ZERO = "exactly 0: piecewise constant"
_NO_GRAD = (
    "evaluation runs under torch.no_grad: a derivative through it raises instead of being 0 "
    "(differentiate the evaluated function itself)"
)
_NO_GRAD_MATCH = "eval step runs without gradients"


_warm_sparse_step()

CASES: list[Case] = [
    Case(
        name="tasks.retrieval_loss",
        variant="fused (default): defaults, extra negatives",
        kind="loss",
        make_inputs=lambda seed: _retrieval_inputs(seed)[:2],
        fn=_retrieval_defaults,
        reference=_retrieval_defaults_reference,
        grad_argnums=(0, 1),
        transforms=statuses(vmap_hparams=NotApplicable(_NO_HPARAMS)),
    ),
    _retrieval_all_options(fused=True),
    _retrieval_all_options(fused=False),
    _retrieval_reduction("mean"),
    _retrieval_reduction("none"),
    Case(
        name="tasks.retrieval_loss",
        variant="num_hard_negatives=5, all options, tensor temperature",
        kind="loss",
        make_inputs=_retrieval_inputs,
        fn=_retrieval_hard_negatives,
        reference=_retrieval_hard_negatives_reference,
        grad_argnums=(0, 1, 2, 3, 4),
        hparam_argnums=(3,),
        hparam_values=_temperatures,
    ),
    Case(
        name="tasks.retrieval_scores",
        variant="temperature, sampling probability, accidental hits",
        kind="loss",
        make_inputs=_scores_inputs,
        fn=_scores,
        reference=ref_scores,
        grad_argnums=(0, 1, 2, 3),
        hparam_argnums=(2,),
        hparam_values=_temperatures,
    ),
    Case(
        name="tasks.Retrieval",
        variant="temperature=0.5, remove_accidental_hits, sample_weight, sampling probability",
        kind="loss",
        make_inputs=_task_inputs,
        fn=_task,
        reference=_task_reference,
        grad_argnums=(0, 1, 2, 3),
        transforms=statuses(
            vmap_hparams=NotApplicable(
                "the constructor's temperature is a float; the next case passes a tensor"
            )
        ),
    ),
    Case(
        name="tasks.Retrieval",
        variant="temperature passed to the call as a tensor (how a sweep varies it)",
        kind="loss",
        make_inputs=_retrieval_inputs,
        fn=_task_swept,
        reference=_task_swept_reference,
        grad_argnums=(0, 1, 2, 3, 4),
        hparam_argnums=(3,),
        hparam_values=_temperatures,
    ),
    Case(
        name="metrics.factorized_top_k",
        variant="ks=(1, 3, 5)",
        kind="metric",
        make_inputs=_metric_inputs,
        fn=_top_k,
        reference=_top_k_reference,
        grad_argnums=(0, 1),
        nonzero_grad=False,
        transforms=statuses(
            grad=Checked(_ZERO),
            vmap_hparams=NotApplicable(_KS_STATIC),
            vmap_grad=Checked(_ZERO),
            compile_vmap_grad=Checked(_ZERO),
        ),
    ),
    Case(
        name="metrics.positive_ranks",
        variant="default chunk",
        kind="metric",
        make_inputs=_metric_inputs,
        fn=positive_ranks,
        reference=ref_ranks,
        transforms=statuses(
            grad=NotApplicable(_INT_OUT),
            vmap_hparams=NotApplicable(_NO_HPARAMS),
            vmap_grad=NotApplicable(_INT_OUT),
            compile_vmap_grad=NotApplicable(_INT_OUT),
        ),
    ),
    Case(
        name="metrics.candidate_rows",
        variant="num_ids=12",
        kind="metric",
        make_inputs=_candidate_rows_inputs,
        fn=_candidate_rows,
        reference=lambda ids: ref_candidate_rows(ids, 12),
        transforms=statuses(
            grad=NotApplicable("integer input and output"),
            vmap_inputs=Raises(
                "host-side helper: checks its ids with .item(), refused by vmap",
                RuntimeError,
                r"\.item\(\)",
            ),
            vmap_hparams=NotApplicable("num_ids is a Python int (the output size)"),
            vmap_grad=NotApplicable("integer input and output"),
            compile=Raises(
                "host-side helper: its data-dependent id check cannot be traced whole",
                Exception,
                "data-dependent",
            ),
            compile_vmap_grad=NotApplicable("integer input and output"),
        ),
    ),
    Case(
        name="metrics.mean_update",
        variant="per-value weights",
        kind="metric",
        make_inputs=_mean_inputs,
        fn=mean_update,
        reference=_mean_update_reference,
        grad_argnums=(0, 1, 2),
        transforms=statuses(vmap_hparams=NotApplicable(_NO_HPARAMS)),
    ),
    Case(
        name="metrics.mean_merge",
        variant="two partial means",
        kind="metric",
        make_inputs=_mean_merge_inputs,
        fn=mean_merge,
        reference=_mean_merge_reference,
        grad_argnums=(0, 1),
        transforms=statuses(vmap_hparams=NotApplicable(_NO_HPARAMS)),
    ),
    Case(
        name="train.make_train_step",
        variant="adagrad, fused loss; learning rate and temperature in the state",
        kind="step",
        make_inputs=_step_inputs,
        fn=_train_step,
        reference=_train_step_reference,
        grad_argnums=(0, 1, 2),
        hparam_argnums=(1, 2),
        hparam_values=_step_hparams,
        # The new state is what a gradient flows through; the logs are the next case.
        grad_outputs=lambda out: out[0],
    ),
    Case(
        name="train.make_train_step",
        variant="row-sparse tables (sparse_tables), adagrad: equal to the dense step",
        kind="step",
        make_inputs=_step_inputs,
        fn=_sparse_train_step,
        reference=_train_step_reference,
        grad_argnums=(0, 1, 2),
        hparam_argnums=(1, 2),
        hparam_values=_step_hparams,
        grad_outputs=lambda out: out[0],
    ),
    Case(
        name="train.make_train_step",
        variant="its logs",
        kind="step",
        make_inputs=_step_inputs,
        fn=_train_step_logs,
        reference=lambda *args: _train_step_reference(*args)[1],
        grad_argnums=(0, 1, 2),
        hparam_argnums=(1, 2),
        hparam_values=_step_hparams,
        nonzero_grad=False,  # the loss before the update does not depend on the learning rate
    ),
    Case(
        name="train.make_sweep_step",
        variant="two stacked configurations (stack_states), all active",
        kind="step",
        make_inputs=_stacked_step_inputs,
        fn=_sweep_step,
        reference=_sweep_step_reference,
        grad_argnums=(0, 1, 2),
        hparam_argnums=(1, 2),
        hparam_values=_sweep_hparams,
        grad_outputs=lambda out: out[0],
    ),
    Case(
        name="train.init_state",
        variant="loss hyperparameter given as a tensor",
        kind="step",
        make_inputs=_init_state_inputs,
        fn=_init_state,
        reference=_init_state_reference,
        grad_argnums=(0, 1),
        hparam_argnums=(1,),
        hparam_values=lambda: (torch.tensor([0.5, 1.0, 2.0], dtype=_F64),),
    ),
    Case(
        name="train.make_eval_step",
        variant="top-k hits and the loss",
        kind="step",
        make_inputs=_eval_step_inputs,
        fn=_eval_step,
        reference=_eval_step_reference,
        grad_argnums=(0,),
        transforms=statuses(
            grad=Raises(_NO_GRAD, RuntimeError, _NO_GRAD_MATCH),
            vmap_hparams=NotApplicable(_NO_HPARAMS),
            vmap_grad=Raises(_NO_GRAD, RuntimeError, _NO_GRAD_MATCH),
            compile_vmap_grad=Raises(_NO_GRAD, Exception, _NO_GRAD_MATCH),
        ),
    ),
]


# Public names of torchrs_fn.tasks / .metrics / .train that are not functions of tensors to
# transform, each with the reason. Everything else public must have a case above.
NOT_FUNCTIONS_OF_TENSORS: dict[str, str] = {
    "train.Checkpointer": "host-side file I/O: saves and finds checkpoints",
    "train.Checkpoint": "a record of a training position (a dataclass), not a function",
    "metrics.DEFAULT_KS": "a constant (the default cut-offs)",
    "metrics.top_k_metric_names": "host-side helper: ints in, strings out",
    "metrics.MeanState": "a NamedTuple type (the accumulator's state)",
    "metrics.mean_init": "a constructor: takes a device, returns zeros",
    "metrics.mean_result": "host-side reader: returns a Python float (one sync, by design)",
    "train.TrainState": "a NamedTuple type (the train step's state)",
    "train.step_hparams": "reads a state: its loss hyperparameters and this step's random key",
    "train.stack_states": "tree.stack with shape checks (checked through the sweep step's case)",
    "train.sweep": "host-side loop around the sweep step (the step is checked)",
    "train.SweepResult": "a host-side record of a sweep",
    "train.fit": "host-side loop around a step (the step is checked)",
    "train.evaluate": "host-side loop around an eval step (the step is checked)",
    "train.ProgressBar": "a host-side progress display",
    "train.AutoCompile": "host-side wrapper choosing eager or compiled (under a transform it is the "
    "step it wraps, which is checked)",
}


# --- cases of other rooms, in sibling files ---------------------------------------------------

# Each part is ``tests/composability_<part>.py`` with its own ``CASES`` and
# ``NOT_FUNCTIONS_OF_TENSORS``; it imports this module as ``composability_cases`` for ``Case`` and
# the statuses. One list still: the parts are appended here, in this order, before anything reads
# ``CASES``.
PARTS = (
    "ranking_losses",
    "ranking_metrics",
    "ranking_tasks",
    "retrieval_metrics",
    "retrieval_negatives",
)


def _load_part(part: str):
    import importlib.util
    import sys
    from pathlib import Path

    name = f"composability_{part}"
    if name not in sys.modules:
        path = Path(__file__).with_name(f"{name}.py")
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


for _part in PARTS:
    _module = _load_part(_part)
    CASES += _module.CASES
    NOT_FUNCTIONS_OF_TENSORS.update(_module.NOT_FUNCTIONS_OF_TENSORS)


def markdown_table() -> str:
    """The matrix as a Markdown table, one row per case, then the numbered notes it refers to.

    Cells: ✓ (checked, with a short note in brackets if any), ``n/a: reason``, and for errors and
    known bugs ``raises (n)`` / ``✗ bug (n)`` pointing at note n under the table.
    """
    notes: list[str] = []

    def note(text: str) -> int:
        if text not in notes:
            notes.append(text)
        return notes.index(text) + 1

    def cell(status: Status) -> str:
        if isinstance(status, Checked):
            return "✓" + (f" ({status.note})" if status.note else "")
        if isinstance(status, NotApplicable):
            return f"n/a: {status.reason}"
        if isinstance(status, Raises):
            return f"raises ({note(status.reason)})"
        return f"✗ bug ({note(status.reason)})"

    head = ["function", "case", *TRANSFORMS.values()]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for case in CASES:
        cells = [f"`{case.name}`", case.variant, *(cell(case.transforms[t]) for t in TRANSFORMS)]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    lines.append("")
    lines += [f"{i}. {text}" for i, text in enumerate(notes, start=1)]
    return "\n".join(lines)
