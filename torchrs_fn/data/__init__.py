"""Data: Arrow tables in, batches of tensors out.

* ``Loader`` — seeded shuffle and batching of a ``pyarrow.Table`` / Parquet files into
  ``dict[str, torch.Tensor]``, zero-copy where the column allows.
* ``StringLookup`` / ``IntegerLookup`` — Keras-style vocabularies, fitted and applied with
  ``pyarrow.compute``.
* ``random_split`` — seeded split of a table into parts by fractions or counts.
* ``datasets`` — public datasets as Arrow tables (``datasets.movielens.load("100k")``).

This room imports nothing else of the package: it knows Arrow and tensors, not models.
"""

from . import datasets
from .loader import Loader
from .lookup import IntegerLookup, StringLookup
from .split import random_split

__all__ = ["IntegerLookup", "Loader", "StringLookup", "datasets", "random_split"]
