"""The chunked gated delta rule must match the step-by-step reference, forward and backward."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from had_train.ops import (
    gated_delta_rule,
    gated_delta_rule_backend,
    gated_delta_rule_chunked,
    gated_delta_rule_recurrent,
)
from had_train.ops.gated_delta_rule import unit_lower_inverse
from tests.helpers import rel_err

B, H, DK, DV = 2, 2, 8, 6


def make_inputs(
    length: int,
    dtype: torch.dtype = torch.float64,
    seed: int = 0,
    decay: float = 0.5,
    dk: int = DK,
    dv: int = DV,
):
    """Random q, k (L2-normalised, as the layer feeds them), v, g <= 0, beta in (0, 1), state."""
    gen = torch.Generator().manual_seed(seed)
    q = F.normalize(torch.randn(B, length, H, dk, generator=gen, dtype=dtype), dim=-1)
    k = F.normalize(torch.randn(B, length, H, dk, generator=gen, dtype=dtype), dim=-1)
    v = torch.randn(B, length, H, dv, generator=gen, dtype=dtype)
    g = -decay * torch.rand(B, length, H, generator=gen, dtype=dtype)
    beta = torch.rand(B, length, H, generator=gen, dtype=dtype)
    state = torch.randn(B, H, dk, dv, generator=gen, dtype=dtype)
    return q, k, v, g, beta, state


def cuda_inputs(length: int) -> list[torch.Tensor]:
    """float32 CUDA inputs with the paper's head width (64): Triton kernels tile head dims."""
    return [x.float().cuda() for x in make_inputs(length, dk=64, dv=64)]


def run_with_grads(fn, inputs, with_state: bool, **kwargs):
    """Output, final state and gradients of a fixed random projection of both."""
    leaves = [x.clone().requires_grad_(True) for x in inputs]
    q, k, v, g, beta, state = leaves
    o, final = fn(
        q,
        k,
        v,
        g,
        beta,
        initial_state=state if with_state else None,
        output_final_state=True,
        **kwargs,
    )
    gen = torch.Generator().manual_seed(1)
    do = torch.randn(o.shape, generator=gen, dtype=o.dtype).to(o.device)
    ds = torch.randn(final.shape, generator=gen, dtype=final.dtype).to(final.device)
    ((o * do).sum() + (final * ds).sum()).backward()
    grads = [x.grad for x in (leaves if with_state else leaves[:5])]
    return o.detach(), final.detach(), grads


@pytest.mark.parametrize("length", [1, 7, 64, 100, 130])
@pytest.mark.parametrize("chunk_size", [16, 64])
@pytest.mark.parametrize("with_state", [False, True])
def test_chunked_matches_recurrent_float64(length: int, chunk_size: int, with_state: bool) -> None:
    inputs = make_inputs(length)
    o_ref, s_ref, g_ref = run_with_grads(gated_delta_rule_recurrent, inputs, with_state)
    o, s, grads = run_with_grads(
        gated_delta_rule_chunked, inputs, with_state, chunk_size=chunk_size
    )
    assert o.shape == (B, length, H, DV) and s.shape == (B, H, DK, DV)
    assert rel_err(o, o_ref) <= 1e-6
    assert rel_err(s, s_ref) <= 1e-6
    names = ["q", "k", "v", "g", "beta", "initial_state"]
    for name, grad, grad_ref in zip(names, grads, g_ref, strict=False):
        assert rel_err(grad, grad_ref) <= 1e-6, name


