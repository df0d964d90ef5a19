"""The Mamba mixer inside the student: padding invariance, flip equivariance, init, round trips."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from had_train.model import HadStudentForPretraining, HadStudentModel
from had_train.model.bidirectional import Bidirectional
from had_train.model.mamba import Mamba
from tests.helpers import MIXER_STACKS, pretraining_batch, random_ids, rel_err, tiny_config
from tests.train.padding import assert_padding_invariant

MAMBA, HYBRID = MIXER_STACKS["mamba"], MIXER_STACKS["hybrid"]


@pytest.mark.parametrize("mixers", [MAMBA, HYBRID])
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
    model = HadStudentModel(tiny_config(mixers=MAMBA)).eval()
    assert isinstance(model.layers[0].mixer, Bidirectional)
    with torch.no_grad():
        flipped = model(ids.flip(1)).last_hidden_state
        torch.testing.assert_close(flipped, model(ids).last_hidden_state.flip(1), rtol=0, atol=1e-6)
    causal = HadStudentModel(tiny_config(mixers=MAMBA, bidirectional=False)).eval()
    with torch.no_grad():
        flipped = causal(ids.flip(1)).last_hidden_state
        assert not torch.allclose(flipped, causal(ids).last_hidden_state.flip(1), atol=1e-3)


def test_mamba_init_follows_mamba_ssm() -> None:
    """HF's weight init must not overwrite A, D and dt with the generic Linear init."""
    torch.manual_seed(0)
    config = tiny_config(mixers=MAMBA, d_model=32, mamba_d_state=4)
    layer = HadStudentModel(config).layers[0].mixer.layer
    assert layer.d_inner == 64 and layer.dt_rank == 2
    expected_a = torch.arange(1, 5, dtype=torch.float32).log().expand(64, 4)
    torch.testing.assert_close(layer.A_log.detach(), expected_a)
    assert torch.equal(layer.D.detach(), torch.ones(64))
    dt = torch.nn.functional.softplus(layer.dt_proj.bias.detach())
    assert dt.min() >= 1e-4 and dt.max() <= 0.1 + 1e-6
    assert layer.dt_proj.weight.abs().max() <= 2**-0.5 and layer.dt_proj.weight.std() > 0.1


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
    out_cpu, out_gpu = cpu(ids).last_hidden_state, gpu(ids.cuda()).last_hidden_state
    out_cpu.square().sum().backward()
    out_gpu.square().sum().backward()
    assert rel_err(out_gpu.detach().cpu(), out_cpu.detach()) <= 5e-3
    params = dict(gpu.named_parameters())
    for name, param in cpu.named_parameters():
        assert rel_err(params[name].grad.cpu(), param.grad) <= 5e-3, name
