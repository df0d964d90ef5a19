"""Which contigs and windows an extraction takes from a genome."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from had_cache import dna, windows
from had_common.errors import ConfigError
from tests.conftest import real_dna


@pytest.fixture(scope="module")
def assembly_fasta(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Contig names as in hg38: a chromosome, unplaced and random scaffolds, mitochondria."""
    path = tmp_path_factory.mktemp("assembly") / "hg38_like.fa"
    names = ["chr1", "chrUn_KI270302v1", "chr1_KI270706v1_random", "chrM", "chrX"]
    lines = []
    for i, name in enumerate(names):
        seq = real_dna(1200, offset=1_000_000 + 10_000 * i)
        lines += [f">{name}"] + [seq[j : j + 60] for j in range(0, len(seq), 60)]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_primary_contigs_are_the_chromosomes_only(assembly_fasta: Path) -> None:
    fasta = windows.open_fasta(assembly_fasta)
    table = windows.plan_windows(fasta, 120, contigs="primary", progress=False)
    assert table.contigs == ["chr1", "chrX"]
    assert sorted(set(table.contig.tolist())) == [0, 1] and len(table) == 2 * 10
    everything = windows.plan_windows(fasta, 120, contigs="all", progress=False)
    assert len(everything.contigs) == 5
    chosen = windows.plan_windows(fasta, 120, contigs="chrM, chr1", progress=False)
    assert chosen.contigs == ["chrM", "chr1"]
    with pytest.raises(ConfigError, match="chr2"):
        windows.plan_windows(fasta, 120, contigs="chr2", progress=False)


def test_primary_falls_back_to_all_contigs_when_none_looks_like_a_chromosome() -> None:
    assert windows.select_contigs(["scaffold_1", "scaffold_2"], "primary") == [
        "scaffold_1",
        "scaffold_2",
    ]
    assert windows.select_contigs(["1", "2", "MT", "X", "GL000192.1"], "primary") == ["1", "2", "X"]


def test_tiles_skip_windows_with_any_non_acgt_base() -> None:
    codes = dna.encode("ACGTAC" + "ACGNAC" + "acgtac" + "ACGTRY" + "TTTT")
    tiles = windows.tile_n_free(codes, 6)
    assert [dna.decode(t) for t in tiles] == ["ACGTAC", "ACGTAC"]  # N, R/Y and the tail dropped
    assert np.array_equal(dna.is_n(dna.encode("ACGTNRy")), [0, 0, 0, 0, 1, 1, 1])


def test_regions_are_one_based_and_inclusive(assembly_fasta: Path) -> None:
    fasta = windows.open_fasta(assembly_fasta)
    region = windows.Region.parse("chr1:1,001-1,006")
    assert region == windows.Region("chr1", 1001, 1006)
    assert region.read(fasta) == fasta["chr1"][1000:1006]
    with pytest.raises(ConfigError, match="outside chr1"):
        windows.Region("chr1", 1190, 1201).read(fasta)
    with pytest.raises(ConfigError, match="not contig:start-end"):
        windows.Region.parse("chr1:100")
