"""The online teacher: the paper's recipe through the store runs' loop, with a fresh mask every
draw, and the windows, order and held-out records of the store the same options would extract."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from had_cache.reader import CacheReader
from had_train.cli import main
from had_train.data import PretrainBatches
from had_train.online import OnlineBatches, extraction_config
from had_train.pretrain import PretrainConfig, pretrain
from tests.conftest import extract_store
from tests.helpers import one_torch_thread  # noqa: F401

# The demo teacher on 120-bp windows of the demo FASTA: 20 tokens, 17 visible, width 192.
WINDOWS = {"window_bp": 120, "max_windows": 200, "chunk_records": 25}


def _config(out: Path, **overrides: object) -> PretrainConfig:
    base = {"preset": "tiny", "batch_size": 4, "steps": 3, "save_every": 3, "log_every": 1}
    return PretrainConfig(
        cache=None,
        out=str(out),
        online_teacher="demo",
        fasta="demo",
        **(WINDOWS | base | overrides),
    )


@pytest.fixture(scope="module")
def online(tmp_path_factory: pytest.TempPathFactory) -> OnlineBatches:
    cfg = _config(tmp_path_factory.mktemp("online"), holdout_chunks=1)
    extraction = extraction_config(cfg)
    return OnlineBatches(extraction, cfg.batch_size, cfg.seed, holdout_chunks=cfg.holdout_chunks)


def test_fresh_masks_every_step_as_a_pure_function_of_it(online: OnlineBatches) -> None:
    steps = [online.batch(s) for s in range(3)]
    first, again = steps[0], online.batch(0)
    for name in ("record", "seq", "group_mask", "teacher"):
        # Resuming at a step needs nothing but the step.
        assert torch.equal(getattr(first, name), getattr(again, name))
    masks = torch.stack([b.group_mask for b in steps])
    assert (masks.sum(-1) == online.attrs.n_masked).all()
    assert not torch.equal(masks[0], masks[1])
    # The first window of epoch 0 comes back in epoch 1 with another mask.
    window, per_epoch = int(first.record[0]), online.order.batches_per_epoch
    step = next(s for s in range(per_epoch, 2 * per_epoch) if window in online.record_ids(s))
    back = online.batch(step)
    row = int((back.record == window).nonzero()[0, 0])
    assert torch.equal(back.seq[row], first.seq[0])
    assert not torch.equal(back.group_mask[row], first.group_mask[0])
    # The teacher's features of the drawn masks: a store's shape, float32, trainable targets.
    assert first.teacher.shape == (4, online.attrs.n_visible, online.attrs.hidden_size)
    assert first.teacher.dtype == torch.float32 and not first.teacher.is_inference()


def test_same_windows_and_held_out_records_as_the_equivalent_store(
    online: OnlineBatches, tmp_path: Path
) -> None:
    """An online run and a run on the store its options extract train on the same windows in
    the same order and score the same held-out records (same masks, features equal to float16)."""
    store = extract_store(
        online.extraction.fasta,
        "demo",
        tmp_path / "s.zarr",
        min_teacher_accuracy=online.extraction.min_teacher_accuracy,
        **WINDOWS,
    )
    assert CacheReader(store).attrs.fingerprint() == online.attrs.fingerprint()
    cached = PretrainBatches(store, batch_size=4, seed=0, holdout_chunks=1)
    for step in (0, 5, cached.batches_per_epoch):
        assert np.array_equal(online.record_ids(step), cached.record_ids(step))
        assert np.array_equal(online.batch(step).seq.numpy(), cached.batch(step).seq.numpy())
    assert np.array_equal(online.held_out, cached.held_out)
    mine, theirs = online.records(online.held_out), cached.records(cached.held_out)
    assert torch.equal(mine.seq, theirs.seq) and torch.equal(mine.group_mask, theirs.group_mask)
    assert mine.teacher.dtype == theirs.teacher.dtype
    assert torch.allclose(mine.teacher.float(), theirs.teacher.float(), atol=1e-2, rtol=1e-2)


def test_online_pretraining_runs_the_store_loop(tmp_path: Path) -> None:
    run = tmp_path / "run"
    final = pretrain(_config(run, holdout_chunks=1), progress=False)
    assert final.name == "step-0000003"
    assert len((run / "losses.csv").read_text().splitlines()) == 4
    held_out = json.loads((run / "held_out.json").read_text())
    assert held_out["records"] == 25 and 0 < held_out["reconstruction_accuracy"] <= 1
    (start,) = json.loads((run / "provenance.json").read_text())
    assert set(start["inputs"]) == {"online_source_fingerprint", "teacher_weights_sha256"}
    saved = json.loads((run / "pretrain_config.json").read_text())
    assert saved["online_teacher"] == "demo" and saved["cache"] is None


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--cache", "x.zarr", "--online-teacher", "demo"], "not both"),
        (["--online-teacher", "demo"], "--online-teacher needs --fasta"),
        (["--cache", "x.zarr", "--window-bp", "120"], "--window-bp apply to --online-teacher"),
        (["--online-teacher", "demo", "--fasta", "demo", "--workers", "2"], "--workers 0"),
        ([], "--cache STORE (or --online-teacher"),
    ],
)
def test_source_options_are_one_line_errors(args: list[str], message: str, tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["pretrain", "--out", str(tmp_path / "r"), *args])
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: ") and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
