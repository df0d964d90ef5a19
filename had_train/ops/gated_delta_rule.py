"""The gated delta rule (Yang et al., ICLR 2025): naive reference, chunked PyTorch form, dispatcher.

All three take the same arguments in the same order, in fla's default layout:
q, k: [B, L, H, Dk]; v: [B, L, H, Dv]; g: [B, L, H] log-decay (<= 0, alpha = exp(g));
beta: [B, L, H]; state S: [B, H, Dk, Dv]. The recurrence is

    S_t = alpha_t (I - beta_t k_t k_t^T) S_{t-1} + beta_t k_t v_t^T,    o_t = S_t^T (scale q_t)

q and k are expected L2-normalised already (the layer does it), so this file owns only the
recurrence. The recurrent form is the reference the tests trust; the chunked form is what runs
on CPU (and on GPU without fla); fla's Triton kernel runs on CUDA when it imports.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ._common import compute_dtype, optional_kernel

__all__ = [
    "gated_delta_rule",
    "gated_delta_rule_backend",
    "gated_delta_rule_chunked",
    "gated_delta_rule_recurrent",
]


_FLA_KERNEL = ("fla.ops.gated_delta_rule", "chunk_gated_delta_rule")
"""fla's Triton kernel (module, name): used on CUDA when `optional_kernel` can import it."""


def _check_shapes(q: Tensor, k: Tensor, v: Tensor, g: Tensor, beta: Tensor) -> None:
    """Fail early with shapes in the message: a transposed layout otherwise computes garbage."""
    if q.dim() != 4 or q.shape != k.shape:
        raise ValueError(
            f"q and k must be [B, L, H, Dk] and equal, got {tuple(q.shape)}, {tuple(k.shape)}"
        )
    if v.dim() != 4 or v.shape[:3] != q.shape[:3]:
        raise ValueError(f"v must be [B, L, H, Dv] matching q's [B, L, H], got {tuple(v.shape)}")
    if g.shape != q.shape[:3] or beta.shape != q.shape[:3]:
        raise ValueError(
            f"g and beta must be [B, L, H] = {tuple(q.shape[:3])}, "
            f"got {tuple(g.shape)}, {tuple(beta.shape)}"
        )


def gated_delta_rule_recurrent(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    g: Tensor,
    beta: Tensor,
    scale: float | None = None,
    initial_state: Tensor | None = None,
    output_final_state: bool = False,
) -> tuple[Tensor, Tensor | None]:
    """Step-by-step reference: slow (a Python loop over L) but obviously correct.

    Returns (o [B, L, H, Dv] in v's dtype, final state [B, H, Dk, Dv] in the compute dtype or None).
    """
    _check_shapes(q, k, v, g, beta)
    dtype, out_dtype = compute_dtype(q), v.dtype
    batch, length, heads, dk = q.shape
    dv = v.shape[-1]
    scale = dk**-0.5 if scale is None else scale
    q, k, v, g, beta = (x.to(dtype) for x in (q, k, v, g, beta))
    state = q.new_zeros(batch, heads, dk, dv) if initial_state is None else initial_state.to(dtype)
    outputs = []
    for t in range(length):
        k_t, v_t, beta_t = k[:, t], v[:, t], beta[:, t, :, None]
        alpha_t = g[:, t].exp()[..., None, None]
        state = alpha_t * state
        # delta rule: replace the value stored under key k_t by v_t, at learning rate beta_t
        residual = beta_t * (v_t - torch.einsum("bhk,bhkv->bhv", k_t, state))
        state = state + torch.einsum("bhk,bhv->bhkv", k_t, residual)
        outputs.append(torch.einsum("bhk,bhkv->bhv", q[:, t] * scale, state))
    o = torch.stack(outputs, dim=1) if outputs else v.new_zeros(batch, 0, heads, dv)
    return o.to(out_dtype), (state if output_final_state else None)


class _UnitLowerInverse(torch.autograd.Function):
    """(I + A)^-1 for strictly lower-triangular A, with a two-matmul backward.

    torch.linalg.solve_triangular's own backward runs a second batched triangular solve, which
    on CPU cost as much as the rest of the chunked op; d(T) = -T d(A) T gives
    dA = -(T^T dT T^T) restricted to A's strictly lower triangle.
    """

    @staticmethod
    def forward(ctx: Any, a: Tensor) -> Tensor:
        eye = torch.eye(a.shape[-1], dtype=a.dtype, device=a.device)
        t = torch.linalg.solve_triangular(
            a + eye, eye.expand_as(a), upper=False, unitriangular=True
        )
        ctx.save_for_backward(t)
        return t

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        (t,) = ctx.saved_tensors
        t_t = t.mT
        return -(t_t @ grad @ t_t).tril(-1)


def unit_lower_inverse(a: Tensor) -> Tensor:
    """T = (I + A)^-1 for a batch of strictly lower-triangular A [..., C, C] (differentiable)."""
    return _UnitLowerInverse.apply(a)


