"""Several processes fill one store: torchrun, srun-style variables or `--shard r/R`, each
rank its own shards, the same arrays as one process; locks between runs; remote stores."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from had_cache import schema
from had_cache.cli import main as had_cache
from had_cache.extract import resolve_world
from had_cache.reader import CacheReader, Location
from had_cache.writer import lock_store
from had_common.distributed import World
from had_common.errors import ConfigError
from had_common.lock import LockHeldError
from tests.conftest import assert_same_store
from tests.reliability.conftest import GATE_WINDOWS, extract_args, quicken_gate
from tests.reliability.conftest import extract as extract_one

ROOT = Path(__file__).resolve().parents[2]

ENTRY = """
from had_cache import gate  # the quick gate of tests/reliability/conftest.py
windows = gate.gate_windows
gate.gate_windows = lambda: windows({gate_windows})
import sys
from had_cache.cli import main
main(sys.argv[1:], prog_name="had-cache")
"""


@pytest.fixture(autouse=True)
def quick_gate(monkeypatch: pytest.MonkeyPatch) -> None:
    quicken_gate(monkeypatch)


@pytest.fixture(scope="module")
def single(tmp_path_factory: pytest.TempPathFactory, small_fasta: Path, tiny_teacher: Path) -> Path:
    """The store one process writes: 8 records in 2 shards."""
    with pytest.MonkeyPatch.context() as patch:
        quicken_gate(patch)
        return extract_one(small_fasta, tiny_teacher, tmp_path_factory.mktemp("one") / "s.zarr")


def _entry(tmp_path: Path) -> Path:
    script = tmp_path / "had_cache_entry.py"
    script.write_text(textwrap.dedent(ENTRY.format(gate_windows=GATE_WINDOWS)))
    return script


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    return env | {"PYTHONPATH": str(ROOT), "TQDM_DISABLE": "1", "OMP_NUM_THREADS": "1"}


def _two_shards_at_once(tmp_path: Path, args: list[str]) -> list[tuple[str, str]]:
    """Run `had-cache extract ARGS --shard 1/2` and `--shard 0/2` as two plain processes
    started together (a job array's two tasks); (stdout, stderr) of each, both succeeded."""
    entry = _entry(tmp_path)
    procs = [
        subprocess.Popen(
            [sys.executable, str(entry), *args, "--shard", f"{rank}/2"],
            cwd=ROOT,
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for rank in (1, 0)
    ]
    outputs = [p.communicate(timeout=240) for p in procs]
    for proc, (_, stderr) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, stderr[-3000:]
    return outputs


def test_torchrun_with_two_processes_writes_the_single_process_store(
    small_fasta: Path, tiny_teacher: Path, tmp_path: Path, single: Path
) -> None:
    out = tmp_path / "torchrun.zarr"
    args = extract_args(small_fasta, tiny_teacher, out)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    proc = subprocess.run(
        [*cmd, str(_entry(tmp_path)), *args],
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "rank             0 of 2 (shards 0-0)" in proc.stdout
    assert "rank             1 of 2 (shards 1-1)" in proc.stdout
    assert_same_store(out, single)
    assert not list(out.glob(f"{schema.LOCK_FILE}*"))  # every rank lock released


def test_two_plain_processes_with_shard_r_of_2_write_the_single_process_store(
    small_fasta: Path, tiny_teacher: Path, tmp_path: Path, single: Path
) -> None:
    """Job-array style: no launcher, started at once, racing to create the store."""
    out = tmp_path / "array.zarr"
    outputs = _two_shards_at_once(tmp_path, extract_args(small_fasta, tiny_teacher, out))
    # the last to finish marks the store complete (both, if they finish together)
    assert any("the store is complete" in stdout for stdout, _ in outputs)
    assert_same_store(out, single)


def test_racing_ranks_share_one_codec_fit(
    small_fasta: Path, tiny_teacher: Path, tmp_path: Path
) -> None:
    """Two ranks started at once with --codec pca-int8: the one that creates the store fits
    the PCA under the setup lock, the other reads it back; the store equals one process's."""
    codec = ["--codec", "pca-int8", "--pca-dim", "8"]
    out = tmp_path / "array.zarr"
    _two_shards_at_once(tmp_path, [*extract_args(small_fasta, tiny_teacher, out), *codec])
    one = tmp_path / "one.zarr"
    result = CliRunner().invoke(had_cache, [*extract_args(small_fasta, tiny_teacher, one), *codec])
    assert result.exit_code == 0, result.output
    assert CacheReader(out).attrs.codec_fit == CacheReader(one).attrs.codec_fit
    assert_same_store(out, one)


def test_ranks_come_from_the_launcher_or_shard() -> None:
    env = {"RANK": "3", "WORLD_SIZE": "8", "LOCAL_RANK": "3"}
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        assert resolve_world(None) == World(3, 8, 3)
        assert resolve_world("3/8") == World(3, 8, 3)
        with pytest.raises(ConfigError, match="--shard 1/8 disagrees with the launcher"):
            resolve_world("1/8")
    with pytest.MonkeyPatch.context() as patch:
        for key in env:
            patch.delenv(key, raising=False)
        patch.setenv("SLURM_PROCID", "5")
        patch.setenv("SLURM_NTASKS", "16")
        patch.setenv("SLURM_LOCALID", "5")
        assert resolve_world(None) == World(5, 16, 5)
    for bad in ("2/2", "x/2", "1"):
        with pytest.raises(ConfigError, match="--shard takes r/R"):
            resolve_world(bad)


def test_rank_shares_tile_the_store(single: Path) -> None:
    attrs = CacheReader(single).attrs
    for n_shards in (1, 5, 3_301):
        for world in (1, 3, 8):
            a = attrs.__class__(**(attrs.to_json() | {"n_records": n_shards * attrs.shard_records}))
            a = schema.StoreAttrs.from_json(a.to_json(), "x")
            shares = [a.rank_shards(r, world) for r in range(world)]
            assert [s for share in shares for s in share] == list(range(a.n_shards))


def _holder(pid: int, purpose: str = "had-cache extract") -> str:
    return json.dumps(
        {
            "purpose": purpose,
            "host": socket.gethostname(),
            "pid": pid,
            "started": "2026-12-03T08:00:00+00:00",
            "command": "had-cache extract --fasta hg38.fa",
            "proc_start": None,
        }
    )


@pytest.mark.parametrize(
    ("held", "world", "refused"),
    [
        # the same rank of the same run, started twice
        (schema.rank_lock(1, 2), World(1, 2), True),
        # another rank of the same run: disjoint shards, allowed
        (schema.rank_lock(0, 2), World(1, 2), False),
        # a rank of a run with another world size: its shards overlap ours
        (schema.rank_lock(0, 4), World(1, 2), True),
        # an un-sharded run against a live rank, and a rank against a live un-sharded run
        (schema.rank_lock(0, 2), World(), True),
        (schema.LOCK_FILE, World(0, 2), True),
    ],
)
def test_writers_that_could_overlap_are_refused_by_name(
    tmp_path: Path, held: str, world: World, refused: bool
) -> None:
    out = tmp_path / "s.zarr"
    out.mkdir()
    (out / held).write_text(_holder(os.getppid()))  # a live process on this host
    if refused:
        with pytest.raises(LockHeldError, match=f"in use: had-cache extract by pid {os.getppid()}"):
            lock_store(out, world=world)
        assert sorted(p.name for p in out.iterdir()) == [held]  # ours released
    else:
        lock_store(out, world=world).release()


def test_a_stale_rank_lock_is_taken_over(tmp_path: Path) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    out = tmp_path / "s.zarr"
    out.mkdir()
    (out / schema.rank_lock(1, 2)).write_text(_holder(dead.pid))
    lock = lock_store(out, world=World(1, 2))
    assert json.loads((out / schema.rank_lock(1, 2)).read_text())["pid"] == os.getpid()
    lock.release()


def test_ranks_cannot_overwrite(small_fasta: Path, tiny_teacher: Path, tmp_path: Path) -> None:
    args = extract_args(small_fasta, tiny_teacher, tmp_path / "s.zarr")
    result = CliRunner().invoke(had_cache, [*args, "--shard", "0/2", "--overwrite"])
    assert result.exit_code == 2
    assert "--overwrite cannot be combined with several ranks" in result.output


def test_a_file_url_store_is_written_and_read_through_fsspec(
    small_fasta: Path, tiny_teacher: Path, tmp_path: Path, single: Path
) -> None:
    url = f"file://{tmp_path}/url.zarr"
    args = extract_args(small_fasta, tiny_teacher, Path("x"))
    args[args.index("--out") + 1] = url
    result = CliRunner().invoke(had_cache, args)
    assert result.exit_code == 0, result.output
    assert f"store            {url}" in result.output
    assert_same_store(url, single)
    assert CliRunner().invoke(had_cache, ["verify", url]).exit_code == 0
    again = CliRunner().invoke(had_cache, args)  # resumes: nothing left to write
    assert again.exit_code == 0 and "(0 written this run" in again.output
    from had_train.cli import main as had_train

    run = tmp_path / "run"
    trained = CliRunner().invoke(
        had_train,
        ["pretrain", "--cache", url, "--out", str(run), "--preset", "tiny", "--steps", "1"]
        + ["--batch-size", "2"],
    )
    assert trained.exit_code == 0, trained.output
    assert json.loads((run / "pretrain_config.json").read_text())["cache"] == url


def test_zarrs_memory_store_and_a_memory_url(
    small_fasta: Path, tiny_teacher: Path, single: Path
) -> None:
    from zarr.storage import MemoryStore

    from had_train.data import PretrainBatches

    memory = MemoryStore()
    extract_one(small_fasta, tiny_teacher, memory)
    assert_same_store(memory, single)
    assert Location(memory).exists(schema.LOCK_FILE) is False  # released
    batch = PretrainBatches(memory, batch_size=4).batch(0)
    np.testing.assert_array_equal(
        batch.teacher.numpy(),
        CacheReader(single).take(batch.record.numpy()).teacher.astype(np.float32),
    )
    url = "memory://had-test/s.zarr"
    extract_one(small_fasta, tiny_teacher, url)
    assert_same_store(url, single)
