"""Public datasets as Arrow tables: ``movielens.load("100k")`` and, later, more.

Each dataset module reads the publisher's own file layout, caches downloads under
``$TORCHRS_FN_DATA_DIR`` (default ``~/.cache/torchrs_fn``) and raises ``DatasetNotFoundError``
with instructions when the files can be neither found nor downloaded.
"""

from . import movielens
from ._files import DATA_DIR_ENV, DatasetNotFoundError, cache_dir

__all__ = ["DATA_DIR_ENV", "DatasetNotFoundError", "cache_dir", "movielens"]
