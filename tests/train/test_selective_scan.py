"""The chunked selective scan must match the step-by-step reference, forward and backward."""

from __future__ import annotations

import pytest
import torch

from had_train.ops import (
    selective_scan,
    selective_scan_backend,
    selective_scan_chunked,
    selective_scan_recurrent,
)
from tests.helpers import rel_err

B, D, N = 2, 6, 4


def make_inputs(length: int, dtype: torch.dtype = torch.float64, seed: int = 0) -> list:
    """u, delta (pre-softplus), A < 0, B, C, D, z, delta_bias in mamba_ssm's layout."""
    gen = torch.Generator().manual_seed(seed)

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=gen, dtype=dtype)

    a = -torch.rand(D, N, generator=gen, dtype=dtype) * 4 - 0.1
    return [
        randn(B, D, length),
        randn(B, D, length),
        a,
        randn(B, N, length),
        randn(B, N, length),
        randn(D),
        randn(B, D, length),
        randn(D) * 0.5,
    ]


def run_with_grads(fn, inputs, **kwargs):
    """Output, final state and the gradients of every input for a fixed random projection.

    The final state enters the loss only through the output: mamba_ssm gives it no gradient.
    """
    leaves = [x.clone().requires_grad_(True) for x in inputs]
    u, delta, a, b, c, d, z, delta_bias = leaves
    out, final = fn(
        u, delta, a, b, c, d, z, delta_bias, delta_softplus=True, output_final_state=True, **kwargs
    )
    do = torch.randn(out.shape, generator=torch.Generator().manual_seed(1), dtype=out.dtype)
    (out * do.to(out.device)).sum().backward()
    return out.detach(), final.detach(), [x.grad for x in leaves]


NAMES = ["u", "delta", "A", "B", "C", "D", "z", "delta_bias"]


@pytest.mark.parametrize("length", [1, 7, 32, 45, 130])
@pytest.mark.parametrize("chunk_size", [8, 32])
def test_chunked_matches_recurrent_float64(length: int, chunk_size: int) -> None:
    inputs = make_inputs(length)
    o_ref, s_ref, g_ref = run_with_grads(selective_scan_recurrent, inputs)
    o, s, grads = run_with_grads(selective_scan_chunked, inputs, chunk_size=chunk_size)
    assert o.shape == (B, D, length) and s.shape == (B, D, N)
    assert rel_err(o, o_ref) <= 1e-10
    assert rel_err(s, s_ref) <= 1e-10
    for name, grad, grad_ref in zip(NAMES, grads, g_ref, strict=True):
        assert rel_err(grad, grad_ref) <= 1e-10, name


def test_reference_is_the_recurrence() -> None:
    """One channel, two steps, by hand: h1 = dt1 B1 u1, h2 = e^{dt2 A} h1 + dt2 B2 u2."""
    u = torch.tensor([[[2.0, 3.0]]], dtype=torch.float64)
    delta = torch.tensor([[[0.5, 0.25]]], dtype=torch.float64)
    a = torch.tensor([[-1.0]], dtype=torch.float64)
    b = torch.tensor([[[1.0, 2.0]]], dtype=torch.float64)
    c = torch.tensor([[[3.0, 0.5]]], dtype=torch.float64)
    h1 = 0.5 * 1.0 * 2.0
    h2 = torch.tensor(-0.25).double().exp() * h1 + 0.25 * 2.0 * 3.0
    out, state = selective_scan_recurrent(u, delta, a, b, c, output_final_state=True)
    torch.testing.assert_close(out[0, 0], torch.stack([torch.tensor(3.0 * h1).double(), 0.5 * h2]))
    torch.testing.assert_close(state[0, 0, 0], h2)


def test_float32_strong_decay_is_finite_and_close() -> None:
    """Large delta * |A| (decays that underflow to 0) must not produce inf or nan."""
    u, delta, a, b, c, d, z, bias = (x.float() for x in make_inputs(100))
    delta = (delta.abs() * 30).requires_grad_(True)
    out, _ = selective_scan_chunked(u, delta, a * 10, b, c, d, z, chunk_size=32)
    out.square().sum().backward()
    assert torch.isfinite(out).all() and torch.isfinite(delta.grad).all()
    ref, _ = selective_scan_recurrent(u, delta.detach(), a * 10, b, c, d, z)
    assert rel_err(out.detach(), ref) <= 1e-5


