"""A kill at any moment leaves something the same command resumes or cleanly recreates.

Each test runs the real command in a child process that patches one function to SIGKILL itself
at a chosen moment (no hook in the product code), then reruns the same command and compares the
result with an uninterrupted run, bit for bit.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from had_cache import schema, verify
from had_cache.cli import main as had_cache
from had_cache.reader import CacheReader
from had_cache.schema import StoreError
from had_train.cli import main as had_train
from tests.conftest import assert_same_store
from tests.reliability.conftest import GATE_WINDOWS
from tests.reliability.conftest import extract_args as _extract_args

ROOT = Path(__file__).resolve().parents[2]

CHILD = """
import os, signal, sys, importlib
from had_cache import gate  # the quick gate of conftest.py
windows = gate.gate_windows
gate.gate_windows = lambda: windows({gate_windows})
module = importlib.import_module({module!r})
owner_name, _, attr = {attr!r}.rpartition(".")
owner = getattr(module, owner_name) if owner_name else module
original = getattr(owner, attr)
calls = 0

def killer(*a, **kw):
    global calls
    if {condition}:
        calls += 1
        if calls == {nth} and {before!r}:
            os.kill(os.getpid(), signal.SIGKILL)
        result = original(*a, **kw)
        if calls == {nth}:
            os.kill(os.getpid(), signal.SIGKILL)
        return result
    return original(*a, **kw)

