"""Nucleotide Transformer 6-mer tokenization with exact character offsets.

NT's rule: split the sequence at every N; cut each N-free run into non-overlapping 6-mers from
its left end; the leftover bases of a run (fewer than 6) and each N become single-letter tokens.
The vocabulary is `<unk> <pad> <mask> <cls> <eos> <bos>`, then the 4,096 6-mers in the product
order of A, T, C, G (not A, C, G, T), then the single letters A T C G N: 4,107 entries.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from had_cache import dna

SPECIAL_TOKENS = ("<unk>", "<pad>", "<mask>", "<cls>", "<eos>", "<bos>")
NT_BASE_ORDER = "ATCG"
KMERS = tuple("".join(p) for p in itertools.product(NT_BASE_ORDER, repeat=dna.K))
SINGLE_TOKENS = ("A", "T", "C", "G", "N")
VOCAB: tuple[str, ...] = SPECIAL_TOKENS + KMERS + SINGLE_TOKENS
TOKEN_ID = {tok: i for i, tok in enumerate(VOCAB)}
PAD_ID, MASK_ID, CLS_ID = TOKEN_ID["<pad>"], TOKEN_ID["<mask>"], TOKEN_ID["<cls>"]

# Our A,C,G,T codes -> digit in NT's A,T,C,G product order.
_NT_DIGIT = np.array([0, 2, 3, 1], dtype=np.int64)  # A->0, C->2, G->3, T->1


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
    digits = _NT_DIGIT[codes.reshape(*codes.shape[:-1], -1, dna.K).astype(np.int64)]
    weights = 4 ** np.arange(dna.K - 1, -1, -1, dtype=np.int64)
    return len(SPECIAL_TOKENS) + digits @ weights


def vocab_file_text() -> str:
    """`vocab.txt` content for an NT-style tokenizer folder, one token per line in id order."""
    return "\n".join(VOCAB) + "\n"


def save_tokenizer(folder: str) -> None:
    """Write an NT-style tokenizer (stock `EsmTokenizer` + our vocab.txt) that AutoTokenizer loads."""
    from pathlib import Path

    from transformers import EsmTokenizer

    path = Path(folder)
    path.mkdir(parents=True, exist_ok=True)
    (path / "vocab.txt").write_text(vocab_file_text())
    tokenizer = EsmTokenizer(
        vocab_file=str(path / "vocab.txt"),
        unk_token="<unk>",
        pad_token="<pad>",
        mask_token="<mask>",
        cls_token="<cls>",
        eos_token="<eos>",
        bos_token="<bos>",
    )
    tokenizer.save_pretrained(str(path))
