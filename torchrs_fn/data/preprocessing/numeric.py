"""Numeric features: ``Normalization``, ``Discretization`` and ``TimestampFeatures``.

Keras's ``Normalization`` and ``Discretization`` layers as plain objects: fitted once from a whole
column (Keras ``adapt``), their state is a few floats (``to_dict`` / ``from_dict``), and applying
them is a pure function of that state. They also accept torch tensors, computed with torch ops
(differentiable, and free of data-dependent branches under ``torch.compile``), so the same object
can run inside a model as Keras's layers do.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from ._common import check_finite, check_int, check_state, numeric, pack, unpack

__all__ = ["Discretization", "Normalization", "TimestampFeatures", "TimestampOutputs"]

EPSILON = 1e-7
"""Keras's ``backend.epsilon()``: the smallest standard deviation ``Normalization`` divides by."""

_INT_DTYPES = (torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8)


def _is_eager_concrete(x: torch.Tensor) -> bool:
    """True when a data-dependent check may run: not compiling, not under vmap."""
    return not torch.compiler.is_compiling() and not torch._C._functorch.is_batchedtensor(x)


def _compute_dtype(x: torch.Tensor, what: str) -> torch.dtype:
    """float64 for int64 / float64 input (no precision lost on timestamps), float32 otherwise."""
    if not (x.is_floating_point() or x.dtype in _INT_DTYPES):
        raise TypeError(f"{what} must be an integer or floating tensor, got {x.dtype}")
    return torch.float64 if x.dtype in (torch.int64, torch.float64) else torch.float32


