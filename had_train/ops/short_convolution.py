"""The short causal depthwise convolution + SiLU before GDN's and Mamba's recurrences.

One autograd node with a hand-written backward: K in-place multiply-adds forward; backward K
multiply-adds for the input's gradient and one multiply-and-reduce per tap for the weight's.
Left to autograd, the same taps record 2K nodes and keep their temporaries. Measured on one CPU
thread (docs/student.md, "Speed work"): [2, 1,024, 128] fwd+bwd 4.9 -> 3.6 ms; in the paper
preset's step no speed change within noise, but the peak memory of a step at L = 1,024 fell
from 358 to 287 MiB. PyTorch's depthwise `Conv1d` is slower still on CPU (its backward).

x: [B, L, C] (channels last, the layers' layout); weight: [C, K]; bias: [C] or None.
Position t sees x[t - K + 1 .. t] only (zero before the start): causal.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["short_convolution"]


def _causal_taps(out: Tensor, x: Tensor, weight: Tensor) -> Tensor:
    """out[:, t] += sum_j x[:, t - (K - 1) + j] * weight[:, j], in place."""
    kernel, length = weight.shape[1], x.shape[1]
    for j in range(kernel - 1):
        shift = kernel - 1 - j
        if shift < length:
            out[:, shift:].addcmul_(x[:, : length - shift], weight[:, j])
    return out


class _ShortConvolutionSiLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        pre = x * weight[:, -1]  # tap K - 1 is position t itself
        _causal_taps(pre, x, weight)
        if bias is not None:
            pre.add_(bias)
        ctx.save_for_backward(x, weight, pre)
        ctx.has_bias = bias is not None
        return F.silu(pre)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        x, weight, pre = ctx.saved_tensors
        grad_pre = torch.ops.aten.silu_backward(grad.contiguous(), pre)
        kernel, length = weight.shape[1], x.shape[1]
        grad_x = grad_weight = grad_bias = None
        if ctx.needs_input_grad[0]:  # the transposed taps: x[s] reached out[s + shift]
            grad_x = grad_pre * weight[:, -1]
            for j in range(kernel - 1):
                shift = kernel - 1 - j
                if shift < length:
                    grad_x[:, : length - shift].addcmul_(grad_pre[:, shift:], weight[:, j])
        if ctx.needs_input_grad[1]:
            grad_weight = weight.new_zeros(weight.shape)
            for j in range(kernel):
                shift = kernel - 1 - j
                if shift < length:
                    grad_weight[:, j] = (grad_pre[:, shift:] * x[:, : length - shift]).sum((0, 1))
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_bias = grad_pre.sum(dim=(0, 1))
        return grad_x, grad_weight, grad_bias


def short_convolution(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """SiLU(causal depthwise conv(x)): x [B, L, C], weight [C, K], bias [C] or None -> [B, L, C].

    weight and bias are cast to x's dtype (under autocast the activations may be bf16).
    """
    if x.dim() != 3 or weight.dim() != 2 or weight.shape[0] != x.shape[-1]:
        raise ValueError(
            f"short_convolution takes x [B, L, C] and weight [C, K], got {tuple(x.shape)} and "
            f"{tuple(weight.shape)}"
        )
    weight = weight.to(x.dtype)
    bias = None if bias is None else bias.to(x.dtype)
    return _ShortConvolutionSiLU.apply(x, weight, bias)
