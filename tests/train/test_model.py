"""The student's contracts: padding invariance, flip equivariance, heads, HF round trips."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from had_train.model import (
    HadStudentConfig,
    HadStudentForPretraining,
    HadStudentForSequenceClassification,
    HadStudentModel,
    count_parameters,
)
from had_train.model.attention import SelfAttentionMixer
from had_train.model.gated_deltanet import ShortConvolution
from tests.train.padding import assert_padding_invariant, random_ids

MASK, N = 5, 4
PAPER_ENCODER_PARAMETERS = 1_141_264


def tiny_config(**overrides) -> HadStudentConfig:
    """Tiny preset with short chunks so short test sequences still cross chunk boundaries."""
    return HadStudentConfig.from_preset("tiny", **{"chunk_size": 8, **overrides})


def test_paper_preset_parameter_count() -> None:
    config = HadStudentConfig.from_preset("paper")
    encoder = HadStudentModel(config)
    n = count_parameters(encoder)
    print(f"paper preset encoder parameters: {n:,}")
    assert 1_000_000 <= n <= 1_250_000
    assert n == PAPER_ENCODER_PARAMETERS  # the count quoted in HadStudentConfig.from_preset
    assert config.mixers == ["gdn"] * 4 + ["attention"] and config.d_model == 128
    heads = count_parameters(HadStudentForPretraining(config)) - n
    print(f"paper preset pretraining heads (outside the encoder): {heads:,}")


def test_padded_batch_equals_each_sequence_alone() -> None:
    torch.manual_seed(0)
    model = HadStudentModel(tiny_config()).eval()
    batched, mask, seqs = assert_padding_invariant(
        model, [5, 21, 13, 1], torch.Generator().manual_seed(1)
    )
    with torch.no_grad():
        pooled = model.pool(batched, mask)
        torch.testing.assert_close(
            pooled[1], model(seqs[1][None]).mean(dim=1)[0], rtol=1e-5, atol=1e-5
        )


def test_windowed_attention_attends_within_blocks_from_position_zero() -> None:
    """attention_window W: identical to global attention up to W bases; beyond, each block of
    W bases (the last one shorter) is attended exactly as if it were a sequence of its own."""
    torch.manual_seed(0)
    windowed = SelfAttentionMixer(32, 2, window=16)
    full = SelfAttentionMixer(32, 2)
    full.load_state_dict(windowed.state_dict())
    x = torch.randn(2, 40, 32)
    with torch.no_grad():
        torch.testing.assert_close(windowed(x[:, :16]), full(x[:, :16]), rtol=0, atol=0)
        blocks = torch.cat([full(x[:, i : i + 16]) for i in range(0, 40, 16)], dim=1)
        torch.testing.assert_close(windowed(x), blocks, rtol=1e-6, atol=1e-6)


def test_windowed_attention_keeps_the_padding_contract() -> None:
    """Padded batches whose rows end in different blocks, one row shorter than a window and
    blocks of padding only, give each sequence's output alone."""
    torch.manual_seed(0)
    model = HadStudentModel(tiny_config(attention_window=8)).eval()
    assert_padding_invariant(model, [5, 30, 17, 8, 1], torch.Generator().manual_seed(3))


def test_all_ones_mask_equals_no_mask() -> None:
    torch.manual_seed(0)
    model = HadStudentModel(tiny_config()).eval()
    ids = random_ids(torch.Generator().manual_seed(2), 2, 17)
    with torch.no_grad():
        torch.testing.assert_close(
            model(ids, torch.ones_like(ids)), model(ids), rtol=1e-6, atol=1e-6
        )


def test_mask_must_be_left_aligned() -> None:
    model = HadStudentModel(tiny_config())
    ids = torch.zeros(1, 6, dtype=torch.long)
    with pytest.raises(ValueError, match="left-aligned"):
        model(ids, torch.tensor([[0, 1, 1, 1, 1, 1]]))