class Normalization:
    """Standardises numeric features: Keras ``Normalization``, fitted from a column.

    ``y = (x - mean) / max(sqrt(variance), 1e-7)`` as float32, exactly Keras's formula (its
    ``backend.epsilon()`` guards constant features: they come out as ``(x - mean) * 1e7``, 0 for
    the fitted value). ``invert(y)`` gives ``mean + y * max(sqrt(variance), 1e-7)``, Keras's
    ``invert=True``.

    The statistics are a scalar (one mean and variance for all values, Keras ``axis=None``) or one
    per position of a fixed-length list feature (Keras's default ``axis=-1`` on ``[N, D]`` input).

    Args:
        mean: a float, or ``[D]`` floats for per-position statistics.
        variance: same shape as ``mean``; non-negative.

    Differences from Keras, on purpose: ``fit`` computes in float64 over the whole column at once
    (Keras accumulates float32 batch moments), so results agree with Keras to float32 precision
    rather than bit for bit; NaN / infinite values in the fitted column and nulls anywhere raise
    ``ValueError``.
    """

    def __init__(self, mean: float | Sequence[float], variance: float | Sequence[float]) -> None:
        m = np.asarray(mean, dtype=np.float64)
        v = np.asarray(variance, dtype=np.float64)
        if m.ndim > 1 or m.shape != v.shape:
            raise ValueError(
                f"mean and variance must both be scalars or both [D] vectors of one length, got "
                f"shapes {m.shape} and {v.shape}"
            )
        check_finite(m.reshape(-1), "mean")
        check_finite(v.reshape(-1), "variance")
        if (v < 0).any():
            raise ValueError(f"variance must be >= 0, got {v.tolist()}")
        self._mean = m
        self._variance = v
        self._scale = np.maximum(np.sqrt(v), EPSILON)
        # Python floats for the torch path: torch.compile traces torch.tensor(list) as a constant.
        self._mean_py = m.tolist()
        self._scale_py = self._scale.tolist()

    @classmethod
    def fit(cls, column: Any, *, axis: int | None = -1) -> Normalization:
        """Mean and population variance of a column (Keras ``adapt``).

        Args:
            column: numbers: a pyarrow Array/ChunkedArray (a list column for per-position
                statistics), a numpy array ``[N]`` or ``[N, D]``, a list, or a torch tensor.
            axis: ``-1`` (default): one mean/variance per position when the rows are lists of
                one length ``D`` (fixed-size lists or numpy ``[N, D]``), a scalar for a scalar
                column. ``None``: one mean/variance over every value (Keras ``axis=None``; also the
                choice for lists of different lengths).

        Raises:
            ValueError: nulls, NaN / infinite values, an empty column, or per-position statistics
                asked of rows with different lengths.
            TypeError: the column does not hold numbers.
        """
        if axis not in (-1, None):
            raise ValueError(f"axis must be -1 or None, got {axis!r}")
        flat, layout = unpack(column, "column")
        x = numeric(flat, "column")
        if x.size == 0:
            raise ValueError("cannot fit Normalization on an empty column")
        check_finite(x, "column")
        width = None if axis is None else layout.row_width()
        if width == -1:
            raise ValueError(
                "column holds lists of different lengths, so there are no per-position statistics; "
                "pass axis=None for one mean and variance over all values"
            )
        if width is None:
            return cls(float(x.mean()), float(x.var()))
        rows = x.reshape(-1, width)
        return cls(rows.mean(axis=0).tolist(), rows.var(axis=0).tolist())

    @property
    def mean(self) -> np.ndarray:
        """The mean: float64 ``[]`` or ``[D]`` (a copy)."""
        return self._mean.copy()

    @property
    def variance(self) -> np.ndarray:
        """The variance: float64 ``[]`` or ``[D]`` (a copy)."""
        return self._variance.copy()

    def __call__(self, values: Any) -> Any:
        """``(values - mean) / max(sqrt(variance), 1e-7)`` as float32, in the input's form.

        Args:
            values: numbers as for ``fit``: an Arrow array (float32 array / list array out, same
                chunks and rows), a numpy array (float32 of the same shape out) or a torch tensor
                (float32 tensor out, differentiable). Per-position statistics need rows of their
                length ``D``: list rows for Arrow, a last axis of ``D`` for numpy and torch (which
                broadcast over it, as in Keras).
        """
        return self._map(values, invert=False)

    def invert(self, values: Any) -> Any:
        """``mean + values * max(sqrt(variance), 1e-7)`` as float32 (Keras ``invert=True``)."""
        return self._map(values, invert=True)

    def _map(self, values: Any, *, invert: bool) -> Any:
        if isinstance(values, torch.Tensor):
            dtype = _compute_dtype(values, "values")
            self._check_width(None if values.ndim == 0 else values.shape[-1])
            mean = torch.tensor(self._mean_py, dtype=dtype, device=values.device)
            scale = torch.tensor(self._scale_py, dtype=dtype, device=values.device)
            x = values.to(dtype)
            y = mean + x * scale if invert else (x - mean) / scale
            return y.to(torch.float32)
        flat, layout = unpack(values, "values")
        x = numeric(flat, "values")
        if self._mean.ndim == 0:
            y = self._mean + x * self._scale if invert else (x - self._mean) / self._scale
        else:
            if layout.kind == "numpy":  # numpy broadcasts over its last axis, as in Keras
                self._check_width(layout.shape[-1] if len(layout.shape) else None)
            else:
                self._check_width(layout.row_width())
            rows = x.reshape(-1, len(self._mean))
            y = self._mean + rows * self._scale if invert else (rows - self._mean) / self._scale
        return pack(y.reshape(-1).astype(np.float32), layout)

    def _check_width(self, width: int | None) -> None:
        """Per-position statistics need rows (last axis) of their length; None means scalars."""
        if self._mean.ndim == 0:
            return
        d = len(self._mean)
        if width != d:
            given = (
                "single values"
                if width is None
                else ("lists of different lengths" if width == -1 else f"rows of length {width}")
            )
            raise ValueError(
                f"this Normalization has per-position statistics for rows of length {d}, but "
                f"values has {given}"
            )

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-able state: ``{"type", "mean", "variance"}`` (floats or lists of floats)."""
        return {
            "type": "Normalization",
            "mean": self._mean.tolist(),
            "variance": self._variance.tolist(),
        }

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> Normalization:
        """Rebuilds a ``Normalization`` from ``to_dict()`` output."""
        check_state(state, cls.__name__, {"type", "mean", "variance"})
        return cls(state["mean"], state["variance"])

    def __repr__(self) -> str:
        return f"Normalization(mean={_short(self._mean)}, variance={_short(self._variance)})"


def _short(a: np.ndarray) -> str:
    if a.ndim == 0:
        return f"{float(a):.6g}"
    head = ", ".join(f"{v:.6g}" for v in a[:4])
    return f"[{head}{', ...' if len(a) > 4 else ''}] ({len(a)} positions)"


def _interpolated_quantiles(sorted_values: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Quantiles by linear interpolation with the i-th smallest of n values at ``i / n``
    (Hyndman & Fan type 4; numpy's ``interpolated_inverted_cdf``), clamped at the ends."""
    n = len(sorted_values)
    with np.errstate(over="ignore", invalid="ignore"):
        out = np.interp(q, np.arange(1, n + 1) / n, sorted_values)
    overflow = ~np.isfinite(out)
    if overflow.any():
        pos = np.clip(q[overflow] * n - 1, 0, n - 1)
        lo = np.floor(pos).astype(np.int64)
        a, b = sorted_values[lo], sorted_values[np.minimum(lo + 1, n - 1)]
        t = pos - lo
        out[overflow] = np.where(a == b, a, a * (1 - t) + b * t)
    return out


