"""Training from unmasked-teacher and replay stores: masks drawn per step, D printed, usage logged."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from had_cache import tokenize
from had_cache.reader import CacheReader
from had_cache.teacher import load_teacher
from had_common.errors import ConfigError
from had_train.data import PretrainBatches, draw_masks
from had_train.pretrain import USAGE_FILE, pretrain
from tests.conftest import extract_store
from tests.helpers import tiny_pretrain_config

OPTIONS = {"window_bp": 120, "chunk_records": 8, "batch_size": 8}


@pytest.fixture(scope="module")
def full(tmp_path_factory: pytest.TempPathFactory, small_fasta: Path, tiny_teacher: Path) -> Path:
    out = tmp_path_factory.mktemp("full") / "f.zarr"
    return extract_store(
        small_fasta, tiny_teacher, out, teacher_input="full", drift_windows=12, **OPTIONS
    )


def test_a_full_store_holds_every_token_of_one_unmasked_pass_and_its_drift(
    full: Path, tiny_teacher: Path
) -> None:
    reader = CacheReader(full)
    a = reader.attrs
    assert a.full_teacher and a.feature_tokens == a.n_tokens == 20
    assert a.drift["windows"] == 12 and a.drift["layer"] == reader.layer and a.drift["drift"] > 0
    block = reader.read(slice(0, 4))
    assert block.teacher.shape == (4, 20, a.hidden_size)
    teacher = load_teacher(str(tiny_teacher), torch.device("cpu"), torch.float32)
    unmasked = teacher.features(tokenize.kmer_ids(block.seq))[reader.layer].numpy()
    np.testing.assert_allclose(block.teacher.astype(np.float32), unmasked, atol=2e-3, rtol=2e-3)


def test_the_loader_draws_masks_per_step_and_keeps_the_visible_features(full: Path) -> None:
    batches = PretrainBatches(full, batch_size=8, seed=1, holdout_chunks=1)
    raw = batches.batch(3)
    expected = draw_masks(batches.attrs, 1, 3, 8)
    np.testing.assert_array_equal(raw.group_mask.numpy(), expected)
    assert not np.array_equal(expected, draw_masks(batches.attrs, 1, 4, 8))
    moved = raw.to("cpu")
    keep = ~expected
    gathered = raw.teacher.float().numpy()[keep].reshape(8, -1, batches.attrs.hidden_size)
    np.testing.assert_array_equal(moved.teacher.numpy(), gathered)
    again = PretrainBatches(full, batch_size=8, seed=1, holdout_chunks=1).batch(3)  # a resume
    assert torch.equal(again.group_mask, raw.group_mask) and torch.equal(again.teacher, raw.teacher)
    held = batches.records(batches.held_out[:4])  # held-out records keep the store's masks
    stored = CacheReader(full).read(slice(int(batches.held_out[0]), int(batches.held_out[0]) + 4))
    np.testing.assert_array_equal(held.group_mask.numpy(), stored.mask)


def test_pretraining_prints_d_and_reports_record_usage(
    full: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    run = tmp_path / "run"
    pretrain(tiny_pretrain_config(full, run, steps=3, save_every=3), progress=False)
    out = capsys.readouterr().out
    assert "unmasked-teacher store: unmasked-teacher drift D = " in out
    usage = json.loads((run / USAGE_FILE).read_text())
    assert usage["steps"] == 3 and usage["batch_size"] == 8
    assert usage["uses_max"] == 1 and usage["records_never_used"] == usage["training_records"] - 24
    assert "each used 0-1 times" in out


def test_replay_usage_counts_every_use_of_every_record(
    small_fasta: Path, tiny_teacher: Path, tmp_path: Path
) -> None:
    store = extract_store(
        small_fasta, tiny_teacher, tmp_path / "r.zarr", records=40, seed=2, **OPTIONS
    )
    run = tmp_path / "run"
    pretrain(tiny_pretrain_config(store, run, steps=7, save_every=7), progress=False)
    usage = json.loads((run / USAGE_FILE).read_text())
    batches = PretrainBatches(store, batch_size=8)
    counts = np.bincount(np.concatenate([batches.record_ids(s) for s in range(7)]), minlength=40)
    assert usage["training_records"] == 40
    assert (usage["uses_min"], usage["uses_max"]) == (counts.min(), counts.max()) == (1, 2)
    assert usage["uses_mean"] == pytest.approx(56 / 40)


def test_predictions_need_the_masked_teacher(
    small_fasta: Path, tiny_teacher: Path, tmp_path: Path
) -> None:
    with pytest.raises(ConfigError, match="--predictions needs the masked teacher"):
        extract_store(
            small_fasta, tiny_teacher, tmp_path / "x", teacher_input="full", predictions=4
        )
