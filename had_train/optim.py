"""Which parameters weight decay shrinks: the one rule every trainer uses.

Decay pulls weights towards zero, which is right for the matrices of projections and wrong for
what has another natural value: norm gains (1), biases (0 is no better than any other), the
embedding table (rows of rare codes would be pulled to zero between their rare updates) and the
recurrences' own parameters that a layer marks `_no_weight_decay` (GDN's and Mamba's `A_log`
and `dt_bias`, Mamba's `D`: decay would shift every channel's memory length, and Mamba's
`A_log` is a matrix, so a rule by shape alone would decay it).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


def decays(module: nn.Module, name: str, param: nn.Parameter) -> bool:
    """True if weight decay applies to `param` (called `name` inside `module`)."""
    if getattr(param, "_no_weight_decay", False):
        return False
    if isinstance(module, nn.Embedding):
        return False
    return param.ndim >= 2  # biases, norm gains and per-head scalars are vectors


def optim_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW parameter groups: [decayed (weight_decay), not decayed (0.0)], trainable only.

    Each parameter appears once, even when modules share it (tied weights).
    """
    owner = {id(p): m for m in model.modules() for p in m.parameters(recurse=False)}
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    # named_parameters' order (shared tensors once), so an optimizer state saved by a run
    # maps back onto the same parameters when it is resumed.
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        (decay if decays(owner[id(param)], name, param) else no_decay).append(param)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def decayed_names(model: nn.Module) -> list[str]:
    """Qualified names of the parameters weight decay applies to (for tests and logs)."""
    decayed = {id(p) for p in optim_groups(model, 1.0)[0]["params"]}
    return [name for name, param in model.named_parameters() if id(param) in decayed]


class WeightEMA:
    """An exponential moving average of a model's parameters (`--ema DECAY`), kept in float32
    beside the training weights: after each optimizer step, ema <- decay * ema + (1 - decay) * w.
    One fused update per step and no host sync; saved in checkpoints so a resume continues it."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.names = [name for name, _ in model.named_parameters()]
        self.params = [p for _, p in model.named_parameters()]
        self.shadow = [p.detach().float().clone() for p in self.params]

    @torch.no_grad()
    def update(self) -> None:
        torch._foreach_lerp_(self.shadow, [p.detach().float() for p in self.params], 1 - self.decay)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {name: t.cpu() for name, t in zip(self.names, self.shadow, strict=True)}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        for name, t in zip(self.names, self.shadow, strict=True):
            t.copy_(state[name])

    @torch.no_grad()
    def copy_to(self, model: nn.Module) -> None:
        """Put the averaged weights into `model` (a model of the same architecture)."""
        for (_, p), t in zip(model.named_parameters(), self.shadow, strict=True):
            p.copy_(t)
