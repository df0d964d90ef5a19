"""Mamba's selective scan (Gu & Dao, 2023): naive reference, chunked PyTorch form, dispatcher.

All three take mamba_ssm's arguments in mamba_ssm's order and layout, so the dispatcher passes
them straight to `selective_scan_fn`: u, delta, z: [B, D, L]; A: [D, N] (real, < 0);
B, C: [B, N, L] (one B and C shared by all channels); D, delta_bias: [D]; state h: [B, D, N].
With delta = softplus(delta + delta_bias) when delta_softplus, the recurrence per channel is

    h_t = exp(delta_t A) h_{t-1} + delta_t B_t u_t,    y_t = C_t . h_t + D u_t,    out = y * SiLU(z)

The recurrent form is the reference the tests trust; the chunked form is what runs on CPU (and
on GPU without mamba_ssm); mamba_ssm's CUDA kernel runs on CUDA when it imports.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ._common import compute_dtype, optional_kernel

__all__ = [
    "selective_scan",
    "selective_scan_backend",
    "selective_scan_chunked",
    "selective_scan_recurrent",
]


_MAMBA_KERNEL = ("mamba_ssm.ops.selective_scan_interface", "selective_scan_fn")
"""mamba_ssm's CUDA kernel (module, name): used on CUDA when `optional_kernel` can import it."""


def _check_shapes(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None,
    z: Tensor | None,
    delta_bias: Tensor | None,
) -> None:
    """Fail early with shapes in the message: a [B, L, D] layout otherwise computes garbage."""
    if u.dim() != 3 or delta.shape != u.shape:
        raise ValueError(
            f"u and delta must be [B, D, L] and equal, got {tuple(u.shape)}, {tuple(delta.shape)}"
        )
    batch, dim, length = u.shape
    if A.dim() != 2 or A.shape[0] != dim or A.is_complex():
        raise ValueError(f"A must be real [D, N] with D = {dim}, got {tuple(A.shape)}")
    expected = (batch, A.shape[1], length)
    if B.shape != expected or C.shape != expected:
        raise ValueError(
            f"B and C must be [B, N, L] = {expected}, got {tuple(B.shape)}, {tuple(C.shape)}"
        )
    if z is not None and z.shape != u.shape:
        raise ValueError(f"z must be [B, D, L] = {tuple(u.shape)}, got {tuple(z.shape)}")
    for name, x in (("D", D), ("delta_bias", delta_bias)):
        if x is not None and x.shape != (dim,):
            raise ValueError(f"{name} must be [D] = ({dim},), got {tuple(x.shape)}")


def _discretize(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    delta_bias: Tensor | None,
    delta_softplus: bool,
    dtype: torch.dtype,
) -> tuple[Tensor, Tensor, Tensor]:
    """(delta, log decay delta*A [B, D, L, N], input delta*B*u [B, D, L, N]) in `dtype`."""
    delta = delta.to(dtype)
    if delta_bias is not None:
        delta = delta + delta_bias.to(dtype)[:, None]
    if delta_softplus:
        delta = F.softplus(delta)
    log_decay = delta[..., None] * A.to(dtype)[:, None, :]
    inputs = (delta * u.to(dtype))[..., None] * B.to(dtype).transpose(1, 2)[:, None]
    return delta, log_decay, inputs


def _finish(y: Tensor, u: Tensor, D: Tensor | None, z: Tensor | None, dtype: torch.dtype) -> Tensor:
    """y + D u, gated by SiLU(z), back in u's dtype."""
    if D is not None:
        y = y + u.to(dtype) * D.to(dtype)[:, None]
    if z is not None:
        y = y * F.silu(z.to(dtype))
    return y.to(u.dtype)


def selective_scan_recurrent(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None = None,
    z: Tensor | None = None,
    delta_bias: Tensor | None = None,
    delta_softplus: bool = False,
    output_final_state: bool = False,
) -> tuple[Tensor, Tensor | None]:
    """Step-by-step reference (mamba_ssm's `selective_scan_ref`): a Python loop over L.

    Returns (out [B, D, L] in u's dtype, final state [B, D, N] in the compute dtype or None).
    """
    _check_shapes(u, delta, A, B, C, D, z, delta_bias)
    dtype = compute_dtype(u)
    _, log_decay, inputs = _discretize(u, delta, A, B, delta_bias, delta_softplus, dtype)
    state = u.new_zeros(u.shape[0], u.shape[1], A.shape[1], dtype=dtype)
    ys = []
    # unbind, not x[:, :, t]: each index's backward would write a full-size zero tensor (O(L^2))
    steps = zip(log_decay.exp().unbind(2), inputs.unbind(2), C.to(dtype).unbind(2), strict=True)
    for decay_t, input_t, c_t in steps:
        state = decay_t * state + input_t
        ys.append(torch.einsum("bdn,bn->bd", state, c_t))
    y = torch.stack(ys, dim=2) if ys else u.new_zeros(u.shape, dtype=dtype)
    return _finish(y, u, D, z, dtype), (state if output_final_state else None)


