"""Shared check for the student's padding contract: padding never changes a valid output."""

from __future__ import annotations

import torch

from had_cache import dna
from tests.helpers import random_ids


def assert_padding_invariant(
    model: torch.nn.Module, lengths: list[int], gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
    """Each sequence's output alone equals its rows in a padded batch; padded rows are zero and
    whatever sits in the padding does not matter. Returns (batched output, mask, sequences)."""
    seqs = [random_ids(gen, n) for n in lengths]
    ids = torch.full((len(seqs), max(lengths)), dna.PAD)
    mask = torch.zeros(len(seqs), max(lengths), dtype=torch.long)
    for row, seq in enumerate(seqs):
        ids[row, : len(seq)] = seq
        mask[row, : len(seq)] = 1
    with torch.no_grad():
        batched = model(ids, mask).last_hidden_state
        for row, seq in enumerate(seqs):
            alone = model(seq[None]).last_hidden_state
            torch.testing.assert_close(batched[row, : len(seq)], alone[0], rtol=1e-5, atol=1e-5)
        assert torch.equal(batched[mask == 0], torch.zeros_like(batched[mask == 0]))
        noisy = torch.where(mask.bool(), ids, random_ids(gen, *ids.shape))
        noisy_out = model(noisy, mask).last_hidden_state
        torch.testing.assert_close(noisy_out, batched, rtol=1e-5, atol=1e-5)
    return batched, mask, seqs
