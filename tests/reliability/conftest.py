"""Fixtures of the reliability tests: one sound store, and a quick teacher gate.

The gate's accuracy is tested in tests/cache; here it is only a cost paid by every extraction,
so it scores 8 held-out windows instead of 96 (the same code path).
"""

from __future__ import annotations

import functools
from pathlib import Path

import pytest

from had_cache.gate import gate_windows as _GATE_WINDOWS
from tests.conftest import extract_store

GATE_WINDOWS = 8
EXTRACT_OPTIONS = {
    "window_bp": 120,
    "max_windows": 8,
    "chunk_records": 2,
    "shard_chunks": 2,
    "batch_size": 2,
}
"""A store of 8 records in 2 shards of 2 chunks of 2 (batches of 2, so a kill can fall inside a
shard); the command line of `extract_args` says the same."""


def quicken_gate(patch: pytest.MonkeyPatch) -> None:
    from had_cache import gate

    patch.setattr(gate, "gate_windows", functools.partial(_GATE_WINDOWS, GATE_WINDOWS))


@pytest.fixture(autouse=True)
def quick_gate(monkeypatch: pytest.MonkeyPatch) -> None:
    quicken_gate(monkeypatch)


def extract(fasta: Path, teacher: Path, out: Path, **kw: object) -> Path:
    return extract_store(fasta, teacher, out, **(EXTRACT_OPTIONS | kw))


def extract_args(fasta: Path, teacher: Path, out: Path) -> list[str]:
    """`had-cache extract` arguments of the same store as `extract`."""
    args = ["extract", "--fasta", str(fasta), "--teacher", str(teacher), "--out", str(out)]
    for name, value in EXTRACT_OPTIONS.items():
        args += [f"--{name.replace('_', '-')}", str(value)]
    return [*args, "--min-teacher-accuracy", "0"]


@pytest.fixture(scope="session")
def sound_store(
    tmp_path_factory: pytest.TempPathFactory, small_fasta: Path, tiny_teacher: Path
) -> Path:
    """A complete store that tests read but never change (copy it to damage it)."""
    with pytest.MonkeyPatch.context() as patch:  # undone before any other test runs
        quicken_gate(patch)
        store = extract(small_fasta, tiny_teacher, tmp_path_factory.mktemp("sound") / "s.had.zarr")
    return store
