"""The Mamba mixer inside the student: padding invariance, flip equivariance, init, round trips."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from had_train.model import HadStudentConfig, HadStudentForPretraining, HadStudentModel
from had_train.model.bidirectional import Bidirectional
from had_train.model.mamba import CausalConv1d, Mamba
from tests.train.padding import assert_padding_invariant, random_ids

HYBRID = ["gdn", "mamba", "attention"]


def tiny_config(**overrides) -> HadStudentConfig:
    """Tiny preset, Mamba only, short chunks so test sequences cross chunk boundaries."""
    return HadStudentConfig.from_preset(
        "tiny", **{"mixers": ["mamba"], "chunk_size": 8, "mamba_d_state": 4, **overrides}
    )


def pretraining_batch(seed: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    ids = random_ids(gen, 2, 60)
    group_mask = torch.zeros(2, 10, dtype=torch.bool)
    for row in range(2):
        group_mask[row, torch.randperm(10, generator=gen)[:3]] = True
    return ids, group_mask


@pytest.mark.parametrize("mixers", [["mamba"], HYBRID])
def test_padded_batch_equals_each_sequence_alone(mixers: list[str]) -> None:
    torch.manual_seed(0)
    model = HadStudentModel(tiny_config(mixers=mixers)).eval()
    assert_padding_invariant(model, [5, 21, 13, 1], torch.Generator().manual_seed(1))


def test_causal_layer_ignores_right_padding() -> None:
    """The causal layer alone: whatever right padding holds never reaches a valid step."""
    torch.manual_seed(0)
    layer = Mamba(16, d_state=4, chunk_size=4)
    x = torch.randn(1, 9, 16)
    mask = torch.tensor([[1] * 6 + [0] * 3])
    noisy = torch.cat([x[:, :6], torch.randn(1, 3, 16) * 5], dim=1)
    with torch.no_grad():
        torch.testing.assert_close(layer(noisy, mask)[:, :6], layer(x[:, :6]))


def test_bidirectional_mamba_block_is_flip_equivariant() -> None:
    """Tied weights + add: encoder(flip(x)) == flip(encoder(x)) for a single Bi-Mamba block."""
    torch.manual_seed(0)
    ids = random_ids(torch.Generator().manual_seed(3), 3, 19)
    model = HadStudentModel(tiny_config()).eval()
    assert isinstance(model.layers[0].mixer, Bidirectional)
    with torch.no_grad():
        torch.testing.assert_close(model(ids.flip(1)), model(ids).flip(1), rtol=0, atol=1e-6)
    causal = HadStudentModel(tiny_config(bidirectional=False)).eval()
    with torch.no_grad():
        assert not torch.allclose(causal(ids.flip(1)), causal(ids).flip(1), atol=1e-3)


def test_mamba_init_follows_mamba_ssm() -> None:
    """HF's weight init must not overwrite A, D and dt with the generic Linear init."""
    torch.manual_seed(0)
    config = tiny_config(d_model=32, mamba_d_state=4)
    layer = HadStudentModel(config).layers[0].mixer.layer
    assert layer.d_inner == 64 and layer.dt_rank == 2
    expected_a = torch.arange(1, 5, dtype=torch.float32).log().expand(64, 4)
    torch.testing.assert_close(layer.A_log.detach(), expected_a)
    assert torch.equal(layer.D.detach(), torch.ones(64))
    dt = torch.nn.functional.softplus(layer.dt_proj.bias.detach())
    assert dt.min() >= 1e-4 and dt.max() <= 0.1 + 1e-6
    assert layer.dt_proj.weight.abs().max() <= 2**-0.5 and layer.dt_proj.weight.std() > 0.1


def test_causal_conv_matches_conv1d() -> None:
    torch.manual_seed(0)
    conv = CausalConv1d(8, 4)
    x = torch.randn(2, 11, 8)
    padded = torch.nn.functional.pad(x.transpose(1, 2), (3, 0))
    reference = torch.nn.functional.conv1d(padded, conv.conv.weight, conv.conv.bias, groups=8)
    torch.testing.assert_close(conv(x), torch.nn.functional.silu(reference.transpose(1, 2)))


def test_hybrid_gradients_reach_every_parameter() -> None:
    torch.manual_seed(0)
    model = HadStudentForPretraining(tiny_config(mixers=HYBRID))
    out = model(*pretraining_batch())
    (out.aligned.square().mean() + out.recon_logits.logsumexp(-1).mean()).backward()
    for name, param in model.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), name
        assert param.grad.abs().sum() > 0, name


def test_hybrid_save_load_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = HadStudentForPretraining(tiny_config(mixers=HYBRID)).eval()
    model.save_pretrained(tmp_path)
    loaded = HadStudentForPretraining.from_pretrained(tmp_path).eval()
    assert loaded.config.mixers == HYBRID
    assert (loaded.config.mamba_d_state, loaded.config.mamba_expand) == (4, 2)
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    ids, group_mask = pretraining_batch()
    with torch.no_grad():
        a, b = model(ids, group_mask), loaded(ids, group_mask)
    assert torch.equal(a.aligned, b.aligned) and torch.equal(a.recon_logits, b.recon_logits)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the fast kernels need CUDA")
def test_hybrid_on_cuda_matches_cpu_reference() -> None:
    """The whole hybrid on CUDA (fla, mamba_ssm when installed) against the CPU ops, fwd and bwd."""
    torch.manual_seed(0)
    cpu = HadStudentModel(tiny_config(mixers=HYBRID, chunk_size=64))
    gpu = HadStudentModel(tiny_config(mixers=HYBRID, chunk_size=64)).cuda()
    gpu.load_state_dict(cpu.state_dict())
    ids = random_ids(torch.Generator().manual_seed(5), 2, 301)
    out_cpu, out_gpu = cpu(ids), gpu(ids.cuda())
    out_cpu.square().sum().backward()
    out_gpu.square().sum().backward()

    def rel(a: torch.Tensor, b: torch.Tensor) -> float:
        return ((a.cpu() - b).norm() / b.norm().clamp(min=1e-30)).item()

    assert rel(out_gpu.detach(), out_cpu.detach()) <= 5e-3
    params = dict(gpu.named_parameters())
    for name, param in cpu.named_parameters():
        assert rel(params[name].grad, param.grad) <= 5e-3, name
