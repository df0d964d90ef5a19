"""The short causal depthwise convolution before GDN's and Mamba's recurrences."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class ShortConvolution(nn.Module):
    """Depthwise causal convolution (optionally with bias), then SiLU: local context before the
    recurrence. GDN's q, k, v convolutions have no bias (fla); Mamba's x convolution has one
    (mamba_ssm's `conv1d`).

    The weight lives in an `nn.Conv1d` ([C, 1, K], fla's and mamba_ssm's layout and state-dict
    names), but the product is computed as K shifted multiply-adds: PyTorch's depthwise Conv1d
    backward on CPU is ~15x slower than this.
    """

    def __init__(self, channels: int, kernel_size: int, bias: bool = False) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.conv = nn.Conv1d(channels, channels, kernel_size, groups=channels, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        """x: [B, L, C] -> [B, L, C]; position t sees t - kernel_size + 1 .. t only."""
        length, kernel = x.shape[1], self.kernel_size
        padded = F.pad(x, (0, 0, kernel - 1, 0))
        weight = self.conv.weight[:, 0, :].to(x.dtype)  # [C, K]
        out = padded[:, :length] * weight[:, 0]
        if self.conv.bias is not None:
            out = out + self.conv.bias.to(x.dtype)
        for j in range(1, kernel):
            out = out + padded[:, j : j + length] * weight[:, j]
        return F.silu(out)
