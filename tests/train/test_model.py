"""The student's contracts: padding invariance, flip equivariance, heads, HF round trips."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from transformers.modeling_outputs import BaseModelOutput

from had_cache import dna
from had_train.model import (
    IGNORE_INDEX,
    HadStudentConfig,
    HadStudentForPretraining,
    HadStudentForSequenceClassification,
    HadStudentModel,
    count_parameters,
)
from had_train.model.attention import SelfAttentionMixer
from had_train.model.configuration_had import NUM_BASES
from had_train.model.conv import ShortConvolution
from tests.helpers import (
    MIXER_STACKS,
    assert_every_parameter_gets_gradient,
    pretraining_batch,
    random_ids,
    tiny_config,
)
from tests.train.padding import assert_padding_invariant

PAPER_ENCODER_PARAMETERS = 1_141_264
"""The count quoted in HadStudentConfig.from_preset (the paper's "≈1.1M")."""
PAPER_PRETRAINING_HEAD_PARAMETERS = 346_116
"""What pretraining adds outside the encoder at the default teacher width 1024 (so what an
export leaves out): the alignment Linear(128 -> 1024) with bias, 132,096, and the cross-attention
decoder, 214,020 (four 128-wide RMSNorms, 4 x 128^2 attention, a 3 x 128 x 384 gated MLP,
Linear(128 -> 4) with bias)."""


def test_paper_preset_parameter_count() -> None:
    config = HadStudentConfig.from_preset("paper")
    assert config.mixers == ["gdn"] * 4 + ["attention"] and config.d_model == 128
    assert config.teacher_hidden_size == 1024
    encoder = count_parameters(HadStudentModel(config))
    assert encoder == PAPER_ENCODER_PARAMETERS
    heads = count_parameters(HadStudentForPretraining(config)) - encoder
    assert heads == PAPER_PRETRAINING_HEAD_PARAMETERS


def test_token_codes_come_from_the_alphabet() -> None:
    """The student reads had_cache.dna's codes: a second spelling of them would drift."""
    for config in (
        HadStudentConfig(),
        HadStudentConfig.from_preset("paper"),
        HadStudentConfig.from_preset("tiny"),
    ):
        assert config.vocab_size == dna.STUDENT_VOCAB_SIZE
        assert config.mask_token_id == dna.MASK
        assert config.pad_token_id == dna.PAD
    # the decoder predicts exactly the codes below N: A, C, G, T
    assert NUM_BASES == dna.N and dna.BASES[:NUM_BASES] == "ACGT"


def test_padded_batch_equals_each_sequence_alone() -> None:
    torch.manual_seed(0)
    model = HadStudentModel(tiny_config()).eval()
    batched, mask, seqs = assert_padding_invariant(
        model, [5, 21, 13, 1], torch.Generator().manual_seed(1)
    )
    with torch.no_grad():
        pooled = model.pool(batched, mask)
        torch.testing.assert_close(
            pooled[1], model(seqs[1][None]).last_hidden_state.mean(dim=1)[0], rtol=1e-5, atol=1e-5
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


def test_encoder_returns_an_hf_base_model_output() -> None:
    """`last_hidden_state`, as every HF encoder: AutoModel code runs unchanged on the student."""
    model = HadStudentModel(tiny_config()).eval()
    ids = random_ids(torch.Generator().manual_seed(2), 2, 9)
    with torch.no_grad():
        out = model(ids)
    assert isinstance(out, BaseModelOutput) and out[0] is out.last_hidden_state
    assert out.last_hidden_state.shape == (2, 9, model.config.d_model)


def test_all_ones_mask_equals_no_mask() -> None:
    torch.manual_seed(0)
    model = HadStudentModel(tiny_config()).eval()
    ids = random_ids(torch.Generator().manual_seed(2), 2, 17)
    with torch.no_grad():
        torch.testing.assert_close(
            model(ids, torch.ones_like(ids)).last_hidden_state,
            model(ids).last_hidden_state,
            rtol=1e-6,
            atol=1e-6,
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
        flipped = model(ids.flip(1)).last_hidden_state
        torch.testing.assert_close(flipped, model(ids).last_hidden_state.flip(1), rtol=0, atol=1e-6)
    # the property has teeth: a one-directional GDN is not equivariant
    causal = HadStudentModel(tiny_config(mixers=["gdn"], bidirectional=False)).eval()
    with torch.no_grad():
        flipped = causal(ids.flip(1)).last_hidden_state
        assert not torch.allclose(flipped, causal(ids).last_hidden_state.flip(1), atol=1e-3)


@pytest.mark.parametrize("length", [1, 3, 11])
@pytest.mark.parametrize("bias", [False, True])
def test_short_convolution_is_a_causal_depthwise_conv(bias: bool, length: int) -> None:
    """The short conv (GDN's without bias, Mamba's with) equals a left-padded depthwise Conv1d
    with the same weight and bias, then SiLU, forward and in every gradient (its backward is
    hand-written), also for sequences shorter than the kernel."""
    torch.manual_seed(0)
    conv = ShortConvolution(8, 4, bias=bias).double()
    assert (conv.conv.bias is not None) == bias
    x = torch.randn(2, length, 8, dtype=torch.float64, requires_grad=True)
    padded = F.pad(x.transpose(1, 2), (3, 0))
    reference = F.silu(F.conv1d(padded, conv.conv.weight, conv.conv.bias, groups=8)).transpose(1, 2)
    out = conv(x)
    torch.testing.assert_close(out, reference, rtol=1e-12, atol=1e-12)
    grad = torch.randn_like(out)
    params = [x, *conv.parameters()]
    ours = torch.autograd.grad(out, params, grad)
    theirs = torch.autograd.grad(reference, params, grad)
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("decoder", ["cross_attention", "linear"])
def test_pretraining_shapes_and_order(decoder: str) -> None:
    torch.manual_seed(0)
    config = tiny_config(decoder=decoder)
    model = HadStudentForPretraining(config).eval()
    ids, group_mask = pretraining_batch()
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
    ids, group_mask = pretraining_batch()
    base_mask = group_mask.repeat_interleave(6, dim=1)
    other = torch.where(base_mask, (ids + 1) % 4, ids)
    premasked = ids.masked_fill(base_mask, dna.MASK)
    with torch.no_grad():
        out = model(ids, group_mask)
        for variant in (other, premasked):
            torch.testing.assert_close(model(variant, group_mask).recon_logits, out.recon_logits)


def test_reconstruction_targets_follow_logits_order() -> None:
    model = HadStudentForPretraining(tiny_config())
    ids, group_mask = pretraining_batch()
    ids[0, group_mask[0].nonzero()[0, 0] * 6] = dna.N
    targets = model.reconstruction_targets(ids, group_mask)
    assert targets.shape == (2, 18)
    assert targets[0, 0] == IGNORE_INDEX and (targets[targets != IGNORE_INDEX] < NUM_BASES).all()
    base_mask = group_mask.repeat_interleave(6, dim=1)
    expected = ids[1, base_mask[1]]
    assert torch.equal(targets[1], expected.masked_fill(expected == dna.N, IGNORE_INDEX))


def test_pretraining_rejects_bad_group_masks() -> None:
    model = HadStudentForPretraining(tiny_config())
    ids, group_mask = pretraining_batch()
    with pytest.raises(ValueError, match="group_mask"):
        model(ids[:, :-1], group_mask)
    uneven = group_mask.clone()
    uneven[0] = False
    with pytest.raises(ValueError, match="same number"):
        model(ids, uneven)


@pytest.mark.parametrize("stack", sorted(MIXER_STACKS))
def test_pretraining_gradients_reach_every_parameter(stack: str) -> None:
    torch.manual_seed(0)
    model = HadStudentForPretraining(tiny_config(mixers=MIXER_STACKS[stack]))
    out = model(*pretraining_batch())
    (out.aligned.square().mean() + out.recon_logits.logsumexp(-1).mean()).backward()
    assert_every_parameter_gets_gradient(model)


def test_save_load_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = HadStudentForPretraining(tiny_config()).eval()
    ids, group_mask = pretraining_batch()
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
