"""Pretraining heads outside the encoder: the alignment projection and reconstruction decoders."""

from __future__ import annotations

from torch import Tensor, nn

from .attention import MultiHeadAttention
from .configuration_had import NUM_BASES, HadStudentConfig
from .mlp import GatedMLP
from .norm import RMSNorm


class CrossAttentionDecoder(nn.Module):
    """CrossMAE-like decoder: masked positions' features query the visible positions' features.

    queries + CrossAttn(norm(queries), norm(context)), + gated MLP, final norm, Linear(d -> 4)
    over A, C, G, T. Light on purpose, so the encoder (not the decoder) must hold the information.
    """

    def __init__(self, config: HadStudentConfig) -> None:
        super().__init__()
        d = config.d_model
        self.query_norm = RMSNorm(d, config.norm_eps)
        self.context_norm = RMSNorm(d, config.norm_eps)
        self.cross_attention = MultiHeadAttention(d, config.decoder_heads)
        self.mlp_norm = RMSNorm(d, config.norm_eps)
        self.mlp = GatedMLP(d, config.intermediate_size)
        self.out_norm = RMSNorm(d, config.norm_eps)
        self.out_proj = nn.Linear(d, NUM_BASES)

    def forward(self, queries: Tensor, context: Tensor) -> Tensor:
        """queries [B, Q, d] (masked positions), context [B, K, d] (visible) -> logits [B, Q, 4]."""
        x = queries + self.cross_attention(self.query_norm(queries), self.context_norm(context))
        x = x + self.mlp(self.mlp_norm(x))
        return self.out_proj(self.out_norm(x))


class LinearDecoder(nn.Module):
    """The simple alternative: Linear(d -> 4) on masked positions' features, no context."""

    def __init__(self, config: HadStudentConfig) -> None:
        super().__init__()
        self.out_proj = nn.Linear(config.d_model, NUM_BASES)

    def forward(self, queries: Tensor, context: Tensor) -> Tensor:
        """queries [B, Q, d] -> logits [B, Q, 4]; context is ignored."""
        return self.out_proj(queries)


def build_decoder(config: HadStudentConfig) -> nn.Module:
    """The reconstruction decoder named by `config.decoder`."""
    if config.decoder == "linear":
        return LinearDecoder(config)
    return CrossAttentionDecoder(config)
