"""Batches of tensors from an Arrow table: seeded shuffle, zero-copy where it can be.

``Loader`` is the last step of the data flow: columns stay columnar (Arrow) until here, are turned
into numpy arrays once at construction, and every batch is then only a numpy slice (no shuffle) or a
numpy gather (shuffle) handed to ``torch.from_numpy``. There is no per-row Python work.

It plays the part of ``tf.data.Dataset.from_tensor_slices(...).shuffle(...).batch(...)`` in the
TFRS tutorials, with two deliberate differences:

* the shuffle is a full uniform permutation of the rows per epoch (TF's shuffle is a bounded buffer
  unless the buffer holds the whole dataset), derived from ``(seed, epoch)`` with
  ``np.random.default_rng([seed, epoch])``, so any epoch can be replayed without the ones before it;
* batches are ``dict[str, torch.Tensor]`` (a ``[B]`` tensor per scalar column, ``[B, L]`` per
  list column whose rows all have length ``L``).

Unshuffled batches are views of the Arrow buffers (read-only memory): do not write into them in
place; ``.clone()`` first if a transform must.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import torch

__all__ = ["Loader"]

PathLike = str | os.PathLike
Source = pa.Table | pa.RecordBatch | PathLike | Sequence[PathLike] | pads.Dataset
Batch = dict[str, torch.Tensor]

_readonly_warning_consumed = False


def _consume_readonly_warning() -> None:
    """Fire torch's one-time 'NumPy array is not writable' warning silently, once per process.

    Zero-copy batches are views of Arrow's immutable buffers, so ``torch.from_numpy`` sees read-only
    arrays. Torch warns about that once per process (TORCH_WARN_ONCE); the loader documents that its
    batches are read-only, so it spends that one warning here, outside the batch loop, instead of
    wrapping every batch in ``warnings.catch_warnings`` (which is not thread-safe).
    """
    global _readonly_warning_consumed
    if _readonly_warning_consumed:
        return
    readonly = np.zeros(1, dtype=np.int64)
    readonly.flags.writeable = False
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        torch.from_numpy(readonly)
    _readonly_warning_consumed = True


def _check_batch_size(batch_size: Any) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)):
        # ValueError, not TypeError: every bad batch_size is one kind of error for callers.
        raise ValueError(
            f"batch_size must be a positive int, got {batch_size!r} "
            f"(type {type(batch_size).__name__})"
        )
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {int(batch_size)}")
    return int(batch_size)


def _check_seed(seed: Any) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    return int(seed)


def _check_shard(rank: Any, world_size: Any) -> tuple[int, int]:
    """``(rank, world_size)``: as given, or ``torch.distributed``'s, or a single process."""
    if rank is None and world_size is None:
        dist = torch.distributed
        if dist.is_available() and dist.is_initialized():
            return dist.get_rank(), dist.get_world_size()
        return 0, 1
    if rank is None or world_size is None:
        raise ValueError(
            f"rank and world_size go together: got rank={rank!r}, world_size={world_size!r}"
        )
    for name, v in (("rank", rank), ("world_size", world_size)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            raise ValueError(f"{name} must be an int, got {v!r}")
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"need 0 <= rank < world_size, got rank={rank}, world_size={world_size}")
    return int(rank), int(world_size)


def _check_columns(columns: Any) -> list[str] | None:
    if columns is None:
        return None
    if isinstance(columns, (str, bytes)):
        raise TypeError(
            f"columns must be a sequence of column names, got the single string {columns!r}; "
            f"write columns=[{columns!r}]"
        )
    names = list(columns)
    for name in names:
        if not isinstance(name, str):
            raise TypeError(f"columns must hold column names (str), got {name!r} in {columns!r}")
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"columns lists {duplicates} more than once: {names}")
    if not names:
        raise ValueError("columns is empty: name at least one column to load")
    return names


def _missing_columns_error(missing: list[str], available: Sequence[str]) -> ValueError:
    return ValueError(
        f"column(s) {missing} not found in the source; available columns: {list(available)}"
    )


def _is_path(x: Any) -> bool:
    return isinstance(x, (str, os.PathLike))


