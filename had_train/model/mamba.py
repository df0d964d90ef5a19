"""The Mamba(-1) mixer (Gu & Dao, 2023), laid out as `mamba_ssm.modules.mamba_simple.Mamba`.

in_proj to a main branch x and a gate z (each expand * d_model wide); x through a short causal
depthwise convolution (with bias) and SiLU; x_proj to a low-rank dt, B and C; delta =
softplus(dt_proj(dt)); the selective scan with A = -exp(A_log) and the D skip; y * SiLU(z);
out_proj. The layer is causal: the bidirectional wrapper supplies the reverse direction.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._ops import selective_scan
from .conv import ShortConvolution
from .dt_init import dt_bias_init


class Mamba(nn.Module):
    """One causal Mamba mixer: [B, L, d_model] -> [B, L, d_model]."""

    def __init__(
        self,
        d_model: int,
        d_state: int = 16,
        expand: int = 2,
        conv_size: int = 4,
        chunk_size: int = 32,
    ) -> None:
        super().__init__()
        self.d_inner = expand * d_model
        self.d_state = d_state
        self.dt_rank = math.ceil(d_model / 16)  # mamba_ssm's dt_rank="auto"
        self.chunk_size = chunk_size
        self.in_proj = nn.Linear(d_model, 2 * self.d_inner, bias=False)
        self.conv = ShortConvolution(self.d_inner, conv_size, bias=True)
        self.x_proj = nn.Linear(self.d_inner, self.dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(self.dt_rank, self.d_inner, bias=True)
        self.A_log = nn.Parameter(torch.empty(self.d_inner, d_state))
        self.D = nn.Parameter(torch.empty(self.d_inner))
        self.A_log._no_weight_decay = True  # type: ignore[attr-defined]
        self.D._no_weight_decay = True  # type: ignore[attr-defined]
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=False)
        self.reset_ssm_parameters()

    def ssm_init_values(
        self, dt_min: float = 1e-3, dt_max: float = 0.1, dt_floor: float = 1e-4
    ) -> dict[str, Tensor]:
        """mamba_ssm's init: S4D-real A = -(1..N), D = 1, dt_proj weight U(+-dt_rank^-0.5), and
        its bias the inverse softplus of a log-uniform dt in [dt_min, dt_max], so channels start
        with memories from ~10 to ~1000 steps."""
        a = torch.arange(1, self.d_state + 1, dtype=torch.float32).repeat(self.d_inner, 1)
        dt_bias = dt_bias_init(self.d_inner, dt_min, dt_max, dt_floor)
        bound = self.dt_rank**-0.5
        return {
            "A_log": torch.log(a),
            "D": torch.ones(self.d_inner),
            "dt_proj.weight": torch.empty(self.d_inner, self.dt_rank).uniform_(-bound, bound),
            "dt_proj.bias": dt_bias,
        }

    def ssm_parameters(self) -> dict[str, Tensor]:
        """The parameters `ssm_init_values` fills, by the same names."""
        return {
            "A_log": self.A_log,
            "D": self.D,
            "dt_proj.weight": self.dt_proj.weight,
            "dt_proj.bias": self.dt_proj.bias,
        }

    def reset_ssm_parameters(self) -> None:
        """Draw A_log, D and dt_proj afresh (the model's `_init_weights` uses the same values)."""
        values = self.ssm_init_values()
        with torch.no_grad():
            for name, param in self.ssm_parameters().items():
                param.copy_(values[name])

    def forward(self, x: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        """x: [B, L, d_model]; attention_mask [B, L] (1 = valid, left-aligned) or None.

        Padded steps get delta = 0 (decay 1, input 0), so they leave the state exactly as the last
        valid step left it; the causal layout already keeps them out of valid outputs.
        """
        x, z = self.in_proj(x).chunk(2, dim=-1)
        x = self.conv(x)
        dt, B, C = self.x_proj(x).split([self.dt_rank, self.d_state, self.d_state], dim=-1)
        delta = F.softplus(self.dt_proj(dt).float())
        if attention_mask is not None:
            delta = delta * attention_mask.to(delta.dtype)[..., None]
        delta = delta.to(x.dtype)  # mamba_ssm wants u and delta in one dtype
        y, _ = selective_scan(
            x.transpose(1, 2),
            delta.transpose(1, 2),
            -self.A_log.float().exp(),
            B.transpose(1, 2),
            C.transpose(1, 2),
            self.D.float(),
            z.transpose(1, 2),
            chunk_size=self.chunk_size,
        )
        return self.out_proj(y.transpose(1, 2))
