"""Shared fixtures: the real MovieLens 100K files (read from ../shared/data/ml-100k, never copied)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def ml100k_dir() -> Path:
    """The GroupLens ml-100k folder: $TORCHRS_FN_ML100K, else <repo>/../shared/data/ml-100k."""
    folder = Path(os.environ.get("TORCHRS_FN_ML100K") or REPO.parent / "shared/data/ml-100k")
    if not all((folder / name).is_file() for name in ("u.data", "u.item", "u.user")):
        pytest.skip(f"MovieLens 100K files not found in {folder} (set TORCHRS_FN_ML100K)")
    return folder
