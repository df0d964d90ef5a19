"""A full disk is one line naming the path and the space needed (exit 2), and the same command
resumes once space is free."""

from __future__ import annotations

import errno
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from had_cache.cli import main as had_cache
from had_cache.reader import CacheReader
from had_train.cli import main as had_train
from tests.reliability.conftest import extract_args as _extract_args


def _full_after(monkeypatch: pytest.MonkeyPatch, needle: str) -> None:
    """Every zarr file write whose path holds `needle` fails with "no space left"."""
    from zarr.storage import _local

    put = _local._put

    def full(path: Path, *args: object, **kw: object) -> object:
        if needle in str(path):
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return put(path, *args, **kw)

    monkeypatch.setattr(_local, "_put", full)


@pytest.mark.parametrize(
    ("needle", "what"),
    [("mask/zarr.json", "creating the store"), ("teacher_layer_2/c/1", "writing shard 1")],
)
def test_extract_on_a_full_disk_is_one_line_and_the_rerun_resumes(
    small_fasta: Path,
    tiny_teacher: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    needle: str,
    what: str,
    sound_store: Path,
) -> None:
    out = tmp_path / "s.had.zarr"
    args = _extract_args(small_fasta, tiny_teacher, out)
    with monkeypatch.context() as patch:
        _full_after(patch, needle)
        result = CliRunner().invoke(had_cache, args)
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("error")]
    assert len(lines) == 1 and "Traceback" not in result.output
    assert f"no space left on the device of {out} while {what}" in lines[0]
    assert "free" in lines[0] and "rerun the same command" in lines[0]
    if what.startswith("writing"):
        assert "more is needed" in lines[0]
    assert CliRunner().invoke(had_cache, args).exit_code == 0
    a, b = CacheReader(out).read(slice(0, 8)), CacheReader(sound_store).read(slice(0, 8))
    np.testing.assert_array_equal(a.teacher, b.teacher)


def test_pretrain_on_a_full_disk_is_one_line_and_resume_continues(
    sound_store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from had_train import checkpoint

    store = sound_store
    run = tmp_path / "run"
    args = ["pretrain", "--cache", str(store), "--out", str(run), "--preset", "tiny"]
    args += ["--steps", "4", "--batch-size", "2", "--save-every", "2"]
    save = torch.save

    def full_at_step_4(obj: object, path: Path, *a: object, **kw: object) -> None:
        if "step-0000004" in str(path):
            raise OSError(errno.ENOSPC, "No space left on device")
        save(obj, path, *a, **kw)

    with monkeypatch.context() as patch:
        patch.setattr(checkpoint.torch, "save", full_at_step_4)
        result = CliRunner().invoke(had_train, args)
    assert result.exit_code == 2, result.output
    error = result.output.strip().splitlines()[-1]
    assert error.startswith("error: no space left on the device of")
    assert "writing checkpoint step 4; about" in error and "more is needed" in error
    assert "rerun with --resume" in error
    assert sorted(p.name for p in run.glob("step-*")) == ["step-0000002"]  # no half checkpoint
    resumed = CliRunner().invoke(had_train, [*args, "--resume"])
    assert resumed.exit_code == 0, resumed.output
    assert (run / "step-0000004" / checkpoint.MARKER).exists()
