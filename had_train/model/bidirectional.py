"""Flip-and-add bidirectionality with tied weights (Caduceus-style), padding-safe.

A naive flip of a padded batch would start the reverse pass on the padding. Here each row's
*valid* part is reversed in place (a per-row index gather), padding stays at the end, and padded
inputs are zeroed, so padding never reaches a valid output and a sequence's output is the same
alone or in a padded batch.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def reverse_valid_index(
    attention_mask: Tensor | None, batch: int, length: int, device: torch.device
) -> Tensor:
    """[B, L] gather index that reverses positions 0..n_b-1 of each row and keeps padding in place.

    The permutation is its own inverse, so the same index reverses back.
    """
    positions = torch.arange(length, device=device).expand(batch, length)
    if attention_mask is None:
        return length - 1 - positions
    lengths = attention_mask.long().sum(dim=1, keepdim=True)
    return torch.where(positions < lengths, lengths - 1 - positions, positions)


def gather_positions(x: Tensor, index: Tensor) -> Tensor:
    """x[b, index[b, t]] for [B, L, d] x and [B, L] index."""
    return x.gather(1, index[..., None].expand(-1, -1, x.shape[-1]))


class Bidirectional(nn.Module):
    """out = mixer(x) + reverse(mixer(reverse(x))), one mixer (tied weights) for both directions."""

    def __init__(self, mixer: nn.Module) -> None:
        super().__init__()
        self.layer = mixer

    def forward(self, x: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        """x [B, L, d]; attention_mask [B, L] (1 = valid, left-aligned) or None; padding -> 0."""
        batch, length, _ = x.shape
        if attention_mask is None:  # a plain flip: the same permutation, a cheaper backward
            forward, backward = self.layer(torch.cat([x, x.flip(1)])).chunk(2)
            return forward + backward.flip(1)
        x = x * attention_mask[..., None].to(x.dtype)
        index = reverse_valid_index(attention_mask, batch, length, x.device)
        # both directions in one call: half the kernel launches / Python loop iterations
        mask2 = attention_mask.repeat(2, 1)
        forward, backward = self.layer(torch.cat([x, gather_positions(x, index)]), mask2).chunk(2)
        out = forward + gather_positions(backward, index)
        return out * attention_mask[..., None].to(out.dtype)