def _keras_compress(summary: np.ndarray, epsilon: float) -> np.ndarray:
    """Keras's ``_compress_summary_numpy`` (tf-keras 2.x, discretization.py), restated."""
    if summary.shape[1] * epsilon < 1:
        return summary
    percents = epsilon + np.arange(0.0, 1.0, epsilon)
    cum_weights = summary[1].cumsum()
    cum_weight_percents = cum_weights / cum_weights[-1]
    new_bins = np.interp(percents, cum_weight_percents, summary[0])
    cum_weights = np.interp(percents, cum_weight_percents, cum_weights)
    new_weights = cum_weights - np.concatenate((np.array([0.0]), cum_weights[:-1]))
    return np.stack((new_bins, new_weights)).astype(np.float32)


def _keras_boundaries(values: np.ndarray, num_bins: int, epsilon: float) -> np.ndarray:
    """Keras ``Discretization.adapt`` over the whole column as one batch: a float32 summary of
    every ``floor(n * epsilon)``-th sorted value, compressed to ``1 / epsilon`` points, then
    interpolated at ``k / num_bins``."""
    x = np.sort(values.astype(np.float32))
    increment = int(np.float32(len(x)) / np.float32(1.0 / epsilon))
    step = max(increment, 1)
    points = x[increment::step]
    summary = np.stack((points, np.full(len(points), float(step), dtype=np.float32)))
    summary = _keras_compress(summary, epsilon)
    return _keras_compress(summary, 1.0 / num_bins)[0, :-1]


