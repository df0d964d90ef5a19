"""Fixtures of the training tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import extract_store


@pytest.fixture(scope="session")
def train_store(
    tmp_path_factory: pytest.TempPathFactory, small_fasta: Path, tiny_teacher: Path
) -> Path:
    """A store of 120-bp windows (20 teacher tokens, width 24) in chunks of 16 records, shared
    by the tests that train on it and never change it."""
    out = tmp_path_factory.mktemp("train_store") / "s.zarr"
    return extract_store(small_fasta, tiny_teacher, out, window_bp=120, chunk_records=16)
