"""Shared fixtures: the real MovieLens 100K files (read where they are, never copied)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
_ML100K_FILES = ("u.data", "u.item", "u.user")


def _complete(folder: Path) -> bool:
    return all((folder / name).is_file() for name in _ML100K_FILES)


@pytest.fixture(scope="session")
def ml100k_dir() -> Path:
    """The GroupLens ml-100k folder, found as the examples find it.

    In order: ``$TORCHRS_FN_ML100K``; ``<repo>/../shared/data/ml-100k``; the library's data cache
    (``$TORCHRS_FN_DATA_DIR``, default ``~/.cache/torchrs_fn``), which ``make example`` fills,
    downloading into it (checksum-checked) where the network allows, as ``movielens.load`` does.
    The tests skip only when the data can be had in none of these ways, and the skip says why.
    """
    explicit = os.environ.get("TORCHRS_FN_ML100K")
    if explicit:
        folder = Path(explicit)
        if not _complete(folder):
            pytest.skip(f"TORCHRS_FN_ML100K={explicit} does not hold {', '.join(_ML100K_FILES)}")
        return folder
    shared = REPO.parent / "shared/data/ml-100k"
    if _complete(shared):
        return shared
    # Session fixtures are set up before the data tests' isolated cache, so this is the user's.
    from torchrs_fn.data.datasets import DatasetNotFoundError, cache_dir, movielens

    try:
        movielens.load("100k")
    except DatasetNotFoundError as e:
        pytest.skip(
            f"MovieLens 100K is not in {shared} nor in the data cache {cache_dir()}, and "
            f"downloading it failed: {e}"
        )
    cached = cache_dir() / "ml-100k"
    if not _complete(cached):
        pytest.skip(
            f"MovieLens 100K is in the data cache {cache_dir()} only as a zip; extract it into "
            f"{cached} or set TORCHRS_FN_ML100K"
        )
    return cached
