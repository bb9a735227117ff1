"""Row-sparse embedding updates: a step that reads and writes only the rows a batch touches.

An embedding table of ``V`` rows gets a gradient in only the rows its batch looked up, yet a
dense step computes, and an optimizer updates, all ``V`` rows. For a catalogue of millions of
items that is most of the step. Here the step works on a *row view* instead:

1. ``unique_ids`` compacts the ids a batch holds for a table to ``N`` slots with static shapes
   (``N`` = number of ids in the batch + 1; sort-based, so it compiles and vmaps): the distinct
   ids, the position of every id among them (``inverse``) and which slots hold a real id.
2. The table ``[V, D]`` is replaced by its gathered rows ``[N, D]`` and the batch's id columns by
   ``inverse``: the model runs unchanged and its gradient with respect to the rows is the
   table's gradient as ``(unique ids, rows)``.
3. The optimizer runs unchanged on the view: each optimizer slot shaped like the table (Adagrad's
   accumulator, Adam's moments, row-wise Adagrad's per-row accumulator) is gathered at the same
   ids (``RowView.slots`` finds them once, by tracing ``init`` on the meta device).
4. The new rows are written back into the table and its slots with ``index_put_``: **the step
   consumes the state it is given** (the JAX rule of donated buffers), since copying a table of
   millions of rows every step would cost what the sparse step saves. Under a differentiating
   ``torch.func`` transform (a hypergradient through the step) the writes are out of place.

What this gives, against the dense update:

* SGD without momentum, Adagrad and row-wise Adagrad: the same numbers (a row with a zero
  gradient does not move under them), up to the order of floating-point sums.
* Adam, AdamW and SGD with momentum: the *lazy* variant (TensorFlow's ``LazyAdam``, torch's
  ``SparseAdam``): the moments and weights of rows the batch did not touch stay as they are,
  where the dense update would keep moving them on momentum (and decaying them, for AdamW).

Id conventions: slot 0 always holds id 0, so a model that treats id 0 as padding
(``mask_zero``, ``TextVectorization``) sees 0 where it saw 0; negative ids (padding) pass through
unchanged and are not gathered. Every id the loss looks up in the table must come from the named
batch columns: an id the loss makes up itself (sampled negatives) has no row in the view.
``make_train_step(sparse_tables=...)`` checks this on its first eager call.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import torch

from .. import tree
from .._transforms import differentiating_levels, host_checks_allowed, is_batched, vmap_levels
from .base import GradientTransformation

__all__ = ["RowIds", "RowView", "unique_ids"]

PyTree = Any


class RowIds(NamedTuple):
    """The rows one batch touches in one table, with static shapes.

    ``ids [N]``: the distinct ids in increasing order, slot 0 always id 0, the unused slots at
    the end filled with 0 (so they repeat slot 0). ``valid [N]`` (bool): which slots hold an id
    of the batch (slot 0 only if the batch holds id 0). ``inverse``: the batch's ids as slot
    numbers, in the batch's shape; negative ids stay as they were.
    """

    ids: torch.Tensor
    valid: torch.Tensor
    inverse: torch.Tensor


def unique_ids(ids: torch.Tensor) -> RowIds:
    """Compact integer ``ids`` (any shape, ``M`` entries) to ``N = M + 1`` slots.

    ``ids[...] == RowIds.ids[inverse[...]]`` for every non-negative id. Shapes depend only on
    ``M``, so the function compiles once per batch shape and runs under ``vmap``.
    """
    if ids.dtype.is_floating_point or ids.dtype.is_complex or ids.dtype == torch.bool:
        raise TypeError(f"unique_ids: ids must be an integer tensor, got {ids.dtype}")
    flat = ids.reshape(-1).to(torch.int64)
    padding = flat < 0
    key = torch.cat([flat.new_zeros(1), torch.where(padding, 0, flat)])
    ordered, order = torch.sort(key)
    starts = torch.cat([ordered.new_zeros(1, dtype=torch.bool), ordered[1:] != ordered[:-1]])
    group = torch.cumsum(starts.to(torch.int64), 0)
    slot_of = torch.zeros_like(group).scatter(0, order, group)
    slots = torch.arange(key.shape[0], device=ids.device)
    # Every member of a group writes the same id: the duplicates agree.
    distinct = torch.zeros_like(key).scatter(0, group, ordered)
    used = slots <= group[-1]
    distinct = torch.where(used, distinct, 0)
    has_zero = ((flat == 0) & ~padding).any()
    valid = used & ((slots != 0) | has_zero)
    inverse = torch.where(padding, flat, slot_of[1:]).reshape(ids.shape)
    return RowIds(distinct, valid, inverse.to(ids.dtype))


def _marker(index: int) -> int:
    """A leading size no real parameter has: marks table ``index`` while tracing ``init``."""
    return (1 << 40) + 7919 * (index + 1)


def _write_rows(
    full: torch.Tensor,
    rows: RowIds,
    new: torch.Tensor,
    old: torch.Tensor,
    stacked: bool | None = None,
):
    """``full`` with ``new`` written at ``rows.ids`` (``old`` = ``full[rows.ids]``).

    Training writes the rows in place with ``index_put_``; the unused slots (which repeat slot
    0's id) write what slot 0 writes, so every write to a row agrees. Under a differentiating
    transform the write is ``full + index_add(new - old)`` over the valid slots instead: out of
    place, each row's gradient reaching its slot once, and avoiding ``index_put``'s backward,
    which ``torch.compile`` (2.13) gets wrong under ``torch.func.grad`` (a gradient off by O(1),
    found by the composability matrix).
    """
    shape = (-1,) + (1,) * (new.ndim - 1)
    valid = rows.valid.reshape(shape)
    if differentiating_levels() or (full.requires_grad and torch.is_grad_enabled()):
        delta = torch.where(valid, new - old, torch.zeros((), dtype=new.dtype, device=new.device))
        return full.index_add(0, rows.ids, delta.to(full.dtype))
    first = torch.where(valid[:1], new[:1], old[:1])
    values = torch.where(valid, new, first).to(full.dtype)
    if _in_place(full, values, stacked):
        return full.index_put_((rows.ids,), values)
    return full.index_put((rows.ids,), values)


def _in_place(full: torch.Tensor, values: torch.Tensor, stacked: bool | None = None) -> bool:
    """Whether the rows may be written into ``full`` itself (no derivative is being taken):
    always outside ``vmap``; under ``vmap`` only when ``full`` is batched wherever ``values``
    is (a sweep over stacked tables; a sweep over hyperparameters alone shares one table among
    its configurations, which must get a copy each). ``stacked=True`` says the tables are
    stacked (``train.make_sweep_step`` knows it), which tracing cannot see."""
    if not vmap_levels() or stacked:
        return True
    if torch.compiler.is_compiling():
        return False  # batchedness is not visible while tracing: the safe choice
    return is_batched(full) or not is_batched(values)


class RowView:
    """The row view of a parameter tree and its optimizer state (see the module docstring).

    Args:
        optimizer: the ``GradientTransformation`` the step runs.
        params: the parameter tree (or one of the same structure and shapes).
        tables: the dotted paths of the embedding tables to update by rows
            (``tree.flatten_with_paths`` names them, e.g. ``"item.weight"``).

    ``RowView.slots[path]`` lists the flat indices of the optimizer-state leaves that hold one
    entry per row of that table (found by running ``optimizer.init`` on the meta device with the
    table's row count replaced by a marker).
    """

    def __init__(
        self, optimizer: GradientTransformation, params: PyTree, tables: Sequence[str]
    ) -> None:
        flat = tree.flatten_with_paths(params)
        position = {path: i for i, (path, _) in enumerate(flat)}
        self.tables = list(tables)
        self.index: dict[str, int] = {}
        for name in self.tables:
            if name not in position:
                raise KeyError(
                    f"sparse table {name!r} is not a parameter; the parameters are {list(position)}"
                )
            leaf = flat[position[name]][1]
            if not isinstance(leaf, torch.Tensor) or leaf.ndim < 1 or not leaf.is_floating_point():
                raise ValueError(
                    f"sparse table {name!r} must be a floating-point tensor of rows, got "
                    f"{getattr(leaf, 'shape', type(leaf).__name__)}"
                )
            self.index[name] = position[name]
        markers = {self.index[name]: _marker(i) for i, name in enumerate(self.tables)}
        meta = [
            torch.empty(
                (markers[i], *leaf.shape[1:]) if i in markers else leaf.shape,
                dtype=leaf.dtype,
                device="meta",
            )
            if isinstance(leaf, torch.Tensor)
            else leaf
            for i, (_, leaf) in enumerate(flat)
        ]
        try:
            # Shapes only: outside any enclosing torch.func transform (a grad through the step).
            with torch._C._DisableFuncTorch():
                traced = optimizer.init(tree.unflatten(tree.structure(params), meta))
        except Exception as e:  # an init that reads values cannot be traced on meta tensors
            raise TypeError(
                f"sparse tables: the optimizer's init could not run on meta tensors ({e}); "
                "row-sparse updates need an init that only builds tensors from the params' shapes"
            ) from e
        self.slots: dict[str, list[int]] = {name: [] for name in self.tables}
        for j, leaf in enumerate(tree.leaves(traced)):
            if not isinstance(leaf, torch.Tensor) or leaf.ndim == 0:
                continue
            for name in self.tables:
                if leaf.shape[0] == markers[self.index[name]]:
                    self.slots[name].append(j)
                elif any(s == markers[self.index[name]] for s in leaf.shape[1:]):
                    raise ValueError(
                        f"sparse table {name!r}: optimizer state leaf {j} holds the table's rows "
                        f"along a dimension other than the first ({tuple(leaf.shape)}); "
                        "row-sparse updates need per-row slots along dimension 0"
                    )

    def gather(
        self, params: PyTree, opt_state: PyTree, rows: Mapping[str, RowIds]
    ) -> tuple[PyTree, PyTree]:
        """``(params, opt_state)`` with each table and its slots replaced by the rows at
        ``rows[path].ids`` (``[N, ...]``)."""
        p = tree.leaves(params)
        s = tree.leaves(opt_state)
        for name in self.tables:
            ids = rows[name].ids
            i = self.index[name]
            if host_checks_allowed(ids) and p[i].shape[0] <= int(ids.max()):
                raise IndexError(
                    f"sparse table {name!r} has {p[i].shape[0]} rows, but the batch holds id "
                    f"{int(ids.max())}"
                )
            p[i] = p[i][ids]
            for j in self.slots[name]:
                s[j] = s[j][ids]
        return tree.unflatten(tree.structure(params), p), tree.unflatten(
            tree.structure(opt_state), s
        )

    def scatter(
        self,
        params: PyTree,
        opt_state: PyTree,
        view_params: PyTree,
        view_state: PyTree,
        new_params: PyTree,
        new_state: PyTree,
        rows: Mapping[str, RowIds],
        stacked: bool | None = None,
    ) -> tuple[PyTree, PyTree]:
        """The full ``(params, opt_state)`` after the optimizer ran on the view: the dense leaves
        from ``new_params`` / ``new_state``, each table and slot with its new rows written in
        (in place unless a derivative is being taken through the step). ``stacked=True``: under
        ``vmap`` the tables are stacked per configuration (a sweep), so they are written in
        place even while ``torch.compile`` traces."""
        full_p, old_p, new_p = (
            tree.leaves(params),
            tree.leaves(view_params),
            tree.leaves(new_params),
        )
        full_s, old_s = tree.leaves(opt_state), tree.leaves(view_state)
        new_s = tree.leaves(new_state)
        for name in self.tables:
            i, r = self.index[name], rows[name]
            new_p[i] = _write_rows(full_p[i], r, new_p[i], old_p[i], stacked)
            for j in self.slots[name]:
                new_s[j] = _write_rows(full_s[j], r, new_s[j], old_s[j], stacked)
        return (
            tree.unflatten(tree.structure(new_params), new_p),
            tree.unflatten(tree.structure(new_state), new_s),
        )