def _read_source(source: Any, columns: list[str] | None) -> pa.Table:
    """Reads ``source`` into one ``pa.Table`` holding only ``columns`` (all when None)."""
    if isinstance(source, pa.RecordBatch):
        source = pa.Table.from_batches([source])
    if isinstance(source, pa.Table):
        if columns is not None:
            missing = [c for c in columns if c not in source.column_names]
            if missing:
                raise _missing_columns_error(missing, source.column_names)
            source = source.select(columns)
        return source
    if _is_path(source) or (
        isinstance(source, (list, tuple)) and source and all(_is_path(p) for p in source)
    ):
        paths = [os.fspath(source)] if _is_path(source) else [os.fspath(p) for p in source]
        source = pads.dataset(paths, format="parquet")
    if isinstance(source, pads.Dataset):
        names = source.schema.names
        if columns is not None:
            missing = [c for c in columns if c not in names]
            if missing:
                raise _missing_columns_error(missing, names)
        return source.to_table(columns=columns)
    raise TypeError(
        "source must be a pyarrow.Table, a path or list of paths to Parquet files, or a "
        f"pyarrow.dataset.Dataset; got {type(source).__module__}.{type(source).__qualname__}"
    )


def _single_array(column: pa.ChunkedArray) -> pa.Array:
    # combine_chunks copies even a single chunk; take that chunk as is so numbers stay zero-copy.
    if column.num_chunks == 1:
        return column.chunk(0)
    return column.combine_chunks()


def _is_numeric(t: pa.DataType) -> bool:
    return pa.types.is_integer(t) or pa.types.is_floating(t)


def _scalar_to_numpy(name: str, arr: pa.Array, where: str) -> np.ndarray:
    """A non-null integer/float/bool array -> 1-D numpy (zero-copy for integers and floats)."""
    t = arr.type
    if arr.null_count:
        raise ValueError(
            f"column {name!r} ({t}) has {arr.null_count} null {where}; the loader takes no nulls. "
            "Fill them (pyarrow.compute.fill_null), drop those rows, or leave the column out with "
            "columns=[...]"
        )
    if _is_numeric(t):
        return arr.to_numpy(zero_copy_only=True)
    if pa.types.is_boolean(t):
        return arr.to_numpy(zero_copy_only=False)  # Arrow packs bools in bits: one copy
    raise _unsupported_type_error(name, t)


def _unsupported_type_error(name: str, t: pa.DataType) -> TypeError:
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
        hint = (
            "map it to integer ids with torchrs_fn.data.StringLookup first, or leave it out with "
            "columns=[...]"
        )
    elif pa.types.is_dictionary(t):
        hint = (
            "decode it and map the values to ids with torchrs_fn.data.StringLookup / IntegerLookup, "
            "or leave it out with columns=[...]"
        )
    elif (
        pa.types.is_binary(t)
        or pa.types.is_large_binary(t)
        or pa.types.is_fixed_size_binary(t)
        or pa.types.is_binary_view(t)
    ):
        hint = "map it to integer ids first, or leave it out with columns=[...]"
    elif pa.types.is_temporal(t):
        hint = "cast it to int64 (pyarrow.compute.cast) first, or leave it out with columns=[...]"
    else:
        hint = (
            "supported are integer, float and bool columns, and (fixed-size) lists of numbers "
            "whose rows all have the same length; convert it, or leave it out with columns=[...]"
        )
    return TypeError(f"column {name!r} has type {t}, which the loader cannot batch: {hint}")


def _column_to_numpy(name: str, column: pa.ChunkedArray) -> np.ndarray:
    """One Arrow column -> a numpy array of shape ``[N]`` or ``[N, L]``, checked for the loader."""
    t = column.type
    arr = _single_array(column)
    if pa.types.is_fixed_size_list(t) or pa.types.is_list(t) or pa.types.is_large_list(t):
        value_type = t.value_type
        if not (_is_numeric(value_type) or pa.types.is_boolean(value_type)):
            raise _unsupported_type_error(name, t)
        if arr.null_count:
            raise ValueError(
                f"column {name!r} ({t}) has {arr.null_count} null rows; the loader takes no nulls. "
                "Fill them, drop those rows, or leave the column out with columns=[...]"
            )
        if pa.types.is_fixed_size_list(t):
            width = t.list_size
        else:
            lengths = pc.list_value_length(arr).to_numpy(zero_copy_only=False)
            width = int(lengths[0]) if len(lengths) else 0
            if len(lengths) and (lengths.min() != width or lengths.max() != width):
                ragged_row = int(np.flatnonzero(lengths != width)[0])
                raise ValueError(
                    f"column {name!r} ({t}) is ragged: row 0 has {width} values, row {ragged_row} "
                    f"has {int(lengths[ragged_row])} (lengths range {int(lengths.min())}.."
                    f"{int(lengths.max())}); the loader needs every row of a list column to have "
                    "the same length. Pad or truncate it first, or leave it out with columns=[...]"
                )
        values = _scalar_to_numpy(name, arr.flatten(), "values inside its lists")
        return values.reshape(len(arr), width)
    return _scalar_to_numpy(name, arr, "rows")


