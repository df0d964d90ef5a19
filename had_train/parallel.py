"""Data parallelism for pretraining: the DDP wrapper and how a loss is split over ranks.

Each of R ranks takes its block of every global batch (`PretrainBatches.batch(step, rank, R)`)
and splits it into `grad_accum` micro-batches. The loss a micro-batch contributes is normalised
by counts over the *global* batch (its share of the rows for the alignment MSE, the global
number of masked bases for the reconstruction cross-entropy), so the contributions of all
micro-batches on all ranks sum to the loss of the whole batch. DDP averages gradients over
ranks, so each rank back-propagates R times its contributions: the gradient is then that of the
global batch's loss, whatever R and `grad_accum` are. Micro-batches other than the last skip
DDP's all-reduce (`no_sync`). Process-group facts live in `had_common.distributed`.
"""

from __future__ import annotations

import contextlib

import torch
from torch.nn.parallel import DistributedDataParallel

from had_common.distributed import World


def wrap(
    model: torch.nn.Module, world: World, device: torch.device, find_unused: bool
) -> torch.nn.Module:
    """`model` as the training loop calls it: wrapped in DDP when there are several ranks
    (which broadcasts rank 0's weights to all), itself otherwise. `find_unused` for objectives
    that leave a head out of the graph (mlm, distill)."""
    if not world.distributed:
        return model
    ids = [device.index] if device.type == "cuda" else None
    # The student has no buffers, so DDP's default buffer sync has nothing to send.
    return DistributedDataParallel(model, device_ids=ids, find_unused_parameters=find_unused)


def sync_gradients(module: torch.nn.Module, sync: bool) -> contextlib.AbstractContextManager:
    """Forward and backward of a micro-batch: all-reduce gradients only when `sync` (the last
    micro-batch of a step); a plain module always 'syncs'."""
    if sync or not isinstance(module, DistributedDataParallel):
        return contextlib.nullcontext()
    return module.no_sync()
