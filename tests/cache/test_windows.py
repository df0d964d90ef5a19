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


def test_stride_overlaps_windows(assembly_fasta: Path) -> None:
    fasta = windows.open_fasta(assembly_fasta)
    table = windows.plan_windows(fasta, 120, contigs="chr1", stride=60, progress=False)
    assert table.start.tolist() == list(range(0, 1200 - 120 + 1, 60))  # 19 windows, half overlap
    with pytest.raises(ConfigError, match="--stride must be positive"):
        windows.plan_windows(fasta, 120, contigs="chr1", stride=0, progress=False)


def test_bed_regions_restrict_and_tile_windows(assembly_fasta: Path, tmp_path: Path) -> None:
    fasta = windows.open_fasta(assembly_fasta)
    bed = tmp_path / "regions.bed"
    bed.write_text(
        "track name=test\n# a comment\n"
        "chr1\t100\t400\tfirst\n"
        "chr1\t350\t500\n"  # overlaps the first: merged into 100-500
        "chrX\t0\t119\n"  # shorter than a window: no window
        "chrX\t600\t1200\n"
    )
    table = windows.plan_windows(fasta, 120, bed=bed, progress=False)
    chr1 = table.start[table.contig == table.contigs.index("chr1")].tolist()
    chrx = table.start[table.contig == table.contigs.index("chrX")].tolist()
    assert chr1 == [100, 220, 340]  # tiled from the region's start, wholly inside 100-500
    assert chrx == [600, 720, 840, 960, 1080]
    assert windows.read_bed(bed, {"chr1": 1200, "chrX": 1200}).n_regions == 3


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("chr9\t0\t100\n", "line 1: contig chr9 is not in the FASTA"),
        ("chr1\t0\t5000\n", "line 1: chr1:0-5000 is not a region of chr1"),
        ("chr1\tx\t100\n", "line 1: start and end must be integers"),
        ("chr1\t10\n", "line 1: expected contig, start, end"),
        ("# nothing\n", "holds no region"),
    ],
)
def test_bad_bed_lines_are_named(
    assembly_fasta: Path, tmp_path: Path, line: str, message: str
) -> None:
    bed = tmp_path / "bad.bed"
    bed.write_text(line)
    with pytest.raises(ConfigError, match=message):
        windows.plan_windows(windows.open_fasta(assembly_fasta), 120, bed=bed, progress=False)


def test_soft_masked_bases_read_as_upper_case(assembly_fasta: Path, tmp_path: Path) -> None:
    """RepeatMasker's lower case (half of hg38) gives the same windows and bases."""
    lower = tmp_path / "soft.fa"
    lines = assembly_fasta.read_text().splitlines()
    lower.write_text("\n".join(s if s.startswith(">") else s.lower() for s in lines) + "\n")
    upper_fasta, lower_fasta = windows.open_fasta(assembly_fasta), windows.open_fasta(lower)
    a = windows.plan_windows(upper_fasta, 120, progress=False)
    b = windows.plan_windows(lower_fasta, 120, progress=False)
    assert a.start.tolist() == b.start.tolist() and a.contig.tolist() == b.contig.tolist()
    records = range(len(a))
    np.testing.assert_array_equal(
        windows.read_windows(upper_fasta, a, records, 120),
        windows.read_windows(lower_fasta, b, records, 120),
    )
