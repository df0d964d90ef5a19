"""`had-cache plan` / `extract --dry-run`: the cost of an extraction from the FASTA's index alone."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from had_cache import plan, windows
from had_cache.cli import main
from had_cache.extract import ExtractConfig, extract
from had_cache.reader import Location
from had_common.errors import ConfigError
from had_common.files import DiskFullError
from tests.conftest import extract_store

HG38_FAI = Path(windows.__file__).parent / "assets" / "GRCh38_primary.fa.fai"
PAPER_STREAM = 10_000 * 1_024  # the paper's 10k steps x 1,024 windows, one draw each


def _hg38(**options: object) -> plan.Plan:
    cfg = ExtractConfig(fasta=HG38_FAI, out=Path("unused"), hidden_size=1024, **options)
    return plan.make_plan(cfg)


def test_hg38_from_its_index_alone() -> None:
    """The .fai of hg38's primary assembly (committed: names and lengths only) is all it reads;
    one strand at fp16 is ~0.86 TB, the paper's stream replayed at pca-int8 R = 256 fits in
    0.4 TB at <= 40 kB per 1,020-bp record (issue 21's targets)."""
    _, lengths = plan.contig_lengths(HG38_FAI)
    assert len(lengths) == 24 and sum(lengths.values()) == 3_088_269_832
    once = _hg38()
    assert once.loci == once.attrs.n_records == sum(n // 1020 for n in lengths.values())
    assert 0.80e12 < once.bytes.total < 0.90e12
    stream = _hg38(codec="pca-int8", pca_dim=256, records=PAPER_STREAM, strands="both")
    assert stream.attrs.n_records == PAPER_STREAM and stream.attrs.is_replay
    assert stream.bytes.total <= 0.4e12
    assert stream.bytes.per_record(PAPER_STREAM) <= 40e3
    assert stream.teacher_tokens == PAPER_STREAM * 171
    assert stream.step_bytes < once.step_bytes / 7  # the loader reads ~8x less per step
    assert "estimate" in stream.throughput_source and stream.gpu_hours(8) > 0
    given = _hg38(tokens_per_second=1e5)
    assert given.gpu_hours(1) == pytest.approx(once.teacher_tokens / 1e5 / 3600)
    assert given.throughput_source == "--tokens-per-second"


@pytest.mark.parametrize(
    ("codec", "extra"), [("fp16", {}), ("int8", {}), ("pca-int8", {"pca_dim": 48})]
)
def test_the_estimate_is_within_5_percent_of_the_store(
    codec: str, extra: dict, tmp_path: Path
) -> None:
    """On the demo FASTA with the demo teacher, for every codec."""
    cfg = ExtractConfig(
        fasta=windows.fasta_path("demo"),
        out=tmp_path / "s.zarr",
        teacher="demo",
        max_windows=96,
        batch_size=32,
        codec=codec,
        progress=False,
        **extra,
    )
    estimate = plan.make_plan(cfg).bytes.total
    extract(cfg)
    written = Location(cfg.out).nbytes()
    assert abs(estimate / written - 1) < 0.05, (estimate, written)


def test_dry_run_is_the_plan(tmp_path: Path) -> None:
    args = ["--fasta", "demo", "--teacher", "demo", "--codec", "int8", "--records-per-window", "2"]
    planned = CliRunner().invoke(main, ["plan", *args])
    dry = CliRunner().invoke(main, ["extract", *args, "--dry-run", "--out", str(tmp_path / "s")])
    assert planned.exit_code == dry.exit_code == 0, planned.output + dry.output
    assert planned.output == dry.output and "bytes on disk" in dry.output
    assert not (tmp_path / "s").exists()


def test_extract_refuses_a_disk_too_small_naming_both_numbers(
    small_fasta: Path, tiny_teacher: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(plan, "disk_free", lambda path: 1_000)
    out = tmp_path / "s.zarr"
    with pytest.raises(
        DiskFullError, match=r"needs about 0\.\d+ GB more .* only 0\.00 GB are free"
    ):
        extract_store(small_fasta, tiny_teacher, out, window_bp=120)
    assert not (out / "zarr.json").exists()
    extract_store(small_fasta, tiny_teacher, out, window_bp=120, space_check=False)
    assert (out / "zarr.json").exists()


@pytest.mark.parametrize(
    ("text", "options", "message"),
    [
        ("chr1\tmany\n", {}, r"line 1: not a \.fai line"),
        ("chr1\t5000\t6\t60\t61\n", {"teacher": "someone/not-cached"}, "pass --hidden-size"),
        ("chr1\t500\t6\t60\t61\n", {"hidden_size": 8}, "no window of 1,020 bp"),
    ],
)
def test_plan_mistakes_are_one_line(text: str, options: dict, message: str, tmp_path: Path) -> None:
    fai = tmp_path / "g.fa.fai"
    fai.write_text(text)
    with pytest.raises(ConfigError, match=message):
        plan.make_plan(ExtractConfig(fasta=fai, out=Path("x"), **options))
