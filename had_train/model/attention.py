"""Bidirectional multi-head attention (SDPA) for the encoder's attention block and the decoder."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class MultiHeadAttention(nn.Module):
    """Non-causal attention of queries over a context, with an optional key padding mask.

    No positional encoding: in the student the GDN blocks before it already carry position.
    Used as self-attention (context = queries) in the encoder and as cross-attention in the
    reconstruction decoder.
    """

    def __init__(self, d_model: int, num_heads: int) -> None:
        super().__init__()
        if d_model % num_heads:
            raise ValueError(f"d_model={d_model} must be divisible by num_heads={num_heads}")
        self.num_heads = num_heads
        self.head_dim = d_model // num_heads
        self.q_proj = nn.Linear(d_model, d_model, bias=False)
        self.k_proj = nn.Linear(d_model, d_model, bias=False)
        self.v_proj = nn.Linear(d_model, d_model, bias=False)
        self.o_proj = nn.Linear(d_model, d_model, bias=False)

    def _heads(self, x: Tensor) -> Tensor:
        """[B, L, d] -> [B, H, L, d / H]."""
        return x.unflatten(-1, (self.num_heads, self.head_dim)).transpose(1, 2)

    def forward(
        self, x: Tensor, context: Tensor | None = None, key_mask: Tensor | None = None
    ) -> Tensor:
        """x [B, Lq, d]; context [B, Lk, d] (None: x itself); key_mask [B, Lk], 1 = attend."""
        context = x if context is None else context
        q, k, v = (
            self._heads(self.q_proj(x)),
            self._heads(self.k_proj(context)),
            self._heads(self.v_proj(context)),
        )
        attn_mask = None if key_mask is None else key_mask.bool()[:, None, None, :]
        o = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        return self.o_proj(o.transpose(1, 2).flatten(2))


class SelfAttentionMixer(MultiHeadAttention):
    """The encoder's attention mixer: self-attention with padded keys masked out.

    With `window` W, a sequence longer than W is cut into blocks of W bases from position 0,
    each attending within itself (linear cost in L). Blocks start at 0 in every row, so a
    sequence sees the same blocks alone and in a padded batch.
    """

    def __init__(self, d_model: int, num_heads: int, window: int | None = None) -> None:
        super().__init__(d_model, num_heads)
        self.window = window

    def forward(  # type: ignore[override]
        self, x: Tensor, attention_mask: Tensor | None = None
    ) -> Tensor:
        window, (batch, length, d_model) = self.window, x.shape
        if window is None or length <= window:
            return super().forward(x, key_mask=attention_mask)
        n_blocks = -(-length // window)
        pad = n_blocks * window - length
        blocks = F.pad(x, (0, 0, 0, pad)).reshape(batch * n_blocks, window, d_model)
        key_mask = None
        if attention_mask is not None or pad:
            valid = (
                x.new_ones(batch, length, dtype=torch.bool)
                if attention_mask is None
                else attention_mask.bool()
            )
            key_mask = F.pad(valid, (0, pad)).reshape(batch * n_blocks, window)
            # a block of padding only has no key to attend to: torch >= 2.5 returns zeros there,
            # older versions NaN, which the bidirectional wrapper's zeroing (NaN * 0) would not
            # remove. Let such a block attend to its own padding; its outputs are padding and
            # reach no valid one.
            key_mask = key_mask | ~key_mask.any(dim=-1, keepdim=True)
        out = super().forward(blocks, key_mask=key_mask)
        return out.reshape(batch, n_blocks * window, d_model)[:, :length]