def test_bidirectional_gdn_block_is_flip_equivariant() -> None:
    """Tied weights + add: encoder(flip(x)) == flip(encoder(x)) for a single Bi-GDN block."""
    torch.manual_seed(0)
    ids = random_ids(torch.Generator().manual_seed(3), 3, 19)
    model = HadStudentModel(tiny_config(mixers=["gdn"])).eval()
    with torch.no_grad():
        torch.testing.assert_close(model(ids.flip(1)), model(ids).flip(1), rtol=0, atol=1e-6)
    # the property has teeth: a one-directional GDN is not equivariant
    causal = HadStudentModel(tiny_config(mixers=["gdn"], bidirectional=False)).eval()
    with torch.no_grad():
        assert not torch.allclose(causal(ids.flip(1)), causal(ids).flip(1), atol=1e-3)


def test_short_convolution_is_a_causal_depthwise_conv() -> None:
    """The shift-and-add short conv equals a left-padded depthwise Conv1d with the same weight."""
    torch.manual_seed(0)
    conv = ShortConvolution(8, 4)
    x = torch.randn(2, 11, 8)
    weight = conv.conv.weight
    reference = F.conv1d(F.pad(x.transpose(1, 2), (3, 0)), weight, groups=8).transpose(1, 2)
    torch.testing.assert_close(conv(x), F.silu(reference), rtol=1e-6, atol=1e-6)


def make_pretraining_batch(batch: int = 2, tokens: int = 10, masked: int = 3, seed: int = 4):
    gen = torch.Generator().manual_seed(seed)
    ids = random_ids(gen, batch, 6 * tokens)
    group_mask = torch.zeros(batch, tokens, dtype=torch.bool)
    for row in range(batch):
        group_mask[row, torch.randperm(tokens, generator=gen)[:masked]] = True
    return ids, group_mask


@pytest.mark.parametrize("decoder", ["cross_attention", "linear"])
def test_pretraining_shapes_and_order(decoder: str) -> None:
    torch.manual_seed(0)
    config = tiny_config(decoder=decoder)
    model = HadStudentForPretraining(config).eval()
    ids, group_mask = make_pretraining_batch()
    with torch.no_grad():
        out = model(ids, group_mask)
    assert out.aligned.shape == (2, 10 - 3, config.teacher_hidden_size)
    assert out.recon_logits.shape == (2, 6 * 3, 4)
    hidden = out.last_hidden_state
    for row in range(2):
        visible_tokens = (~group_mask[row]).nonzero().flatten()  # ascending token order
        pooled = torch.stack([hidden[row, 6 * t : 6 * t + 6].mean(0) for t in visible_tokens])
        torch.testing.assert_close(out.aligned[row], model.align_head(pooled), rtol=1e-5, atol=1e-6)
    if decoder == "linear":
        base_mask = group_mask.repeat_interleave(6, dim=1)
        expected = model.decoder.out_proj(hidden[0, base_mask[0]])  # ascending base position
        torch.testing.assert_close(out.recon_logits[0], expected, rtol=1e-5, atol=1e-6)


def test_encoder_never_sees_masked_bases() -> None:
    """Changing the bases inside masked groups changes nothing: the model masks them itself."""
    torch.manual_seed(0)
    model = HadStudentForPretraining(tiny_config()).eval()
    ids, group_mask = make_pretraining_batch()
    base_mask = group_mask.repeat_interleave(6, dim=1)
    other = torch.where(base_mask, (ids + 1) % 4, ids)
    premasked = ids.masked_fill(base_mask, MASK)
    with torch.no_grad():
        out = model(ids, group_mask)
        for variant in (other, premasked):
            torch.testing.assert_close(model(variant, group_mask).recon_logits, out.recon_logits)


