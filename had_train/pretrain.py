"""Pretraining the student from a store, top to bottom.

HAD = alignment (student's visible-group features vs the teacher's) + reconstruction (masked
bases), AdamW, linear warm-up then cosine decay as a pure function of the step, gradient
clipping, a CSV of losses, checkpoints every `save_every` steps and at the end. The teacher is
never loaded: its features come from the store.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from had_cache.errors import ConfigError, HadError
from had_cache.provenance import provenance
from had_cache.runtime import resolve_device
from had_train import checkpoint, losses
from had_train.data import PretrainBatches
from had_train.model import (
    HadStudentConfig,
    HadStudentForPretraining,
    count_parameters,
    parse_mixers,
)
from had_train.ops import mixer_backends
from had_train.schedule import warmup_cosine

CONFIG_FILE = "pretrain_config.json"
LOSSES_FILE = "losses.csv"
PROVENANCE_FILE = "provenance.json"
HELD_OUT_FILE = "held_out.json"
LOSS_COLUMNS = ("step", "loss", "align", "recon", "lr", "grad_norm", "seconds")


@dataclass(frozen=True)
class PretrainConfig:
    """Options of `had-train pretrain`; saved into the run folder and restored by --resume.

    Defaults follow the Caduceus 1k recipe that HAD mirrors (10k steps, batch 1024, lr 8e-3,
    10% warm-up, cosine, weight decay 0.1, clip 1.0); use smaller --batch-size/--steps on a CPU.
    """

    cache: str
    out: str
    preset: str = "paper"
    mixers: str | None = None
    steps: int = 10_000
    batch_size: int = 1024
    grad_accum: int = 1
    lr: float = 8e-3
    min_lr_ratio: float = 0.1
    warmup_frac: float = 0.1
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    align_weight: float = 1.0
    objective: str = "had"
    teacher_layer: int | None = None
    seed: int = 0
    shuffle_chunks: int = 8
    holdout_chunks: int = 0
    workers: int = 0
    save_every: int = 1000
    keep_last: int = 3
    log_every: int = 10
    device: str = "auto"
    precision: str = "fp32"

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


PRECISIONS = {"fp32": None, "bf16": torch.bfloat16}
"""--precision: the autocast dtype of the forward pass (None: plain float32). Weights, optimizer
state and losses stay float32 either way."""

# Options that may differ between the first run and a resume without changing the training.
RESUMABLE_OVERRIDES = ("steps", "save_every", "keep_last", "log_every", "device", "workers")


def lr_at(step: int, cfg: PretrainConfig) -> float:
    """Learning rate for `step`: linear warm-up, then cosine decay to min_lr_ratio * lr."""
    warmup = max(1, int(cfg.warmup_frac * cfg.steps))
    return cfg.lr * warmup_cosine(step, cfg.steps, warmup, cfg.min_lr_ratio)


def validate(cfg: PretrainConfig) -> None:
    for name in ("steps", "batch_size", "grad_accum", "save_every", "log_every"):
        if getattr(cfg, name) <= 0:
            raise ConfigError(
                f"--{name.replace('_', '-')} must be positive, got {getattr(cfg, name)}"
            )
    if cfg.batch_size % cfg.grad_accum:
        raise ConfigError(
            f"--batch-size {cfg.batch_size} is not divisible by --grad-accum {cfg.grad_accum}"
        )
    if cfg.lr <= 0 or cfg.align_weight < 0:
        raise ConfigError("--lr must be positive and --align-weight non-negative")
    if cfg.objective not in losses.OBJECTIVES:
        raise ConfigError(
            f"--objective must be one of {', '.join(losses.OBJECTIVES)}, got {cfg.objective!r}"
        )
    if cfg.precision not in PRECISIONS:
        raise ConfigError(
            f"--precision must be one of {', '.join(PRECISIONS)}, got {cfg.precision!r}"
        )
    student_config(cfg)  # an unknown preset or mixer fails before the store is read


def load_run_config(run_dir: Path) -> PretrainConfig:
    path = Path(run_dir) / CONFIG_FILE
    if not path.exists():
        raise HadError(f"{run_dir} is not a pretraining run (no {CONFIG_FILE}); nothing to resume")
    return PretrainConfig(**json.loads(path.read_text()))


def student_config(cfg: PretrainConfig, hidden_size: int = 1024) -> HadStudentConfig:
    """The preset, with --mixers replacing its stack when given; a bad name is a ConfigError."""
    overrides: dict[str, Any] = {"teacher_hidden_size": hidden_size}
    if cfg.mixers is not None:
        overrides["mixers"] = parse_mixers(cfg.mixers)
    try:
        return HadStudentConfig.from_preset(cfg.preset, **overrides)
    except (KeyError, ValueError) as err:
        given = f"--preset {cfg.preset!r}" + (f" --mixers {cfg.mixers!r}" if cfg.mixers else "")
        raise ConfigError(f"{given}: {err}") from err


def build_model(cfg: PretrainConfig, hidden_size: int) -> HadStudentForPretraining:
    torch.manual_seed(cfg.seed)
    return HadStudentForPretraining(student_config(cfg, hidden_size))


def _open_loss_log(run_dir: Path, resume_step: int) -> tuple[Any, Any]:
    """Open losses.csv for appending, dropping rows logged after the checkpoint we resume from."""
    path = Path(run_dir) / LOSSES_FILE
    rows = []
    if resume_step and path.exists():
        with open(path, newline="") as fh:
            rows = [r for r in csv.DictReader(fh) if int(r["step"]) <= resume_step]
    fh = open(path, "w", newline="")  # noqa: SIM115 - kept open for the whole run
    writer = csv.DictWriter(fh, fieldnames=LOSS_COLUMNS)
    writer.writeheader()
    writer.writerows(rows)
    fh.flush()
    return fh, writer


def pretrain(cfg: PretrainConfig, resume: bool = False, progress: bool = True) -> Path:
    """Train (or resume) the student; returns the final checkpoint folder."""
    validate(cfg)
    run_dir = Path(cfg.out)
    existing = checkpoint.latest_checkpoint(run_dir)
    if existing is not None and not resume:
        raise ConfigError(
            f"{run_dir} already has checkpoints (latest {existing.name}); pass --resume to "
            "continue it or --out for a new run"
        )
    device = resolve_device(cfg.device)
    data = PretrainBatches(
        cfg.cache,
        cfg.batch_size,
        cfg.seed,
        cfg.shuffle_chunks,
        cfg.teacher_layer,
        cfg.holdout_chunks,
    )
    align_w, recon_w = losses.objective_weights(cfg.objective, cfg.align_weight)
    model = build_model(cfg, data.attrs.hidden_size)
    if model.config.group_size * data.attrs.n_tokens != data.attrs.window_bp:
        raise ConfigError(
            f"store groups {data.attrs.k} bases per token, the student {model.config.group_size}"
        )
    model.to(device)
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "embed" not in n]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2 or "embed" in n]
    optimizer = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": cfg.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=cfg.lr,
        betas=(0.9, 0.95),
    )
    start = 0
    if resume and existing is not None:
        state = checkpoint.load_trainer_state(existing)
        model.load_state_dict(HadStudentForPretraining.from_pretrained(existing).state_dict())
        optimizer.load_state_dict(
            torch.load(existing / checkpoint.OPTIMIZER_STATE, map_location=device)
        )
        start = int(state["step"])
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / CONFIG_FILE).write_text(json.dumps(cfg.to_json(), indent=2))
    (run_dir / "store.json").write_text(json.dumps(data.attrs.to_json(), indent=2))
    # One record per start (a resumed run appends), so every command that shaped it is kept.
    starts = json.loads(prov.read_text()) if (prov := run_dir / PROVENANCE_FILE).exists() else []
    record = provenance(
        seeds={"seed": cfg.seed}, inputs={"store_fingerprint": data.attrs.fingerprint()}
    )
    prov.write_text(json.dumps([*starts, record | {"start_step": start}], indent=2))

    tqdm.write(
        f"student: {count_parameters(model.had):,} encoder parameters ({cfg.preset}: "
        f"{','.join(model.config.mixers)}); "
        + " ".join(
            f"{m}={b}" for m, b in mixer_backends(device).items() if m in model.config.mixers
        )
        + f" device={device} precision={cfg.precision}; "
        f"store {data.attrs.n_records:,} records, teacher layer {data.reader.layer} "
        f"width {data.attrs.hidden_size}; objective {cfg.objective}; "
        f"steps {start}->{cfg.steps}"
    )
    log_fh, log = _open_loss_log(run_dir, start)
    micro = cfg.batch_size // cfg.grad_accum
    bar = tqdm(
        total=cfg.steps, initial=start, desc="pretraining", unit="step", disable=not progress
    )
    t0 = time.perf_counter()
    final = existing
    autocast_dtype = PRECISIONS[cfg.precision]
    autocast = torch.autocast(
        device.type, dtype=autocast_dtype or torch.float32, enabled=autocast_dtype is not None
    )
    try:
        model.train()
        for step, batch in zip(
            range(start, cfg.steps), data.iterate(start, cfg.workers), strict=False
        ):
            lr = lr_at(step, cfg)
            for group in optimizer.param_groups:
                group["lr"] = lr
            optimizer.zero_grad(set_to_none=True)
            totals = torch.zeros(3)
            for lo in range(0, cfg.batch_size, micro):
                part = batch.rows(lo, lo + micro).to(device)
                with autocast:
                    out = model(part.seq, part.group_mask)
                align = losses.alignment_loss(out.aligned, part.teacher)
                recon = losses.reconstruction_loss(
                    out.recon_logits, model.reconstruction_targets(part.seq, part.group_mask)
                )
                loss = losses.had_loss(align, recon, align_w, recon_w)
                if not torch.isfinite(loss):
                    raise HadError(
                        f"non-finite loss at step {step} (align {align.item()}, recon "
                        f"{recon.item()}) on records {part.record.tolist()[:8]}...; lower --lr"
                    )
                (loss / cfg.grad_accum).backward()
                totals += torch.stack([loss, align, recon]).detach().cpu() / cfg.grad_accum
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            optimizer.step()
            done = step + 1
            bar.update(1)
            bar.set_postfix(
                loss=f"{totals[0]:.4f}", align=f"{totals[1]:.4f}", recon=f"{totals[2]:.4f}"
            )
            if done % cfg.log_every == 0 or done == cfg.steps or done == start + 1:
                values = (*totals.tolist(), lr, float(grad_norm), time.perf_counter() - t0)
                log.writerow(
                    {"step": done}
                    | {k: f"{v:.6g}" for k, v in zip(LOSS_COLUMNS[1:], values, strict=True)}
                )
                log_fh.flush()
            if done % cfg.save_every == 0 or done == cfg.steps:
                final = checkpoint.save_checkpoint(
                    run_dir, done, model, optimizer, {"config": cfg.to_json()}, cfg.keep_last
                )
    finally:
        bar.close()
        log_fh.close()
    if final is None:
        raise HadError(f"no checkpoint written in {run_dir}")
    if len(data.held_out):
        report = held_out_metrics(model, data, device, micro)
        (run_dir / HELD_OUT_FILE).write_text(json.dumps(report, indent=2) + "\n")
        tqdm.write(
            f"held out: {report['records']} records, alignment cosine "
            f"{report['alignment_cosine']:.4f}, reconstruction accuracy "
            f"{report['reconstruction_accuracy']:.4f}"
        )
    return final


@torch.no_grad()
def held_out_metrics(
    model: HadStudentForPretraining, data: PretrainBatches, device: torch.device, batch_size: int
) -> dict[str, Any]:
    """Both objectives on records never trained on: how well the student matches the teacher
    (mean per-token cosine of its aligned features; R², the share of the teacher features'
    variance around their mean that it explains, which a constant vector cannot game) and how
    well it reconstructs masked bases."""
    was_training = model.training
    model.eval()
    cos_sum = mse_sum = correct = n_bases = n_tokens = 0.0
    width = data.attrs.hidden_size
    t_sum = torch.zeros(width, dtype=torch.float64)
    t_sq = torch.zeros(width, dtype=torch.float64)
    for lo in range(0, len(data.held_out), batch_size):
        part = data.records(data.held_out[lo : lo + batch_size]).to(device)
        out = model(part.seq, part.group_mask)
        cos = torch.nn.functional.cosine_similarity(out.aligned.float(), part.teacher, dim=-1)
        cos_sum += float(cos.sum())
        mse_sum += float(((out.aligned.float() - part.teacher) ** 2).mean(-1).sum())
        n_tokens += cos.numel()
        flat = part.teacher.reshape(-1, width).double().cpu()
        t_sum += flat.sum(0)
        t_sq += (flat**2).sum(0)
        targets = model.reconstruction_targets(part.seq, part.group_mask)
        valid = targets != losses.IGNORE_INDEX
        correct += float((out.recon_logits.argmax(-1) == targets)[valid].sum())
        n_bases += float(valid.sum())
    model.train(was_training)
    total_var = float((t_sq - t_sum**2 / n_tokens).sum())  # sum of squares around the mean
    return {
        "records": len(data.held_out),
        "first_record": int(data.held_out[0]),
        "teacher_layer": data.reader.layer,
        "alignment_cosine": cos_sum / n_tokens,
        "alignment_mse": mse_sum / n_tokens,
        "alignment_r2": 1.0 - mse_sum * width / total_var,
        "reconstruction_accuracy": correct / n_bases,
    }
