"""Fixtures for the data tests: an isolated cache folder (``ml100k_dir`` is in tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    """Points TORCHRS_FN_DATA_DIR at an empty folder so no test reads or fills ~/.cache."""
    cache = tmp_path_factory.mktemp("cache")
    monkeypatch.setenv("TORCHRS_FN_DATA_DIR", str(cache))
    return cache
