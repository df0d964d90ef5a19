"""The two HAD objectives as pure functions of model outputs and targets."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from had_common.errors import HadError
from had_train.model import IGNORE_INDEX

OBJECTIVES = ("had", "mlm", "distill")
"""had = alignment + reconstruction; mlm = reconstruction only; distill = alignment only."""


class NonFiniteLossError(HadError):
    """Training produced an infinite or NaN loss (usually a too-high learning rate)."""


def alignment_loss(aligned: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """MSE between the student's projected features of the visible groups and the teacher's.

    Both are [B, T - M, D] in token order; only visible groups are aligned (aligning masked ones
    was worse in the paper's ablations, and the teacher never saw their bases).
    """
    return F.mse_loss(aligned.float(), teacher.float())


def reconstruction_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the masked bases: logits [B, 6M, 4] over A, C, G, T; targets [B, 6M],
    IGNORE_INDEX where the base is not A, C, G or T (it is never a target)."""
    return F.cross_entropy(
        logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=IGNORE_INDEX
    )


def objective_weights(objective: str, align_weight: float) -> tuple[float, float]:
    """(alignment weight, reconstruction weight) of an objective, for equal-compute ablations."""
    weights = {"had": (align_weight, 1.0), "mlm": (0.0, 1.0), "distill": (align_weight, 0.0)}
    if objective not in weights:
        raise ValueError(f"objective must be one of {', '.join(OBJECTIVES)}, got {objective!r}")
    return weights[objective]


def had_loss(
    align: torch.Tensor, recon: torch.Tensor, align_weight: float, recon_weight: float = 1.0
) -> torch.Tensor:
    """The HAD objective: weighted sum of alignment and reconstruction (λ = align_weight).

    A zero weight drops its term from the graph (both terms are still logged by the trainer).
    """
    total = align.new_zeros(())
    if align_weight:
        total = total + align_weight * align
    if recon_weight:
        total = total + recon_weight * recon
    return total


def non_finite_advice(teacher: torch.Tensor) -> str:
    """Why a loss went non-finite, as far as the batch tells: targets that are not finite are
    a damaged store, not a learning rate."""
    if not torch.isfinite(teacher).all():
        bad = int((~torch.isfinite(teacher)).sum())
        return (
            f"{bad} of the batch's teacher features are not finite: the store is damaged, "
            "check it with `had-cache verify STORE`"
        )
    return "lower --lr"


def check_finite(loss: torch.Tensor, where: str, advice: str = "lower --lr") -> None:
    """NonFiniteLossError naming `where` if `loss` is inf or NaN: stop before the weights are."""
    if not torch.isfinite(loss):
        raise NonFiniteLossError(f"non-finite loss {loss.item()} {where}; {advice}")
