"""The HAD objectives on cases small enough to compute by hand."""

from __future__ import annotations

import math

import pytest
import torch

from had_train import losses


def test_alignment_is_the_mean_squared_error_over_every_feature() -> None:
    aligned = torch.tensor([[[1.0, 2.0], [0.0, 0.0]]])  # [B=1, visible=2, D=2]
    teacher = torch.tensor([[[0.0, 2.0], [3.0, -1.0]]])
    # squared errors 1, 0, 9, 1 -> mean 11 / 4
    assert losses.alignment_loss(aligned, teacher).item() == pytest.approx(2.75)
    half = losses.alignment_loss(aligned.half(), teacher.half())
    assert half.dtype == torch.float32 and half.item() == pytest.approx(2.75)


def test_reconstruction_is_cross_entropy_that_skips_non_acgt_targets() -> None:
    logits = torch.tensor([[[2.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0], [9.0, 9.0, 9.0, 9.0]]])
    targets = torch.tensor([[0, 3, losses.IGNORE_INDEX]])  # the third base was an N
    first = -math.log(math.exp(2) / (math.exp(2) + 3))  # A predicted with logit 2 vs 0, 0, 0
    second = math.log(4)  # a uniform guess
    expected = (first + second) / 2  # the ignored base counts in neither sum nor mean
    assert losses.reconstruction_loss(logits, targets).item() == pytest.approx(expected)


def test_objective_weights_and_the_combined_loss() -> None:
    assert losses.objective_weights("had", 0.5) == (0.5, 1.0)
    assert losses.objective_weights("mlm", 0.5) == (0.0, 1.0)
    assert losses.objective_weights("distill", 0.5) == (0.5, 0.0)
    assert losses.objective_weights("had-soft", 0.5) == (0.5, 1.0)
    with pytest.raises(ValueError, match="had, mlm, distill"):
        losses.objective_weights("mae", 1.0)
    align, recon = torch.tensor(2.0), torch.tensor(3.0)
    assert losses.had_loss(align, recon, 0.5).item() == pytest.approx(0.5 * 2 + 3)


def test_a_zero_weight_drops_its_term_from_the_graph() -> None:
    """mlm and distill train nothing through the dropped term, not even NaN gradients."""
    align = torch.tensor(float("nan"), requires_grad=True)
    recon = torch.tensor(3.0, requires_grad=True)
    total = losses.had_loss(align, recon, align_weight=0.0)
    total.backward()
    assert total.item() == 3.0 and align.grad is None and recon.grad.item() == 1.0


def test_a_non_finite_loss_stops_training_with_a_hint() -> None:
    losses.check_finite(torch.tensor(1.0), "at step 3")
    with pytest.raises(
        losses.NonFiniteLossError, match="non-finite loss inf at step 3; lower --lr"
    ):
        losses.check_finite(torch.tensor(float("inf")), "at step 3")


def test_soft_reconstruction_with_one_hot_targets_is_the_hard_loss() -> None:
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 12, 4, generator=gen)  # 2 masked groups of 6 bases per window
    targets = torch.randint(0, 4, (2, 12), generator=gen)
    targets[1, 5] = losses.IGNORE_INDEX
    soft = torch.nn.functional.one_hot(targets.clamp(min=0), 4).float().reshape(2, 2, 6, 4)
    hard = losses.reconstruction_loss(logits, targets)
    assert losses.soft_reconstruction_loss(logits, soft, targets).item() == pytest.approx(
        hard.item()
    )
    sums = [losses.soft_reconstruction_loss(logits, soft, targets, "sum")]
    sums.append(losses.reconstruction_loss(logits, targets, "sum"))
    assert sums[0].item() == pytest.approx(sums[1].item())


def test_soft_reconstruction_is_smallest_at_the_teachers_distribution() -> None:
    """Cross-entropy against a soft target p is minimised by predicting p itself."""
    p = torch.tensor([0.5, 0.3, 0.15, 0.05])
    soft = p.expand(1, 1, 6, 4)
    targets = torch.zeros(1, 6, dtype=torch.long)
    at_p = losses.soft_reconstruction_loss(p.log().expand(1, 6, 4), soft, targets)
    one_hot = losses.soft_reconstruction_loss(
        torch.tensor([5.0, 0.0, 0.0, 0.0]).expand(1, 6, 4), soft, targets
    )
    entropy = -(p * p.log()).sum()
    assert at_p.item() == pytest.approx(entropy.item(), rel=1e-5) and one_hot > at_p
