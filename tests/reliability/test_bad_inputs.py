"""Every bad input is one clear line, exit 2, no traceback, found before the teacher's weights
load, and nothing is left behind that a later run would trust."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from had_cache import teacher as teacher_mod
from had_cache import windows
from had_cache.cli import main as had_cache
from had_train.cli import main as had_train
from tests.conftest import real_dna
from tests.reliability.conftest import extract_args as _extract_args


def _one_line_error(result: object) -> str:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.output
    return errors[0]


@pytest.fixture
def no_weights(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if the teacher's weights are loaded: the check must come first."""

    def refuse(*args: object, **kw: object) -> None:
        raise AssertionError("the teacher's weights were loaded before the check")

    monkeypatch.setattr(teacher_mod, "load_teacher", refuse)


def _fasta(path: Path, contigs: dict[str, str], newline: str = "\n") -> Path:
    lines = []
    for name, seq in contigs.items():
        lines += [f">{name}"] + [seq[i : i + 60] for i in range(0, len(seq), 60)]
    path.write_bytes((newline.join(lines) + newline).encode())
    return path


def test_an_empty_teacher_folder_says_what_is_missing(
    small_fasta: Path, tmp_path: Path, no_weights: None
) -> None:
    empty = tmp_path / "teacher"
    empty.mkdir()
    out = tmp_path / "s.had.zarr"
    line = _one_line_error(CliRunner().invoke(had_cache, _extract_args(small_fasta, empty, out)))
    assert "is not a Hugging Face model folder: it has no config.json, no weights" in line
    assert "no tokenizer (vocab.txt or tokenizer.json)" in line and "hf download" in line
    assert not out.exists()


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (["--contigs", "chrA,short"], "--contigs: short (30 bp) shorter than one"),
        (["--window-bp", str(6 * 2048)], "needs 2049 teacher tokens with <cls>, more than"),
        (["--chunk-records", "0"], "--chunk-records must be positive"),
        (["--layer", "9"], "layer 9 is out of range for a teacher with 2 layers"),
        (["--window-bp", "6000"], "every selected contig is shorter than --window-bp 6000"),
        (["--max-windows", "0"], "--max-windows must be positive"),
        (["--contigs", "chrZ"], "contig(s) chrZ not in the FASTA"),
    ],
)
def test_option_errors_come_before_the_weights(
    small_fasta: Path,
    tiny_teacher: Path,
    tmp_path: Path,
    no_weights: None,
    extra: list[str],
    expected: str,
) -> None:
    fasta = _fasta(tmp_path / "g.fa", {"chrA": real_dna(1200), "short": real_dna(30)})
    out = tmp_path / "s.had.zarr"
    args = _extract_args(fasta, tiny_teacher, out)
    for i in range(0, len(extra), 2):  # later options win in click
        args += extra[i : i + 2]
    assert expected in _one_line_error(CliRunner().invoke(had_cache, args))
    assert not out.exists()


def test_a_bad_out_and_a_mismatched_store_come_before_the_weights(
    small_fasta: Path,
    tiny_teacher: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    sound_store: Path,
) -> None:
    store = sound_store  # refused untouched
    (tmp_path / "file").write_text("x")

    def refuse(*args: object, **kw: object) -> None:
        raise AssertionError("the teacher's weights were loaded before the check")

    monkeypatch.setattr(teacher_mod, "load_teacher", refuse)
    bad_out = _extract_args(small_fasta, tiny_teacher, tmp_path / "file" / "s.had.zarr")
    assert "is a file, not a folder" in _one_line_error(CliRunner().invoke(had_cache, bad_out))
    other_seed = [*_extract_args(small_fasta, tiny_teacher, store), "--seed", "7"]
    line = _one_line_error(CliRunner().invoke(had_cache, other_seed))
    assert "already holds a different extraction" in line


