"""Shared fixtures: real DNA from the repo's embedded slice and a tiny random NT v2 teacher."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

DEMO_FASTA = Path(__file__).parent.parent / "had_cache" / "assets" / "chrX_demo.fa.gz"


def real_dna(n_bases: int, offset: int = 2_000_000) -> str:
    """A stretch of real human DNA from the embedded chrX slice (upper case)."""
    with gzip.open(DEMO_FASTA, "rt") as fh:
        fh.readline()
        text = "".join(line.strip() for line in fh.readlines())
    return text[offset : offset + n_bases].upper()


def make_tiny_teacher(folder: Path, seed: int = 0, token_dropout: bool = False) -> Path:
    """A random NT v2-architecture teacher at the `tiny` shape, saved like the real checkpoint."""
    from had_cache import ntv2

    return ntv2.make_random_teacher(folder, "tiny", seed=seed, token_dropout=token_dropout)


@pytest.fixture(scope="session")
def tiny_teacher(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_teacher(tmp_path_factory.mktemp("teacher"))


@pytest.fixture(scope="session")
def small_fasta(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two contigs of real DNA, one with an N run, as a plain FASTA."""
    path = tmp_path_factory.mktemp("fasta") / "small.fa"
    a = real_dna(6000)
    b = real_dna(3000, offset=3_000_000)
    b = b[:1000] + "N" * 50 + b[1050:]
    lines = [">chrA"] + [a[i : i + 60] for i in range(0, len(a), 60)]
    lines += [">chrB"] + [b[i : i + 60] for i in range(0, len(b), 60)]
    path.write_text("\n".join(lines) + "\n")
    return path


def extract_store(fasta: Path, teacher: Path, out: Path, **options: object) -> Path:
    """Extract a store quietly. Test teachers have random weights, so the gate's accuracy floor
    is off here (it has its own tests)."""
    from had_cache.extract import ExtractConfig, extract

    defaults = {"progress": False, "min_teacher_accuracy": 0.0}
    extract(ExtractConfig(fasta=fasta, out=out, teacher=str(teacher), **(defaults | options)))
    return out


def as_schema_2(store: Path, copy: Path, version: object = "2.1") -> Path:
    """A copy of `store` (a 3.0 store of one chunk per shard, so plain chunks) as schema 2
    wrote it: done markers in `chunk_done`, no `shard_chunks` or `windowing` attributes."""
    import shutil

    import zarr

    from had_cache import schema

    shutil.copytree(store, copy)
    (copy / schema.SHARD_DONE).rename(copy / schema.CHUNK_DONE)
    group = zarr.open_group(str(copy), mode="r+")
    attrs = dict(group.attrs[schema.ATTRS_KEY])
    for key in ("shard_chunks", "windowing"):
        attrs.pop(key)
    group.attrs[schema.ATTRS_KEY] = attrs | {"schema_version": version}
    return copy


def assert_same_store(a: Path | str, b: Path | str) -> None:
    """Two complete stores hold the same extraction, every array equal element for element
    (the window index and the done markers included)."""
    import numpy as np

    from had_cache import schema
    from had_cache.reader import CacheReader

    ra, rb = CacheReader(a), CacheReader(b)
    assert ra.attrs.same_extraction(rb.attrs)
    for name in schema.array_specs(ra.attrs):
        x, y = ra.group[name][:], rb.group[name][:]
        assert x.dtype == y.dtype and x.shape == y.shape, name
        np.testing.assert_array_equal(x, y, err_msg=name)
