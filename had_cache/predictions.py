"""The teacher's predictions at its masked groups: soft targets for the student's reconstruction.

The teacher is a masked LM, so besides its features of the visible tokens it predicts each
masked 6-mer. Those predictions are what logit distillation trains on. Two views are stored
(`--predictions K` of `had-cache extract`, a few kB per record):

- the top K 6-mers and their probabilities, for inspection and 6-mer-level use;
- the exact per-base marginals of the full distribution: for masked group g and base position
  j, P(base b at 6g + j) = sum of the probabilities of every 6-mer with b at position j. That is
  what a student which predicts bases one at a time can be trained against; it is exact where
  marginalising the top K would drop the tail (which is most of the mass for a weak teacher).

The distribution is the softmax over the 4,096 6-mer tokens only: every extracted window is made
of whole 6-mers, so special tokens and single letters are never the right answer there.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from had_cache import dna, tokenize

N_KMERS = len(tokenize.KMERS)
DEFAULT_TOP_K = 0
"""`--predictions`: off unless asked (the soft-target arm of the science issue asks for 16)."""


@dataclass(frozen=True)
class MaskedPredictions:
    """The teacher's predictions at the masked groups of a batch, in token order."""

    topk_kmer: np.ndarray  # int16 [B, M, K] 6-mer index (0..4095, NT's A,T,C,G order)
    topk_prob: np.ndarray  # float16 [B, M, K] its probability, descending
    base_prob: np.ndarray  # float16 [B, M, 6, 4] per-base marginals over A, C, G, T


def kmer_probabilities(logits: torch.Tensor) -> torch.Tensor:
    """Softmax over the 6-mer tokens of masked-LM logits [..., V] -> [..., 4096] (float32)."""
    return torch.softmax(
        logits[..., tokenize.FIRST_KMER_ID : tokenize.FIRST_KMER_ID + N_KMERS].float(), dim=-1
    )


def base_marginals(kmer_probs: torch.Tensor) -> torch.Tensor:
    """Per-position base marginals [..., 6, 4] (A, C, G, T) of 6-mer probabilities [..., 4096]."""
    lead = kmer_probs.shape[:-1]
    grid = kmer_probs.reshape(*lead, *([4] * dna.K))  # axis j = the base at position j
    dims = range(len(lead), len(lead) + dna.K)
    per_position = [grid.sum(dim=[d for d in dims if d != j]) for j in dims]
    nt_order = torch.stack(per_position, dim=-2)  # [..., 6, 4] in A, T, C, G order
    return nt_order[..., torch.as_tensor(tokenize.NT_DIGIT)]


def masked_predictions(logits: torch.Tensor, mask: np.ndarray, top_k: int) -> MaskedPredictions:
    """Top-k 6-mers and per-base marginals at the masked groups.

    logits [B, T, V] of the window's tokens (no `<cls>`); mask bool [B, T], the same count of
    True per row (the store's contract), so the result is rectangular [B, M, ...].
    """
    picked = torch.as_tensor(np.asarray(mask, dtype=bool), device=logits.device)
    n_masked = int(picked[0].sum()) if len(picked) else 0
    probs = kmer_probabilities(logits[picked]).reshape(len(mask), n_masked, N_KMERS)
    top_prob, top_kmer = probs.topk(top_k, dim=-1)
    return MaskedPredictions(
        topk_kmer=top_kmer.to(torch.int16).cpu().numpy(),
        topk_prob=top_prob.to(torch.float16).cpu().numpy(),
        base_prob=base_marginals(probs).to(torch.float16).cpu().numpy(),
    )


def kmer_codes(index: np.ndarray) -> np.ndarray:
    """Our base codes [..., 6] of 6-mer indices [...] (NT's product order): to read top-k."""
    index = np.asarray(index, dtype=np.int64)
    digits = (index[..., None] // 4 ** np.arange(dna.K - 1, -1, -1)) % 4  # NT order digits
    acgt_of_digit = np.argsort(tokenize.NT_DIGIT)  # NT digit -> our code
    return acgt_of_digit[digits].astype(np.uint8)
