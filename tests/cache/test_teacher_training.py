"""scripts/train_demo_teacher.py: a long teacher run survives an interruption unchanged."""

from __future__ import annotations

import csv
import importlib.util
import sys
from pathlib import Path

import pytest

from tests.conftest import real_dna

ROOT = Path(__file__).resolve().parents[2]


def _script(monkeypatch: pytest.MonkeyPatch):
    spec = importlib.util.spec_from_file_location(
        "train_demo_teacher", ROOT / "scripts" / "train_demo_teacher.py"
    )
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def _rows(log: Path) -> list[list[str]]:
    """Step, loss, lr and tokens of every log row (not the wall time)."""
    with log.open(newline="") as fh:
        return [[r[0], r[1], r[2], r[4]] for r in csv.reader(fh)]


def test_an_interrupted_teacher_run_resumes_to_the_same_teacher(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Killed after step 5 of 8 (checkpoints every 2 steps), `--resume` continues from step 4 and
    saves the very weights and log of the run that was never stopped; without `--resume` the
    script refuses to overwrite the interrupted run, and the finished run leaves no checkpoint."""
    script = _script(monkeypatch)
    bases = real_dna(40_000)
    fasta = tmp_path / "slice.fa"
    fasta.write_text(f">chrX_1001_{1000 + len(bases)}\n{bases}\n")

    def options(name: str) -> list[str]:
        out = tmp_path / name
        return [
            *("--slice", str(fasta), "--out", str(out), "--log", str(out) + ".csv"),
            *("--max-steps", "8", "--checkpoint-every", "2", "--log-every", "1", "--batch", "2"),
            *("--hidden", "32", "--layers", "1", "--heads", "2", "--intermediate", "64"),
            *("--threads", "1", "--eval-windows", "2"),
        ]

    script.main(options("whole"))

    draw, calls = script.draw_batch, []

    def crash_at_step_6(*args, **kwargs):
        calls.append(1)
        if len(calls) == 6:
            raise KeyboardInterrupt
        return draw(*args, **kwargs)

    monkeypatch.setattr(script, "draw_batch", crash_at_step_6)
    with pytest.raises(KeyboardInterrupt):
        script.main(options("cut"))
    monkeypatch.setattr(script, "draw_batch", draw)
    checkpoint = tmp_path / "cut.checkpoint.pt"
    assert checkpoint.exists()
    with pytest.raises(SystemExit, match="add --resume"):
        script.main(options("cut"))
    script.main([*options("cut"), "--resume"])

    whole, cut = tmp_path / "whole", tmp_path / "cut"
    assert (cut / "model.safetensors").read_bytes() == (whole / "model.safetensors").read_bytes()
    assert _rows(tmp_path / "cut.csv") == _rows(tmp_path / "whole.csv")
    assert len(_rows(tmp_path / "cut.csv")) == 1 + 8
    assert not checkpoint.exists()
    summary = (cut / "training_summary.json").read_text()
    assert '"resumed_at_steps": [\n    4\n  ]' in summary
