"""The three commands end to end through click, and user mistakes as one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from had_cache import masking
from had_cache.cli import main as had_cache
from had_train.cli import main as had_train
from tests.conftest import real_dna


def _ok(result) -> None:  # noqa: ANN001 - click's Result
    assert result.exit_code == 0, result.output + repr(result.exception)


def test_extract_pretrain_eval(
    small_fasta: Path, tiny_teacher: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    _ok(
        runner.invoke(
            had_cache,
            [
                "extract",
                "--fasta",
                str(small_fasta),
                "--teacher",
                str(tiny_teacher),
                "--window-bp",
                "120",
                "--max-windows",
                "24",
                "--min-teacher-accuracy",
                "0",
            ],
        )
    )
    store = Path("small.had.zarr")  # the default --out
    assert store.is_dir()
    inspect = runner.invoke(had_cache, ["inspect", str(store)])
    _ok(inspect)
    assert "24 windows of 120 bp" in inspect.output
    assert "masked-6-mer accuracy" in inspect.output  # the teacher gate's figures are stored

    _ok(
        runner.invoke(
            had_train,
            [
                "pretrain",
                "--cache",
                str(store),
                "--preset",
                "tiny",
                "--steps",
                "3",
                "--batch-size",
                "4",
            ],
        )
    )
    run = Path("runs/small")  # the default --out
    assert (run / "step-0000003" / "COMPLETE").exists()
    assert len((run / "losses.csv").read_text().splitlines()) == 1 + 2  # header, step 1, step 3

    dna = real_dna(60 * 40, offset=1_000_000)
    rows = ["sequence,label"] + [
        f"{dna[i * 60 : (i + 1) * 60]},{'yes' if i % 2 else 'no'}" for i in range(40)
    ]
    Path("task.csv").write_text("\n".join(rows) + "\n")
    result = runner.invoke(
        had_train, ["eval", "--task", "task.csv", "--epochs", "1", "--batch-size", "8"]
    )
    _ok(result)
    assert "MCC" in result.output
    results = json.loads((run / "eval-task" / "results.json").read_text())
    assert results["class_names"] == ["no", "yes"]
    assert (run / "eval-task" / "tsne.png").stat().st_size > 1000
    assert_reproducible(store, run, results)


def assert_one_line_error(result, message: str) -> None:  # noqa: ANN001 - click's Result
    """Exit status 2, nothing but `error: ...` on one line of stderr, no exception escaped."""
    assert result.exit_code == 2, result.output + repr(result.exception)
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and message in lines[0], lines[0]


@pytest.mark.parametrize(
    ("cli", "args", "message"),
    [
        (
            had_cache,
            ["extract", "--fasta", "missing.fa", "--teacher", "demo"],
            "FASTA file not found",
        ),
        (had_cache, ["extract", "--fasta", "SMALL", "--teacher", "./nowhere"], "no such folder"),
        (
            had_cache,
            ["extract", "--fasta", "SMALL", "--teacher", "TEACHER", "--window-bp", "100"],
            "multiple of 6",
        ),
        (
            had_cache,
            ["extract", "--fasta", "SMALL", "--teacher", "TEACHER", "--max-windows", "2"],
            "Pass --min-teacher-accuracy 0 to extract anyway",
        ),
        (had_cache, ["tokenize", "--fasta", "SMALL", "--region", "chrA:5-2"], "outside chrA"),
        (had_cache, ["inspect", "SMALL"], "is a file, not a Zarr store"),
        (had_train, ["pretrain", "--cache", "missing.zarr"], "store not found"),
        (
            had_train,
            ["pretrain", "--cache", "missing.zarr", "--mixers", "gdn,lstm"],
            "unknown mixer 'lstm'; allowed mixers: gdn, mamba, attention",
        ),
        (had_train, ["pretrain", "--cache", "x.zarr", "--resume"], "nothing to resume"),
        (had_train, ["eval", "--checkpoint", "nowhere"], "checkpoint not found"),
        (had_train, ["eval"], "no pretraining run with a checkpoint under ./runs"),
        (had_train, ["ablate", "--cache", "x.zarr", "--seeds", "1,b"], "--seeds takes"),
        (
            had_train,
            ["eval", "--checkpoint", "none", "--tasks", "nt/H3", "--data-dir", "."],
            "hf download InstaDeepAI/nucleotide_transformer_downstream_tasks",
        ),
        (
            had_train,
            ["eval", "--checkpoint", "none", "--tasks", "H3K36me3"],
            "nt/H3K36me3, nt-revised/H3K36me3",
        ),
        (
            had_train,
            ["eval", "--checkpoint", "none", "--tasks", "splice", "--seed", "3"],
            "--seed applies to single-task runs",
        ),
        (had_train, ["eval", "--checkpoint", "none", "--teacher", "demo"], "add --tasks"),
        (had_train, ["export", "nowhere", "--out", "exported"], "checkpoint not found"),
    ],
)
def test_user_mistakes_are_one_line_errors(
    cli,
    args: list[str],
    message: str,
    small_fasta: Path,
    tiny_teacher: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,  # noqa: ANN001
) -> None:
    monkeypatch.chdir(tmp_path)
    args = [
        str(small_fasta) if a == "SMALL" else str(tiny_teacher) if a == "TEACHER" else a
        for a in args
    ]
    assert_one_line_error(CliRunner().invoke(cli, args), message)


def test_a_real_process_prints_one_line_and_exits_2(tmp_path: Path) -> None:
    """The console entry point itself, outside click's test runner."""
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "had_cache", "extract", "--fasta", "missing.fa"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.splitlines() == ["error: FASTA file not found: missing.fa"]


