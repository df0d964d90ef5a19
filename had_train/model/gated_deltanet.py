"""The Gated DeltaNet layer (Yang et al., ICLR 2025), laid out as fla's `GatedDeltaNet`.

q, k, v projections, each through a short causal depthwise convolution and SiLU; q and k
L2-normalised; beta = sigmoid(b_proj x); log-decay g = -exp(A_log) * softplus(a_proj x + dt_bias);
the gated delta rule; then RMSNorm(o) * SiLU(g_proj x) per head and o_proj. The layer is causal:
the bidirectional wrapper supplies the reverse direction.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._ops import gated_delta_rule
from .conv import ShortConvolution
from .dt_init import dt_bias_init
from .norm import GatedRMSNorm


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
        return torch.log(a), dt_bias_init(self.num_heads, dt_min, dt_max, dt_floor)

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
