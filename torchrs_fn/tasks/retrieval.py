"""The in-batch softmax retrieval loss and the ``Retrieval`` task (TFRS ``tfrs.tasks.Retrieval``).

For a batch of B (query, candidate) pairs the scores are ``S = Q @ C.T`` (``[B, N]``, N >= B, the
extra columns being additional negatives), the labels are the identity (query i's positive is
candidate i) and the loss is softmax cross-entropy over each row, **summed over the batch** by
default, exactly as TFRS's Keras ``CategoricalCrossentropy(from_logits=True, reduction=SUM)``.

Options, applied in TFRS's order: ``temperature`` (scores / T), ``candidate_sampling_probability``
(logQ correction: ``scores - log p_j``), ``candidate_ids`` (remove accidental hits: other columns
holding the same item as row i's positive are masked out of row i's softmax), ``num_hard_negatives``
(each row's softmax keeps only its positive and its k highest-scoring negatives), ``sample_weight``.

The default implementation never materialises the ``[B, N]`` logits for backward: it walks the
rows in blocks, computing each block's log-sum-exp and the softmax statistics the gradients need,
then rebuilds the loss from them with plain differentiable ops. No custom autograd rule is involved
on the torch.func / torch.compile path, so ``grad`` (with respect to every floating-point input:
embeddings, temperature, sample weights, sampling probabilities), ``vmap``, ``vmap`` of ``grad``
and ``torch.compile`` of all of them work and are exact. Higher-order derivatives: under
``torch.func`` (two or more nested differentiating transforms) the loss switches to the plain
formulation, which is exact to any order; under plain ``torch.autograd`` with
``create_graph=True`` it raises and names ``fused=False``. ``fused=False`` always gives the plain
materialised formulation, and so does ``num_hard_negatives`` (its ``topk`` needs whole rows).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal

import torch
from torch import nn

from .._transforms import (
    differentiating_levels,
    host_checks_allowed,
    inside_transforms,
    vmap_levels,
)
from ..metrics.retrieval import DEFAULT_KS, factorized_top_k
from .base import at_least_float32

__all__ = ["retrieval_loss", "retrieval_scores", "Retrieval", "mixed_sampling_probability"]

Reduction = Literal["sum", "mean", "none"]

# TFRS masks accidental hits by adding float32.min / 100 to their logits.
_MASK_VALUE = torch.finfo(torch.float32).min / 100.0
# Rows per block, measured on a 2-core AVX-512 CPU for the tutorial's shapes (B = N = 8192,
# D = 32): small blocks keep the [N, rows] scores in cache; compiled code prefers fewer, larger
# blocks (faster compiles, fused elementwise kernels); GPUs want large blocks.
_BLOCK_ROWS: int | None = None  # set to force one size everywhere (tests use it)


def _block_rows(device: torch.device) -> int:
    if _BLOCK_ROWS is not None:
        return _BLOCK_ROWS
    if device.type != "cpu":
        return 2048
    return 256 if torch.compiler.is_compiling() else 64


def _check(q: torch.Tensor, c: torch.Tensor, sample_weight, sampling_probability, candidate_ids):
    if q.ndim != 2 or c.ndim != 2:
        raise ValueError(
            f"retrieval_loss: query_embeddings and candidate_embeddings must be 2-D [B, D] and "
            f"[N, D], got shapes {tuple(q.shape)} and {tuple(c.shape)}"
        )
    if q.shape[0] == 0:
        raise ValueError(
            f"retrieval_loss: query_embeddings has no rows (shape {tuple(q.shape)}); a batch "
            "needs at least one query"
        )
    if q.shape[1] != c.shape[1]:
        raise ValueError(
            f"retrieval_loss: embedding sizes differ: query_embeddings {tuple(q.shape)} vs "
            f"candidate_embeddings {tuple(c.shape)} (the last dimensions must match)"
        )
    if c.shape[0] < q.shape[0]:
        raise ValueError(
            f"retrieval_loss: need at least as many candidates as queries (row i's positive is "
            f"candidate i), got {c.shape[0]} candidates for {q.shape[0]} queries"
        )
    for name, t, n in (
        ("sample_weight", sample_weight, q.shape[0]),
        ("candidate_sampling_probability", sampling_probability, c.shape[0]),
        ("candidate_ids", candidate_ids, c.shape[0]),
    ):
        if t is not None and (t.ndim != 1 or t.shape[0] != n):
            raise ValueError(f"retrieval_loss: {name} must have shape [{n}], got {tuple(t.shape)}")


def _check_num_hard_negatives(num_hard_negatives: Any, where: str) -> None:
    if num_hard_negatives is None:
        return
    if (
        isinstance(num_hard_negatives, bool)
        or not isinstance(num_hard_negatives, int)
        or num_hard_negatives < 1
    ):
        raise ValueError(
            f"{where}: num_hard_negatives must be None (keep every negative) or an int >= 1, got "
            f"{num_hard_negatives!r}"
        )


def _hard_negative_losses(scores: torch.Tensor, num_hard_negatives: int) -> torch.Tensor:
    """``[B]``: each row's softmax cross-entropy over its positive and its k hardest negatives.

    TFRS's ``HardNegativeMining`` takes ``top_k(logits + labels * MAX_FLOAT, k + 1)`` and gathers
    the logits: the positive (pushed to the top) plus the k largest negatives. Here the positive
    is masked to ``-inf`` and ``topk`` picks the k negatives, the same columns. Only the values
    matter, and ``topk``'s values carry an exact gradient (the selection is piecewise constant).
    Needs ``k + 1 < N``, so ``-inf`` is never selected. Accidental hits, masked with TFRS's large
    negative value, are chosen only when a row has fewer than k other negatives, and then add
    ``exp(-3.4e36) = 0`` to the softmax, exactly as in TFRS.
    """
    b, n = scores.shape[-2], scores.shape[-1]
    positive_column = torch.eye(b, n, dtype=torch.bool, device=scores.device)
    pos = torch.diagonal(scores, dim1=-2, dim2=-1)
    negatives = torch.where(positive_column, float("-inf"), scores)
    hard = torch.topk(negatives, num_hard_negatives, dim=-1, sorted=False).values
    return torch.logsumexp(torch.cat([pos[..., None], hard], dim=-1), dim=-1) - pos


def retrieval_scores(
    query_embeddings: torch.Tensor,
    candidate_embeddings: torch.Tensor,
    *,
    temperature: float | torch.Tensor | None = None,
    candidate_sampling_probability: torch.Tensor | None = None,
    candidate_ids: torch.Tensor | None = None,
) -> torch.Tensor:
    """The ``[B, N]`` logits of the retrieval loss, with TFRS's corrections applied."""
    scores = query_embeddings @ candidate_embeddings.T
    if temperature is not None:
        scores = scores / temperature
    if candidate_sampling_probability is not None:
        scores = scores - torch.log(candidate_sampling_probability).to(scores.dtype)
    if candidate_ids is not None:
        scores = (
            scores + _accidental_hit_mask(candidate_ids, 0, query_embeddings.shape[0]) * _MASK_VALUE
        )
    return scores


