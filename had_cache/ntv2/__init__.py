"""NT v2-architecture teachers built locally: the published shapes, random or trained weights.

The Hub is not always reachable, so tests, benchmarks and the embedded demo teacher use models of
the published Nucleotide Transformer v2 architecture built here. `save_teacher_folder` writes the
same folder layout as `InstaDeepAI/nucleotide-transformer-v2-*` (config with `auto_map`, remote code
`esm_config.py` + `modeling_esm.py`, weights, `vocab.txt`, tokenizer files), so
`had_cache.teacher.load_teacher` loads them through the code path that loads the real checkpoints.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import torch

from had_cache import tokenize
from had_cache.ntv2.esm_config import EsmConfig
from had_cache.ntv2.modeling_esm import EsmForMaskedLM

REMOTE_CODE_FILES = ("esm_config.py", "modeling_esm.py")
AUTO_MAP = {
    "AutoConfig": "esm_config.EsmConfig",
    "AutoModel": "modeling_esm.EsmModel",
    "AutoModelForMaskedLM": "modeling_esm.EsmForMaskedLM",
}

# `InstaDeepAI/nucleotide-transformer-v2-500m-multi-species` config.json (architecture fields).
NTV2_500M: dict[str, object] = {
    "add_bias_fnn": False,
    "attention_probs_dropout_prob": 0.0,
    "emb_layer_norm_before": False,
    "hidden_dropout_prob": 0.0,
    "hidden_size": 1024,
    "initializer_range": 0.02,
    "intermediate_size": 4096,
    "layer_norm_eps": 1e-12,
    "mask_token_id": tokenize.MASK_ID,
    "max_position_embeddings": 2050,
    "num_attention_heads": 16,
    "num_hidden_layers": 29,
    "pad_token_id": tokenize.PAD_ID,
    "position_embedding_type": "rotary",
    "tie_word_embeddings": False,
    "token_dropout": False,
    "vocab_size": len(tokenize.VOCAB),
}

# The same architecture at sizes this project uses; only width, depth and heads differ.
SHAPES: dict[str, dict[str, int]] = {
    "ntv2-500m": {},
    "demo": {
        "hidden_size": 192,
        "intermediate_size": 768,
        "num_attention_heads": 6,
        "num_hidden_layers": 4,
    },
    "tiny": {
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_attention_heads": 2,
        "num_hidden_layers": 2,
    },
}


def ntv2_config(shape: str = "ntv2-500m", **overrides: object) -> EsmConfig:
    """The NTv2-500M config, optionally shrunk to a named shape and/or with fields overridden."""
    if shape not in SHAPES:
        raise ValueError(f"unknown teacher shape {shape!r}; known: {', '.join(SHAPES)}")
    fields = NTV2_500M | SHAPES[shape] | overrides
    # NT appends no <eos>; EsmConfig's default eos id (2) is <mask> in this vocabulary.
    return EsmConfig(eos_token_id=None, bos_token_id=None, **fields)


def build_teacher(config: EsmConfig, seed: int = 0) -> EsmForMaskedLM:
    """A randomly initialised NT v2 masked LM (`seed` fixes the weights)."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return EsmForMaskedLM(config)


def save_teacher_folder(model: EsmForMaskedLM, folder: str | Path) -> Path:
    """Write `model` in the published NT v2 folder layout (weights keep the model's dtype)."""
    folder = Path(folder)
    model.config.auto_map = dict(AUTO_MAP)
    model.config.architectures = ["EsmForMaskedLM"]
    model.save_pretrained(str(folder))
    here = Path(__file__).parent
    for name in REMOTE_CODE_FILES:
        shutil.copyfile(here / name, folder / name)
    tokenize.save_tokenizer(folder)
    return folder


def make_random_teacher(
    folder: str | Path, shape: str = "ntv2-500m", seed: int = 0, **overrides: object
) -> Path:
    """Build a random NT v2 teacher of `shape` and save it as a loadable folder (tests, benchmarks)."""
    return save_teacher_folder(build_teacher(ntv2_config(shape, **overrides), seed), folder)
