"""Pretraining on several processes (DDP over gloo, as torchrun starts it) trains the same
model as one process on the same global batch, and resumes like one."""

from __future__ import annotations

import csv
import multiprocessing
import os
import socket
from pathlib import Path

import pytest
import torch

from had_common import distributed
from had_common.errors import ConfigError
from had_train.pretrain import PretrainConfig
from tests.helpers import tiny_pretrain_config

LAUNCH_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


@pytest.fixture
def store(train_store: Path) -> Path:
    return train_store


def _rank_main(rank: int, world: int, port: int, cfg: PretrainConfig, resume: bool) -> None:
    """One rank, as torchrun would start it: launcher variables in the environment. Every rank
    dumps its weights whenever a checkpoint is due, so ranks can be compared."""
    torch.set_num_threads(1)  # the same kernels' reduction order in every run
    for name in LAUNCH_VARS:
        os.environ.pop(name, None)
    if world > 1:
        os.environ |= {
            "RANK": str(rank),
            "WORLD_SIZE": str(world),
            "LOCAL_RANK": str(rank),
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
        }
    from had_train import pretrain as pt

    save = pt.save

    def save_and_dump(s: pt.Session, step: int) -> Path:
        path = save(s, step)
        torch.save(s.model.state_dict(), Path(cfg.out) / f"rank{rank}-step{step}.pt")
        return path

    pt.save = save_and_dump
    pt.pretrain(cfg, resume=resume, progress=False)


def _launch(world: int, cfg: PretrainConfig, resume: bool = False) -> None:
    """Run `world` ranks in forked processes (a forked child starts in well under a second)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    ctx = multiprocessing.get_context("fork")
    procs = [
        ctx.Process(target=_rank_main, args=(r, world, port, cfg, resume)) for r in range(world)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=300)
    assert [p.exitcode for p in procs] == [0] * world


def _weights(run: Path, rank: int, step: int) -> dict[str, torch.Tensor]:
    return torch.load(run / f"rank{rank}-step{step}.pt")


def _rows(run: Path) -> list[dict[str, str]]:
    with open(run / "losses.csv", newline="") as fh:
        return [{k: v for k, v in r.items() if k != "seconds"} for r in csv.DictReader(fh)]


def test_two_ranks_train_what_one_process_trains_and_resume(store: Path, tmp_path: Path) -> None:
    """2 ranks x 4 records == 1 process x 2 micro-batches of 4, bit for bit (the same forward
    passes; DDP's average of 2 x each rank's share is exact in floating point); against
    1 process x 1 batch of 8 (one forward pass, another summation order) the weights agree
    within 1e-5 after 3 steps. Both ranks end identical; the 2-rank run was stopped after
    step 2 and resumed."""
    one_accum = tmp_path / "one-accum"
    _launch(1, tiny_pretrain_config(store, one_accum, steps=3, grad_accum=2))
    one = tmp_path / "one"
    _launch(1, tiny_pretrain_config(store, one, steps=3))
    two = tmp_path / "two"
    _launch(2, tiny_pretrain_config(store, two, steps=2))
    _launch(2, tiny_pretrain_config(store, two, steps=3), resume=True)

    ranks = [_weights(two, r, 3) for r in (0, 1)]
    accum, single = _weights(one_accum, 0, 3), _weights(one, 0, 3)
    for name, value in ranks[0].items():
        assert torch.equal(value, ranks[1][name]), name
        assert torch.equal(value, accum[name]), name
        torch.testing.assert_close(value, single[name], rtol=0, atol=1e-5)
    assert _rows(two) == _rows(one_accum)
    assert len(_rows(two)) == 3
    assert not (two / "rank1").exists() and sorted(p.name for p in two.glob("step-*")) == [
        "step-0000002",
        "step-0000003",
    ]


def test_world_from_torchrun_or_slurm_environment() -> None:
    torchrun = {"RANK": "3", "WORLD_SIZE": "8", "LOCAL_RANK": "1", "SLURM_PROCID": "0"}
    assert distributed.world_from_env(torchrun) == distributed.World(3, 8, 1)
    slurm = {"SLURM_PROCID": "5", "SLURM_NTASKS": "6", "SLURM_LOCALID": "2"}
    world = distributed.world_from_env(slurm)
    assert (world.rank, world.world_size, world.local_rank, world.is_main) == (5, 6, 2, False)
    assert distributed.world_from_env({}) == distributed.World(0, 1, 0)
    assert distributed.world_from_env({}).is_main
    with pytest.raises(ConfigError, match="rank 4 of 4"):
        distributed.world_from_env({"RANK": "4", "WORLD_SIZE": "4"})
    with pytest.raises(ConfigError, match="MASTER_ADDR"):
        distributed._rendezvous_env({"SLURM_NNODES": "2"})
    assert distributed._rendezvous_env({"SLURM_JOB_ID": "12"}) == {
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": "29512",
    }
