"""The teacher gate: checks a teacher must pass before a single feature is written.

A teacher can load and run and still be useless: weights silently re-initialised, dropout left
on, a tokenizer that disagrees with the vocabulary. Each shows up here as a number, checked
against a documented bound, and the numbers are stored with the features (design.md section 7).

- Deterministic: two forward passes of the same batch must agree (eval mode, no dropout).
- Knows DNA: masked-token accuracy on real human sequence the demo teacher never trained on
  (the last 950 kb of the embedded chrX slice) must reach `min_accuracy`. A random model scores
  about 1/4,096 = 0.02%; always guessing the most frequent 6-mer scores about 0.6% there.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F

from had_cache import dna, masking, tokenize, windows
from had_cache.teacher import Teacher, TeacherError

GATE_WINDOW_BP = 1020
GATE_WINDOWS = 96
GATE_MASK_SEED = 1234
GATE_MASK_RATIO = masking.DEFAULT_RATIO
HELD_OUT_FROM = 8_550_000  # offset in the demo slice: chrX:23,550,001 onwards
DEFAULT_MIN_ACCURACY = 0.003
"""0.3%: ~15x a random model, half of always guessing the commonest 6-mer. Catches broken
teachers, not weak ones; pass 0 to skip the floor (e.g. for random test teachers)."""
DETERMINISM_TOLERANCE = 1e-3
"""Largest allowed relative difference between two passes (GPU kernels may reorder sums)."""


@dataclass(frozen=True)
class GateReport:
    """What the gate measured; stored in the store's attributes."""

    eval_mode: bool
    two_pass_max_rel_diff: float
    masked_tokens: int
    accuracy: float
    baseline_accuracy: float
    min_accuracy: float
    data: str

    def to_json(self) -> dict[str, object]:
        return asdict(self)

    def summary(self) -> str:
        """One line for logs and `had-cache inspect`."""
        return (
            f"masked-6-mer accuracy {self.accuracy:.2%} on held-out human DNA (floor "
            f"{self.min_accuracy:.2%}, commonest-6-mer guess {self.baseline_accuracy:.2%}); "
            f"two passes agree to {self.two_pass_max_rel_diff:.1g}"
        )


def gate_windows(n: int = GATE_WINDOWS, window_bp: int = GATE_WINDOW_BP) -> np.ndarray:
    """`n` non-overlapping N-free windows from the held-out tail of the embedded chrX slice."""
    fasta = windows.open_fasta(windows.DEMO_FASTA)  # decompressed once, then read by index
    (contig,) = fasta.keys()
    tiles = windows.tile_n_free(dna.encode(fasta[contig][HELD_OUT_FROM:]), window_bp)
    return tiles[np.linspace(0, len(tiles) - 1, n).astype(int)]


@dataclass(frozen=True)
class MaskedTokenScore:
    """How well a masked LM fills in masked 6-mers, beside always guessing one 6-mer."""

    windows: int
    masked_tokens: int
    accuracy: float
    baseline_accuracy: float
    loss: float


@torch.inference_mode()
def masked_token_accuracy(
    model: torch.nn.Module,
    codes: np.ndarray,
    mask_seed: int,
    baseline_id: int,
    batch_size: int = 16,
    device: torch.device | None = None,
    mask_ratio: float = GATE_MASK_RATIO,
) -> MaskedTokenScore:
    """Masked-6-mer accuracy and cross-entropy of N-free windows `codes` [n, 6T].

    The masks are the extraction's own rule (`masking.group_masks(mask_seed, window index)`),
    masked tokens become `<mask>`, `<cls>` is prepended, and the baseline always answers
    `baseline_id`, scored on the very same tokens. The model must be in eval mode.
    """
    true = tokenize.kmer_ids(codes)
    mask = masking.group_masks(mask_seed, np.arange(len(codes)), true.shape[1], mask_ratio)
    ids = tokenize.with_cls(masking.teacher_input(true, mask, tokenize.MASK_ID))
    correct, loss_sum = 0, 0.0
    for lo in range(0, len(codes), batch_size):
        batch = torch.as_tensor(ids[lo : lo + batch_size], device=device)
        picked = torch.as_tensor(mask[lo : lo + batch_size], device=batch.device)
        logits = model(input_ids=batch).logits[:, 1:][picked].float()
        target = torch.as_tensor(true[lo : lo + batch_size][mask[lo : lo + batch_size]])
        target = target.to(logits.device)
        correct += int((logits.argmax(-1) == target).sum())
        loss_sum += float(F.cross_entropy(logits, target, reduction="sum"))
    n_masked = int(mask.sum())
    return MaskedTokenScore(
        windows=len(codes),
        masked_tokens=n_masked,
        accuracy=correct / n_masked,
        baseline_accuracy=float((true[mask] == baseline_id).mean()),
        loss=loss_sum / n_masked,
    )


@torch.inference_mode()
def check_teacher(
    teacher: Teacher, min_accuracy: float = DEFAULT_MIN_ACCURACY, batch_size: int = 16
) -> GateReport:
    """Run the gate; raise TeacherError naming the failed check, else return the figures."""
    model = teacher.model
    if model.training:
        raise TeacherError("the teacher is in training mode (dropout on); call .eval() first")
    seqs = gate_windows()
    # The two-pass probe: the first batch, masked as the accuracy check masks it.
    first_ids = tokenize.kmer_ids(seqs[:batch_size])
    first_mask = masking.group_masks(
        GATE_MASK_SEED, np.arange(len(first_ids)), first_ids.shape[1], GATE_MASK_RATIO
    )
    probe = masking.teacher_input(first_ids, first_mask, tokenize.MASK_ID)
    probe = torch.as_tensor(tokenize.with_cls(probe), device=teacher.device)
    first = model(input_ids=probe).logits.float()
    second = model(input_ids=probe).logits.float()
    rel_diff = float((first - second).abs().max() / first.abs().max().clamp_min(1e-12))
    if rel_diff > DETERMINISM_TOLERANCE:
        raise TeacherError(
            f"two forward passes of the same input differ (max relative difference {rel_diff:.3g}"
            f" > {DETERMINISM_TOLERANCE}): dropout or another random layer is active"
        )
    commonest = int(np.bincount(tokenize.kmer_ids(seqs).ravel()).argmax())
    score = masked_token_accuracy(
        model, seqs, GATE_MASK_SEED, commonest, batch_size, teacher.device
    )
    report = GateReport(
        eval_mode=not model.training,
        two_pass_max_rel_diff=rel_diff,
        masked_tokens=score.masked_tokens,
        accuracy=score.accuracy,
        baseline_accuracy=score.baseline_accuracy,
        min_accuracy=min_accuracy,
        data=f"{len(seqs)} windows of {GATE_WINDOW_BP} bp, GRCh37 chrX:23,550,001-24,500,000",
    )
    if report.accuracy < min_accuracy:
        raise TeacherError(
            f"the teacher predicts {report.accuracy:.2%} of masked 6-mers of held-out human DNA "
            f"(floor {min_accuracy:.2%}; a random model scores ~0.02%, always guessing the "
            f"commonest 6-mer {report.baseline_accuracy:.2%}): its weights or tokenizer look "
            "wrong. Pass --min-teacher-accuracy 0 to extract anyway"
        )
    return report
