"""The dt initialisation shared by the recurrent mixers (GDN and Mamba), in one place."""

from __future__ import annotations

import math

import torch
from torch import Tensor


def dt_bias_init(
    n: int, dt_min: float = 1e-3, dt_max: float = 0.1, dt_floor: float = 1e-4
) -> Tensor:
    """[n] biases b with softplus(b) = dt, dt log-uniform in [dt_min, dt_max] and at least
    dt_floor (Mamba's and fla's dt init), so the channels' memories start spread from ~1/dt_max
    to ~1/dt_min steps. Draws one `torch.rand(n)` from the global generator."""
    dt = torch.exp(torch.rand(n) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)).clamp(
        min=dt_floor
    )
    return dt + torch.log(-torch.expm1(-dt))  # inverse softplus
