"""The extraction pipeline: threads change nothing in the store, the plan comes before the
teacher, and an error in a prefetch or writer thread is the usual one-line error."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from had_cache.cli import main as had_cache
from tests.conftest import assert_same_store
from tests.reliability.conftest import extract, extract_args, quicken_gate


@pytest.fixture(autouse=True)
def quick_gate(monkeypatch: pytest.MonkeyPatch) -> None:
    quicken_gate(monkeypatch)


def test_threads_change_nothing(small_fasta: Path, tiny_teacher: Path, tmp_path: Path) -> None:
    serial = extract(small_fasta, tiny_teacher, tmp_path / "serial.zarr", workers=0)
    threaded = extract(
        small_fasta, tiny_teacher, tmp_path / "threads.zarr", workers=3, write_queue=1
    )
    assert_same_store(serial, threaded)


def test_the_plan_is_printed_before_the_teacher_loads(
    small_fasta: Path, tiny_teacher: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from had_cache import teacher as teacher_mod

    def no_weights(*args: object, **kw: object) -> None:
        raise teacher_mod.TeacherError("stop before the weights")

    monkeypatch.setattr(teacher_mod, "load_teacher", no_weights)
    args = extract_args(small_fasta, tiny_teacher, tmp_path / "s.zarr")
    result = CliRunner().invoke(had_cache, [*args, "--stride", "60"])
    assert result.exit_code == 2, result.output
    lines = result.stdout.splitlines()  # the plan, on stdout; the error alone on stderr
    assert lines[0].startswith("plan             8 windows of 120 bp (stride 60, strands forward)")
    assert "skipped 3 with N; --max-windows kept 8" in lines[1]  # 3 windows overlap the N run
    assert lines[2].strip() == "2 shard(s) of 4 records (2 chunk(s) of 2) per array"
    assert result.stderr == "error: stop before the weights\n"


@pytest.mark.parametrize("where", ["prefetch", "writer"])
def test_an_error_in_a_thread_is_one_line_and_the_rerun_finishes(
    small_fasta: Path,
    tiny_teacher: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    where: str,
) -> None:
    from had_cache import windows, writer
    from had_common.errors import HadError

    out = tmp_path / "s.zarr"
    args = extract_args(small_fasta, tiny_teacher, out)
    with monkeypatch.context() as patch:
        if where == "prefetch":
            read = windows.read_windows

            def failing(fasta: object, table: object, records: range, *a: object) -> object:
                # A prefetch thread's batch (a range; the codec's sample read before the
                # first shard is an array) in shard 1, second batch (shard 0 is whole).
                if isinstance(records, range) and records.start >= 6:
                    raise windows.FastaError("the FASTA went away")
                return read(fasta, table, records, *a)

            patch.setattr(windows, "read_windows", failing)
            expected = "error: the FASTA went away"
        else:
            write = writer.StoreWriter.write_shard

            def failing_write(self: object, shard: int, *a: object) -> int:
                if shard == 1:
                    raise HadError("the store went away")
                return write(self, shard, *a)

            patch.setattr(writer.StoreWriter, "write_shard", failing_write)
            expected = "error: the store went away"
        result = CliRunner().invoke(had_cache, args)
    assert result.exit_code == 2, result.output
    assert result.output.strip().splitlines()[-1] == expected
    assert "Traceback" not in result.output
    rerun = CliRunner().invoke(had_cache, args)
    assert rerun.exit_code == 0, rerun.output
    assert "(4 written this run" in rerun.output  # shard 0 was kept: only shard 1 was lost
    assert_same_store(out, extract(small_fasta, tiny_teacher, tmp_path / "ref.zarr"))