def test_fasta_inputs(tmp_path: Path) -> None:
    seq = real_dna(1200)
    lf = windows.plan_windows(windows.open_fasta(_fasta(tmp_path / "lf.fa", {"c": seq})), 120)
    crlf_fasta = windows.open_fasta(_fasta(tmp_path / "crlf.fa", {"c": seq}, newline="\r\n"))
    crlf = windows.plan_windows(crlf_fasta, 120)
    assert lf.start.tolist() == crlf.start.tolist() and len(lf) == 10
    assert windows.read_windows(crlf_fasta, crlf, range(10), 120).tobytes() == (
        windows.read_windows(windows.open_fasta(tmp_path / "lf.fa"), lf, range(10), 120).tobytes()
    )

    with pytest.raises(windows.FastaError, match='names two contigs "c"'):
        windows.open_fasta(_dup(tmp_path, seq))
    with pytest.raises(windows.FastaError, match="is a folder; give the FASTA file itself"):
        windows.open_fasta(tmp_path)
    bad = _fasta(tmp_path / "bad.fa", {"c": seq[:300] + "-" + seq[301:]})
    with pytest.raises(windows.FastaError, match="contig c holds '-' at position 301"):
        windows.plan_windows(windows.open_fasta(bad), 120)


def _dup(tmp_path: Path, seq: str) -> Path:
    path = tmp_path / "dup2.fa"
    path.write_text(f">c\n{seq[:60]}\n>c\n{seq[60:120]}\n")
    return path


def test_iupac_windows_are_counted_as_such(tiny_teacher: Path, tmp_path: Path) -> None:
    seq = list(real_dna(1200))
    seq[130], seq[250], seq[370] = "R", "N", "Y"  # windows 1 and 3: IUPAC, window 2: N
    fasta = _fasta(tmp_path / "iupac.fa", {"c": "".join(seq)})
    result = CliRunner().invoke(
        had_cache, _extract_args(fasta, tiny_teacher, tmp_path / "s.had.zarr")
    )
    assert result.exit_code == 0, result.output
    assert "7 written this run, 1 skipped for N, 2 for other IUPAC ambiguity codes" in (
        result.output
    )


def test_train_side_bad_inputs(sound_store: Path, tmp_path: Path) -> None:
    store = sound_store
    line = _one_line_error(
        CliRunner().invoke(had_train, ["eval", "--checkpoint", str(store), "--task", "splice"])
    )
    assert "is a Zarr store" in line and f"pretrain --cache {store}" in line

    csv = tmp_path / "task.csv"
    csv.write_text("sequence,label\nACGTRYN,a\nACGTX,b\n")
    from had_train.eval.tasks import TaskError, read_csv

    with pytest.raises(TaskError, match="line 3: sequence contains 'X'; expected A, C, G, T, N"):
        read_csv(csv, "task")
    csv.write_text("sequence,label\nACGTRYN,a\nACGTS,b\n")
    assert read_csv(csv, "task").sequences == ("ACGTRYN", "ACGTS")


def test_non_finite_targets_are_named_not_blamed_on_the_learning_rate() -> None:
    import torch

    from had_train import losses

    nan = torch.tensor([[1.0, float("nan")]])
    with pytest.raises(losses.NonFiniteLossError, match="not finite: the store is damaged"):
        losses.check_finite(torch.tensor(float("nan")), "at step 3", losses.non_finite_advice(nan))
    assert losses.non_finite_advice(torch.ones(2)) == "lower --lr"


def test_resume_without_a_checkpoint_says_so(sound_store: Path, tmp_path: Path) -> None:
    store = sound_store
    run = tmp_path / "run"
    args = ["pretrain", "--cache", str(store), "--out", str(run), "--preset", "tiny"]
    args += ["--steps", "2", "--batch-size", "2"]
    from had_train.pretrain import CONFIG_FILE, PretrainConfig

    run.mkdir()  # a run killed before its first checkpoint: config written, no step-*/
    cfg = PretrainConfig(cache=str(store), out=str(run), preset="tiny", steps=2, batch_size=2)
    (run / CONFIG_FILE).write_text(__import__("json").dumps(cfg.to_json()))
    result = CliRunner().invoke(had_train, [*args, "--resume"])
    assert result.exit_code == 0, result.output
    assert "no complete checkpoint yet" in result.output and "starting from step 0" in result.output