def selective_scan_chunked(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None = None,
    z: Tensor | None = None,
    delta_bias: Tensor | None = None,
    delta_softplus: bool = False,
    output_final_state: bool = False,
    chunk_size: int = 32,
) -> tuple[Tensor, Tensor | None]:
    """Two-level scan: ~chunk_size + L / chunk_size Python steps instead of L.

    1. Every chunk scans from a zero state, all chunks at once (chunk_size steps).
    2. The chunk-start states follow from the chunk ends (L / chunk_size steps).
    3. h_t = h_local_t + exp(sum of log decays since the chunk start) h_start, one vectorised op.
    Only products of decays <= 1 appear (no exp(-x) rescaling), so nothing overflows. L is padded
    with log decay 0 and input 0, which leaves the state unchanged; gradients come from autograd.
    """
    _check_shapes(u, delta, A, B, C, D, z, delta_bias)
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    dtype = compute_dtype(u)
    batch, dim, length = u.shape
    n_state = A.shape[1]
    _, log_decay, inputs = _discretize(u, delta, A, B, delta_bias, delta_softplus, dtype)
    n_chunks = max(1, -(-length // chunk_size))
    pad = n_chunks * chunk_size - length
    if pad:
        log_decay, inputs = (F.pad(x, (0, 0, 0, pad)) for x in (log_decay, inputs))
    shape = (batch, dim, n_chunks, chunk_size, n_state)
    log_decay, inputs = log_decay.reshape(shape), inputs.reshape(shape)
    decay = log_decay.exp()

    # unbind, not x[..., j, :] in the loops: each index's backward writes a full-size zero tensor
    state = u.new_zeros(batch, dim, n_chunks, n_state, dtype=dtype)
    local = []
    for decay_j, input_j in zip(decay.unbind(3), inputs.unbind(3), strict=True):
        state = decay_j * state + input_j
        local.append(state)
    h_local = torch.stack(local, dim=3)  # [B, D, chunks, C, N], each chunk from a zero state

    from_start = log_decay.cumsum(dim=3).exp()  # decay from the chunk start to t, inclusive
    state = u.new_zeros(batch, dim, n_state, dtype=dtype)
    starts = []
    ends = zip(from_start[:, :, :, -1].unbind(2), local[-1].unbind(2), strict=True)
    for chunk_decay, chunk_end in ends:
        starts.append(state)
        state = chunk_decay * state + chunk_end
    h = h_local + from_start * torch.stack(starts, dim=2)[:, :, :, None]

    C_ = F.pad(C.to(dtype), (0, pad)).reshape(batch, n_state, n_chunks, chunk_size)
    y = torch.einsum("bdcjn,bncj->bdcj", h, C_).reshape(batch, dim, -1)[..., :length]
    return _finish(y, u, D, z, dtype), (state if output_final_state else None)


def selective_scan_backend(device: torch.device | str) -> str:
    """Which implementation `selective_scan` uses on `device`: "mamba_ssm" or "torch-chunked".

    The trainer logs this once, so a run that silently fell back to the slow path is visible.
    """
    if torch.device(device).type == "cuda" and optional_kernel(*_MAMBA_KERNEL) is not None:
        return "mamba_ssm"
    return "torch-chunked"


def selective_scan(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None = None,
    z: Tensor | None = None,
    delta_bias: Tensor | None = None,
    delta_softplus: bool = False,
    output_final_state: bool = False,
    chunk_size: int = 32,
) -> tuple[Tensor, Tensor | None]:
    """The one entry point layers call: mamba_ssm on CUDA when available, else the chunked op.

    chunk_size applies to the PyTorch path only. mamba_ssm's final state carries no gradient.
    """
    if selective_scan_backend(u.device) == "mamba_ssm":
        kernel = optional_kernel(*_MAMBA_KERNEL)
        assert kernel is not None
        _check_shapes(u, delta, A, B, C, D, z, delta_bias)
        result = kernel(
            u,
            delta,
            A,
            B,
            C,
            D=D,
            z=z,
            delta_bias=delta_bias,
            delta_softplus=delta_softplus,
            return_last_state=output_final_state,
        )
        if output_final_state:
            out, state = result
            return out, state
        return result, None  # type: ignore[return-value]
    return selective_scan_chunked(
        u, delta, A, B, C, D, z, delta_bias, delta_softplus, output_final_state, chunk_size
    )
