"""The short causal depthwise convolution before GDN's and Mamba's recurrences."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def short_conv_silu(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """SiLU(causal depthwise conv(x)): x [B, L, C], weight [C, K], bias [C] or None.

    Position t sees t - K + 1 .. t only. Computed as K shifted multiply-adds (one `addcmul` each):
    PyTorch's depthwise Conv1d backward on CPU is ~15x slower than this.
    """
    length, kernel = x.shape[1], weight.shape[1]
    padded = F.pad(x, (0, 0, kernel - 1, 0))
    weight = weight.to(x.dtype)
    out = padded[:, :length] * weight[:, 0]
    if bias is not None:
        out = out + bias.to(x.dtype)
    for j in range(1, kernel):
        out = torch.addcmul(out, padded[:, j : j + length], weight[:, j])
    return F.silu(out)


class ShortConvolution(nn.Module):
    """Depthwise causal convolution (optionally with bias), then SiLU: local context before the
    recurrence. GDN's q, k, v convolutions have no bias (fla); Mamba's x convolution has one
    (mamba_ssm's `conv1d`).

    The weight lives in an `nn.Conv1d` ([C, 1, K], fla's and mamba_ssm's layout and state-dict
    names); `short_conv_silu` computes the product.
    """

    def __init__(self, channels: int, kernel_size: int, bias: bool = False) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.conv = nn.Conv1d(channels, channels, kernel_size, groups=channels, bias=bias)

    @property
    def taps(self) -> Tensor:
        """The weight as [C, K]."""
        return self.conv.weight[:, 0, :]

    def forward(self, x: Tensor) -> Tensor:
        """x: [B, L, C] -> [B, L, C]; position t sees t - kernel_size + 1 .. t only."""
        return short_conv_silu(x, self.taps, self.conv.bias)