def _accidental_hit_mask(candidate_ids: torch.Tensor, start: int, stop: int) -> torch.Tensor:
    """``[..., stop - start, N]``: 1.0 where column j holds row i's positive item but j != i."""
    n = candidate_ids.shape[-1]
    rows = torch.arange(start, stop, device=candidate_ids.device)
    same = candidate_ids[..., start:stop, None] == candidate_ids[..., None, :]
    not_self = rows[:, None] != torch.arange(n, device=candidate_ids.device)[None, :]
    return (same & not_self).to(torch.float32)


def _softmax_stats(
    q: torch.Tensor,
    c: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    ids: torch.Tensor | None,
    inv_t: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """The softmax statistics of the loss, one block of rows at a time (inputs already detached).

    With ``s = (q c^T) * inv_t + bias`` (accidental hits masked), ``P = softmax(s)`` row-wise and
    ``G = w[:, None] * P``, returns ``lse = logsumexp(s, 1)`` ``[B]``, ``G @ c`` ``[B, D]``,
    ``G.T @ q`` ``[N, D]`` and ``G.sum(0)`` ``[N]`` (only with a ``bias``, else None): everything
    the gradients need, without ever holding the ``[B, N]`` matrix. Every input may carry the
    same leading batch dimensions (``q [..., B, D]``, ``inv_t [...]``): the batched form serves
    the op's vmap rule.
    """
    b = q.shape[-2]
    lse_blocks, gc_blocks = [], []
    gq = torch.zeros_like(c)
    col = None if bias is None else torch.zeros_like(bias)
    if inv_t is not None:
        inv_t = inv_t[..., None, None]
    rows = _block_rows(q.device)
    for start in range(0, b, rows):
        stop = min(start + rows, b)
        qb = q[..., start:stop, :]
        # The block is held transposed, [N, rows]: with the 32-odd-wide embedding dimension as the
        # inner size, ``c @ qb.T`` runs several times faster than ``qb @ c.T`` on CPU BLAS, and
        # the softmax reductions then run down contiguous columns. Under autocast the product
        # and the softmax numerators stay bfloat16 (the row sums are taken in float32).
        s_t = c @ qb.transpose(-1, -2)
        if inv_t is not None:
            s_t = s_t * inv_t
        if bias is not None:
            s_t = s_t + bias[..., :, None]
        if ids is not None:
            s_t = s_t + _accidental_hit_mask(ids, start, stop).transpose(-1, -2) * _MASK_VALUE
        # One exp per score, and the [N, rows] block is touched by nothing else: the numerators
        # ``e`` feed both products directly, and each row's ``w / z`` scales the small operands
        # and results instead (``G = e * (w / z)`` as a block of its own made the compiled
        # bfloat16 step about 40% slower on CPU: one more pass over the block, and the
        # normalisation fused badly with the column reductions).
        m = torch.amax(s_t, dim=-2, keepdim=True)
        e = torch.exp(s_t - m)
        z = torch.sum(e, dim=-2, dtype=torch.promote_types(e.dtype, torch.float32))
        lse_blocks.append(m.squeeze(-2) + torch.log(z))
        scale = weight[..., start:stop] / z  # [..., rows]
        gc_blocks.append((e.transpose(-1, -2) @ c) * scale[..., :, None])
        qs = qb * scale[..., :, None]
        gq = torch.addmm(gq, e, qs) if gq.ndim == 2 else gq + e @ qs
        if col is not None:
            col = col + (e @ scale[..., :, None]).squeeze(-1)
    return torch.cat(lse_blocks, dim=-1), torch.cat(gc_blocks, dim=-2), gq, col


_compiled_stats: Any = None


@torch.library.custom_op("torchrs_fn::softmax_stats", mutates_args=())
def _softmax_stats_op(
    q: torch.Tensor,
    c: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    ids: torch.Tensor | None,
    inv_t: torch.Tensor | None,
    compiled: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``_softmax_stats`` as an op of its own (on detached tensors; it has no autograd).

    It is an op for its vmap rule, and only called under ``vmap`` (elsewhere the statistics trace
    inline, so a compiled step stays one graph and compiles once). Under ``vmap`` (a sweep) the
    blockwise loop would run on ``[configs, N, rows]`` blocks: on CPU its products become ``bmm``
    calls that MKL computes 2-3 times slower than one ``mm`` per configuration at these shapes
    (an inner size of 32), and blocks ``configs`` times larger fall out of cache, so a vmapped
    train step cost about twice the sequential one per configuration. The rule runs the op once
    per configuration on CPU when a configuration has at least ``_LOOP_MIN_SCORES`` scores, and
    batched otherwise and on other devices, where batching is what pays. ``compiled`` (set when
    the caller is being compiled) runs the statistics through their own compiled function, so
    the fused kernels stay.
    """
    global _compiled_stats
    if compiled:
        if _compiled_stats is None:
            _compiled_stats = torch.compile(_stats_tuple, dynamic=False, fullgraph=True)
        return _compiled_stats(q, c, weight, bias, ids, inv_t)
    return _stats_tuple(q, c, weight, bias, ids, inv_t)


def _stats_tuple(q, c, weight, bias, ids, inv_t):  # type: ignore[no-untyped-def]
    """``_softmax_stats`` with an empty tensor in place of a missing column sum, every output in
    ``q``'s dtype (under autocast the products come out bfloat16; the op's fake says ``q``'s)."""
    lse, gc, gq, col = _softmax_stats(q, c, weight, bias, ids, inv_t)
    col = q.new_zeros((*q.shape[:-2], 0)) if col is None else col
    return tuple(x.to(q.dtype) for x in (lse, gc, gq, col))


@_softmax_stats_op.register_fake
def _(q, c, weight, bias, ids, inv_t, compiled):  # type: ignore[no-untyped-def]
    col = c.new_empty(c.shape[0]) if bias is not None else q.new_empty(0)
    return q.new_empty(q.shape[0]), q.new_empty(q.shape), c.new_empty(c.shape), col


# Below this many scores per configuration the batched form wins (it compiles into the caller's
# graph and saves the per-configuration calls); above it, one call per configuration does.
_LOOP_MIN_SCORES = 1 << 20


def _softmax_stats_vmap(info, in_dims, q, c, weight, bias, ids, inv_t, compiled):  # type: ignore[no-untyped-def]
    n = info.batch_size
    args = (q, c, weight, bias, ids, inv_t)

    def lane(i: int) -> list:
        return [x if d is None or x is None else x.select(d, i) for x, d in zip(args, in_dims)]

    first = lane(0)
    scores = first[0].shape[0] * first[1].shape[0]
    if q.device.type != "cpu" or scores < _LOOP_MIN_SCORES:
        # The statistics take leading batch dimensions: move each batch dim first (or expand an
        # unbatched input, a view) and run them once for all configurations.
        batched = [
            None if x is None else (x.expand(n, *x.shape) if d is None else x.movedim(d, 0))
            for x, d in zip(args, in_dims)
        ]
        return _stats_tuple(*batched), (0, 0, 0, 0)
    outs = [_softmax_stats_op(*lane(i), compiled) for i in range(n)]
    return tuple(torch.stack(list(o)) for o in zip(*outs)), (0, 0, 0, 0)


_softmax_stats_op.register_vmap(_softmax_stats_vmap)


def _fused_loss(
    q: torch.Tensor,
    c: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    ids: torch.Tensor | None,
    inv_t: torch.Tensor | None,
) -> torch.Tensor:
    """``sum_i w_i (logsumexp(s_i) - s_ii)`` whose autograd never sees the ``[B, N]`` scores.

    The softmax statistics are computed on detached inputs; the loss is then rebuilt from them with
    plain differentiable ops so that its gradient is exact for every input. With
    ``G = w P``: ``dL/dq = inv_t (G c - w c[:B])``, ``dL/dc = inv_t (G^T q - pad(w q))``,
    ``dL/dinv_t = sum(G * (q c^T)) - sum(w * diag(q c^T))``, ``dL/dbias = G.sum(0) - pad(w)`` and
    ``dL/dw = logsumexp(s) - diag(s)``. The ``extra`` term below carries the first three (its
    value is subtracted again, so it adds gradient, not value). The detached statistics make
    this exact to first order only (a ``detach`` cuts every ``torch.func`` level too), which is
    why ``retrieval_loss`` takes the plain formulation under nested derivatives.
    """
    b = q.shape[0]
    qd, cd = q.detach(), c.detach()
    wd = weight.detach()
    bd = None if bias is None else bias.detach()
    td = None if inv_t is None else inv_t.detach()
    if vmap_levels():
        # Under vmap (a sweep) the op's vmap rule decides how to batch the statistics.
        lse, gc, gq, col = _softmax_stats_op(qd, cd, wd, bd, ids, td, torch.compiler.is_compiling())
    else:
        # Otherwise they trace inline, into the caller's one compiled graph: no second compile.
        lse, gc, gq, col = _stats_tuple(qd, cd, wd, bd, ids, td)

    raw_pos = torch.sum(q * c[:b], dim=1)
    pos = raw_pos if inv_t is None else raw_pos * inv_t
    if bias is not None:
        pos = pos + bias[:b]
    # sum_ij G_ij (q_i . c_j), differentiable in q and c (twice its value), minus its value.
    cross = torch.sum(q * gc) + torch.sum(c * gq) - torch.sum(qd * gc)
    extra = cross if inv_t is None else cross * inv_t
    if bias is not None:
        extra = extra + torch.sum(col * bias)  # col is [0] (unused) without a bias
    return torch.sum(weight * lse) - torch.sum(weight * pos) + (extra - extra.detach())


_HIGHER_ORDER_MESSAGE = (
    "retrieval_loss(fused=True) gives exact first-order gradients under plain torch.autograd, "
    "but not higher-order ones (create_graph=True): pass fused=False, or take the derivatives "
    "with torch.func (grad of grad, hessian, jacfwd of jacrev), where the fused loss switches "
    "to the exact plain formulation by itself"
)


class _FirstOrderOnly(torch.autograd.Function):
    """Identity whose backward refuses ``create_graph=True`` (plain autograd only).

    Under plain ``torch.autograd`` a ``detach`` cuts every level, so a second derivative of the
    fused loss would silently miss terms; this guard turns that into an error. Under
    ``torch.func`` and ``torch.compile`` it is not used (see ``torchrs_fn._transforms``).
    """

    @staticmethod
    def forward(ctx, x):  # type: ignore[override]
        return x.clone()

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        if torch.is_grad_enabled():  # backward runs with grad enabled only for create_graph=True
            raise RuntimeError(_HIGHER_ORDER_MESSAGE)
        return grad


def _plain_autograd(*tensors: torch.Tensor | None) -> bool:
    """True when plain autograd (not ``torch.func``, not ``torch.compile``) records the loss."""
    if torch.compiler.is_compiling() or not torch.is_grad_enabled():
        return False
    if inside_transforms():
        return False
    return any(t is not None and t.requires_grad for t in tensors)


def retrieval_loss(
    query_embeddings: torch.Tensor,
    candidate_embeddings: torch.Tensor,
    *,
    sample_weight: torch.Tensor | None = None,
    temperature: float | torch.Tensor | None = None,
    candidate_sampling_probability: torch.Tensor | None = None,
    candidate_ids: torch.Tensor | None = None,
    num_hard_negatives: int | None = None,
    reduction: Reduction = "sum",
    fused: bool = True,
) -> torch.Tensor:
    """In-batch softmax retrieval loss (TFRS ``Retrieval`` semantics).

    With ``s`` the ``[B, N]`` logits after temperature, logQ correction and accidental-hit masking
    (``retrieval_scores``), row i's loss is ``w_i (logsumexp_{j in K_i} s_ij - s_ii)``, where
    ``K_i`` is every column, or with ``num_hard_negatives=k`` the positive column i and the k
    columns ``j != i`` with the largest ``s_ij``.

    Args:
        query_embeddings: ``[B, D]``.
        candidate_embeddings: ``[N, D]`` with ``N >= B``; row i is query i's positive, rows
            ``B..N-1`` are extra negatives shared by every query.
        sample_weight: ``[B]`` per-query weights (default 1).
        temperature: divide the scores by it (TFRS ``temperature``).
        candidate_sampling_probability: ``[N]`` probabilities for logQ correction
            (TFRS ``candidate_sampling_probability``); must be > 0.
        candidate_ids: ``[N]`` item ids; masks accidental hits (TFRS ``remove_accidental_hits``).
        num_hard_negatives: keep, in each row's softmax, only the positive and the
            ``num_hard_negatives`` highest-scoring negatives, chosen after the options above (TFRS
            ``num_hard_negatives``, its ``HardNegativeMining`` layer). ``None`` (default) keeps
            every negative; otherwise an int >= 1 (TFRS's 0 would keep only the positive, a loss of
            0, and a negative value fails there, so both are refused here). When
            ``num_hard_negatives + 1 >= N`` every column is kept and the option changes nothing
            (TFRS caps k at N). Otherwise this path materialises the ``[B, N]`` logits (for
            ``torch.topk``) whatever ``fused`` says; its gradient is exact for every
            floating-point input, to any order. Negatives tied at the cut give the same value
            whichever is chosen; the gradient then goes to the columns ``torch.topk`` picks.
        reduction: ``"sum"`` (TFRS default), ``"mean"`` (sum / B, Keras ``SUM_OVER_BATCH_SIZE``)
            or ``"none"`` (``[B]`` per-query losses, weighted).
        fused: use the block-wise implementation that never stores ``[B, N]`` logits for backward
            (exact first-order gradients for every floating-point input). Under nested
            ``torch.func`` derivatives it switches to the plain formulation by itself; plain
            autograd with ``create_graph=True`` raises (pass ``fused=False`` there). Only the
            ``"sum"`` and ``"mean"`` reductions are fused; ``"none"`` is always plain.

    Returns:
        A scalar (``"sum"``/``"mean"``) or ``[B]`` (``"none"``).
    """
    # Mixed precision: the loss runs in float32 (autocast still multiplies in bfloat16).
    q, c = at_least_float32(query_embeddings), at_least_float32(candidate_embeddings)
    _check(q, c, sample_weight, candidate_sampling_probability, candidate_ids)
    if reduction not in ("sum", "mean", "none"):
        raise ValueError(
            f"retrieval_loss: reduction must be 'sum', 'mean' or 'none', got {reduction!r}"
        )
    _check_num_hard_negatives(num_hard_negatives, "retrieval_loss")
    b = q.shape[0]
    # TFRS caps top_k's k + 1 at N: then every column is kept and the full softmax is the loss.
    hard_negatives = num_hard_negatives is not None and num_hard_negatives + 1 < c.shape[0]
    # Under two or more differentiating torch.func transforms (a higher-order derivative), the
    # fused loss's detached statistics would drop terms: the plain formulation is exact there.
    if fused and not hard_negatives and reduction != "none" and differentiating_levels() < 2:
        weight = (
            torch.ones(b, dtype=q.dtype, device=q.device)
            if sample_weight is None
            else sample_weight.to(q.dtype)
        )
        bias = (
            None
            if candidate_sampling_probability is None
            else -torch.log(candidate_sampling_probability).to(q.dtype)
        )
        inv_t = (
            None
            if temperature is None
            else 1.0 / torch.as_tensor(temperature, dtype=q.dtype, device=q.device)
        )
        total = _fused_loss(q, c, weight, bias, candidate_ids, inv_t)
        if _plain_autograd(q, c, weight, bias, inv_t):
            total = _FirstOrderOnly.apply(total)
        return total / b if reduction == "mean" else total
    scores = retrieval_scores(
        q,
        c,
        temperature=temperature,
        candidate_sampling_probability=candidate_sampling_probability,
        candidate_ids=candidate_ids,
    )
    scores = at_least_float32(scores)  # bfloat16 under autocast
    if hard_negatives:
        losses = _hard_negative_losses(scores, num_hard_negatives)
    else:
        rows = torch.arange(b, device=q.device)
        losses = torch.logsumexp(scores, dim=1) - scores[rows, rows]
    if sample_weight is not None:
        losses = losses * sample_weight.to(losses.dtype)
    if reduction == "none":
        return losses
    total = losses.sum()
    return total / b if reduction == "mean" else total


def mixed_sampling_probability(
    candidate_ids: torch.Tensor,
    *,
    num_in_batch: int,
    in_batch_probabilities: torch.Tensor,
    sampled_probabilities: torch.Tensor,
) -> torch.Tensor:
    """``[N]``: each candidate's probability under mixed negative sampling (Yang et al. 2020).

    A mixed candidate set is the batch's own ``B = num_in_batch`` candidates (drawn, as the data
    are, with the items' popularity ``p_batch``) followed by ``M = N - B`` candidates drawn from
    the whole corpus with ``p_sample`` (``data.NegativeSampler``: uniform, log-uniform or
    popularity). Any item can arrive by either route, so the logQ correction of item j uses its
    probability under the mixture, whichever route brought it::

        q_j = (B * p_batch[id_j] + M * p_sample[id_j]) / (B + M)

    Pass it as ``candidate_sampling_probability`` to ``retrieval_loss`` / ``Retrieval`` with the
    concatenated candidates (and ``candidate_ids`` to drop accidental hits: a sampled item equal
    to a query's positive). Differentiable in both probability tables (they are gathered).

    Args:
        candidate_ids: ``[N]`` item ids of the mixed set: in-batch first, sampled after.
        num_in_batch: B, the in-batch candidates at the front.
        in_batch_probabilities: ``[V]`` the in-batch sampling distribution over items (e.g.
            item frequency / number of interactions: ``NegativeSampler.fit(items,
            power=1).probabilities``).
        sampled_probabilities: ``[V]`` the corpus sampler's distribution
            (``NegativeSampler.probabilities``).

    Returns:
        ``[N]`` probabilities, in the dtype of ``in_batch_probabilities`` (float64 tables give
        float64; cast to the embeddings' dtype as needed).
    """
    if candidate_ids.ndim != 1 or candidate_ids.is_floating_point():
        raise ValueError(
            f"mixed_sampling_probability: candidate_ids must be a 1-D integer tensor, got "
            f"{candidate_ids.dtype} of shape {tuple(candidate_ids.shape)}"
        )
    n = candidate_ids.shape[0]
    if (
        isinstance(num_in_batch, bool)
        or not isinstance(num_in_batch, int)
        or not 0 <= num_in_batch <= n
    ):
        raise ValueError(
            f"mixed_sampling_probability: num_in_batch must be an int in [0, {n}], got {num_in_batch!r}"
        )
    for name, table in (
        ("in_batch_probabilities", in_batch_probabilities),
        ("sampled_probabilities", sampled_probabilities),
    ):
        if not isinstance(table, torch.Tensor) or table.ndim != 1 or not table.is_floating_point():
            raise ValueError(f"mixed_sampling_probability: {name} must be a 1-D float tensor [V]")
    if in_batch_probabilities.shape != sampled_probabilities.shape:
        raise ValueError(
            "mixed_sampling_probability: in_batch_probabilities and sampled_probabilities must "
            f"cover the same items, got {tuple(in_batch_probabilities.shape)} and "
            f"{tuple(sampled_probabilities.shape)}"
        )
    if host_checks_allowed(candidate_ids) and n:
        lo, hi = int(candidate_ids.min()), int(candidate_ids.max())
        if lo < 0 or hi >= in_batch_probabilities.shape[0]:
            raise ValueError(
                f"mixed_sampling_probability: candidate_ids must lie in [0, "
                f"{in_batch_probabilities.shape[0]}), got values in [{lo}, {hi}]"
            )
    m = n - num_in_batch
    mixed = num_in_batch * in_batch_probabilities + m * sampled_probabilities.to(
        in_batch_probabilities.dtype
    )
    return mixed[candidate_ids] / n


def _extended_candidates(
    hook: Callable[..., tuple[Any, Any, Any]],
    embeddings: torch.Tensor,
    probability: torch.Tensor | None,
    ids: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    out = hook(embeddings, probability, ids)
    if not isinstance(out, tuple) or len(out) != 3:
        raise TypeError(
            "Retrieval: extra_candidates must return (embeddings, probability, ids), got "
            f"{type(out).__name__}"
        )
    new_embeddings, new_probability, new_ids = out
    for name, given, got in (("probability", probability, new_probability), ("ids", ids, new_ids)):
        if given is not None and got is None:
            raise ValueError(
                f"Retrieval: extra_candidates was given candidate {name} but returned None for "
                "them (the appended rows need theirs too)"
            )
    return new_embeddings, new_probability, new_ids


class Retrieval(nn.Module):
    """TFRS ``tfrs.tasks.Retrieval`` as a parameter-free module: ``task(query, candidate) -> loss``.

    The metrics of TFRS's task (``FactorizedTopK``) are computed at evaluation time by
    ``metrics(...)`` (``torchrs_fn.metrics.factorized_top_k``), not inside the training loss (TFRS
    users usually turn them off during training for speed: ``compute_metrics=not training``).
    It is a ``tasks.Task``: ``loss`` is ``forward``, so it composes in a ``MultiTask``.
    The options are TFRS's (``temperature``, ``remove_accidental_hits``, ``num_hard_negatives``)
    plus ``reduction``, ``fused`` and ``extra_candidates``; see ``retrieval_loss``.

    ``extra_candidates`` is the hook for negatives from elsewhere, e.g. the candidates of the
    other devices in data-parallel training: a function ``(candidate_embeddings [N, D],
    candidate_sampling_probability [N] | None, candidate_ids [N] | None) -> (embeddings [N', D],
    probability, ids)`` that keeps the N rows it is given first and appends more (it must
    return a probability / ids for the new rows whenever it was given them). The loss then
    treats the appended rows as negatives shared by every query, with their logQ correction and
    accidental-hit masking. Its gradient flows to whatever the hook's rows depend on (a
    gather whose backward sends each device its rows' gradient keeps training exact).
    """

    def __init__(
        self,
        *,
        temperature: float | None = None,
        remove_accidental_hits: bool = False,
        num_hard_negatives: int | None = None,
        reduction: Reduction = "sum",
        fused: bool = True,
        extra_candidates: Callable[..., tuple[Any, Any, Any]] | None = None,
    ) -> None:
        super().__init__()
        _check_num_hard_negatives(num_hard_negatives, "Retrieval")
        if extra_candidates is not None and not callable(extra_candidates):
            raise TypeError("Retrieval: extra_candidates must be a function (see the docstring)")
        self.extra_candidates = extra_candidates
        self.temperature = temperature
        self.remove_accidental_hits = remove_accidental_hits
        self.num_hard_negatives = num_hard_negatives
        self.reduction = reduction
        self.fused = fused

    def forward(
        self,
        query_embeddings: torch.Tensor,
        candidate_embeddings: torch.Tensor,
        sample_weight: torch.Tensor | None = None,
        candidate_sampling_probability: torch.Tensor | None = None,
        candidate_ids: torch.Tensor | None = None,
        temperature: float | torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``[B, D]`` queries, ``[N, D]`` candidates -> the loss (see ``retrieval_loss``).

        ``temperature``, when given, replaces the task's own for this call: a model passes
        ``hparams["temperature"]`` here so a sweep can vary it (or a learnable tensor).
        """
        if self.remove_accidental_hits and candidate_ids is None:
            raise ValueError("Retrieval: remove_accidental_hits=True needs candidate_ids")
        if self.extra_candidates is not None:
            n = candidate_embeddings.shape[0]
            candidate_embeddings, candidate_sampling_probability, candidate_ids = (
                _extended_candidates(
                    self.extra_candidates,
                    candidate_embeddings,
                    candidate_sampling_probability,
                    candidate_ids,
                )
            )
            if candidate_embeddings.shape[0] < n:
                raise ValueError(
                    f"Retrieval: extra_candidates returned {candidate_embeddings.shape[0]} rows, "
                    f"fewer than the {n} it was given (it must keep them first and append)"
                )
        kwargs: dict[str, Any] = {}
        if self.remove_accidental_hits:
            kwargs["candidate_ids"] = candidate_ids
        return retrieval_loss(
            query_embeddings,
            candidate_embeddings,
            sample_weight=sample_weight,
            temperature=self.temperature if temperature is None else temperature,
            candidate_sampling_probability=candidate_sampling_probability,
            num_hard_negatives=self.num_hard_negatives,
            reduction=self.reduction,
            fused=self.fused,
            **kwargs,
        )

    def loss(
        self,
        query_embeddings: torch.Tensor,
        candidate_embeddings: torch.Tensor,
        sample_weight: torch.Tensor | None = None,
        candidate_sampling_probability: torch.Tensor | None = None,
        candidate_ids: torch.Tensor | None = None,
        temperature: float | torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The loss (``forward``): the ``Task`` interface's name for it."""
        return self(
            query_embeddings,
            candidate_embeddings,
            sample_weight,
            candidate_sampling_probability,
            candidate_ids,
            temperature,
        )

    def metrics(
        self,
        query_embeddings: torch.Tensor,
        candidate_embeddings: torch.Tensor,
        positive_indices: torch.Tensor,
        *,
        ks: Sequence[int] = DEFAULT_KS,
    ) -> dict[str, torch.Tensor]:
        """FactorizedTopK: ``[B, D]`` queries against all ``[N, D]`` candidates, each query's
        positive at row ``positive_indices [B]`` -> ``{"top_k": [B] hits}`` (see
        ``metrics.factorized_top_k``)."""
        return factorized_top_k(query_embeddings, candidate_embeddings, positive_indices, ks=ks)

    def batch_metrics(
        self,
        query_embeddings: torch.Tensor,
        candidate_embeddings: torch.Tensor,
        *,
        ks: Sequence[int] = (1, 5, 10),
        candidate_sampling_probability: torch.Tensor | None = None,
        candidate_ids: torch.Tensor | None = None,
        temperature: float | torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """TFRS's ``batch_metrics``: top-k accuracy of each query's positive among the batch's
        candidates, on the logits the loss sees.

        TFRS passes the ``[B, N]`` logits (after temperature, logQ correction and accidental-hit
        masking) and the identity labels to Keras metrics such as ``TopKCategoricalAccuracy``,
        which count a hit when fewer than k columns score strictly higher than the positive
        (``tf.math.in_top_k``: ties count as hits). Returns ``{"batch_top_k": [B] float}`` (1.0
        hit, 0.0 miss) for each k; their mean over a batch is TFRS's batch metric. Not
        differentiable (the gradient is 0), like any count.
        """
        ks = tuple(int(k) for k in ks)
        n = candidate_embeddings.shape[0]
        if not ks or min(ks) < 1 or max(ks) > n:
            raise ValueError(f"Retrieval.batch_metrics: ks must lie in [1, {n}] (N), got {ks}")
        scores = retrieval_scores(
            query_embeddings,
            candidate_embeddings,
            temperature=self.temperature if temperature is None else temperature,
            candidate_sampling_probability=candidate_sampling_probability,
            candidate_ids=candidate_ids if self.remove_accidental_hits else None,
        )
        b = query_embeddings.shape[0]
        positive = torch.diagonal(scores[:, :b])[:, None]
        higher = (scores > positive).sum(dim=1)
        return {f"batch_top_{k}": (higher < k).to(scores.dtype) for k in ks}
