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
