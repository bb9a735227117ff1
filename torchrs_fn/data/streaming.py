"""Batches of tensors from a Parquet dataset larger than memory: streamed, shuffled, sharded.

``ParquetLoader`` is ``Loader`` for data that does not fit in memory. It never reads the whole
dataset: the unit it reads is one Parquet *row group*, and it holds one bounded buffer of rows at a
time. Its parts:

* **Row-group order.** Each epoch visits the dataset's row groups in the seeded order
  ``np.random.default_rng([seed, epoch]).permutation(num_row_groups)`` (file order without
  shuffle); the row groups are listed in the order ``pyarrow.dataset`` lists the files, then by row
  group within a file. Only the row counts in the Parquet footers are read to plan an epoch.
* **Sharding.** Rank ``r`` of ``W`` takes the row groups at positions ``r, r + W, r + 2W, ...`` of
  that order, so ranks see disjoint rows and together every row once per epoch. All ranks compute
  the same order from ``(seed, epoch)``; no communication is needed.
* **Bounded shuffle buffer** (``shuffle_buffer`` rows, like ``tf.data``'s ``shuffle(buffer_size)``
  but a block at a time instead of a row at a time, so that it stays vectorised): whole row groups
  are appended to the buffer until it holds at least ``shuffle_buffer`` rows (and at least one
  batch); a random order of its rows is drawn and batches are gathered in that order until about
  half of the buffer is left; then it is refilled and a new order is drawn over the rows that stayed
  and the new ones together, so they mix. Every batch but an epoch's last has ``batch_size`` rows.
  A batch's rows come from the last few row groups read: a larger buffer mixes more, and the
  shuffled row-group order already mixes across the whole dataset at the scale of row groups.
* **Resuming.** ``epoch_batches(epoch, start=i)`` yields exactly ``list(epoch)[i:]``. The plan
  of an epoch (which rows are in the buffer, in which order) is replayed on row *positions* only,
  which needs no data, and the buffer at batch ``i`` is then rebuilt by reading just the row groups
  whose rows are still in it.

Each row group's columns become numpy arrays with the same conversion (and the same errors) as
``Loader``'s; batches are ``dict[str, torch.Tensor]``, ``[B]`` per scalar column, ``[B, L]`` per list
column.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.dataset as pads
import torch

from .loader import (
    _check_batch_size,
    _check_columns,
    _check_finite,
    _check_seed,
    _column_to_numpy,
    _is_path,
    _missing_columns_error,
)

__all__ = ["ParquetLoader"]

PathLike = str | os.PathLike
Batch = dict[str, torch.Tensor]


def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


def _rank_and_world_size(rank: Any, world_size: Any) -> tuple[int, int]:
    """Explicit values win; missing ones come from torch.distributed when it is initialised."""
    dist = torch.distributed
    initialised = dist.is_available() and dist.is_initialized()
    if world_size is None:
        world_size = dist.get_world_size() if initialised else 1
    if rank is None:
        rank = dist.get_rank() if initialised else 0
    world_size = _check_int("world_size", world_size, 1)
    rank = _check_int("rank", rank, 0)
    if rank >= world_size:
        raise ValueError(
            f"rank must be in 0..{world_size - 1} (world_size={world_size}), got {rank}"
        )
    return rank, world_size


def _open_dataset(source: Any) -> pads.FileSystemDataset:
    if _is_path(source) or (
        isinstance(source, (list, tuple)) and source and all(_is_path(p) for p in source)
    ):
        paths = [os.fspath(source)] if _is_path(source) else [os.fspath(p) for p in source]
        for p in paths:
            if not os.path.exists(p):
                raise FileNotFoundError(f"Parquet path {p!r} does not exist")
        return pads.dataset(paths if len(paths) > 1 else paths[0], format="parquet")
    if isinstance(source, pads.FileSystemDataset):
        if not isinstance(source.format, pads.ParquetFileFormat):
            raise TypeError(
                f"the dataset must be in Parquet format (row groups are what is streamed), "
                f"got format {source.format.default_extname!r}"
            )
        return source
    raise TypeError(
        "source must be a path or list of paths to Parquet files (or folders of them), or a "
        "Parquet pyarrow.dataset.FileSystemDataset; got "
        f"{type(source).__module__}.{type(source).__qualname__}"
    )


@dataclass
class _Refill:
    """Move the buffer's slots ``keep`` (in that order) to its front and append the rows of
    ``groups`` (indices into the loader's row groups) after them: ``size`` rows in all."""

    keep: np.ndarray
    groups: list[int]
    size: int


@dataclass
class _Emit:
    """The next batch: the buffer's rows at ``slots``."""

    slots: np.ndarray


class _Plan:
    """One epoch of one rank as buffer operations on row *positions* (no data is read).

    Positions number the rank's rows in the order its row groups are read: row group ``k`` of the
    rank holds positions ``offsets[k] .. offsets[k + 1] - 1``. After each step, ``slot_positions``
    says which row each buffer slot holds and ``order[taken:]`` are the slots not yet emitted, in
    the order they will be; the data side applies the same steps to real rows.
    """

    def __init__(self, loader: ParquetLoader, epoch: int) -> None:
        self.groups = loader._rank_groups(epoch)
        sizes = loader._group_rows[self.groups]
        self.offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        self.total = loader.num_batches(epoch)
        self.slot_positions = np.empty(0, dtype=np.int64)
        self.order = np.empty(0, dtype=np.int64)
        self.taken = 0
        # Rows the buffer can ever hold: the refill rule in steps() never goes past
        # max(shuffle_buffer, batch_size) + batch_size + the largest row group, nor the shard.
        largest = int(sizes.max()) if len(sizes) else 0
        bs, capacity = loader.batch_size, loader.shuffle_buffer
        self.pool_rows = min(max(capacity, bs) + bs + largest, int(self.offsets[-1]))
        self._loader = loader
        self._rng = (
            np.random.default_rng([loader.seed, epoch, loader.rank, 1]) if loader.shuffle else None
        )

    def steps(self) -> Iterator[_Refill | _Emit]:
        bs, capacity = self._loader.batch_size, self._loader.shuffle_buffer
        low = capacity // 2
        next_group, emitted = 0, 0
        while emitted < self.total:
            added: list[int] = []
            size = len(self.order) - self.taken
            while next_group < len(self.groups) and (size < capacity or size < bs):
                added.append(next_group)
                size += int(self.offsets[next_group + 1] - self.offsets[next_group])
                next_group += 1
            if added:
                keep = self.order[self.taken :]
                new = np.arange(self.offsets[added[0]], self.offsets[added[-1] + 1])
                self.slot_positions = np.concatenate([self.slot_positions[keep], new])
                self.order = (
                    self._rng.permutation(size) if self._rng is not None else np.arange(size)
                )
                self.taken = 0
                yield _Refill(keep, [int(self.groups[k]) for k in added], size)
            exhausted = next_group == len(self.groups)
            if exhausted and len(self.order) == self.taken:
                raise RuntimeError(  # num_batches and the plan disagree: a bug, not bad input
                    f"the epoch ran out of rows after {emitted} of {self.total} batches"
                )
            first = True
            while emitted < self.total:
                left = len(self.order) - self.taken
                n = min(bs, left)
                if n == 0 or (n < bs and not exhausted):
                    break
                if not (first or exhausted or left - bs >= low):
                    break
                slots = self.order[self.taken : self.taken + n]
                self.taken += n
                emitted += 1
                first = False
                yield _Emit(slots)

    def pending(self) -> tuple[np.ndarray, np.ndarray]:
        """The slots not yet emitted and the rank's row positions they hold."""
        slots = self.order[self.taken :]
        return slots, self.slot_positions[slots]


class ParquetLoader:
    """Streams a Parquet dataset in shuffled batches of ``dict[str, torch.Tensor]``, by rank.

    Args:
        source: a path to a Parquet file or a folder of them, a list of such paths, or a Parquet
            ``pyarrow.dataset.FileSystemDataset``. Only the footers are read here.
        batch_size: rows per batch, an int >= 1.
        columns: names of the columns to load, in the order the batch dicts list them; all by
            default.
        shuffle: visit the row groups in a seeded order and shuffle rows within the buffer; False
            yields this rank's rows in file order.
        seed: non-negative int. Epoch ``e`` reads the row groups in the order
            ``np.random.default_rng([seed, e]).permutation(num_row_groups)`` and shuffles the
            buffer with ``np.random.default_rng([seed, e, rank, 1])``. No global RNG is read.
        shuffle_buffer: rows the buffer is filled to before batches are drawn from it (>= 1).
            The buffer is allocated once per epoch with room for
            ``max(shuffle_buffer, batch_size) + batch_size + largest row group`` rows of the loaded
            columns (fewer if the shard is smaller); on top of it come half a buffer while it is
            refilled and the one row group being read. It does not grow with the dataset.
        rank: this process's shard: it reads the row groups at positions ``rank,
            rank + world_size, ...`` of the epoch's order. Default: ``torch.distributed``'s rank
            when it is initialised, else 0.
        world_size: the number of shards. Default: ``torch.distributed``'s world size when it is
            initialised, else 1.
        drop_last: drop the short last batch, and make every rank yield the same number of batches:
            ``min`` over ranks of their full batches (see "Ranks" below).
        device: where batches go, e.g. ``"cuda"`` (moved with ``non_blocking=True``); CPU by
            default.
        allow_nan: float columns holding NaN or infinity are an error (found when their row group
            is read, naming the file and row group), as in ``Loader``; True loads them as they are.

    Ranks: sharding is by row group, so shards are as even as the row groups are. With
    ``drop_last=False`` every row is yielded exactly once per epoch, but ranks may yield different
    numbers of batches, which would leave a data-parallel step waiting for a collective the other
    ranks never start. Data-parallel training should therefore either pass ``drop_last=True``
    (each rank yields ``min`` over ranks of ``shard_rows // batch_size`` batches, computed from the
    footers on every rank without communication; the rows beyond that, at most the difference
    between the largest and smallest shard plus a batch, are skipped this epoch and, with shuffle,
    are other rows the next epoch), or write the dataset so the shards are equal: every row group
    the same number of rows and a number of row groups divisible by ``world_size``.

    ``len(loader)`` is this rank's batches in the epoch the next ``iter()`` uses
    (``num_batches(loader.epoch)``); it changes between epochs only when the row groups differ in
    size. Each ``iter()`` is a new epoch (``self.epoch``, then one is added); ``set_epoch(e)``
    chooses it, as with ``Loader`` and ``DistributedSampler``; ``epoch_batches(e, start=i)``
    replays epoch ``e`` from its batch ``i``.

    Each batch is a fresh copy gathered from the buffer (which is refilled in place), so it may be
    kept or modified freely; unlike ``Loader``'s unshuffled batches it is never a view of Arrow
    memory.
    """

    def __init__(
        self,
        source: PathLike | Sequence[PathLike] | pads.FileSystemDataset,
        batch_size: int,
        *,
        columns: Sequence[str] | None = None,
        shuffle: bool = True,
        seed: int = 0,
        shuffle_buffer: int = 65536,
        rank: int | None = None,
        world_size: int | None = None,
        drop_last: bool = False,
        device: str | torch.device | None = None,
        allow_nan: bool = False,
    ) -> None:
        self.batch_size = _check_batch_size(batch_size)
        self.seed = _check_seed(seed)
        self.shuffle = bool(shuffle)
        self.shuffle_buffer = _check_int("shuffle_buffer", shuffle_buffer, 1)
        self.rank, self.world_size = _rank_and_world_size(rank, world_size)
        self.drop_last = bool(drop_last)
        self.device = torch.device(device) if device is not None else None
        self.allow_nan = bool(allow_nan)
        self._row_shapes: dict[str, tuple[int, ...]] | None = None
        names = _check_columns(columns)

        self._dataset = _open_dataset(source)
        available = self._dataset.schema.names
        if names is not None:
            missing = [c for c in names if c not in available]
            if missing:
                raise _missing_columns_error(missing, available)
        self.columns: tuple[str, ...] = tuple(names if names is not None else available)
        if not self.columns:
            raise ValueError("the dataset has no columns")
        self._schema = pa.schema([self._dataset.schema.field(c) for c in self.columns])
        # Unsupported types (strings, timestamps, ...) fail now, not at the first batch.
        for field in self._schema:
            _column_to_numpy(field.name, pa.chunked_array([], type=field.type))

        self._fragments: list[pads.ParquetFileFragment] = []
        rows: list[int] = []
        for fragment in self._dataset.get_fragments():
            for piece in fragment.split_by_row_group():
                n = piece.row_groups[0].num_rows
                if n > 0:
                    self._fragments.append(piece)
                    rows.append(n)
        self._group_rows = np.asarray(rows, dtype=np.int64)
        self.num_row_groups = len(self._fragments)
        self.num_rows = int(self._group_rows.sum())
        if self.num_rows == 0:
            raise ValueError(f"the Parquet dataset {self._describe_source()} has no rows")
        if self.num_row_groups < self.world_size:
            raise ValueError(
                f"the dataset has {self.num_row_groups} row group(s), fewer than world_size="
                f"{self.world_size}: some rank would get no rows. Rewrite it with smaller row "
                "groups (pyarrow.parquet.write_table(..., row_group_size=...))"
            )
        if self.drop_last:
            # The fewest rows a shard can get in any epoch: the smallest row groups, as many as
            # the rank with the fewest row groups takes.
            fewest = int(np.sort(self._group_rows)[: self.num_row_groups // self.world_size].sum())
            if fewest < self.batch_size:
                raise ValueError(
                    f"drop_last=True with batch_size={self.batch_size} could leave a rank with no "
                    f"batch at all (a shard of world_size={self.world_size} may hold only {fewest} "
                    "rows)"
                )
        self.epoch = 0

    def _describe_source(self) -> str:
        files = self._dataset.files
        return repr(files[0]) if len(files) == 1 else f"of {len(files)} files"

    def set_epoch(self, epoch: int) -> None:
        """Sets the epoch the next ``iter()`` uses (and so its order)."""
        self.epoch = _check_int("epoch", epoch, 0)

    def row_group_order(self, epoch: int) -> np.ndarray:
        """All ranks' row-group order in ``epoch``: ``[num_row_groups]`` int64 (``arange`` without
        shuffle); rank ``r`` takes ``order[r::world_size]``."""
        epoch = _check_int("epoch", epoch, 0)
        if not self.shuffle:
            return np.arange(self.num_row_groups)
        return np.random.default_rng([self.seed, epoch]).permutation(self.num_row_groups)

    def _rank_groups(self, epoch: int, rank: int | None = None) -> np.ndarray:
        rank = self.rank if rank is None else rank
        return self.row_group_order(epoch)[rank :: self.world_size]

    def shard_rows(self, epoch: int) -> np.ndarray:
        """Rows each rank gets in ``epoch``: ``[world_size]`` int64, from the footers only."""
        order = self.row_group_order(epoch)
        return np.array(
            [self._group_rows[order[r :: self.world_size]].sum() for r in range(self.world_size)],
            dtype=np.int64,
        )

    def num_batches(self, epoch: int) -> int:
        """Batches this rank yields in ``epoch``."""
        rows = self.shard_rows(epoch)
        if self.drop_last:
            return int(rows.min()) // self.batch_size
        return math.ceil(int(rows[self.rank]) / self.batch_size)

    def __len__(self) -> int:
        """Batches this rank yields in the epoch the next ``iter()`` uses."""
        return self.num_batches(self.epoch)

    def __iter__(self) -> Iterator[Batch]:
        epoch = self.epoch
        self.epoch = epoch + 1
        return self._epoch_batches(epoch, 0)

    def epoch_batches(self, epoch: int, *, start: int = 0) -> Iterator[Batch]:
        """The batches of ``epoch`` from batch ``start`` on: ``list(iter(...))[start:]`` of that
        epoch, for this rank. Unlike ``iter()`` this leaves ``self.epoch`` alone.

        The batches before ``start`` are not built: the buffer's plan is replayed on row positions
        and only the row groups still holding rows of the buffer at batch ``start`` are read.
        ``start`` may be ``num_batches(epoch)`` (nothing left); beyond that is an error.
        """
        epoch = _check_int("epoch", epoch, 0)
        if isinstance(start, bool) or not isinstance(start, (int, np.integer)):
            raise ValueError(f"start must be an int, got {start!r}")
        total = self.num_batches(epoch)
        if not 0 <= start <= total:
            raise ValueError(f"start must be in 0..{total} (batches in epoch {epoch}), got {start}")
        return self._epoch_batches(epoch, int(start))

    def _epoch_batches(self, epoch: int, first: int) -> Iterator[Batch]:
        plan = _Plan(self, epoch)
        steps = plan.steps()
        # The buffer is allocated once per epoch and refilled in place; batches are gathered out
        # of it (copies), so it is never shared with the caller and its size bounds the memory.
        pool: dict[str, np.ndarray] = {}
        if first > 0:
            emitted = 0
            for step in steps:
                if isinstance(step, _Emit):
                    emitted += 1
                    if emitted == first:
                        break
            pool = self._rebuild(plan)
        for step in steps:
            if isinstance(step, _Emit):
                batch = {k: torch.from_numpy(a[step.slots]) for k, a in pool.items()}
                if self.device is not None:
                    batch = {k: t.to(self.device, non_blocking=True) for k, t in batch.items()}
                yield batch
                continue
            kept = len(step.keep)
            for a in pool.values():
                a[:kept] = a[step.keep]
            end = kept
            for group in step.groups:
                data = self._read(group)
                rows = len(next(iter(data.values())))
                pool = self._ensure_pool(pool, data, end + rows, plan.pool_rows)
                for k, a in data.items():
                    pool[k][end : end + rows] = a
                end += rows
                del data

    def _ensure_pool(
        self, pool: dict[str, np.ndarray], like: dict[str, np.ndarray], needed: int, rows: int
    ) -> dict[str, np.ndarray]:
        """``pool`` if it has ``needed`` rows, else one of ``max(needed, rows)`` rows (with the
        old rows copied)."""
        if pool and len(next(iter(pool.values()))) >= needed:
            return pool
        rows = max(needed, rows)
        return {k: self._grow(pool.get(k), (rows, *a.shape[1:]), a.dtype) for k, a in like.items()}

    @staticmethod
    def _grow(old: np.ndarray | None, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        new = np.empty(shape, dtype=dtype)
        if old is not None:
            new[: len(old)] = old
        return new

    def _read(self, group: int) -> dict[str, np.ndarray]:
        """One row group as ``{column: numpy array}``, converted and checked like ``Loader``'s."""
        piece = self._fragments[group]
        table = piece.to_table(columns=list(self.columns), schema=self._dataset.schema)
        where = f"{piece.path!r}, row group {piece.row_groups[0].id}"
        out = {}
        for name in self.columns:
            try:
                array = _column_to_numpy(name, table.column(name))
                if not self.allow_nan:
                    _check_finite(name, array)
            except (TypeError, ValueError) as e:
                raise type(e)(f"{e} (in {where})") from e
            out[name] = array
        if self._row_shapes is None:
            self._row_shapes = {k: a.shape[1:] for k, a in out.items()}
        else:
            for k, a in out.items():
                if a.shape[1:] != self._row_shapes[k]:
                    raise ValueError(
                        f"column {k!r} has lists of length {a.shape[1:]} in {where} but "
                        f"{self._row_shapes[k]} in the row groups read before; the loader needs "
                        "every row of a list column to have the same length"
                    )
        return out

    def _rebuild(self, plan: _Plan) -> dict[str, np.ndarray]:
        """The buffer holding the rows not yet emitted, reading only the row groups they are in."""
        slots, positions = plan.pending()
        pool: dict[str, np.ndarray] = {}
        owner = np.searchsorted(plan.offsets, positions, side="right") - 1
        for k in np.unique(owner):
            mine = owner == k
            data = self._read(int(plan.groups[k]))
            pool = self._ensure_pool(pool, data, len(plan.slot_positions), plan.pool_rows)
            for c, a in data.items():
                pool[c][slots[mine]] = a[positions[mine] - plan.offsets[k]]
        return pool

    def __repr__(self) -> str:
        return (
            f"ParquetLoader(num_rows={self.num_rows}, row_groups={self.num_row_groups}, "
            f"batch_size={self.batch_size}, shuffle={self.shuffle}, seed={self.seed}, "
            f"shuffle_buffer={self.shuffle_buffer}, rank={self.rank}, "
            f"world_size={self.world_size}, drop_last={self.drop_last}, epoch={self.epoch}, "
            f"columns={list(self.columns)}, device={self.device})"
        )