class Discretization:
    """Buckets numbers by boundaries: Keras ``Discretization`` (``output_mode="int"``).

    With boundaries ``b_0 <= ... <= b_{k-1}`` the bucket of ``x`` is the number of boundaries
    ``<= x``: bucket 0 is ``(-inf, b_0)``, bucket ``i`` is ``[b_{i-1}, b_i)``, bucket ``k`` is
    ``[b_{k-1}, inf)``. A value equal to a boundary goes to the upper bucket, as in Keras
    (``np.searchsorted(boundaries, x, side="right")``). Ids lie in ``[0, num_bins)`` with
    ``num_bins = len(bin_boundaries) + 1`` (an embedding over them needs that many rows).

    Args:
        bin_boundaries: non-decreasing finite floats (may be empty: one bucket).

    Differences from Keras, on purpose: comparisons are made in float64 (Keras casts to float32,
    which moves large integers such as Unix timestamps by up to 64 s, so a value within that of a
    boundary can land in the neighbouring bucket in Keras); NaN raises ``ValueError`` (Keras puts
    it in the last bucket).
    """

    def __init__(self, bin_boundaries: Sequence[float]) -> None:
        b = np.asarray(bin_boundaries, dtype=np.float64)
        if b.ndim != 1:
            raise ValueError(
                f"bin_boundaries must be a flat sequence of floats, got shape {b.shape}"
            )
        check_finite(b, "bin_boundaries")
        if (np.diff(b) < 0).any():
            first = int(np.flatnonzero(np.diff(b) < 0)[0])
            raise ValueError(
                f"bin_boundaries must be sorted (non-decreasing), but entry {first + 1} "
                f"({b[first + 1]}) is below entry {first} ({b[first]})"
            )
        self._boundaries = b
        self._boundaries_py = b.tolist()

    @classmethod
    def fit(cls, column: Any, *, num_bins: int, epsilon: float | None = None) -> Discretization:
        """Boundaries at the ``k / num_bins`` quantiles of a column (Keras ``adapt``).

        Args:
            column: numbers (Arrow array, list array, numpy, list or torch tensor); all values
                of a list column are pooled.
            num_bins: number of buckets, >= 1 (``num_bins - 1`` boundaries, possibly repeated
                when values repeat, as in Keras).
            epsilon: None (default): exact quantiles, by linear interpolation with the i-th
                smallest of n values at ``i / n`` (numpy's ``interpolated_inverted_cdf``); this is
                what Keras's summary converges to when it keeps every value. A float in (0, 1):
                Keras's approximate algorithm (a summary of about ``1 / epsilon`` points, float32)
                run over the whole column as one batch, which reproduces Keras's
                ``adapt(data, batch_size=len(data))``; Keras's default ``adapt`` works in batches
                of 32 and merges their summaries, which moves the boundaries slightly.
        """
        num_bins = check_int(num_bins, "num_bins", 1)
        flat, _ = unpack(column, "column")
        x = numeric(flat, "column")
        if x.size == 0:
            raise ValueError("cannot fit Discretization on an empty column")
        check_finite(x, "column")
        if num_bins == 1:
            return cls([])
        if epsilon is None:
            boundaries = _interpolated_quantiles(np.sort(x), np.arange(1, num_bins) / num_bins)
        else:
            if isinstance(epsilon, bool) or not isinstance(epsilon, (int, float)):
                raise TypeError(f"epsilon must be None or a float, got {type(epsilon).__name__}")
            if not 0 < epsilon < 1:
                raise ValueError(f"epsilon must lie in (0, 1), got {epsilon}")
            boundaries = _keras_boundaries(x, num_bins, float(epsilon))
        return cls(boundaries.tolist())

    @property
    def bin_boundaries(self) -> list[float]:
        """The boundaries, as Python floats."""
        return self._boundaries.tolist()

    @property
    def num_bins(self) -> int:
        """Number of bucket ids: ``len(bin_boundaries) + 1``."""
        return len(self._boundaries) + 1

    def __call__(self, values: Any) -> Any:
        """Bucket ids (int64) of ``values``, in the input's form.

        Args:
            values: integers or floats: an Arrow array (int64 array / list array out), a numpy
                array (same shape), a list, or a torch tensor (``torch.bucketize``; the NaN check
                is skipped under ``torch.compile`` and ``vmap``).

        Raises:
            ValueError: NaN values or nulls.  TypeError: values that are not numbers.
        """
        if isinstance(values, torch.Tensor):
            _compute_dtype(values, "values")  # type check
            if (
                values.is_floating_point()
                and _is_eager_concrete(values)
                and bool(torch.isnan(values).any())
            ):
                raise ValueError("values holds NaN; NaN has no bucket (drop or fill it first)")
            # float64 comparisons, as for numpy input (exact for float32 and int32 values).
            x = values.to(torch.float64)
            boundaries = torch.tensor(self._boundaries_py, dtype=torch.float64, device=x.device)
            return torch.bucketize(x, boundaries, right=True)
        flat, layout = unpack(values, "values")
        x = numeric(flat, "values")
        nan = np.isnan(x)
        if nan.any():
            raise ValueError(
                f"values holds {int(nan.sum())} NaN value(s) (the first at flat position "
                f"{int(np.flatnonzero(nan)[0])}); NaN has no bucket (drop or fill it first)"
            )
        return pack(np.searchsorted(self._boundaries, x, side="right").astype(np.int64), layout)

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-able state: ``{"type", "bin_boundaries"}``."""
        return {"type": "Discretization", "bin_boundaries": self.bin_boundaries}

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> Discretization:
        """Rebuilds a ``Discretization`` from ``to_dict()`` output."""
        check_state(state, cls.__name__, {"type", "bin_boundaries"})
        return cls(state["bin_boundaries"])

    def __repr__(self) -> str:
        b = self._boundaries
        head = ", ".join(f"{v:.6g}" for v in b[:3])
        tail = f", ..., {b[-1]:.6g}" if len(b) > 4 else "".join(f", {v:.6g}" for v in b[3:])
        return f"Discretization(num_bins={self.num_bins}, bin_boundaries=[{head}{tail}])"


class TimestampOutputs(NamedTuple):
    """What ``TimestampFeatures`` gives for a timestamp column."""

    normalized: Any
    """float32 standardised timestamps (``Normalization`` over all values)."""
    bucket: Any
    """int64 bucket ids in ``[0, num_buckets)`` (``Discretization`` on evenly spaced boundaries)."""


def _as_numbers(values: Any) -> Any:
    """Temporal Arrow columns (timestamp, date, duration) and numpy datetime64 / timedelta64 ->
    int64 counts of their unit; anything else unchanged."""
    if isinstance(values, (pa.Array, pa.ChunkedArray)):
        t = values.type
        if pa.types.is_timestamp(t) or pa.types.is_duration(t) or pa.types.is_date64(t):
            return pc.cast(values, pa.int64())
        if pa.types.is_date32(t):
            return pc.cast(pc.cast(values, pa.int32()), pa.int64())
    if isinstance(values, np.ndarray) and values.dtype.kind in "mM":
        return values.view(np.int64)
    return values


class TimestampFeatures:
    """The TFRS featurization tutorial's two timestamp features, fitted together.

    The tutorial (``tfrs`` "Using side features: feature preprocessing") turns the rating timestamp
    into (1) a normalised value, ``Normalization(axis=None)`` adapted on the timestamps, and (2) a
    bucket id, ``Discretization(np.linspace(min, max, num=1000))``, embedded with
    ``len(boundaries) + 1`` rows. ``TimestampFeatures.fit(column)`` computes both from one column;
    calling it returns ``TimestampOutputs(normalized, bucket)``.

    Args:
        normalization: the fitted ``Normalization`` (scalar statistics).
        discretization: the ``Discretization`` with the evenly spaced boundaries.

    Timestamps may be integers or floats (seconds, say), Arrow ``timestamp`` / ``date`` /
    ``duration`` columns or numpy ``datetime64`` (taken as int64 counts of their unit). Both parts
    compute in float64, where the tutorial's Keras layers compute in float32 (see
    ``Normalization`` and ``Discretization``).
    """

    def __init__(self, normalization: Normalization, discretization: Discretization) -> None:
        if not isinstance(normalization, Normalization):
            raise TypeError(
                f"normalization must be a Normalization, got {type(normalization).__name__}"
            )
        if not isinstance(discretization, Discretization):
            raise TypeError(
                f"discretization must be a Discretization, got {type(discretization).__name__}"
            )
        if normalization.mean.ndim != 0:
            raise ValueError("normalization must have scalar statistics (fitted with axis=None)")
        self.normalization = normalization
        self.discretization = discretization

    @classmethod
    def fit(cls, column: Any, *, num_boundaries: int = 1000) -> TimestampFeatures:
        """Mean/variance and ``np.linspace(min, max, num_boundaries)`` boundaries of a column.

        Args:
            column: timestamps (see the class docstring).
            num_boundaries: the tutorial's ``num=1000``: the number of boundaries, giving
                ``num_boundaries + 1`` buckets (``num_buckets``), >= 1.
        """
        num_boundaries = check_int(num_boundaries, "num_boundaries", 1)
        column = _as_numbers(column)
        normalization = Normalization.fit(column, axis=None)
        flat, _ = unpack(column, "column")
        x = numeric(flat, "column")
        boundaries = np.linspace(x.min(), x.max(), num=num_boundaries)
        return cls(normalization, Discretization(boundaries.tolist()))

    @property
    def num_buckets(self) -> int:
        """Number of bucket ids (rows of an embedding over them): ``num_boundaries + 1``."""
        return self.discretization.num_bins

    def normalize(self, values: Any) -> Any:
        """float32 standardised timestamps, in the input's form."""
        return self.normalization(_as_numbers(values))

    def bucketize(self, values: Any) -> Any:
        """int64 bucket ids in ``[0, num_buckets)``, in the input's form."""
        return self.discretization(_as_numbers(values))

    def __call__(self, values: Any) -> TimestampOutputs:
        """``TimestampOutputs(normalized=..., bucket=...)`` for a column of timestamps."""
        return TimestampOutputs(self.normalize(values), self.bucketize(values))

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-able state: ``{"type", "normalization", "discretization"}``."""
        return {
            "type": "TimestampFeatures",
            "normalization": self.normalization.to_dict(),
            "discretization": self.discretization.to_dict(),
        }

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> TimestampFeatures:
        """Rebuilds ``TimestampFeatures`` from ``to_dict()`` output."""
        check_state(state, cls.__name__, {"type", "normalization", "discretization"})
        return cls(
            Normalization.from_dict(state["normalization"]),
            Discretization.from_dict(state["discretization"]),
        )

    def __repr__(self) -> str:
        return f"TimestampFeatures({self.normalization!r}, {self.discretization!r})"
