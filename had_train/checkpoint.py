"""Checkpoints as `step-NNNNNNN/` folders that count only once their marker is written last.

A checkpoint is written into `step-N.tmp/`, the marker file is written last, and the folder is
renamed into place, so a kill at any moment leaves the previous checkpoint intact. The oldest
complete checkpoints beyond `keep` are purged marker first, so a kill mid-purge never leaves a
"complete" checkpoint with files missing. A full disk is one line naming the space needed.
"""

from __future__ import annotations

import json
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from had_common.checksums import files_sha256
from had_common.errors import HadError
from had_common.files import disk_full_guard

MARKER = "COMPLETE"
TRAINER_STATE = "trainer_state.json"
OPTIMIZER_STATE = "optimizer.pt"
TRAINER_TENSORS = "trainer.pt"
"""RNG states and, with --ema, the averaged weights: what a bit-identical resume needs besides
the model, the optimizer and the step."""
_STEP_DIR = re.compile(r"^step-(\d+)$")
_LEFTOVER = re.compile(r"^step-(\d+)(\.tmp)?$")


class CheckpointError(HadError):
    """A path that is no usable checkpoint: missing, incomplete, or weights that do not load."""


def step_dir(run_dir: Path, step: int) -> Path:
    return Path(run_dir) / f"step-{step:07d}"


def complete_checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    """(step, folder) of every complete checkpoint in a run, oldest first."""
    found = []
    if Path(run_dir).is_dir():
        for child in Path(run_dir).iterdir():
            match = _STEP_DIR.match(child.name)
            if match and (child / MARKER).exists():
                found.append((int(match.group(1)), child))
    return sorted(found)


def latest_checkpoint(run_dir: Path) -> Path | None:
    found = complete_checkpoints(run_dir)
    return found[-1][1] if found else None


def save_checkpoint(
    run_dir: Path,
    step: int,
    model: Any,
    optimizer: torch.optim.Optimizer,
    state: dict[str, Any],
    keep: int,
    tensors: dict[str, Any] | None = None,
) -> Path:
    """Write model (HF folder), optimizer, trainer state (JSON) and trainer tensors (RNG states,
    EMA weights) for `step`; purge old ones."""
    final = step_dir(run_dir, step)
    tmp = final.with_name(final.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        with disk_full_guard(
            tmp,
            f"writing checkpoint step {step}",
            lambda: checkpoint_bytes(model),
            then="free space and rerun with --resume: it continues from the latest checkpoint",
        ):
            model.save_pretrained(tmp)
            torch.save(optimizer.state_dict(), tmp / OPTIMIZER_STATE)
            torch.save(tensors or {}, tmp / TRAINER_TENSORS)
            (tmp / TRAINER_STATE).write_text(json.dumps(state | {"step": step}, indent=2))
            (tmp / MARKER).write_text(f"{step}\n")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)  # half a checkpoint counts for nothing
        raise
    if final.exists():
        _remove(final)
    tmp.rename(final)
    _purge(run_dir, step, keep)
    return final


def _purge(run_dir: Path, step: int, keep: int) -> None:
    """Delete complete checkpoints beyond the newest `keep` (none if keep <= 0) and what killed
    runs left of older steps: unmarked folders (a purge cut short) and `.tmp` folders."""
    complete = complete_checkpoints(run_dir)
    kept = {path for _, path in (complete[-keep:] if keep > 0 else complete)}
    for child in Path(run_dir).iterdir():
        match = _LEFTOVER.match(child.name)
        if match and child.is_dir() and child not in kept and int(match.group(1)) < step:
            _remove(child)


def checkpoint_bytes(model: Any) -> int:
    """About what one checkpoint takes: float32 weights and AdamW's two moments."""
    return 3 * sum(p.numel() * 4 for p in model.parameters())


def _remove(checkpoint: Path) -> None:
    """Delete a checkpoint so that it stops counting first (its marker), whatever kills us."""
    (checkpoint / MARKER).unlink(missing_ok=True)
    shutil.rmtree(checkpoint, ignore_errors=True)


def tidy(run_dir: Path, keep: int) -> None:
    """What killed runs left, removed by the next holder of the run's lock: half-written
    `.tmp` folders, unmarked folders (a purge cut short) and complete checkpoints beyond `keep`."""
    if not Path(run_dir).is_dir():
        return
    complete = complete_checkpoints(run_dir)
    kept = {path for _, path in (complete[-keep:] if keep > 0 else complete)}
    for child in Path(run_dir).iterdir():
        if _LEFTOVER.match(child.name) and child.is_dir() and child not in kept:
            _remove(child)


def load_trainer_state(checkpoint: Path) -> dict[str, Any]:
    return json.loads((Path(checkpoint) / TRAINER_STATE).read_text())


def load_trainer_tensors(checkpoint: Path) -> dict[str, Any]:
    """A checkpoint's RNG states and EMA weights ({} for checkpoints written before them)."""
    path = Path(checkpoint) / TRAINER_TENSORS
    return torch.load(path, weights_only=False) if path.exists() else {}


def rng_states() -> dict[str, Any]:
    """Every random generator a run may draw from: Python, NumPy, torch CPU and CUDA."""
    states = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    """Restore `rng_states()` (missing entries are left as they are)."""
    if "python" in states:
        random.setstate(states["python"])
    if "numpy" in states:
        np.random.set_state(states["numpy"])
    if "torch" in states:
        torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def weights_sha256(checkpoint: Path) -> str:
    """sha256 of a checkpoint's weight file(s), in name order."""
    return files_sha256(Path(checkpoint).glob("*.safetensors"))


def resolve_model_dir(path: Path) -> Path:
    """A run folder (-> its latest complete checkpoint) or a checkpoint folder -> a model folder."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {path}")
    if (path / "zarr.json").exists():
        raise CheckpointError(
            f"{path} is a Zarr store (a `had-cache extract` output?), not a checkpoint: train "
            f"on it with `had-train pretrain --cache {path}` and pass the run folder here"
        )
    if (path / "config.json").exists() and (path / MARKER).exists():
        return path
    latest = latest_checkpoint(path)
    if latest is None:
        raise CheckpointError(
            f"{path} holds no complete checkpoint (no step-*/ folder with a {MARKER} marker); "
            "point --checkpoint at a `had-train pretrain` run folder"
        )
    return latest


def check_encoder_loaded(
    model_dir: Path, loading_info: dict[str, Any], new: str | tuple[str, ...] | None = None
) -> None:
    """Refuse a load in which an encoder weight was missing or re-shaped (`from_pretrained(...,
    output_loading_info=True)`): it would silently start random and report a baseline as if
    it were pretrained. Only the parameters under the prefix(es) `new` (a fresh head) may be new."""
    missing = sorted(
        k for k in loading_info["missing_keys"] if new is None or not k.startswith(new)
    )
    mismatched = sorted(str(k) for k in loading_info.get("mismatched_keys", ()))
    if missing or mismatched:
        bad = missing or mismatched
        raise CheckpointError(
            f"{model_dir}: {len(bad)} encoder weight(s) "
            f"{'missing from' if missing else 'with the wrong shape in'} the checkpoint "
            f"(e.g. {', '.join(bad[:3])}); they would silently start random. "
            "Point at a `had-train pretrain` run or step folder of the same architecture"
        )
