"""Test helpers shared across test files: tiny student configs, batches, error measures."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from had_cache import dna
from had_train.model import HadStudentConfig

MIXER_STACKS = {
    "gdn": ["gdn"],
    "mamba": ["mamba"],
    "attention": ["attention"],
    "hybrid": ["gdn", "mamba", "attention"],
}
"""One small stack per mixer kind, and the hybrid of all three."""


def tiny_config(**overrides: object) -> HadStudentConfig:
    """The tiny preset with short chunks (test sequences cross chunk boundaries) and a small
    Mamba state; `mixers` etc. as overrides."""
    return HadStudentConfig.from_preset(
        "tiny", **{"chunk_size": 8, "mamba_d_state": 4, **overrides}
    )


def random_ids(gen: torch.Generator, *shape: int) -> torch.Tensor:
    """Random base codes A, C, G, T or N (no MASK or PAD)."""
    return torch.randint(0, dna.N + 1, shape, generator=gen)


def pretraining_batch(
    batch: int = 2, tokens: int = 10, masked: int = 3, seed: int = 4
) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids [B, 6T], group_mask [B, T] with `masked` True per row), as the trainer feeds."""
    gen = torch.Generator().manual_seed(seed)
    ids = random_ids(gen, batch, dna.K * tokens)
    group_mask = torch.zeros(batch, tokens, dtype=torch.bool)
    for row in range(batch):
        group_mask[row, torch.randperm(tokens, generator=gen)[:masked]] = True
    return ids, group_mask


def rel_err(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """Relative RMS error, the tolerance measure fla's parity tests use."""
    return ((actual - expected).norm() / expected.norm().clamp(min=1e-30)).item()


def assert_every_parameter_gets_gradient(model: torch.nn.Module) -> None:
    """After a backward pass: every parameter has a finite, non-zero gradient (none is cut off
    from the loss, none blew up)."""
    for name, param in model.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), name
        assert param.grad.abs().sum() > 0, name


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread() -> Iterator[None]:
    """Tiny shapes on a shared 2-core machine: one intra-op thread is ~10x faster than two.
    A module opts in by importing this fixture."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny_pretrain_config(store: Path, out: Path, **overrides: Any) -> Any:
    """A few-step pretraining recipe of the tiny student on a test store (checkpoint every 2
    steps, a loss row every step); `overrides` replace any field."""
    from had_train.pretrain import PretrainConfig

    base = {"preset": "tiny", "batch_size": 8, "lr": 3e-3, "save_every": 2, "log_every": 1}
    return PretrainConfig(cache=str(store), out=str(out), **(base | overrides))
