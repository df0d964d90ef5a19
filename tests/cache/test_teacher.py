"""The teacher as users load it: NT v2 architecture, remote code, tokenizer, layers, refusals."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import AutoTokenizer

from had_cache import dna, gate, ntv2, tokenize
from had_cache.ntv2.modeling_esm import EsmForMaskedLM
from had_cache.teacher import TeacherError, load_teacher
from had_common.errors import ConfigError
from tests.conftest import real_dna

CPU = torch.device("cpu")


def test_ntv2_500m_shape_is_the_published_architecture() -> None:
    """Built on the meta device: the published config, gated bias-free FFN, untied output."""
    config = ntv2.ntv2_config("ntv2-500m")
    with torch.device("meta"):
        model = EsmForMaskedLM(config)
    shapes = {n: tuple(p.shape) for n, p in model.named_parameters()}
    assert len(model.esm.encoder.layer) == 29
    assert shapes["esm.embeddings.word_embeddings.weight"] == (4107, 1024)
    assert shapes["esm.encoder.layer.28.intermediate.dense.weight"] == (2 * 4096, 1024)
    assert shapes["esm.encoder.layer.28.output.dense.weight"] == (1024, 4096)
    assert "esm.encoder.layer.0.intermediate.dense.bias" not in shapes
    assert "esm.encoder.layer.0.output.dense.bias" not in shapes
    assert shapes["lm_head.decoder.weight"] == (4107, 1024)
    assert model.lm_head.decoder.weight is not model.esm.embeddings.word_embeddings.weight
    assert config.position_embedding_type == "rotary" and config.token_dropout is False
    assert config.max_position_embeddings - 2 == tokenize.MAX_TOKENS
    assert sum(p.numel() for p in model.parameters()) == 496_246_236


def test_gated_feed_forward_is_silu_gate_times_value() -> None:
    torch.manual_seed(0)
    model = ntv2.build_teacher(ntv2.ntv2_config("tiny"))
    layer = model.esm.encoder.layer[0]
    x = torch.randn(3, 5, 32)
    w = layer.intermediate.dense.weight
    gate, value = x @ w[:64].T, x @ w[64:].T
    expected = torch.nn.functional.silu(gate) * value
    torch.testing.assert_close(layer.intermediate(x), expected)


def test_folder_loads_through_its_remote_code_like_ntv2(tiny_teacher: Path) -> None:
    config = json.loads((tiny_teacher / "config.json").read_text())
    assert config["auto_map"]["AutoModelForMaskedLM"] == "modeling_esm.EsmForMaskedLM"
    assert (tiny_teacher / "modeling_esm.py").exists() and (tiny_teacher / "esm_config.py").exists()
    teacher = load_teacher(str(tiny_teacher), CPU, torch.float32)
    # transformers imported the folder's copy of the code, not our package.
    assert type(teacher.model).__module__.startswith("transformers_modules")
    assert not teacher.model.training
    ours = EsmForMaskedLM.from_pretrained(tiny_teacher, dtype=torch.float32).eval()
    ids = tokenize.kmer_ids(np.array([[0, 1, 2, 3, 1, 0] * 20]))
    inputs = torch.cat([torch.tensor([[tokenize.CLS_ID]]), torch.as_tensor(ids)], dim=1)
    with torch.no_grad():
        want = ours.esm(input_ids=inputs).last_hidden_state[:, 1:]
    torch.testing.assert_close(teacher.features(ids)[2], want)


def test_hidden_states_index_rule() -> None:
    """-1 is the final layer after the final layer norm (= last_hidden_state); 0 the embeddings."""
    model = ntv2.build_teacher(ntv2.ntv2_config("tiny")).eval()
    ids = torch.tensor([[tokenize.CLS_ID, 10, 11, 12, 13]])
    with torch.no_grad():
        out = model.esm(input_ids=ids, output_hidden_states=True)
    assert len(out.hidden_states) == 3
    torch.testing.assert_close(out.hidden_states[-1], out.last_hidden_state)
    # After the final layer norm (weight 1, bias 0 at init): zero mean, unit variance per token.
    last = out.hidden_states[-1]
    torch.testing.assert_close(last.mean(-1), torch.zeros(1, 5), atol=1e-5, rtol=0)
    torch.testing.assert_close(last.var(-1, unbiased=False), torch.ones(1, 5), atol=1e-3, rtol=0)
    torch.testing.assert_close(
        out.hidden_states[0], model.esm.embeddings.word_embeddings(ids), rtol=0, atol=0
    )


def test_without_remote_code_the_gated_weights_would_be_new_so_loading_refuses(
    tiny_teacher: Path,
) -> None:
    with pytest.raises(TeacherError, match="newly initialised.*trust-remote-code"):
        load_teacher(str(tiny_teacher), CPU, torch.float32, trust_remote_code=False)


def test_checkpoint_missing_an_encoder_weight_is_refused(
    tiny_teacher: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "broken"
    folder.mkdir()
    for f in tiny_teacher.iterdir():
        (folder / f.name).write_bytes(f.read_bytes())
    weights = load_file(folder / "model.safetensors")
    del weights["esm.encoder.layer.1.attention.self.query.weight"]
    save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(TeacherError, match="layer.1.attention.self.query.weight"):
        load_teacher(str(folder), CPU, torch.float32)


def test_tokenizer_files_follow_nt(tiny_teacher: Path) -> None:
    tok = AutoTokenizer.from_pretrained(tiny_teacher)
    assert type(tok).__name__ == "EsmTokenizer" and tok.model_max_length == 2048
    assert len(tok) == 4107 and tok.eos_token is None
    ids = tok("ACGTACGTA")["input_ids"]  # <cls>, one 6-mer, then the tail as single letters
    assert tok.convert_ids_to_tokens(ids) == ["<cls>", "ACGTAC", "G", "T", "A"]


def test_several_layers_are_taken_from_one_pass(tiny_teacher: Path) -> None:
    teacher = load_teacher(str(tiny_teacher), CPU, torch.float32, layers=(0, -1, 2))
    assert teacher.info.layers == [0, 2]  # -1 and 2 are the same hidden state
    ids = tokenize.kmer_ids(dna.encode(real_dna(120)))[None]
    feats = teacher.features(ids)
    assert set(feats) == {0, 2} and not torch.allclose(feats[0], feats[2])
    with pytest.raises(ConfigError, match="out of range"):
        load_teacher(str(tiny_teacher), CPU, torch.float32, layers=(3,))


def test_gate_passes_the_demo_teacher_and_refuses_random_weights(tiny_teacher: Path) -> None:
    report = gate.check_teacher(load_teacher("demo", CPU, torch.float32))
    assert report.eval_mode and report.two_pass_max_rel_diff == 0.0
    assert report.masked_tokens == 96 * 26
    assert report.accuracy >= gate.DEFAULT_MIN_ACCURACY
    with pytest.raises(TeacherError, match="predicts 0.*% of masked 6-mers"):
        gate.check_teacher(load_teacher(str(tiny_teacher), CPU, torch.float32))
    assert gate.check_teacher(load_teacher(str(tiny_teacher), CPU, torch.float32), 0.0)


def test_gate_refuses_a_teacher_whose_passes_disagree(tiny_teacher: Path) -> None:
    teacher = load_teacher(str(tiny_teacher), CPU, torch.float32)
    head = teacher.model.lm_head
    noisy = torch.nn.Sequential(head, torch.nn.Dropout(0.5)).eval()
    noisy[1].train()  # one random layer left on, as a half-converted checkpoint might have
    teacher.model.lm_head = noisy
    with pytest.raises(TeacherError, match="two forward passes .* differ"):
        gate.check_teacher(teacher, 0.0)


def test_the_shipped_demo_teacher_carries_the_current_code_and_tokenizer(tmp_path: Path) -> None:
    """`--teacher demo` runs the code copied into its folder, as NT's checkpoints ship theirs: a
    fix to had_cache/ntv2 or to the tokenizer files must reach the committed checkpoint too
    (rerun scripts/train_demo_teacher.py, or copy the files, when this fails)."""
    from had_cache.teacher import DEMO_TEACHER_DIR

    tokenize.save_tokenizer(tmp_path)
    expected = {name: Path(ntv2.__file__).parent / name for name in ntv2.REMOTE_CODE_FILES}
    expected |= {p.name: p for p in tmp_path.iterdir()}
    for name, source in expected.items():
        shipped = DEMO_TEACHER_DIR / name
        assert shipped.read_bytes() == source.read_bytes(), f"{shipped} differs from {source}"
