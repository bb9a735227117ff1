"""Featurization: the preprocessing of the TFRS featurization tutorials, on whole Arrow columns.

Keras's preprocessing layers as plain objects. Each is fitted once from a column (``fit``, Keras's
``adapt``) or built from given state; its state is plain data (``to_dict()`` / ``from_dict()``,
a readable ``repr``), and applying it is a pure, vectorised function (``pyarrow.compute`` and
numpy over whole columns, no per-row Python loop) that gives results in the input's form: Arrow in,
Arrow out (same chunks and list rows), numpy in, numpy out.

* ``Hashing`` — strings / integers to ``[0, num_bins)``, salted (FNV-1a + fmix64, not Keras's
  FarmHash64).
* ``Normalization`` — ``(x - mean) / max(sqrt(var), 1e-7)``; scalar or per-position statistics.
* ``Discretization`` — bucket ids from boundaries, given or fitted at quantiles.
* ``TimestampFeatures`` — the tutorial's normalised and bucketised timestamp, fitted together.
* ``TextVectorization`` — standardise, split, n-grams, vocabulary, padded or ragged ids.
* ``MultiHot`` and ``pad_lists`` — list features (genres, tags) as multi-hot rows or padded ids
  with a mask. ``StringLookup`` / ``IntegerLookup`` / ``Hashing`` map list columns value by value.
"""

from .hashing import Hashing, hash64
from .lists import MultiHot, Padded, pad_lists
from .numeric import Discretization, Normalization, TimestampFeatures, TimestampOutputs
from .text import DEFAULT_STRIP_REGEX, TextVectorization

__all__ = [
    "DEFAULT_STRIP_REGEX",
    "Discretization",
    "Hashing",
    "MultiHot",
    "Normalization",
    "Padded",
    "TextVectorization",
    "TimestampFeatures",
    "TimestampOutputs",
    "hash64",
    "pad_lists",
]