setattr(owner, attr, killer)
from {cli} import main
main({argv!r})
"""


def run_killed(
    cli: str,
    argv: list[str],
    module: str,
    attr: str,
    condition: str = "True",
    nth: int = 1,
    before: bool = False,
) -> None:
    """Run `cli` with `argv` in a child that SIGKILLs itself at the `nth` call of
    `module.attr` for which `condition` (an expression of `a`, the call's arguments) holds,
    before or after that call."""
    code = CHILD.format(
        module=module,
        attr=attr,
        condition=condition,
        nth=nth,
        before=before,
        cli=cli,
        argv=argv,
        gate_windows=GATE_WINDOWS,
    )
    env = os.environ | {"PYTHONPATH": str(ROOT), "TQDM_DISABLE": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]


@pytest.fixture
def reference(sound_store: Path) -> Path:
    return sound_store


@pytest.fixture(scope="module")
def straight(sound_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An uninterrupted pretraining run of `_pretrain_args`."""
    run = tmp_path_factory.mktemp("straight") / "run"
    result = CliRunner().invoke(had_train, _pretrain_args(sound_store, run))
    assert result.exit_code == 0, result.output
    return run


ZARR_PUT = ("zarr.storage._local", "_put")
MOMENTS = {
    # store creation: after the group, before all arrays and attributes exist
    "creating the store": (*ZARR_PUT, "'mask' in str(a[0])", 1, True),
    # mid-shard: the teacher on shard 1's first batch (shard 0 queued for, or at, the writer)
    "mid-shard, in the teacher": ("had_cache.teacher", "Teacher.encode", "True", 3, True),
    # mid-shard: shard 1's features written, its other arrays and done marker not yet
    "mid-shard, writing": (*ZARR_PUT, "'teacher_layer_2/c/1' in str(a[0])", 1, False),
    # between shards: shard 0 done, shard 1 not written
    "between shards": (*ZARR_PUT, "'shard_done/c/0' in str(a[0])", 1, False),
    # finalisation: every shard done, `complete` being written
    "finalising": ("had_cache.writer", "StoreWriter.finalize", "True", 1, True),
}


@pytest.mark.parametrize("moment", list(MOMENTS))
def test_extraction_killed_at_any_moment_resumes_bit_identically(
    moment: str, small_fasta: Path, tiny_teacher: Path, tmp_path: Path, reference: Path
) -> None:
    out = tmp_path / "s.had.zarr"
    args = _extract_args(small_fasta, tiny_teacher, out)
    module, attr, condition, nth, before = MOMENTS[moment]
    run_killed("had_cache.cli", args, module, attr, condition, nth, before)
    assert (out / schema.LOCK_FILE).exists()  # left by the dead writer: stale, taken over
    result = CliRunner().invoke(had_cache, args)
    assert result.exit_code == 0, result.output
    verify.check_integrity(out).check()
    assert_same_store(out, reference)
    assert not (out / schema.LOCK_FILE).exists()


def test_a_partial_shard_is_discarded_and_rewritten(
    small_fasta: Path, tiny_teacher: Path, tmp_path: Path, reference: Path
) -> None:
    """A shard without its done marker is never trusted: what an object store may hold of a
    half-written shard (here: garbage in shard 1's files) is deleted and written again."""
    out = tmp_path / "s.had.zarr"
    args = _extract_args(small_fasta, tiny_teacher, out)
    run_killed("had_cache.cli", args, *MOMENTS["mid-shard, writing"])
    for name in (schema.SEQ, schema.teacher_array(2)):
        shard = next((out / name / "c" / "1").rglob("*"))
        while shard.is_dir():
            shard = next(shard.iterdir())
        shard.write_bytes(b"half a shard")
    result = CliRunner().invoke(had_cache, args)
    assert result.exit_code == 0, result.output
    assert_same_store(out, reference)


def test_a_sharded_run_killed_in_one_rank_resumes_and_the_last_rank_finishes(
    small_fasta: Path, tiny_teacher: Path, tmp_path: Path, reference: Path
) -> None:
    """Rank 1 of 2 killed while writing its shard; rank 0 finishes its own and leaves the
    store incomplete; rank 1 rerun writes its shard and, last to finish, marks it complete.
    Then a run whose last rank is killed at finalisation is completed by `had-cache
    finalize`."""
    out = tmp_path / "s.had.zarr"
    args = _extract_args(small_fasta, tiny_teacher, out)
    run_killed("had_cache.cli", [*args, "--shard", "1/2"], *MOMENTS["mid-shard, writing"])
    assert (out / schema.rank_lock(1, 2)).exists()
    first = CliRunner().invoke(had_cache, [*args, "--shard", "0/2"])
    assert first.exit_code == 0, first.output
    assert "incomplete: 1 shard(s) to go" in first.output
    with pytest.raises(StoreError, match="incomplete"):
        CacheReader(out)
    last = CliRunner().invoke(had_cache, [*args, "--shard", "1/2"])
    assert last.exit_code == 0, last.output
    assert "the store is complete" in last.output
    assert_same_store(out, reference)
    assert not list(out.glob(f"{schema.LOCK_FILE}*"))

    again = tmp_path / "again.had.zarr"
    args = _extract_args(small_fasta, tiny_teacher, again)
    assert CliRunner().invoke(had_cache, [*args, "--shard", "0/2"]).exit_code == 0
    run_killed("had_cache.cli", [*args, "--shard", "1/2"], *MOMENTS["finalising"])
    finalized = CliRunner().invoke(had_cache, ["finalize", str(again)])
    assert finalized.exit_code == 0, finalized.output
    assert_same_store(again, reference)


def test_a_creation_killed_by_an_older_had_is_recreated(
    small_fasta: Path, tiny_teacher: Path, tmp_path: Path
) -> None:
    """Before the creation marker, a kill left a Zarr group without attributes that the rerun
    refused as "not a had-cache store"; such a leftover is recognised and recreated."""
    import zarr

    out = tmp_path / "s.had.zarr"
    group = zarr.open_group(str(out), mode="w-")
    group.create_array(schema.SEQ, shape=(8, 120), dtype="uint8", chunks=(4, 120))
    result = CliRunner().invoke(had_cache, _extract_args(small_fasta, tiny_teacher, out))
    assert result.exit_code == 0, result.output
    verify.check_integrity(out).check()


def _pretrain_args(store: Path, run: Path) -> list[str]:
    return [
        "pretrain",
        "--cache",
        str(store),
        "--out",
        str(run),
        "--preset",
        "tiny",
        "--steps",
        "4",
        "--batch-size",
        "2",
        "--save-every",
        "2",
        "--keep-last",
        "1",
    ]


@pytest.mark.parametrize(
    ("moment", "module", "attr", "condition"),
    [
        # writing the first checkpoint: --resume finds none, says so and starts from step 0
        ("first checkpoint write", "torch", "save", "'step-0000002' in str(a[1])"),
        # writing checkpoint 4: its optimizer state half way (step 2 is complete)
        ("checkpoint write", "torch", "save", "'step-0000004' in str(a[1])"),
        # purging checkpoint 2 after checkpoint 4 is in place: marker gone, files not yet
        ("checkpoint purge", "shutil", "rmtree", "str(a[0]).endswith('step-0000002')"),
    ],
)
def test_pretraining_killed_while_checkpointing_resumes_bit_identically(
    moment: str,
    module: str,
    attr: str,
    condition: str,
    small_fasta: Path,
    tiny_teacher: Path,
    tmp_path: Path,
    reference: Path,
    straight: Path,
) -> None:
    from had_train import checkpoint

    run = tmp_path / "run"
    args = _pretrain_args(reference, run)
    run_killed("had_train.cli", args, module, attr, condition, before=True)
    resumed = CliRunner().invoke(had_train, [*args, "--resume"])
    assert resumed.exit_code == 0, resumed.output
    assert ("no complete checkpoint yet" in resumed.output) == moment.startswith("first")
    final = checkpoint.step_dir(run, 4)
    expected = torch.load(checkpoint.step_dir(straight, 4) / checkpoint.OPTIMIZER_STATE)
    got = torch.load(final / checkpoint.OPTIMIZER_STATE)
    for key, state in expected["state"].items():
        for name, value in state.items():
            assert torch.equal(got["state"][key][name], value), (key, name)
    assert [p.name for p in run.glob("step-*")] == [final.name]