def test_reconstruction_targets_follow_logits_order() -> None:
    model = HadStudentForPretraining(tiny_config())
    ids, group_mask = make_pretraining_batch()
    ids[0, group_mask[0].nonzero()[0, 0] * 6] = N
    targets = model.reconstruction_targets(ids, group_mask)
    assert targets.shape == (2, 18)
    assert targets[0, 0] == -100 and (targets[targets != -100] < 4).all()
    base_mask = group_mask.repeat_interleave(6, dim=1)
    expected = ids[1, base_mask[1]]
    assert torch.equal(targets[1], expected.masked_fill(expected == N, -100))


def test_pretraining_rejects_bad_group_masks() -> None:
    model = HadStudentForPretraining(tiny_config())
    ids, group_mask = make_pretraining_batch()
    with pytest.raises(ValueError, match="group_mask"):
        model(ids[:, :-1], group_mask)
    uneven = group_mask.clone()
    uneven[0] = False
    with pytest.raises(ValueError, match="same number"):
        model(ids, uneven)


def test_pretraining_gradients_reach_every_parameter() -> None:
    torch.manual_seed(0)
    model = HadStudentForPretraining(tiny_config())
    ids, group_mask = make_pretraining_batch()
    out = model(ids, group_mask)
    (out.aligned.square().mean() + out.recon_logits.logsumexp(-1).mean()).backward()
    for name, param in model.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), name
        assert param.grad.abs().sum() > 0, name


def test_save_load_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = HadStudentForPretraining(tiny_config()).eval()
    ids, group_mask = make_pretraining_batch()
    model.save_pretrained(tmp_path)
    loaded = HadStudentForPretraining.from_pretrained(tmp_path).eval()
    assert loaded.config.mixers == model.config.mixers
    assert loaded.config.chunk_size == 8
    with torch.no_grad():
        a, b = model(ids, group_mask), loaded(ids, group_mask)
    assert torch.equal(a.aligned, b.aligned) and torch.equal(a.recon_logits, b.recon_logits)


def test_classifier_loads_encoder_from_pretraining_checkpoint(tmp_path: Path) -> None:
    torch.manual_seed(0)
    pretrained = HadStudentForPretraining(tiny_config())
    pretrained.save_pretrained(tmp_path)
    classifier = HadStudentForSequenceClassification.from_pretrained(tmp_path, num_labels=3)
    expected = pretrained.had.state_dict()
    loaded = classifier.had.state_dict()
    assert expected.keys() == loaded.keys()
    for key, value in expected.items():
        assert torch.equal(loaded[key], value), key
    assert classifier.classifier.weight.shape == (3, classifier.config.d_model)
    assert torch.isfinite(classifier.classifier.weight).all()
    assert classifier.classifier.weight.std() > 0  # initialised, not left empty or zero
    encoder = HadStudentModel.from_pretrained(tmp_path)
    for key, value in encoder.state_dict().items():
        assert torch.equal(value, expected[key]), key

    ids = random_ids(torch.Generator().manual_seed(5), 2, 12)
    mask = torch.ones_like(ids)
    mask[1, 7:] = 0
    out = classifier(ids, mask, labels=torch.tensor([0, 2]))
    assert out.logits.shape == (2, 3) and out.loss.ndim == 0
    assert classifier.embed(ids, mask).shape == (2, classifier.config.d_model)


def test_config_validation_and_presets() -> None:
    assert HadStudentConfig(mixers=["gdn", "mamba"]).mixers == ["gdn", "mamba"]
    with pytest.raises(ValueError, match="gdn, mamba, attention"):
        HadStudentConfig(mixers=["lstm"])
    with pytest.raises(ValueError, match="available"):
        HadStudentConfig.from_preset("huge")
    with pytest.raises(ValueError, match="attention_window"):
        HadStudentConfig(attention_window=0)
    assert HadStudentConfig.from_preset("paper").attention_window is None  # global, as published
    config = HadStudentConfig.from_preset("paper", teacher_hidden_size=512)
    assert config.teacher_hidden_size == 512 and config.model_type == "had_student"
    assert (config.vocab_size, config.mask_token_id, config.pad_token_id) == (7, 5, 6)
