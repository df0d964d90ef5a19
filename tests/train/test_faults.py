"""A run killed at any moment resumes to exactly the run that was never killed; a non-finite
loss stops the run, names the step and records, and keeps the last good checkpoint."""

from __future__ import annotations

import csv
import multiprocessing
import os
import signal
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from had_train import checkpoint, losses
from had_train.pretrain import PretrainConfig, pretrain
from tests.helpers import tiny_pretrain_config


@pytest.fixture
def store(train_store: Path) -> Path:
    return train_store


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(folder / "model.safetensors")


def _child(cfg: PretrainConfig, resume: bool, kill: tuple[str, int] | None) -> None:
    """Train in this (forked) process; SIGKILL it at ("step", n): as step n begins, or at
    ("save", n): while checkpoint n is being written (its weights on disk, its optimizer
    state half written, no marker)."""
    torch.set_num_threads(1)
    from had_train import pretrain as pt

    if kill and kill[0] == "step":
        train_step = pt.train_step

        def killed_step(s: pt.Session, step: int, batch: object) -> object:
            if step + 1 == kill[1]:
                os.kill(os.getpid(), signal.SIGKILL)
            return train_step(s, step, batch)

        pt.train_step = killed_step
    if kill and kill[0] == "save":
        save = torch.save

        def killed_save(obj: object, path: object, *args: object, **kw: object) -> None:
            if Path(path).name == checkpoint.OPTIMIZER_STATE and f"{kill[1]:07d}" in str(path):
                Path(path).write_bytes(b"half an optimizer state")
                os.kill(os.getpid(), signal.SIGKILL)
            save(obj, path, *args, **kw)

        torch.save = killed_save
    pt.pretrain(cfg, resume=resume, progress=False)


def _run(cfg: PretrainConfig, resume: bool = False, kill: tuple[str, int] | None = None) -> int:
    proc = multiprocessing.get_context("fork").Process(target=_child, args=(cfg, resume, kill))
    proc.start()
    proc.join(timeout=300)
    return proc.exitcode


def _rows(run: Path) -> list[dict[str, str]]:
    with open(run / "losses.csv", newline="") as fh:
        return [{k: v for k, v in r.items() if k != "seconds"} for r in csv.DictReader(fh)]


def test_sigkill_between_and_during_checkpoints_then_resume_is_bit_identical(
    store: Path, tmp_path: Path
) -> None:
    """With --ema, so the averaged weights (saved in checkpoints) must resume exactly too."""
    straight, run = tmp_path / "straight", tmp_path / "run"
    assert _run(tiny_pretrain_config(store, straight, steps=6, ema=0.9)) == 0

    assert (
        _run(tiny_pretrain_config(store, run, steps=6, ema=0.9), kill=("step", 4))
        == -signal.SIGKILL
    )
    assert checkpoint.latest_checkpoint(run) == checkpoint.step_dir(run, 2)
    assert len(_rows(run)) == 3  # rows past the checkpoint: rewritten on resume

    assert (
        _run(tiny_pretrain_config(store, run, steps=6, ema=0.9), resume=True, kill=("save", 4))
        == -signal.SIGKILL
    )
    assert (run / "step-0000004.tmp").is_dir()
    assert checkpoint.latest_checkpoint(run) == checkpoint.step_dir(run, 2)

    assert _run(tiny_pretrain_config(store, run, steps=6, ema=0.9), resume=True) == 0
    assert _rows(run) == _rows(straight) and len(_rows(run)) == 6
    a, b = (checkpoint.latest_checkpoint(r) for r in (straight, run))
    assert a.name == b.name == "step-0000006" and not (run / "step-0000004.tmp").exists()
    for folder_a, folder_b in ((a, b), (straight / "ema", run / "ema")):
        wa, wb = _weights(folder_a), _weights(folder_b)
        assert all(torch.equal(wa[n], wb[n]) for n in wa)
    assert any(not torch.equal(v, _weights(a)[n]) for n, v in _weights(run / "ema").items())
    oa, ob = (torch.load(c / checkpoint.OPTIMIZER_STATE) for c in (a, b))
    for pa, pb in zip(oa["state"].values(), ob["state"].values(), strict=True):
        assert torch.equal(pa["exp_avg_sq"], pb["exp_avg_sq"])


def test_non_finite_loss_stops_with_step_and_records_and_keeps_the_last_good_checkpoint(
    store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The loss of step 3 turns NaN; finiteness is checked on log and checkpoint steps only
    (here 1, 2, 4), so it is caught before checkpoint 4 would be written."""
    calls = []
    alignment = losses.alignment_loss

    def nan_in_step_3(aligned: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        calls.append(1)
        value = alignment(aligned, teacher)
        return value * float("nan") if len(calls) == 3 else value

    monkeypatch.setattr(losses, "alignment_loss", nan_in_step_3)
    run = tmp_path / "run"
    with pytest.raises(
        losses.NonFiniteLossError, match=r"in step 3 \(loss nan.*records in it: \[\d+"
    ):
        pretrain(tiny_pretrain_config(store, run, steps=6, log_every=4), progress=False)
    assert checkpoint.latest_checkpoint(run) == checkpoint.step_dir(run, 2)
    assert not checkpoint.step_dir(run, 4).exists()
