"""One weight-decay rule for every trainer: matrices decay; norms, biases, embeddings and the
recurrences' flagged parameters do not (Mamba's A_log is a matrix and must not decay)."""

from __future__ import annotations

import pytest
import torch

from had_train.model import (
    HadStudentConfig,
    HadStudentForPretraining,
    HadStudentForSequenceClassification,
)
from had_train.optim import decayed_names, optim_groups

BLOCK = "had.layers.0."
NOT_DECAYED_IN_THE_MIXER = {
    "gdn": {"mixer.layer.A_log", "mixer.layer.dt_bias", "mixer.layer.o_norm.weight"},
    "mamba": {
        "mixer.layer.A_log",  # [d_inner, d_state]: a matrix that a rule by shape would decay
        "mixer.layer.D",
        "mixer.layer.conv.conv.bias",
        "mixer.layer.dt_proj.bias",
    },
    "attention": set(),
}
EVERY_BLOCK = {"mixer_norm.weight", "mlp_norm.weight"}
OUTSIDE_BLOCKS = {
    "had.embeddings.weight",
    "had.norm.weight",
    "align_head.bias",
    "decoder.query_norm.weight",
    "decoder.context_norm.weight",
    "decoder.mlp_norm.weight",
    "decoder.out_norm.weight",
    "decoder.out_proj.bias",
}


@pytest.mark.parametrize("mixer", sorted(NOT_DECAYED_IN_THE_MIXER))
def test_which_parameters_decay(mixer: str) -> None:
    model = HadStudentForPretraining(HadStudentConfig.from_preset("tiny", mixers=[mixer]))
    names = [name for name, _ in model.named_parameters()]
    decayed = set(decayed_names(model))
    expected_kept = {BLOCK + n for n in NOT_DECAYED_IN_THE_MIXER[mixer] | EVERY_BLOCK}
    assert set(names) - decayed == expected_kept | OUTSIDE_BLOCKS
    assert all(dict(model.named_parameters())[n].ndim >= 2 for n in decayed)


def test_groups_hold_each_trainable_parameter_once_in_model_order() -> None:
    model = HadStudentForSequenceClassification(
        HadStudentConfig.from_preset("tiny", mixers=["gdn", "mamba"], num_labels=3)
    )
    model.had.embeddings.weight.requires_grad_(False)
    decay, keep = optim_groups(model, 0.1)
    assert (decay["weight_decay"], keep["weight_decay"]) == (0.1, 0.0)
    trainable = [p for p in model.parameters() if p.requires_grad]
    grouped = decay["params"] + keep["params"]
    assert len(grouped) == len(trainable) == len({id(p) for p in grouped})
    order = {id(p): i for i, p in enumerate(trainable)}
    assert [order[id(p)] for p in decay["params"]] == sorted(order[id(p)] for p in decay["params"])
    names = {id(p): n for n, p in model.named_parameters()}
    assert "classifier.weight" in {names[id(p)] for p in decay["params"]}
    assert "classifier.bias" in {names[id(p)] for p in keep["params"]}


def test_decay_leaves_excluded_parameters_untouched() -> None:
    """With zero gradients, an AdamW step over these groups changes only decayed tensors."""
    model = HadStudentForPretraining(HadStudentConfig.from_preset("tiny", mixers=["mamba"]))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    optimizer = torch.optim.AdamW(optim_groups(model, 0.5), lr=0.1)
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    optimizer.step()
    decayed = set(decayed_names(model))
    for name, param in model.named_parameters():
        assert torch.equal(param, before[name]) != (name in decayed), name