def test_overwrite_deletes_only_a_store_of_ours(
    small_fasta: Path, tiny_teacher: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A mistyped `--out ~/project --overwrite` must not delete the project."""
    monkeypatch.chdir(tmp_path)
    project = tmp_path / "project"
    project.mkdir()
    (project / "notes.txt").write_text("a week of work\n")
    a_file = tmp_path / "results.csv"
    a_file.write_text("keep me\n")
    base = ["extract", "--fasta", str(small_fasta), "--teacher", str(tiny_teacher)]
    base += ["--window-bp", "120", "--max-windows", "8", "--min-teacher-accuracy", "0"]
    for target, what in ((project, "a folder that is not a had-cache store"), (a_file, "a file")):
        result = CliRunner().invoke(had_cache, [*base, "--out", str(target), "--overwrite"])
        assert_one_line_error(result, f"--overwrite refuses to delete {target}: it is {what}")
    assert (project / "notes.txt").read_text() == "a week of work\n"
    assert a_file.read_text() == "keep me\n"
    store = tmp_path / "s.had.zarr"
    _ok(CliRunner().invoke(had_cache, [*base, "--out", str(store)]))
    _ok(CliRunner().invoke(had_cache, [*base, "--out", str(store), "--seed", "3", "--overwrite"]))
    from had_cache.reader import CacheReader

    assert CacheReader(store).attrs.mask_seed == 3  # replaced, as asked


def test_tokenize_shows_tokens_spans_and_masked_groups(small_fasta: Path) -> None:
    result = CliRunner().invoke(had_cache, ["tokenize", "--seq", "ACGTACGTNTTTTTTGG"])
    _ok(result)
    rows = [line.split() for line in result.output.splitlines()[1:-1]]
    assert [(r[1], r[3]) for r in rows] == [
        ("ACGTAC", "1-6"), ("G", "7-7"), ("T", "8-8"), ("N", "9-9"),
        ("TTTTTT", "10-15"), ("G", "16-16"), ("G", "17-17"),
    ]  # fmt: skip

    region = CliRunner().invoke(
        had_cache,
        [
            "tokenize",
            "--fasta",
            str(small_fasta),
            "--region",
            "chrA:601-1200",
            "--seed",
            "5",
            "--record",
            "1",
        ],
    )
    _ok(region)
    lines = region.output.splitlines()[1:-1]
    assert lines[0].split()[3] == "601-606" and lines[-1].split()[3] == "1195-1200"
    masked = [i for i, line in enumerate(lines) if line.endswith("MASK")]
    # The same groups the store masks for record 1 of a seed-5 extraction of 600-bp windows.
    assert masked == list(np.flatnonzero(masking.group_mask(5, 1, 100, 0.15)))


def test_doctor_names_versions_and_mixer_implementations() -> None:
    result = CliRunner().invoke(had_train, ["doctor", "--device", "cpu"])
    _ok(result)
    lines = {
        line.split()[0] + (" " + line.split()[1] if line.startswith("mixer") else ""): line
        for line in result.output.splitlines()
    }
    assert "torch" in lines and "transformers" in lines and "zarr" in lines
    assert lines["mixer gdn"].split()[2] == "torch-chunked"  # no CUDA here: the PyTorch op
    assert lines["mixer attention"].split()[2] == "sdpa"


def assert_reproducible(store: Path, run: Path, results: dict) -> None:
    """Store, run and results each name the code, versions, seeds and input checksums."""
    from had_cache.reader import CacheReader
    from had_train.checkpoint import weights_sha256
    from had_train.eval.tasks import load_task

    attrs = CacheReader(store).attrs
    records = [attrs.provenance, *json.loads((run / "provenance.json").read_text())]
    records.append(results["provenance"])
    for record in records:
        assert len(record["git"]["commit"]) == 40 and record["command"]
        assert record["versions"]["torch"] == torch.__version__ and record["versions"]["zarr"]
    store_record, run_record, eval_record = records
    assert store_record["inputs"]["fasta_sha256"] == attrs.fasta.sha256
    assert store_record["seeds"] == {"mask_seed": 0}
    assert attrs.teacher_gate["masked_tokens"] == 96 * 26
    assert run_record["inputs"]["store_fingerprint"] == attrs.fingerprint()
    assert run_record["seeds"] == {"seed": 0} and run_record["start_step"] == 0
    assert eval_record["inputs"]["task_sha256"] == load_task("task.csv").fingerprint()
    checkpoint = run / "step-0000003"
    assert eval_record["inputs"]["checkpoint_weights_sha256"] == weights_sha256(checkpoint)
