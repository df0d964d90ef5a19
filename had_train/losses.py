"""The two HAD objectives as pure functions of model outputs and targets."""

from __future__ import annotations

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100


def alignment_loss(aligned: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """MSE between the student's projected features of the visible groups and the teacher's.

    Both are [B, T - M, D] in token order; only visible groups are aligned (aligning masked ones
    was worse in the paper's ablations, and the teacher never saw their bases).
    """
    return F.mse_loss(aligned.float(), teacher.float())


def reconstruction_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the masked bases: logits [B, 6M, 4] over A, C, G, T; targets [B, 6M]."""
    return F.cross_entropy(
        logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=IGNORE_INDEX
    )


def had_loss(
    align: torch.Tensor, recon: torch.Tensor, align_weight: float, recon_weight: float = 1.0
) -> torch.Tensor:
    """The HAD objective: weighted sum of alignment and reconstruction (λ = align_weight)."""
    return align_weight * align + recon_weight * recon
