"""The short causal depthwise convolution before GDN's and Mamba's recurrences."""

from __future__ import annotations

from torch import Tensor, nn

from ._ops import short_convolution


class ShortConvolution(nn.Module):
    """Depthwise causal convolution (optionally with bias), then SiLU: local context before the
    recurrence. GDN's q, k, v convolutions have no bias (fla); Mamba's x convolution has one
    (mamba_ssm's `conv1d`).

    The weight lives in an `nn.Conv1d` ([C, 1, K], fla's and mamba_ssm's layout and state-dict
    names); the product runs in `short_convolution`, one autograd node with a hand-written
    backward (PyTorch's depthwise `Conv1d` backward on CPU is ~15x slower).
    """

    def __init__(self, channels: int, kernel_size: int, bias: bool = False) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.conv = nn.Conv1d(channels, channels, kernel_size, groups=channels, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        """x: [B, L, C] -> [B, L, C]; position t sees t - kernel_size + 1 .. t only."""
        return short_convolution(x, self.conv.weight[:, 0, :], self.conv.bias)
