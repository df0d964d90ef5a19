"""Grouping masks: which teacher tokens (6-mer groups) of a window are hidden, and which bases.

The mask of a record is a pure function of (seed, record index), so a store can be rebuilt
bit for bit and a reader never needs the random state that wrote it. Every window masks exactly
`n_masked(T, ratio)` groups, which keeps the visible-feature array rectangular: [N, T - M, D].
"""

from __future__ import annotations

import math

import numpy as np

from had_cache import dna

DEFAULT_RATIO = 0.15
"""Share of 6-mer groups masked per window (BERT's and the paper's 15%)."""


def n_masked(n_tokens: int, ratio: float) -> int:
    """Masked groups per window: ratio * T rounded half up, at least 1 and at most T - 1."""
    if not 0.0 < ratio < 1.0:
        raise ValueError(f"mask ratio must be in (0, 1), got {ratio}")
    return min(max(1, math.floor(ratio * n_tokens + 0.5)), n_tokens - 1)


def group_mask(seed: int, record: int, n_tokens: int, ratio: float) -> np.ndarray:
    """bool[T], True for the groups of record `record` that are masked under `seed`."""
    rng = np.random.Generator(np.random.PCG64([seed, record]))
    mask = np.zeros(n_tokens, dtype=bool)
    mask[rng.choice(n_tokens, size=n_masked(n_tokens, ratio), replace=False)] = True
    return mask


def group_masks(seed: int, records: np.ndarray, n_tokens: int, ratio: float) -> np.ndarray:
    """bool[len(records), T]: `group_mask` for each record index."""
    return np.stack([group_mask(seed, int(r), n_tokens, ratio) for r in records])


def base_mask(mask: np.ndarray) -> np.ndarray:
    """Expand a group mask [..., T] to the bases it hides [..., 6T] (group i hides 6i..6i+5)."""
    return np.repeat(np.asarray(mask, dtype=bool), dna.K, axis=-1)


def student_input(seq: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The student's view of windows: seq codes [..., 6T] with masked groups' bases -> MASK."""
    out = np.array(seq, dtype=np.uint8, copy=True)
    out[base_mask(mask)] = dna.MASK
    return out


def teacher_input(token_ids: np.ndarray, mask: np.ndarray, mask_id: int) -> np.ndarray:
    """The teacher's view: 6-mer ids [..., T] with masked groups replaced by its mask token."""
    return np.where(mask, mask_id, token_ids)