def test_low_precision_inputs_keep_their_dtype() -> None:
    inputs = [x.float() for x in make_inputs(20)]
    u, delta, a, b, c, d, z, bias = inputs
    out, s = selective_scan_chunked(
        u.bfloat16(), delta.bfloat16(), a, b.bfloat16(), c.bfloat16(), d, z.bfloat16(),
        output_final_state=True,
    )  # fmt: skip
    assert out.dtype == torch.bfloat16 and s.dtype == torch.float32


def test_dispatcher_on_cpu_is_the_chunked_op() -> None:
    """The backend the trainer logs is the one that runs: on CPU, the chunked PyTorch op."""
    assert selective_scan_backend("cpu") == "torch-chunked"
    assert selective_scan_backend(torch.device("cpu")) == "torch-chunked"
    inputs = make_inputs(40)
    o, s = selective_scan(*inputs, True, True, 8)
    o_ref, s_ref = selective_scan_chunked(*inputs, True, True, 8)
    assert torch.equal(o, o_ref) and torch.equal(s, s_ref)
    assert selective_scan(*inputs)[1] is None


def test_wrong_layout_is_rejected() -> None:
    u, delta, a, b, c, d, z, bias = make_inputs(9)
    with pytest.raises(ValueError, match="B and C"):
        selective_scan_chunked(u, delta, a, b.transpose(1, 2), c)
    with pytest.raises(ValueError, match="u and delta"):
        selective_scan_recurrent(u.transpose(1, 2), delta, a, b, c)
    with pytest.raises(ValueError, match="delta_bias"):
        selective_scan_chunked(u, delta, a, b, c, delta_bias=bias[:-1])


needs_mamba_ssm = pytest.mark.skipif(
    not torch.cuda.is_available(), reason="mamba_ssm's kernel needs CUDA"
)


@needs_mamba_ssm
def test_mamba_ssm_kernel_matches_reference_on_cuda() -> None:
    """Forward and backward of mamba_ssm's selective_scan_fn against the float32 reference."""
    pytest.importorskip("mamba_ssm.ops.selective_scan_interface")
    assert selective_scan_backend("cuda") == "mamba_ssm"
    inputs = [x.float().cuda() for x in make_inputs(301)]
    o_ref, s_ref, g_ref = run_with_grads(selective_scan_recurrent, inputs)
    o, s, grads = run_with_grads(selective_scan, inputs)
    assert rel_err(o, o_ref) <= 5e-3
    assert rel_err(s, s_ref) <= 5e-3
    for name, grad, grad_ref in zip(NAMES, grads, g_ref, strict=True):
        assert rel_err(grad, grad_ref) <= 5e-3, name


@needs_mamba_ssm
def test_mamba_ssm_reference_computes_our_recurrence() -> None:
    """mamba_ssm's own PyTorch reference and ours define the same scan, final state included."""
    interface = pytest.importorskip("mamba_ssm.ops.selective_scan_interface")
    u, delta, a, b, c, d, z, bias = (x.float().cuda() for x in make_inputs(301))
    out, state = selective_scan_recurrent(
        u, delta, a, b, c, d, z, bias, delta_softplus=True, output_final_state=True
    )
    out_ref, state_ref = interface.selective_scan_ref(
        u, delta, a, b, c, d, z, bias, delta_softplus=True, return_last_state=True
    )
    assert rel_err(out, out_ref) <= 1e-5
    assert rel_err(state, state_ref) <= 1e-5


@needs_mamba_ssm
def test_mamba_ssm_kernel_in_bfloat16_stays_close_to_reference() -> None:
    """bf16 activations (what autocast feeds it), float32 A and D, against the fp32 reference."""
    pytest.importorskip("mamba_ssm.ops.selective_scan_interface")
    u, delta, a, b, c, d, z, bias = (x.float().cuda() for x in make_inputs(301))
    ref, _ = selective_scan_recurrent(u, delta, a, b, c, d, z, bias, delta_softplus=True)
    half = [x.bfloat16() for x in (u, delta)]
    out, _ = selective_scan(
        *half, a, b.bfloat16(), c.bfloat16(), d, z.bfloat16(), bias, delta_softplus=True
    )
    assert out.dtype == torch.bfloat16
    assert rel_err(out.float(), ref) <= 2e-2
