"""The masked-base baseline: predict each hidden base from the visible bases around its group.

A student's reconstruction accuracy means something only beside what simple statistics of the
genome already give. `ContextCounts(k)` counts, on training windows, which base sits at each of
the 6 positions of a masked group given the k bases on either side of the group (as the student
sees them: a neighbouring masked group, an N or the window's edge is one "unknown" symbol), and
predicts the commonest; an unseen context backs off to k - 1, ..., 0 (the position's overall
commonest base). It never sees the teacher, so it is also the floor that distillation must beat.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from had_cache import dna
from had_cache.masking import student_input

SYMBOLS = 5
"""A, C, G, T and one symbol for anything else (N, a masked base, beyond the window's edge)."""
MAX_K = 4
"""5^(2k) contexts: k = 4 is 390,625 contexts x 6 positions x 4 bases of counts (37 MB)."""


def masked_contexts(
    seq: np.ndarray, group_mask: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """(context key [M], true bases [M, 6]) of every masked group of windows `seq` [N, W].

    The key is the base-5 number of the k symbols left of the group and the k right of it, read
    from the student's input (masked groups hidden), so it is exactly what a model could see.
    """
    seq = np.asarray(seq, dtype=np.uint8)
    group_mask = np.asarray(group_mask, dtype=bool)
    view = np.minimum(student_input(seq, group_mask), dna.N)  # MASK, N -> the unknown symbol
    padded = np.full((seq.shape[0], seq.shape[1] + 2 * k), dna.N, dtype=np.int64)
    padded[:, k : k + seq.shape[1]] = view
    rows, groups = np.nonzero(group_mask)
    starts = groups * dna.K  # the group's first base, in unpadded coordinates
    offsets = np.concatenate([np.arange(k), k + dna.K + np.arange(k)])
    context = padded[rows[:, None], starts[:, None] + offsets[None, :]]
    key = context @ (SYMBOLS ** np.arange(2 * k, dtype=np.int64))
    truth = seq[rows[:, None], starts[:, None] + np.arange(dna.K)[None, :]]
    return key, truth


@dataclass
class ContextCounts:
    """Base counts per (k-context, position in the group), for k = 0..`k` (the back-off chain)."""

    k: int
    counts: list[np.ndarray] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not 0 <= self.k <= MAX_K:
            raise ValueError(f"context k must be in 0..{MAX_K}, got {self.k}")
        self.counts = [
            np.zeros((SYMBOLS ** (2 * j), dna.K, 4), dtype=np.int32) for j in range(self.k + 1)
        ]

    def fit(self, seq: np.ndarray, group_mask: np.ndarray) -> ContextCounts:
        """Add the masked groups of these windows to the counts (call once per block)."""
        for j, table in enumerate(self.counts):
            key, truth = masked_contexts(seq, group_mask, j)
            pos = np.broadcast_to(np.arange(dna.K), truth.shape)
            known = truth < dna.N  # an N hidden in a group has no base to learn
            keys = np.broadcast_to(key[:, None], truth.shape)
            np.add.at(table, (keys[known], pos[known], truth[known]), 1)
        return self

    def predict(self, seq: np.ndarray, group_mask: np.ndarray) -> np.ndarray:
        """Predicted bases [M, 6] of every masked group, longest seen context first."""
        prediction = np.full((int(np.asarray(group_mask).sum()), dna.K), -1, dtype=np.int64)
        for j in range(self.k, -1, -1):
            key, _ = masked_contexts(seq, group_mask, j)
            hits = self.counts[j][key]  # [M, 6, 4]
            seen = (hits.sum(-1) > 0) & (prediction < 0)
            prediction[seen] = hits.argmax(-1)[seen]
        prediction[prediction < 0] = dna.A  # no counts at all (an empty fit)
        return prediction

    def accuracy(self, seq: np.ndarray, group_mask: np.ndarray) -> tuple[float, int]:
        """(share of masked A/C/G/T bases predicted right, how many were scored)."""
        correct, scored = self.correct_by_window(seq, group_mask)
        total = int(scored.sum())
        return (float(correct.sum() / total) if total else float("nan")), total

    def correct_by_window(
        self, seq: np.ndarray, group_mask: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """(masked A/C/G/T bases predicted right [N], bases scored [N]) per window: the unit a
        comparison with a student resamples."""
        _, truth = masked_contexts(seq, group_mask, 0)
        known = truth < dna.N
        hits = (self.predict(seq, group_mask) == truth) & known
        rows, _ = np.nonzero(np.asarray(group_mask, dtype=bool))
        n = len(seq)
        return (
            np.bincount(rows, weights=hits.sum(1), minlength=n).astype(np.int64),
            np.bincount(rows, weights=known.sum(1), minlength=n).astype(np.int64),
        )
