"""Shared fixtures: real DNA from the repo's embedded slice and a tiny random NT-style teacher."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from had_cache import tokenize

DEMO_FASTA = Path(__file__).parent.parent / "had_cache" / "assets" / "chrX_demo.fa.gz"


def real_dna(n_bases: int, offset: int = 2_000_000) -> str:
    """A stretch of real human DNA from the embedded chrX slice (upper case)."""
    with gzip.open(DEMO_FASTA, "rt") as fh:
        fh.readline()
        text = "".join(line.strip() for line in fh.readlines())
    return text[offset : offset + n_bases].upper()


def make_tiny_teacher(
    folder: Path, hidden: int = 32, layers: int = 2, seed: int = 0, token_dropout: bool = False
) -> Path:
    """A randomly initialised ESM masked LM with the NT 6-mer tokenizer (unit tests only)."""
    import torch
    from transformers import EsmConfig, EsmForMaskedLM

    torch.manual_seed(seed)
    config = EsmConfig(
        vocab_size=len(tokenize.VOCAB),
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=2 * hidden,
        max_position_embeddings=2050,
        position_embedding_type="rotary",
        pad_token_id=tokenize.PAD_ID,
        mask_token_id=tokenize.MASK_ID,
        token_dropout=token_dropout,
        emb_layer_norm_before=False,
    )
    EsmForMaskedLM(config).save_pretrained(folder)
    tokenize.save_tokenizer(str(folder))
    return folder


@pytest.fixture(scope="session")
def tiny_teacher(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_teacher(tmp_path_factory.mktemp("teacher"))


@pytest.fixture(scope="session")
def small_fasta(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two contigs of real DNA, one with an N run, as a plain FASTA."""
    path = tmp_path_factory.mktemp("fasta") / "small.fa"
    a = real_dna(6000)
    b = real_dna(3000, offset=3_000_000)
    b = b[:1000] + "N" * 50 + b[1050:]
    lines = [">chrA"] + [a[i : i + 60] for i in range(0, len(a), 60)]
    lines += [">chrB"] + [b[i : i + 60] for i in range(0, len(b), 60)]
    path.write_text("\n".join(lines) + "\n")
    return path
