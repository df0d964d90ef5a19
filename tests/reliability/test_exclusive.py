"""One writer per store, one trainer per run folder; a lock left by a killed process is taken
over."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from had_cache import schema
from had_cache.cli import main as had_cache
from had_common.lock import STALE_AFTER_S, FileLock, LockHeldError, read_holder
from had_train.cli import main as had_train
from tests.reliability.conftest import extract_args as _extract_args


def _holder(
    pid: int, host: str | None = None, purpose: str = "had-cache extract"
) -> dict[str, object]:
    return {
        "purpose": purpose,
        "host": host or socket.gethostname(),
        "pid": pid,
        "started": "2026-12-03T08:00:00+00:00",
        "command": "had-cache extract --fasta hg38.fa",
        "proc_start": None,
    }


def _dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def test_a_second_extraction_into_a_store_is_refused_naming_the_holder(
    small_fasta: Path, tiny_teacher: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from had_cache import teacher as teacher_mod

    out = tmp_path / "s.had.zarr"
    out.mkdir()
    (out / schema.LOCK_FILE).write_text(json.dumps(_holder(os.getppid())))  # alive, this host

    def no_weights(*args: object, **kw: object) -> None:
        raise AssertionError("the teacher's weights were loaded before the lock was checked")

    monkeypatch.setattr(teacher_mod, "load_teacher", no_weights)
    result = CliRunner().invoke(had_cache, _extract_args(small_fasta, tiny_teacher, out))
    assert result.exit_code == 2, result.output
    line = result.output.strip()
    assert "\n" not in line and line.startswith("error: ")
    assert f"in use: had-cache extract by pid {os.getppid()} on {socket.gethostname()}" in line
    assert "since 2026-12-03T08:00:00+00:00" in line


def test_a_stale_lock_of_a_killed_extraction_is_taken_over(
    small_fasta: Path, tiny_teacher: Path, tmp_path: Path
) -> None:
    out = tmp_path / "s.had.zarr"
    out.mkdir()
    (out / schema.LOCK_FILE).write_text(json.dumps(_holder(_dead_pid())))
    result = CliRunner().invoke(had_cache, _extract_args(small_fasta, tiny_teacher, out))
    assert result.exit_code == 0, result.output
    assert not (out / schema.LOCK_FILE).exists()  # released at the end


def test_a_second_pretraining_run_in_one_folder_is_refused(
    sound_store: Path, tmp_path: Path
) -> None:
    store = sound_store
    run = tmp_path / "run"
    run.mkdir()
    (run / "run.lock").write_text(json.dumps(_holder(os.getppid(), purpose="had-train pretrain")))
    args = ["pretrain", "--cache", str(store), "--out", str(run), "--preset", "tiny"]
    result = CliRunner().invoke(had_train, [*args, "--steps", "1", "--batch-size", "2"])
    assert result.exit_code == 2
    assert f"in use: had-train pretrain by pid {os.getppid()}" in result.output
    assert not list(run.glob("step-*"))


def test_lock_rules(tmp_path: Path) -> None:
    path = tmp_path / "x.lock"
    with FileLock(path, "testing") as lock:
        assert read_holder(path) == lock.holder and lock.holder.pid == os.getpid()
        # Another host's lock cannot be probed: refused while fresh ...
    path.write_text(json.dumps(_holder(12345, host="elsewhere")))
    with pytest.raises(LockHeldError, match="pid 12345 on elsewhere"):
        FileLock(path, "testing").acquire()
    # ... and taken over once nobody refreshed it for STALE_AFTER_S.
    old = time.time() - STALE_AFTER_S - 60
    os.utime(path, (old, old))
    FileLock(path, "testing").acquire().release()
    assert not path.exists()