def gated_delta_rule_chunked(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    g: Tensor,
    beta: Tensor,
    scale: float | None = None,
    initial_state: Tensor | None = None,
    output_final_state: bool = False,
    chunk_size: int = 64,
) -> tuple[Tensor, Tensor | None]:
    """Chunked WY/UT form: batched matmuls over all chunks, one matmul per chunk in a loop.

    Within a chunk (G = in-chunk cumsum of g), the per-step delta-rule corrections solve the unit
    lower-triangular system (I + A) r = beta v - beta k exp(G) S with
    A[t, s] = beta_t (k_t . k_s) exp(G_t - G_s), s < t, so r = u - w S with u = T(beta v),
    w = T(beta k exp(G)), T = (I + A)^-1. With D = (q k^T) * exp(G_t - G_s) (s <= t) and
    K = k * exp(G_C - G), a chunk maps its start state S to

        o = (q exp(G) - D w) S + D u,     S' = (exp(G_C) I - K^T w) S + K^T u,

    so everything but S is computed for all chunks at once, and the loop over L / chunk_size
    chunks is one multiply-add of a [Dk, Dk] matrix per chunk: more matmul FLOPs than a loop
    that also forms o and v_new per chunk, but a third of the kernels (434 instead of 1,383
    aten ops for a fwd+bwd at L = 1,024), which is what a small model's CPU step pays for.
    L is padded to a multiple of chunk_size
    with g = 0, beta = 0, k = 0, which leaves the state unchanged; the output is cut back.
    Gradients come from autograd (and `unit_lower_inverse`'s backward).
    """
    _check_shapes(q, k, v, g, beta)
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    dtype, out_dtype = compute_dtype(q), v.dtype
    batch, length, heads, dk = q.shape
    dv = v.shape[-1]
    scale = dk**-0.5 if scale is None else scale
    n_chunks = max(1, -(-length // chunk_size))
    pad = n_chunks * chunk_size - length

    def to_chunks(x: Tensor) -> Tensor:
        """[B, L, H, ...] -> [B, H, N, C, ...], zero-padded along L."""
        x = x.to(dtype).movedim(1, 2)
        if pad:
            x = torch.cat([x, x.new_zeros(*x.shape[:2], pad, *x.shape[3:])], dim=2)
        return x.reshape(batch, heads, n_chunks, chunk_size, *x.shape[3:])

    q, k, v = to_chunks(q) * scale, to_chunks(k), to_chunks(v)
    g, beta = to_chunks(g), to_chunks(beta)

    cum_g = g.cumsum(dim=-1)  # G_t: [B, H, N, C]
    lower = torch.ones(chunk_size, chunk_size, dtype=torch.bool, device=q.device).tril()
    # exp(G_t - G_s) for s <= t, exactly 0 above the diagonal (masked before exp: no inf * 0)
    decay = (cum_g[..., :, None] - cum_g[..., None, :]).masked_fill(~lower, float("-inf")).exp()

    t = unit_lower_inverse((beta[..., None] * (k @ k.mT) * decay).tril(-1))
    u = t @ (beta[..., None] * v)  # [B, H, N, C, Dv]
    attn = (q @ k.mT) * decay  # intra-chunk, causal incl. diagonal
    chunk_decay = cum_g[..., -1]  # G_C: [B, H, N]
    k_to_end = (k * (chunk_decay[..., None] - cum_g).exp()[..., None]).mT  # K^T: [.., Dk, C]
    if n_chunks == 1 and initial_state is None:
        # One chunk from a zero state (fine-tuning's short sequences): S = 0, so o = D u and
        # S' = K^T u; w, the transition and the loop are not needed (op 1.5x faster at L = 60).
        o = (attn @ u).reshape(batch, heads, chunk_size, dv)[:, :, :length].movedim(1, 2)
        final = (k_to_end @ u).view(batch, heads, dk, dv) if output_final_state else None
        return o.to(out_dtype), final
    exp_g = cum_g.exp()[..., None]
    w = t @ (beta[..., None] * k * exp_g)  # [B, H, N, C, Dk]
    eye = torch.eye(dk, dtype=dtype, device=q.device)
    transition = chunk_decay.exp()[..., None, None] * eye - k_to_end @ w  # [B, H, N, Dk, Dk]
    update = k_to_end @ u  # [B, H, N, Dk, Dv]

    state = q.new_zeros(batch, heads, dk, dv) if initial_state is None else initial_state.to(dtype)
    state = state.reshape(batch * heads, dk, dv)
    starts = []
    # unbind once: indexing [:, n] inside the loop makes every backward step write a full-size
    # zero gradient, which grows the loop's cost with L^2.
    for m_n, b_n in zip(
        transition.flatten(0, 1).unbind(1), update.flatten(0, 1).unbind(1), strict=True
    ):
        starts.append(state)
        state = torch.baddbmm(b_n, m_n, state)
    start_states = torch.stack(starts, dim=1).view(batch, heads, n_chunks, dk, dv)
    o = (q * exp_g - attn @ w) @ start_states + attn @ u
    o = o.reshape(batch, heads, n_chunks * chunk_size, dv)[:, :, :length].movedim(1, 2)
    final = state.view(batch, heads, dk, dv)
    return o.to(out_dtype), (final if output_final_state else None)


def gated_delta_rule_backend(device: torch.device | str) -> str:
    """Which implementation `gated_delta_rule` uses on `device`: "fla" or "torch-chunked".

    The trainer logs this once, so a run that silently fell back to the slow path is visible.
    """
    if torch.device(device).type == "cuda" and optional_kernel(*_FLA_KERNEL) is not None:
        return "fla"
    return "torch-chunked"


def gated_delta_rule(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    g: Tensor,
    beta: Tensor,
    scale: float | None = None,
    initial_state: Tensor | None = None,
    output_final_state: bool = False,
    chunk_size: int = 64,
) -> tuple[Tensor, Tensor | None]:
    """The one entry point layers call: fla on CUDA when available, else the chunked PyTorch op.

    chunk_size applies to the PyTorch path only (fla fixes its own).
    """
    if gated_delta_rule_backend(q.device) == "fla":
        kernel = optional_kernel(*_FLA_KERNEL)
        assert kernel is not None
        return kernel(
            q=q,
            k=k,
            v=v,
            g=g,
            beta=beta,
            scale=scale,
            initial_state=initial_state,
            output_final_state=output_final_state,
        )
    return gated_delta_rule_chunked(
        q, k, v, g, beta, scale, initial_state, output_final_state, chunk_size
    )
