"""Process-group facts for multi-process runs: who am I, how many are we, and the few
collective operations both stages need.

A run started by `torchrun` has RANK / WORLD_SIZE / LOCAL_RANK in its environment, one started by
Slurm's `srun` has SLURM_PROCID / SLURM_NTASKS / SLURM_LOCALID; anything else is one process
(rank 0 of 1). `init` joins the process group (NCCL for CUDA, gloo for CPU) only when there is
more than one process, so single-process code paths never touch `torch.distributed`.
Stage one (sharded extraction) and stage two (DDP pretraining) both use this module.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from had_common.errors import ConfigError

TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK")
SLURM_VARS = ("SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID")
DEFAULT_PORT = 29500


@dataclass(frozen=True)
class World:
    """This process's place among the processes of one run."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that writes run files, checkpoints and logs."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def world_from_env(env: Mapping[str, str] | None = None) -> World:
    """The launcher's view of this process: torchrun's variables first, then Slurm's."""
    env = os.environ if env is None else env
    for names in (TORCHRUN_VARS, SLURM_VARS):
        if names[1] in env:
            try:
                rank, size, local = (int(env.get(n, "0")) for n in names)
            except ValueError as err:
                raise ConfigError(
                    f"launcher variables {', '.join(names)} are not integers"
                ) from err
            if not (0 <= rank < size and local >= 0):
                raise ConfigError(f"launcher says rank {rank} of {size} (local {local})")
            return World(rank, size, local)
    return World()


def _rendezvous_env(env: Mapping[str, str]) -> dict[str, str]:
    """MASTER_ADDR / MASTER_PORT for `env://`: torchrun sets them; under srun a one-node job
    defaults to this host and a port derived from the job id, a multi-node job must export
    MASTER_ADDR (the first node of the allocation; see docs/training.md)."""
    found = {k: env[k] for k in ("MASTER_ADDR", "MASTER_PORT") if k in env}
    if "MASTER_ADDR" not in found:
        if int(env.get("SLURM_NNODES", "1")) > 1:
            raise ConfigError(
                "a multi-node srun needs MASTER_ADDR (e.g. export MASTER_ADDR=$(scontrol show "
                "hostnames $SLURM_JOB_NODELIST | head -n1))"
            )
        found["MASTER_ADDR"] = "127.0.0.1"
    if "MASTER_PORT" not in found:
        found["MASTER_PORT"] = str(DEFAULT_PORT + int(env.get("SLURM_JOB_ID", "0")) % 10_000)
    return found


def device_for(world: World, device: torch.device) -> torch.device:
    """One GPU per process: cuda -> cuda:<local rank> when distributed; CPU stays CPU."""
    if device.type == "cuda" and world.distributed:
        return torch.device("cuda", world.local_rank)
    return device


def init(device: torch.device, timeout_s: float = 1800.0) -> World:
    """Join the run's process group (if there is more than one process) and return this
    process's `World`. Idempotent; a single process does nothing."""
    world = world_from_env()
    if not world.distributed or dist.is_initialized():
        return world
    os.environ.update(_rendezvous_env(os.environ))
    if device.type == "cuda":
        torch.cuda.set_device(world.local_rank)
    dist.init_process_group(
        backend="nccl" if device.type == "cuda" else "gloo",
        init_method="env://",
        rank=world.rank,
        world_size=world.world_size,
        timeout=timedelta(seconds=timeout_s),
    )
    return world


def teardown(wait: bool = True) -> None:
    """Leave the process group; with `wait`, after a barrier, so no rank leaves while another
    still works (not after an error: the other ranks may never arrive)."""
    if dist.is_initialized():
        if wait:
            dist.barrier()
        dist.destroy_process_group()


@contextlib.contextmanager
def leave_when_done() -> Iterator[None]:
    """Leave the process group at the end of the block: after a barrier when it ends normally,
    at once when it raises (the other ranks may never reach the barrier)."""
    try:
        yield
    except BaseException:
        teardown(wait=False)
        raise
    teardown(wait=True)


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def is_main() -> bool:
    """True on rank 0 (and in a single process)."""
    return world_from_env().is_main


def _all_reduce(tensor: torch.Tensor, op: dist.ReduceOp) -> torch.Tensor:
    """`op` over ranks in place, on the device the backend needs (NCCL reduces CUDA tensors
    only; gloo CPU ones); a no-op in one process. Returns `tensor`."""
    if not dist.is_initialized():
        return tensor
    on = torch.device("cuda") if dist.get_backend() == "nccl" else torch.device("cpu")
    if tensor.device.type == on.type:
        dist.all_reduce(tensor, op=op)
    else:
        moved = tensor.to(on)
        dist.all_reduce(moved, op=op)
        tensor.copy_(moved)
    return tensor


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum of `tensor` over ranks, in place (a no-op in one process); returns it."""
    return _all_reduce(tensor, dist.ReduceOp.SUM)


def all_reduce_max(tensor: torch.Tensor) -> torch.Tensor:
    """Maximum of `tensor` over ranks, in place (a no-op in one process); returns it."""
    return _all_reduce(tensor, dist.ReduceOp.MAX)


def broadcast_object(value: object, src: int = 0) -> object:
    """Rank `src`'s `value` on every rank (a no-op in one process)."""
    if not dist.is_initialized():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=src)
    return box[0]
