"""The two HAD objectives as pure functions of model outputs and targets."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from had_common import distributed
from had_common.errors import HadError
from had_train.model import IGNORE_INDEX

OBJECTIVES = ("had", "mlm", "distill", "had-soft")
"""had = alignment + reconstruction; mlm = reconstruction only; distill = alignment only;
had-soft = alignment + reconstruction of the teacher's per-base predictions (soft targets)."""
SOFT_OBJECTIVES = ("had-soft",)
"""Objectives whose reconstruction targets are the teacher's predictions, not the bases."""


class NonFiniteLossError(HadError):
    """Training produced an infinite or NaN loss (usually a too-high learning rate)."""


def alignment_loss(aligned: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """MSE between the student's projected features of the visible groups and the teacher's.

    Both are [B, T - M, D] in token order; only visible groups are aligned (aligning masked ones
    was worse in the paper's ablations, and the teacher never saw their bases).
    """
    return F.mse_loss(aligned.float(), teacher.float())


def reconstruction_loss(
    logits: torch.Tensor, targets: torch.Tensor, reduction: str = "mean"
) -> torch.Tensor:
    """Cross-entropy of the masked bases: logits [B, 6M, 4] over A, C, G, T; targets [B, 6M],
    IGNORE_INDEX where the base is not A, C, G or T (it is never a target). `reduction="sum"`
    lets a trainer divide by a count over the whole (global) batch."""
    return F.cross_entropy(
        logits.float().reshape(-1, logits.shape[-1]),
        targets.reshape(-1),
        ignore_index=IGNORE_INDEX,
        reduction=reduction,
    )


def soft_reconstruction_loss(
    logits: torch.Tensor, soft: torch.Tensor, targets: torch.Tensor, reduction: str = "mean"
) -> torch.Tensor:
    """Cross-entropy of the masked bases against the teacher's per-base marginals.

    logits [B, 6M, 4]; soft [B, M, 6, 4], the teacher's P(base) at each masked base in the same
    (token, then base) order; targets [B, 6M] only to skip the bases the hard loss ignores.
    Minimising it matches the student's base distribution to the teacher's (KL up to the
    teacher's entropy, a constant): logit distillation at the level the student predicts.
    """
    log_p = torch.log_softmax(logits.float(), dim=-1)
    per_base = -(soft.reshape(log_p.shape) * log_p).sum(-1)
    per_base = per_base.masked_fill(targets == IGNORE_INDEX, 0.0)
    if reduction == "sum":
        return per_base.sum()
    return per_base.sum() / (targets != IGNORE_INDEX).sum().clamp(min=1)


def objective_weights(objective: str, align_weight: float) -> tuple[float, float]:
    """(alignment weight, reconstruction weight) of an objective, for equal-compute ablations."""
    weights = {
        "had": (align_weight, 1.0),
        "mlm": (0.0, 1.0),
        "distill": (align_weight, 0.0),
        "had-soft": (align_weight, 1.0),
    }
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


NO_BAD_STEP = 2**62
"""FiniteWatch's "no non-finite loss seen yet" (larger than any step)."""


class FiniteWatch:
    """The finite-loss check without a host sync per micro-batch.

    `observe` records, on the loss's device, the first step whose loss was inf or NaN (and its
    loss terms); the record ids of every micro-batch since the last check stay on the CPU.
    `check` (on log and checkpoint steps, on every rank at the same steps) brings the first bad
    step home, takes the minimum over ranks, and raises NonFiniteLossError naming that step and,
    on a rank that saw it, the step's records there. Weights may turn non-finite between two checks, but no
    checkpoint is written before a check passes, so the last one on disk is a good one.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self._reset()

    def _reset(self) -> None:
        self.first_bad = torch.full((), NO_BAD_STEP, dtype=torch.int64, device=self.device)
        self.bad_terms = torch.zeros(3, device=self.device)
        self.bad_targets = torch.zeros((), dtype=torch.int64, device=self.device)
        self.records: dict[int, list[torch.Tensor]] = {}

    def observe(
        self,
        step: int,
        loss: torch.Tensor,
        align: torch.Tensor,
        recon: torch.Tensor,
        records: torch.Tensor,
        targets: torch.Tensor | None = None,
    ) -> None:
        """Note micro-batch `records` of `step` (numbered from 1) and whether its loss is finite
        (and, with the teacher `targets`, how many of them were not finite: a damaged store)."""
        first = ~torch.isfinite(loss.detach()) & (self.first_bad == NO_BAD_STEP)
        self.first_bad = torch.where(first, step, self.first_bad)
        if targets is not None:
            bad = (~torch.isfinite(targets)).sum()
            self.bad_targets = torch.where(first, bad, self.bad_targets)
        terms = torch.stack([loss, align, recon]).detach().float()
        self.bad_terms = torch.where(first, terms, self.bad_terms)
        self.records.setdefault(step, []).append(records)

    def check(self, advice: str = "lower --lr") -> None:
        """Raise NonFiniteLossError if any rank saw a non-finite loss since the last check."""
        mine = int(self.first_bad)
        first = -int(distributed.all_reduce_max(torch.tensor([-mine]))[0])  # min over ranks
        if first != NO_BAD_STEP:
            where = f"in step {first}"
            if mine == first:
                if int(self.bad_targets):
                    advice = (
                        f"{int(self.bad_targets)} of the batch's teacher features are not finite: "
                        "the store is damaged, check it with `had-cache verify STORE`"
                    )
                loss, align, recon = self.bad_terms.tolist()
                ids = torch.cat(self.records[first]).tolist()
                where += (
                    f" (loss {loss}, align {align}, recon {recon}); this rank's records in it: "
                    f"{ids[:8]}{'...' if len(ids) > 8 else ''}"
                )
            else:
                where += " on another rank"
            raise NonFiniteLossError(
                f"non-finite loss {where}; the last checkpoint written is from before it; {advice}"
            )
        self._reset()