def _wants_cuda(device: torch.device | None) -> bool:
    return device is not None and device.type == "cuda"


def _check_finite(name: str, array: np.ndarray) -> None:
    if not np.issubdtype(array.dtype, np.floating):
        return
    bad = ~np.isfinite(array)
    if bad.ndim > 1:
        bad = bad.any(axis=tuple(range(1, bad.ndim)))
    if bad.any():
        rows = np.flatnonzero(bad)
        raise ValueError(
            f"column {name!r} has {rows.size} row(s) with NaN or infinite values (first at row "
            f"{int(rows[0])}); clean or impute them, or pass allow_nan=True to load them as they are"
        )


class Loader:
    """Iterates over a table in batches of ``batch_size`` rows as ``dict[str, torch.Tensor]``.

    Args:
        source: a ``pyarrow.Table`` (or ``RecordBatch``), a path or list of paths to Parquet files
            (or folders of them), or a ``pyarrow.dataset.Dataset``. It is read into memory once.
        batch_size: rows per batch, an int >= 1.
        shuffle: if True, each epoch visits the rows in a fresh uniform random order.
        seed: non-negative int; epoch ``e`` uses the permutation
            ``np.random.default_rng([seed, e]).permutation(num_rows)``. No global RNG is read.
        drop_remainder: drop the last batch when it has fewer than ``batch_size`` rows (like
            ``tf.data.Dataset.batch(drop_remainder=True)``); by default it is kept.
        columns: names of the columns to load, in the order the batch dicts list them; all columns
            by default.
        transform: optional ``f(batch) -> anything`` applied to each batch after it became tensors
            (on ``device`` when one is given); its result is what iteration yields.
        device: where batches go, e.g. ``"cuda"``; moved with ``non_blocking=True``. None keeps
            them on the CPU (as zero-copy views where possible).
        pin_memory: copy each CPU batch into pinned memory before moving it, so the copy to the
            GPU is asynchronous. Defaults to True when ``device`` is CUDA, False otherwise; pinning
            happens only when CUDA is available.
        allow_nan: float columns holding NaN or infinity are an error by default (a NaN label
            or feature would silently poison training); pass True to load them as they are.
        rank: data-parallel sharding: this process yields only rank ``rank``'s share of each
            batch (see "Sharding" below). ``rank`` and ``world_size`` default to
            ``torch.distributed``'s when a process group is initialised, else to a single
            process (0 and 1); give both or neither. Pass ``rank=0, world_size=1`` for a loader
            every rank reads whole (evaluation on rank 0 only, a sweep spread over ranks).
        world_size: the number of ranks the batches are shared among (see ``rank``).

    Each column becomes a numpy array once, here: integers and floats without nulls are zero-copy
    views of the Arrow buffers, bools and variable-size lists are copied once. A column of lists
    whose rows all have length ``L`` becomes an ``[N, L]`` array. Strings, nulls and ragged lists
    raise ``TypeError`` / ``ValueError`` naming the column.

    Iteration yields ``{name: tensor}`` with tensors of shape ``[B]`` or ``[B, L]``, ``B`` =
    ``batch_size`` (the last batch may be smaller unless ``drop_remainder``). Each ``iter()`` is a
    new epoch: it uses ``self.epoch`` and then adds one to it; ``set_epoch(e)`` chooses the epoch
    the next ``iter()`` uses, like ``torch.utils.data.DistributedSampler.set_epoch``.
    ``epoch_batches(e, start=i)`` replays epoch ``e`` from its batch ``i`` (to resume training).

    Sharding (``world_size`` W > 1): every rank computes the same permutation of the epoch and
    cuts it into *global* batches of ``W * batch_size`` rows, exactly the batches of one process
    with ``batch_size * W``. Global batch k is cut into W contiguous parts, part r being rank r's
    batch k: ``batch_size`` rows each for a full batch; the last, partial global batch of m rows
    is split as evenly as it goes (``m // W`` rows each, one more for the first ``m % W`` ranks).
    Should it have fewer rows than ranks (0 < m < W), it is joined to the global batch before
    it, so that no rank gets an empty batch. So every rank yields the same number of batches
    (``len(loader)``), the ranks' rows are disjoint and together cover every row exactly once
    per epoch; only the last batch may differ in size across ranks. ``drop_remainder`` drops a
    last global batch shorter than ``W * batch_size``. Fewer rows than ranks is an error.

    Without shuffle and device the batch tensors share memory with the Arrow table (read-only:
    don't write into them). With shuffle each batch is a gather of a contiguous slice of the
    epoch's permutation.
    """

    def __init__(
        self,
        source: Source,
        batch_size: int,
        *,
        shuffle: bool = False,
        seed: int = 0,
        drop_remainder: bool = False,
        columns: Sequence[str] | None = None,
        transform: Callable[[Batch], Any] | None = None,
        device: str | torch.device | None = None,
        pin_memory: bool | None = None,
        allow_nan: bool = False,
        rank: int | None = None,
        world_size: int | None = None,
    ) -> None:
        self.batch_size = _check_batch_size(batch_size)
        self.rank, self.world_size = _check_shard(rank, world_size)
        self.seed = _check_seed(seed)
        self.shuffle = bool(shuffle)
        self.drop_remainder = bool(drop_remainder)
        if transform is not None and not callable(transform):
            raise TypeError(f"transform must be callable, got {type(transform).__name__}")
        self.transform = transform
        self.device = torch.device(device) if device is not None else None
        self.pin_memory = _wants_cuda(self.device) if pin_memory is None else bool(pin_memory)

        table = _read_source(source, _check_columns(columns))
        if table.num_columns == 0:
            raise ValueError("the source has no columns")
        if table.num_rows == 0:
            raise ValueError(f"the source table is empty (0 rows; columns {table.column_names})")
        self.columns: tuple[str, ...] = tuple(table.column_names)
        self.num_rows: int = table.num_rows
        self._arrays: dict[str, np.ndarray] = {
            name: _column_to_numpy(name, table.column(name)) for name in self.columns
        }
        _consume_readonly_warning()
        if not allow_nan:
            for name, array in self._arrays.items():
                _check_finite(name, array)
        self._dtypes = {k: torch.from_numpy(a[:0]).dtype for k, a in self._arrays.items()}
        # Keep the table alive: the zero-copy arrays point into its buffers.
        self._table = table
        if self.drop_remainder and self.num_rows < self.batch_size * self.world_size:
            per = "" if self.world_size == 1 else f" x world_size={self.world_size}"
            raise ValueError(
                f"drop_remainder=True with batch_size={self.batch_size}{per} > {self.num_rows} "
                "rows would yield no batch at all"
            )
        if self.num_rows < self.world_size:
            raise ValueError(
                f"the source has {self.num_rows} rows, fewer than world_size={self.world_size} "
                "ranks: some rank would get no row at all"
            )
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Sets the epoch the next ``iter()`` uses (and so its shuffle order)."""
        if isinstance(epoch, bool) or not isinstance(epoch, (int, np.integer)) or epoch < 0:
            raise ValueError(f"epoch must be a non-negative int, got {epoch!r}")
        self.epoch = int(epoch)

    def __len__(self) -> int:
        """Batches per epoch (of this rank: every rank has as many)."""
        span = self.batch_size * self.world_size
        if self.drop_remainder:
            return self.num_rows // span
        n = math.ceil(self.num_rows / span)
        tail = self.num_rows - (n - 1) * span
        if n > 1 and tail < self.world_size:
            n -= 1  # a tail with fewer rows than ranks joins the global batch before it
        return n

    def _rows(self, b: int) -> tuple[int, int]:
        """``[start, stop)`` of this rank's batch ``b`` in the epoch's row order."""
        span = self.batch_size * self.world_size
        start = b * span
        stop = min(start + span, self.num_rows)
        if not self.drop_remainder and b == len(self) - 1:
            stop = self.num_rows  # may hold a tail joined to it (see __len__)
        if self.world_size == 1:
            return start, stop
        m = stop - start
        q, extra = divmod(m, self.world_size)
        r = self.rank
        first = start + r * q + min(r, extra)
        return first, first + q + (1 if r < extra else 0)

    def permutation(self, epoch: int) -> np.ndarray:
        """The row order of ``epoch``: ``[num_rows]`` int64 (``arange`` without shuffle)."""
        if not self.shuffle:
            return np.arange(self.num_rows)
        return np.random.default_rng([self.seed, int(epoch)]).permutation(self.num_rows)

    def __iter__(self) -> Iterator[Any]:
        epoch = self.epoch
        self.epoch = epoch + 1
        return self._epoch_batches(epoch)

    def epoch_batches(self, epoch: int, *, start: int = 0) -> Iterator[Any]:
        """The batches of ``epoch`` from batch ``start`` on: ``list(iter(...))[start:]`` of that
        epoch (same permutation, same batches), without building the first ``start`` batches.

        Restarting an epoch in the middle is what resuming from a checkpoint needs
        (``train.fit(checkpoint=...)``). Unlike ``iter()`` this leaves ``self.epoch`` alone.
        ``start`` may be ``len(self)`` (nothing left); beyond that is an error.
        """
        if isinstance(epoch, bool) or not isinstance(epoch, (int, np.integer)) or epoch < 0:
            raise ValueError(f"epoch must be a non-negative int, got {epoch!r}")
        if isinstance(start, bool) or not isinstance(start, (int, np.integer)):
            raise ValueError(f"start must be an int, got {start!r}")
        if not 0 <= start <= len(self):
            raise ValueError(f"start must be in 0..{len(self)} (batches per epoch), got {start}")
        return self._epoch_batches(int(epoch), int(start))

    def _epoch_batches(self, epoch: int, first: int = 0) -> Iterator[Any]:
        order = self.permutation(epoch) if self.shuffle else None
        pin = self.device is not None and self.pin_memory and torch.cuda.is_available()
        for b in range(first, len(self)):
            start, stop = self._rows(b)
            if order is None:
                batch = {k: torch.from_numpy(a[start:stop]) for k, a in self._arrays.items()}
                if pin:
                    batch = {k: t.pin_memory() for k, t in batch.items()}
            elif pin:
                batch = self._gather_pinned(order[start:stop])
            else:
                idx = order[start:stop]
                batch = {k: torch.from_numpy(a[idx]) for k, a in self._arrays.items()}
            if self.device is not None:
                batch = {k: t.to(self.device, non_blocking=True) for k, t in batch.items()}
            yield batch if self.transform is None else self.transform(batch)

    def _gather_pinned(self, idx: np.ndarray) -> Batch:
        """Gathers rows ``idx`` straight into pinned host memory: one copy instead of two.

        torch's caching host allocator keeps each pinned block until the asynchronous copy
        that reads it has finished, so the buffers can be dropped right after ``.to()``.
        """
        batch = {}
        for k, a in self._arrays.items():
            buf = torch.empty((len(idx), *a.shape[1:]), dtype=self._dtypes[k], pin_memory=True)
            np.take(a, idx, axis=0, out=buf.numpy())
            batch[k] = buf
        return batch

    def __repr__(self) -> str:
        shapes = {k: (a.dtype.name, a.shape[1:]) for k, a in self._arrays.items()}
        return (
            f"Loader(num_rows={self.num_rows}, batch_size={self.batch_size}, "
            f"batches={len(self)}, shuffle={self.shuffle}, seed={self.seed}, epoch={self.epoch}, "
            f"drop_remainder={self.drop_remainder}, columns={shapes}, device={self.device}"
            + (f", rank={self.rank}, world_size={self.world_size})" if self.world_size > 1 else ")")
        )

    @property
    def schema(self) -> Mapping[str, tuple[torch.dtype, tuple[int, ...]]]:
        """``{column: (torch dtype, per-row shape)}``: ``()`` for scalars, ``(L,)`` for lists."""
        return {k: (self._dtypes[k], tuple(a.shape[1:])) for k, a in self._arrays.items()}
