"""Data: Arrow tables in, batches of tensors out.

* ``Loader`` — seeded shuffle and batching of a ``pyarrow.Table`` / Parquet files into
  ``dict[str, torch.Tensor]``, zero-copy where the column allows.
* ``ParquetLoader`` — the same batches streamed from a Parquet dataset larger than memory: row
  groups in a seeded order, a bounded shuffle buffer, shards by rank, resumable mid-epoch.
* ``StringLookup`` / ``IntegerLookup`` — Keras-style vocabularies, fitted and applied with
  ``pyarrow.compute``.
* ``random_split`` — seeded split of a table into parts by fractions or counts.
* ``temporal_split``, ``leave_last_n_out``, ``per_user_temporal_split`` — splits by time, global
  or per user.
* ``NegativeSampler`` / ``UserPositives`` — uniform, log-uniform or popularity negatives with their
  sampling probabilities (for logQ), optionally excluding each user's positives.
* ``sample_listwise`` / ``sequence_examples`` — TFRS's listwise lists and sequential-retrieval
  (context, target) examples built from interaction tables.
* Featurization (``preprocessing``): ``Hashing``, ``Normalization``, ``Discretization``,
  ``TimestampFeatures``, ``TextVectorization``, ``MultiHot`` and ``pad_lists`` — Keras's
  preprocessing layers as fitted, plain-data objects applied to whole columns.
* ``datasets`` — public datasets as Arrow tables (``datasets.movielens.load("100k")``,
  ``datasets.amazon.load_reviews(path)``, ``datasets.spotify_mpd.load(path)``).

This room imports nothing else of the package: it knows Arrow and tensors, not models.
"""

from . import datasets
from .loader import Loader
from .lookup import IntegerLookup, StringLookup
from .preprocessing import (
    Discretization,
    Hashing,
    MultiHot,
    Normalization,
    TextVectorization,
    TimestampFeatures,
    pad_lists,
)
from .sampling import NegativeSampler, UserPositives, sample_listwise, sequence_examples
from .split import leave_last_n_out, per_user_temporal_split, random_split, temporal_split
from .streaming import ParquetLoader

__all__ = [
    "Discretization",
    "Hashing",
    "MultiHot",
    "Normalization",
    "TextVectorization",
    "TimestampFeatures",
    "pad_lists",
    "IntegerLookup",
    "Loader",
    "ParquetLoader",
    "StringLookup",
    "datasets",
    "random_split",
    "temporal_split",
    "leave_last_n_out",
    "per_user_temporal_split",
    "NegativeSampler",
    "UserPositives",
    "sample_listwise",
    "sequence_examples",
]
