"""Fixtures for storage tests: stores on a temporary directory with tiny segments."""

from __future__ import annotations

from pathlib import Path

import pytest
from storage_testing import ROOT  # noqa: F401  (puts the repository on sys.path)

from storage import Store


@pytest.fixture
def open_store(tmp_path):
    """open_store(**kwargs) -> Store on tmp_path/data (fsync off, tiny segments); closed after the test."""
    opened: list[Store] = []

    def _open(path: Path | None = None, **kwargs) -> Store:
        kwargs.setdefault("seal_rows", 4)
        kwargs.setdefault("fsync", False)
        store = Store.open(path or tmp_path / "data", **kwargs)
        opened.append(store)
        return store

    yield _open
    for s in opened:
        s.close()
