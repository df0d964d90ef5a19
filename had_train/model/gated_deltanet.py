"""The Gated DeltaNet layer (Yang et al., ICLR 2025), laid out as fla's `GatedDeltaNet`.

q, k, v projections, each through a short causal depthwise convolution and SiLU; q and k
L2-normalised; beta = sigmoid(b_proj x); log-decay g = -exp(A_log) * softplus(a_proj x + dt_bias);
the gated delta rule; then RMSNorm(o) * SiLU(g_proj x) per head and o_proj. The layer is causal:
the bidirectional wrapper supplies the reverse direction.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from had_train.ops import gated_delta_rule

from .norm import GatedRMSNorm


class ShortConvolution(nn.Module):
    """Depthwise causal convolution, then SiLU: local context before the recurrence.

    The weight lives in an `nn.Conv1d` ([C, 1, K], fla's layout), but the product is computed as K
    shifted multiply-adds: PyTorch's depthwise Conv1d backward on CPU is ~15x slower than this.
    """

    def __init__(self, channels: int, kernel_size: int) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.conv = nn.Conv1d(channels, channels, kernel_size, groups=channels, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        """x: [B, L, C] -> [B, L, C]; position t sees t - kernel_size + 1 .. t only."""
        length, kernel = x.shape[1], self.kernel_size
        padded = F.pad(x, (0, 0, kernel - 1, 0))
        weight = self.conv.weight[:, 0, :].to(x.dtype)  # [C, K]
        out = padded[:, :length] * weight[:, 0]
        for j in range(1, kernel):
            out = out + padded[:, j : j + length] * weight[:, j]
        return F.silu(out)


class GatedDeltaNet(nn.Module):
    """One causal GDN mixer: [B, L, d_model] -> [B, L, d_model]."""

    def __init__(
        self,
        d_model: int,
        num_heads: int,
        head_dim: int,
        conv_size: int = 4,
        norm_eps: float = 1e-5,
        chunk_size: int = 64,
    ) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = head_dim
        self.chunk_size = chunk_size
        inner = num_heads * head_dim
        self.q_proj = nn.Linear(d_model, inner, bias=False)
        self.k_proj = nn.Linear(d_model, inner, bias=False)
        self.v_proj = nn.Linear(d_model, inner, bias=False)
        self.q_conv = ShortConvolution(inner, conv_size)
        self.k_conv = ShortConvolution(inner, conv_size)
        self.v_conv = ShortConvolution(inner, conv_size)
        self.a_proj = nn.Linear(d_model, num_heads, bias=False)
        self.b_proj = nn.Linear(d_model, num_heads, bias=False)
        # A_log and dt_bias follow Mamba-2/fla; `_no_weight_decay` tells an optimizer to spare them.
        self.A_log = nn.Parameter(torch.zeros(num_heads))
        self.dt_bias = nn.Parameter(torch.zeros(num_heads))
        self.A_log._no_weight_decay = True  # type: ignore[attr-defined]
        self.dt_bias._no_weight_decay = True  # type: ignore[attr-defined]
        self.g_proj = nn.Linear(d_model, inner, bias=False)
        self.o_norm = GatedRMSNorm(head_dim, eps=norm_eps)
        self.o_proj = nn.Linear(inner, d_model, bias=False)
        self.reset_decay_parameters()

    def decay_init_values(
        self, dt_min: float = 1e-3, dt_max: float = 0.1, dt_floor: float = 1e-4
    ) -> tuple[Tensor, Tensor]:
        """fla's init: A ~ U(0, 16) (stored as log), dt log-uniform in [dt_min, dt_max] (stored as
        inverse softplus), so decays start spread over short and long memories."""
        a = torch.empty(self.num_heads).uniform_(0, 16)
        dt = torch.exp(
            torch.rand(self.num_heads) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)
        ).clamp(min=dt_floor)
        return torch.log(a), dt + torch.log(-torch.expm1(-dt))

    def reset_decay_parameters(self) -> None:
        """Draw A_log and dt_bias afresh (the model's `_init_weights` calls the same values)."""
        a_log, dt_bias = self.decay_init_values()
        with torch.no_grad():
            self.A_log.copy_(a_log)
            self.dt_bias.copy_(dt_bias)

    def forward(self, x: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        """x: [B, L, d_model]; attention_mask [B, L] (1 = valid, left-aligned) or None.

        Padded steps get beta = 0 and g = 0, so they leave the state exactly as the last valid
        step left it (the causal layout already keeps them out of valid outputs).
        """
        batch, length, _ = x.shape
        heads, dim = self.num_heads, self.head_dim
        q = F.normalize(self.q_conv(self.q_proj(x)).view(batch, length, heads, dim), dim=-1)
        k = F.normalize(self.k_conv(self.k_proj(x)).view(batch, length, heads, dim), dim=-1)
        v = self.v_conv(self.v_proj(x)).view(batch, length, heads, dim)
        beta = self.b_proj(x).sigmoid()
        g = -self.A_log.float().exp() * F.softplus(self.a_proj(x).float() + self.dt_bias.float())
        if attention_mask is not None:
            valid = attention_mask.to(g.dtype)[..., None]
            beta, g = beta * valid.to(beta.dtype), g * valid
        o, _ = gated_delta_rule(q, k, v, g, beta, chunk_size=self.chunk_size)
        o = self.o_norm(o, self.g_proj(x).view(batch, length, heads, dim))
        return self.o_proj(o.reshape(batch, length, heads * dim))
