"""The learning-rate shape every trainer uses: linear warm-up, then cosine decay to a floor.

A pure function of where training is, so resuming needs only the step counter. Two clocks read
the same curve: steps (`warmup_cosine`, pretraining and fine-tuning) and the elapsed share of a
budget (`warmup_cosine_fraction`, the demo teacher, which trains for a fixed wall time).
"""

from __future__ import annotations

import math


def cosine_decay(progress: float, floor: float = 0.0) -> float:
    """1 at progress 0 down to `floor` at progress 1 (clamped), along half a cosine."""
    progress = min(1.0, max(0.0, progress))
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def warmup_cosine(step: int, total_steps: int, warmup_steps: int, floor: float = 0.0) -> float:
    """Multiplier of the peak learning rate at `step`: linear warm-up over `warmup_steps`
    (step 0 already trains, at 1 / warmup_steps), then cosine decay down to `floor`."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    return cosine_decay((step - warmup_steps) / max(1, total_steps - warmup_steps), floor)


def warmup_cosine_fraction(progress: float, warmup: float, floor: float = 0.0) -> float:
    """The same curve on a continuous clock: `progress` and `warmup` are shares of the budget
    (the multiplier never drops below 1e-3 at the very start, so step 0 trains)."""
    if progress < warmup:
        return max(progress / warmup, 1e-3)
    return cosine_decay((progress - warmup) / max(1.0 - warmup, 1e-9), floor)