def previous_chunked(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    g: torch.Tensor,
    beta: torch.Tensor,
    initial_state: torch.Tensor | None = None,
    chunk_size: int = 64,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The chunked op as it was before the speed work (commit 3eba9e1): a triangular solve for
    u and w, then three matmuls per chunk in the loop. Kept to show the fast form computes the
    same function (default scale, float32 or float64 as given, final state always returned)."""
    batch, length, heads, dk = q.shape
    dv = v.shape[-1]
    n_chunks = max(1, -(-length // chunk_size))
    pad = n_chunks * chunk_size - length

    def to_chunks(x: torch.Tensor) -> torch.Tensor:
        x = x.movedim(1, 2)
        if pad:
            x = torch.cat([x, x.new_zeros(*x.shape[:2], pad, *x.shape[3:])], dim=2)
        return x.reshape(batch, heads, n_chunks, chunk_size, *x.shape[3:])

    q, k, v = to_chunks(q) * dk**-0.5, to_chunks(k), to_chunks(v)
    g, beta = to_chunks(g), to_chunks(beta)
    cum_g = g.cumsum(dim=-1)
    lower = torch.ones(chunk_size, chunk_size, dtype=torch.bool).tril()
    decay = (cum_g[..., :, None] - cum_g[..., None, :]).masked_fill(~lower, float("-inf")).exp()
    a = (beta[..., None] * (k @ k.transpose(-1, -2)) * decay).masked_fill(~lower.tril(-1), 0.0)
    eye = torch.eye(chunk_size, dtype=q.dtype)
    rhs = torch.cat([beta[..., None] * v, beta[..., None] * k * cum_g.exp()[..., None]], dim=-1)
    uw = torch.linalg.solve_triangular(a + eye, rhs, upper=False, unitriangular=True)
    u, w = uw.split([dv, dk], dim=-1)
    q_decayed = q * cum_g.exp()[..., None]
    attn = (q @ k.transpose(-1, -2)) * decay
    chunk_decay = cum_g[..., -1]
    k_to_end = k * (chunk_decay[..., None] - cum_g).exp()[..., None]
    state = q.new_zeros(batch, heads, dk, dv) if initial_state is None else initial_state
    outputs = []
    per_chunk = zip(
        u.unbind(2),
        w.unbind(2),
        q_decayed.unbind(2),
        attn.unbind(2),
        chunk_decay.exp().unbind(2),
        k_to_end.unbind(2),
        strict=True,
    )
    for u_n, w_n, q_n, attn_n, decay_n, k_n in per_chunk:
        v_new = u_n - w_n @ state
        outputs.append(q_n @ state + attn_n @ v_new)
        state = decay_n[..., None, None] * state + k_n.transpose(-1, -2) @ v_new
    o = torch.stack(outputs, dim=2).reshape(batch, heads, n_chunks * chunk_size, dv)
    return o[:, :, :length].movedim(1, 2), state


def _previous_with_final_state(*args, **kwargs):
    """`previous_chunked` with the keyword interface of `run_with_grads`."""
    kwargs.pop("output_final_state")
    return previous_chunked(*args, **kwargs)


@pytest.mark.parametrize("length", [1, 63, 301])
@pytest.mark.parametrize("chunk_size", [16, 64])
@pytest.mark.parametrize("with_state", [False, True])
def test_chunked_equals_previous_formulation_float32(
    length: int, chunk_size: int, with_state: bool
) -> None:
    """The fast form is the same function as the previous one, to float32 rounding, forward and
    backward, at the paper's head width and decays as strong as the layer's init draws."""
    inputs = [x.float() for x in make_inputs(length, decay=2.0, dk=64, dv=64)]
    o_old, s_old, g_old = run_with_grads(
        _previous_with_final_state, inputs, with_state, chunk_size=chunk_size
    )
    o, s, grads = run_with_grads(
        gated_delta_rule_chunked, inputs, with_state, chunk_size=chunk_size
    )
    assert rel_err(o, o_old) <= 1e-5
    assert rel_err(s, s_old) <= 1e-5
    names = ["q", "k", "v", "g", "beta", "initial_state"]
    for name, grad, grad_old in zip(names, grads, g_old, strict=False):
        assert rel_err(grad, grad_old) <= 1e-5, name


def test_unit_lower_inverse_and_its_gradient() -> None:
    """T (I + A) = I, and the two-matmul backward passes gradcheck (float64)."""
    gen = torch.Generator().manual_seed(3)
    a = (0.5 * torch.randn(2, 3, 9, 9, generator=gen, dtype=torch.float64)).tril(-1)
    t = unit_lower_inverse(a)
    assert rel_err(t @ (a + torch.eye(9, dtype=a.dtype)), torch.eye(9, dtype=a.dtype)) <= 1e-12
    leaf = a.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x: unit_lower_inverse(x.tril(-1)), (leaf,))


def test_final_state_continues_the_sequence() -> None:
    """Running two halves with the state handed over equals running the whole sequence."""
    q, k, v, g, beta, _ = make_inputs(50)
    o_full, s_full = gated_delta_rule_chunked(
        q, k, v, g, beta, output_final_state=True, chunk_size=16
    )
    o1, s1 = gated_delta_rule_chunked(
        q[:, :23],
        k[:, :23],
        v[:, :23],
        g[:, :23],
        beta[:, :23],
        output_final_state=True,
        chunk_size=16,
    )
    o2, s2 = gated_delta_rule_chunked(
        q[:, 23:],
        k[:, 23:],
        v[:, 23:],
        g[:, 23:],
        beta[:, 23:],
        initial_state=s1,
        output_final_state=True,
        chunk_size=16,
    )
    assert rel_err(torch.cat([o1, o2], dim=1), o_full) <= 1e-12
    assert rel_err(s2, s_full) <= 1e-12


def test_no_final_state_unless_asked() -> None:
    q, k, v, g, beta, _ = make_inputs(5)
    assert gated_delta_rule_chunked(q, k, v, g, beta)[1] is None
    assert gated_delta_rule_recurrent(q, k, v, g, beta)[1] is None


def test_float32_strong_decay_is_finite_and_close() -> None:
    """Decays as strong as the layer can produce (-exp(A_log) * softplus) must not overflow."""
    inputs = make_inputs(130, dtype=torch.float32, decay=40.0)
    q, k, v, g, beta, _ = (x.requires_grad_(True) for x in inputs)
    o, _ = gated_delta_rule_chunked(q, k, v, g, beta, chunk_size=64)
    o.square().sum().backward()
    assert torch.isfinite(o).all()
    assert all(torch.isfinite(x.grad).all() for x in (q, k, v, g, beta))
    o_ref, _ = gated_delta_rule_recurrent(*(x.detach() for x in (q, k, v, g, beta)))
    assert rel_err(o.detach(), o_ref) <= 1e-5


def test_low_precision_inputs_keep_their_dtype() -> None:
    q, k, v, g, beta, _ = (x.to(torch.bfloat16) for x in make_inputs(20, dtype=torch.float32))
    o, s = gated_delta_rule_chunked(q, k, v, g.float(), beta, output_final_state=True)
    assert o.dtype == torch.bfloat16 and s.dtype == torch.float32


def test_dispatcher_on_cpu_is_the_chunked_op() -> None:
    """The backend the trainer logs is the one that runs: on CPU, the chunked PyTorch op."""
    assert gated_delta_rule_backend("cpu") == "torch-chunked"
    assert gated_delta_rule_backend(torch.device("cpu")) == "torch-chunked"
    q, k, v, g, beta, state = make_inputs(40)
    o, s = gated_delta_rule(q, k, v, g, beta, None, state, True, 16)
    o_ref, s_ref = gated_delta_rule_chunked(q, k, v, g, beta, None, state, True, 16)
    assert torch.equal(o, o_ref) and torch.equal(s, s_ref)


def test_scale_is_applied_to_queries() -> None:
    q, k, v, g, beta, _ = make_inputs(9)
    o_default, _ = gated_delta_rule_chunked(q, k, v, g, beta)
    o_one, _ = gated_delta_rule_chunked(q, k, v, g, beta, scale=1.0)
    assert rel_err(o_default, o_one * DK**-0.5) <= 1e-12


def test_wrong_layout_is_rejected() -> None:
    q, k, v, g, beta, _ = make_inputs(9)
    with pytest.raises(ValueError, match="g and beta"):
        gated_delta_rule_chunked(q, k, v, g.transpose(1, 2), beta)
    with pytest.raises(ValueError, match="v must be"):
        gated_delta_rule_recurrent(q, k, v.transpose(1, 2), g, beta)


needs_fla = pytest.mark.skipif(
    not torch.cuda.is_available(), reason="fla imports only with triton, which needs CUDA"
)


@needs_fla
@pytest.mark.parametrize("with_state", [False, True])
def test_fla_kernel_matches_reference_on_cuda(with_state: bool) -> None:
    """Forward and backward of fla's chunk_gated_delta_rule against the float32 reference."""
    pytest.importorskip("fla.ops.gated_delta_rule")
    assert gated_delta_rule_backend("cuda") == "fla"
    inputs = cuda_inputs(301)
    o_ref, s_ref, g_ref = run_with_grads(gated_delta_rule_recurrent, inputs, with_state)
    o, s, grads = run_with_grads(gated_delta_rule, inputs, with_state)
    assert rel_err(o, o_ref) <= 5e-3
    assert rel_err(s, s_ref) <= 5e-3
    names = ["q", "k", "v", "g", "beta", "initial_state"]
    for name, grad, grad_ref in zip(names, grads, g_ref, strict=False):
        assert rel_err(grad, grad_ref) <= 5e-3, name


@needs_fla
def test_fla_naive_reference_computes_our_recurrence() -> None:
    """fla's own step-by-step reference (note: beta before g) and ours define the same rule."""
    naive = pytest.importorskip("fla.ops.gated_delta_rule.naive")
    q, k, v, g, beta, state = cuda_inputs(301)
    o, s = gated_delta_rule_recurrent(q, k, v, g, beta, None, state, True)
    o_fla, s_fla = naive.naive_recurrent_gated_delta_rule(q, k, v, beta, g, None, state, True)
    assert rel_err(o, o_fla) <= 1e-5
    assert rel_err(s, s_fla) <= 1e-5


@needs_fla
def test_fla_kernel_in_bfloat16_stays_close_to_reference() -> None:
    """bf16 q, k, v, beta (what autocast feeds it) against the float32 reference."""
    pytest.importorskip("fla.ops.gated_delta_rule")
    q, k, v, g, beta, _ = cuda_inputs(301)
    o_ref, s_ref = gated_delta_rule_recurrent(q, k, v, g, beta, output_final_state=True)
    half = [x.bfloat16() for x in (q, k, v)]
    o, s = gated_delta_rule(*half, g, beta.bfloat16(), output_final_state=True)
    assert o.dtype == torch.bfloat16
    assert rel_err(o.float(), o_ref) <= 2e-2
    assert rel_err(s.float(), s_ref) <= 2e-2


def test_a_kernel_that_fails_to_import_is_not_available(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """fla or mamba_ssm that is missing, broken (any exception on import) or lacks the kernel
    means 'use the PyTorch op', never a crash at model construction or forward."""
    from had_train.ops._common import optional_kernel

    (tmp_path / "broken_kernel_pkg.py").write_text("raise RuntimeError('no CUDA driver')\n")
    (tmp_path / "fine_kernel_pkg.py").write_text("def kernel():\n    return 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert optional_kernel("broken_kernel_pkg", "kernel") is None
    assert optional_kernel("no_such_kernel_pkg", "kernel") is None
    assert optional_kernel("fine_kernel_pkg", "missing") is None
    assert optional_kernel("fine_kernel_pkg", "kernel")() == 1
