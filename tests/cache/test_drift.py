"""Unmasked-teacher drift: the estimator against known answers and a brute-force computation,
its interval against a bootstrap, and the command."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from had_cache import dna, masking, tokenize
from had_cache.cli import main
from had_cache.drift import measure_drift, teacher_features
from had_cache.teacher import load_teacher
from had_common.stats import ratio_interval
from tests.conftest import real_dna
from tests.helpers import one_torch_thread  # noqa: F401

WINDOW_BP = 120
N_TOKENS = WINDOW_BP // dna.K


def _windows(n: int) -> tuple[np.ndarray, np.ndarray]:
    seq = dna.encode(real_dna(n * WINDOW_BP)).reshape(n, WINDOW_BP)
    return seq, masking.group_masks(0, np.arange(n), N_TOKENS, masking.DEFAULT_RATIO)


def test_context_free_features_do_not_drift() -> None:
    """A teacher whose token features ignore the other tokens: masking changes no visible one."""
    table = torch.randn(len(tokenize.VOCAB), 8, generator=torch.Generator().manual_seed(0))
    seq, mask = _windows(12)
    report = measure_drift(lambda ids: table[torch.as_tensor(ids)], seq, mask, batch_size=5)
    assert report.drift == 0.0 and report.ci_low == report.ci_high == 0.0
    assert report.windows == 12 and report.visible_tokens == int((~mask).sum())


def test_independent_features_drift_by_two() -> None:
    """Features drawn afresh on every pass: E||X - Y||^2 = 2 Var, so D = 2, inside the interval."""
    gen = torch.Generator().manual_seed(1)
    seq, mask = _windows(200)
    report = measure_drift(
        lambda ids: torch.randn(*ids.shape, 16, generator=gen), seq, mask, batch_size=64
    )
    assert report.ci_low < 2.0 < report.ci_high
    assert report.ci_high - report.ci_low < 0.1


def test_drift_of_a_real_teacher_matches_brute_force(tiny_teacher: Path) -> None:
    teacher = load_teacher(str(tiny_teacher), torch.device("cpu"), torch.float32)
    (layer,) = teacher.info.layers
    seq, mask = _windows(20)
    report = measure_drift(teacher_features(teacher, layer), seq, mask, batch_size=7)
    ids = tokenize.kmer_ids(seq)
    masked = teacher.features(masking.teacher_input(ids, mask, tokenize.MASK_ID))[layer]
    full = teacher.features(ids)[layer]
    visible = torch.as_tensor(~mask)
    m, f = masked[visible].double(), full[visible].double()
    expected = float(((m - f) ** 2).sum() / ((f - f.mean(0)) ** 2).sum())
    assert report.drift == pytest.approx(expected, rel=1e-9)
    assert 0 < report.ci_low < report.drift < report.ci_high


def test_delta_method_interval_matches_a_bootstrap() -> None:
    rng = np.random.default_rng(2)
    b = rng.gamma(4.0, 1.0, 2000)
    a = 0.3 * b + rng.normal(0, 0.5, 2000)
    _, low, high = ratio_interval(a, b)
    picks = rng.integers(0, 2000, (2000, 2000))
    boot = a[picks].sum(axis=1) / b[picks].sum(axis=1)
    assert (high - low) / 2 / 1.96 == pytest.approx(boot.std(), rel=0.1)
    # Coverage: of 400 samples of 200 windows, about 95% of intervals hold the true ratio 0.3
    # (binomial sd 1.1 points; the bounds are 3.6 sd).
    covered = []
    for _ in range(400):
        b = rng.gamma(4.0, 1.0, 200)
        _, low, high = ratio_interval(0.3 * b + rng.normal(0, 0.5, 200), b)
        covered.append(low < 0.3 < high)
    assert 0.91 <= np.mean(covered) <= 0.99


def test_drift_command(small_fasta: Path, tiny_teacher: Path) -> None:
    runner = CliRunner()
    args = ["drift", "--fasta", str(small_fasta), "--teacher", str(tiny_teacher)]
    args += ["--window-bp", str(WINDOW_BP), "--windows", "20", "--json"]
    result = runner.invoke(main, args)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["windows"] == 20 and report["ci_low"] < report["drift"] < report["ci_high"]
    assert report["layer"] == 2 and report["window_bp"] == WINDOW_BP  # tiny teacher: 2 layers
    result = runner.invoke(main, args[:-3] + ["--windows", "500"])
    assert result.exit_code == 2
    assert "error: --windows 500: the FASTA has only" in result.stderr
