"""Nucleotide Transformer 6-mer tokenization with exact character offsets.

NT's rule: split the sequence at every N; cut each N-free run into non-overlapping 6-mers from
its left end; the leftover bases of a run (fewer than 6) and each N become single-letter tokens.
The vocabulary is `<unk> <pad> <mask> <cls> <eos> <bos>`, then the 4,096 6-mers in the product
order of A, T, C, G (not A, C, G, T), then the single letters A T C G N: 4,107 entries.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from had_cache import dna

SPECIAL_TOKENS = ("<unk>", "<pad>", "<mask>", "<cls>", "<eos>", "<bos>")
NT_BASE_ORDER = "ATCG"
KMERS = tuple("".join(p) for p in itertools.product(NT_BASE_ORDER, repeat=dna.K))
SINGLE_TOKENS = ("A", "T", "C", "G", "N")
VOCAB: tuple[str, ...] = SPECIAL_TOKENS + KMERS + SINGLE_TOKENS
TOKEN_ID = {tok: i for i, tok in enumerate(VOCAB)}
PAD_ID, MASK_ID, CLS_ID = TOKEN_ID["<pad>"], TOKEN_ID["<mask>"], TOKEN_ID["<cls>"]
# NTv2 reads at most 2,048 tokens, `<cls>` included (max_position_embeddings 2,050).
MAX_TOKENS = 2048

FIRST_KMER_ID = len(SPECIAL_TOKENS)
"""6-mer token ids are FIRST_KMER_ID + index, the index in NT's A, T, C, G product order."""
# Our A,C,G,T codes -> digit in NT's A,T,C,G product order.
NT_DIGIT = np.array([NT_BASE_ORDER.index(b) for b in dna.BASES[:4]], dtype=np.int64)  # 0 2 3 1


@dataclass(frozen=True)
class Token:
    """One teacher token: its id and the half-open base span [start, end) it covers."""

    id: int
    start: int
    end: int


def tokenize(seq: str) -> list[Token]:
    """Tokenize DNA exactly as NT does, keeping each token's base offsets."""
    tokens: list[Token] = []
    upper = seq.upper()
    pos = 0
    while pos < len(upper):
        if upper[pos] not in "ACGT":
            tokens.append(Token(TOKEN_ID["N"], pos, pos + 1))
            pos += 1
            continue
        run_end = pos
        while run_end < len(upper) and upper[run_end] in "ACGT":
            run_end += 1
        while run_end - pos >= dna.K:
            tokens.append(Token(TOKEN_ID[upper[pos : pos + dna.K]], pos, pos + dna.K))
            pos += dna.K
        for i in range(pos, run_end):
            tokens.append(Token(TOKEN_ID[upper[i]], i, i + 1))
        pos = run_end
    return tokens


def kmer_ids(codes: np.ndarray) -> np.ndarray:
    """Token ids of N-free windows whose length is a multiple of 6: [..., 6T] codes -> [..., T].

    This is the fast path of `tokenize` for the windows we extract (no N, whole 6-mers), where
    token i covers bases [6i, 6i + 6).
    """
    codes = np.asarray(codes)
    if codes.shape[-1] % dna.K:
        raise ValueError(f"window length {codes.shape[-1]} is not a multiple of {dna.K}")
    if dna.has_n(codes):
        raise ValueError("kmer_ids needs N-free windows; use tokenize() for sequences with N")
    digits = NT_DIGIT[codes.reshape(*codes.shape[:-1], -1, dna.K).astype(np.int64)]
    weights = 4 ** np.arange(dna.K - 1, -1, -1, dtype=np.int64)
    return FIRST_KMER_ID + digits @ weights


def with_cls(token_ids: np.ndarray) -> np.ndarray:
    """The teacher's input rule: `<cls>` prepended to 6-mer ids [..., T] -> [..., T + 1].

    NT's tokenizer prepends `<cls>` and appends nothing (no `<eos>`); features and logits at
    position 0 belong to `<cls>`, so token i of the window sits at position i + 1.
    """
    ids = np.asarray(token_ids, dtype=np.int64)
    cls = np.full((*ids.shape[:-1], 1), CLS_ID, dtype=np.int64)
    return np.concatenate([cls, ids], axis=-1)


def vocab_file_text() -> str:
    """`vocab.txt` content for an NT-style tokenizer folder, one token per line in id order."""
    return "\n".join(VOCAB) + "\n"


def save_tokenizer(folder: str | Path) -> None:
    """Write NT's tokenizer files (the published layout) so `AutoTokenizer` loads a stock EsmTokenizer.

    `eos_token` is null: NT prepends `<cls>` and appends nothing (EsmTokenizer's default would
    append `<eos>`). The 2,048-token limit counts `<cls>`.
    """
    path = Path(folder)
    path.mkdir(parents=True, exist_ok=True)
    (path / "vocab.txt").write_text(vocab_file_text())
    special = {
        "cls_token": "<cls>",
        "mask_token": "<mask>",
        "pad_token": "<pad>",
        "unk_token": "<unk>",
    }
    config = {
        "clean_up_tokenization_spaces": True,
        "eos_token": None,
        "model_max_length": MAX_TOKENS,
        "tokenizer_class": "EsmTokenizer",
    }
    (path / "special_tokens_map.json").write_text(json.dumps(special, indent=2) + "\n")
    (path / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")
