"""Replay stores: record i = (locus, offset, strand, mask, features), a pure function of (seed, i)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from had_cache import dna, masking, windows
from had_cache.reader import CacheReader
from had_common.errors import ConfigError
from tests.conftest import extract_store

OPTIONS = {"window_bp": 120, "chunk_records": 8, "batch_size": 8, "seed": 3}


@pytest.fixture(scope="module")
def replay(tmp_path_factory: pytest.TempPathFactory, small_fasta: Path, tiny_teacher: Path) -> Path:
    out = tmp_path_factory.mktemp("replay") / "r.zarr"
    return extract_store(
        small_fasta, tiny_teacher, out, records_per_window=3, strands="both", **OPTIONS
    )


def test_draws_are_a_pure_function_of_seed_and_record() -> None:
    every = windows.replay_draws(7, np.arange(1000), 90, 1000, 119, True)
    some = windows.replay_draws(7, np.array([5, 999, 3]), 90, 1000, 119, True)
    for a, b in zip(every, some, strict=True):
        np.testing.assert_array_equal(a[[5, 999, 3]], b)
    other = windows.replay_draws(8, np.arange(1000), 90, 1000, 119, True)
    assert (every[1] != other[1]).mean() > 0.9  # another seed, other offsets
    locus, offset, strand = every
    assert np.bincount(locus).min() >= 11 and offset.max() <= 119 and offset.min() >= 0
    assert 0.4 < (strand == -1).mean() < 0.6


def test_a_replay_store_varies_offset_strand_and_mask_per_draw(
    replay: Path, small_fasta: Path
) -> None:
    reader = CacheReader(replay)
    a = reader.attrs
    locus, offset = reader.draws()
    contigs, contig, start, strand = reader.locations()
    assert a.is_replay and a.n_records == 3 * a.replay["loci"] and a.replay["max_offset"] == 119
    np.testing.assert_array_equal(locus, np.arange(a.n_records) // 3)  # draws of a locus adjacent
    records = reader.read(slice(0, a.n_records))
    fasta = windows.open_fasta(small_fasta)
    for i in range(a.n_records):
        codes = dna.encode(fasta[contigs[contig[i]]][int(start[i]) : int(start[i]) + 120])
        expected = dna.reverse_complement(codes) if strand[i] < 0 else codes
        np.testing.assert_array_equal(records.seq[i], expected)
        np.testing.assert_array_equal(records.mask[i], masking.group_mask(3, i, 20, 0.15))
    base = start - offset  # the locus start, the same for each of its draws
    for w in range(a.replay["loci"]):
        draws = np.flatnonzero(locus == w)
        assert len(set(base[draws])) == 1
    varied = [
        len({(o, s) for o, s in zip(offset[locus == w], strand[locus == w], strict=True)})
        for w in range(a.replay["loci"])
    ]
    assert np.mean(varied) > 2.5
    assert {1, -1} == set(strand.tolist())


def test_records_n_spreads_n_draws_over_the_loci(
    small_fasta: Path, tiny_teacher: Path, tmp_path: Path
) -> None:
    store = extract_store(small_fasta, tiny_teacher, tmp_path / "n.zarr", records=150, **OPTIONS)
    reader = CacheReader(store)
    locus, _ = reader.draws()
    assert reader.attrs.n_records == 150 and not reader.attrs.replay["strand_draws"]
    counts = np.bincount(locus, minlength=reader.attrs.replay["loci"])
    assert len(counts) == reader.attrs.replay["loci"] and counts.max() - counts.min() <= 1
    assert counts.min() >= 2


def test_both_budgets_at_once_is_one_line(
    small_fasta: Path, tiny_teacher: Path, tmp_path: Path
) -> None:
    with pytest.raises(ConfigError, match="not both"):
        extract_store(
            small_fasta, tiny_teacher, tmp_path / "x", records=5, records_per_window=2, **OPTIONS
        )
