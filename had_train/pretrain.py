"""Pretraining the student from a store: setup, one step, save, and the loop that runs them.

HAD = alignment (student's visible-group features vs the teacher's) + reconstruction (masked
bases), AdamW, linear warm-up then cosine decay as a pure function of the step, gradient
clipping, a CSV of losses, checkpoints every `save_every` steps and at the end. The teacher is
never loaded: its features come from the store.

The pieces are separate so that a distributed trainer adds code beside them rather than inside
them: `setup` builds a `Session` (data, model, optimizer, restored state, run files),
`train_step` does one optimizer step on one batch, `save` writes one checkpoint, and `pretrain`
is the loop, top to bottom. Under torchrun or srun the same loop runs on every rank
(`had_train.parallel`): each rank trains on its block of every global batch, and only rank 0
writes run files, checkpoints and logs.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import json
import time
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from had_cache.extract import ExtractConfig
from had_common import distributed
from had_common.device import AUTO, resolve_device
from had_common.distributed import World
from had_common.errors import ConfigError, HadError
from had_common.files import atomic_write_text
from had_common.lock import FileLock
from had_common.provenance import provenance
from had_common.stats import ratio_interval
from had_common.versions import check_readable
from had_train import checkpoint, losses, online, parallel
from had_train.context_model import MAX_K, ContextCounts
from had_train.data import Batch, PretrainBatches
from had_train.model import (
    HadStudentConfig,
    HadStudentForPretraining,
    count_parameters,
    parse_mixers,
)
from had_train.monitor import Monitor
from had_train.online import OnlineBatches
from had_train.ops import mixer_backends
from had_train.optim import WeightEMA, optim_groups
from had_train.runs import default_online_run_dir, default_run_dir
from had_train.schedule import warmup_cosine

CONFIG_FILE = "pretrain_config.json"
LOSSES_FILE = "losses.csv"
PROVENANCE_FILE = "provenance.json"
HELD_OUT_FILE = "held_out.json"
HELD_OUT_WINDOWS_FILE = "held_out_windows.csv"
"""Per held-out window: its record, masked bases scored and predicted right. Two runs on one
store are compared window by window from these (a paired interval: `paired_difference`)."""
USAGE_FILE = "usage.json"
"""How many times the run used each training record (min, mean, max): a replay store's
records are draws meant to be used about once each."""
STORE_FILE = "store.json"
LOCK_FILE = "run.lock"
"""Held while a run trains (`had_common.lock`): a second `pretrain` into the same --out is refused."""
LOSS_COLUMNS = ("step", "loss", "align", "recon", "lr", "grad_norm", "seconds")
CONFIG_VERSION = "1.1"
"""Version of pretrain_config.json (`had_common.versions`); files without one read as 1.0.
1.1: the online-teacher fields (`online_teacher`, `fasta` and the window options)."""
CONFIG_VERSION_KEY = "config_version"


class RunError(HadError):
    """A run folder that cannot be started, resumed or read as asked."""


@dataclass(frozen=True)
class PretrainConfig:
    """Options of `had-train pretrain`; saved into the run folder and restored by --resume.

    Defaults follow the Caduceus 1k recipe that HAD mirrors (10k steps, batch 1024, lr 8e-3,
    10% warm-up, cosine, weight decay 0.1, clip 1.0); use smaller --batch-size/--steps on a CPU.
    """

    cache: str | None  # the store; None with --online-teacher
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
    device: str = AUTO
    precision: str = "fp32"
    ema: float = 0.0
    val_every: int = 0
    # --online-teacher: the teacher in memory and the extraction options it stands in for.
    online_teacher: str | None = None
    fasta: str | None = None
    window_bp: int = ExtractConfig.window_bp
    mask_ratio: float = ExtractConfig.mask_ratio
    contigs: str = ExtractConfig.contigs
    strands: str = ExtractConfig.strands
    max_windows: int | None = None
    chunk_records: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {CONFIG_VERSION_KEY: CONFIG_VERSION, **dataclasses.asdict(self)}

    @classmethod
    def from_json(cls, data: dict[str, Any], where: str) -> PretrainConfig:
        """A saved config of this or an older minor version; fields added since take defaults."""
        fields = dict(data)
        check_readable(
            fields.pop(CONFIG_VERSION_KEY, "1.0"), CONFIG_VERSION, "run config", where, RunError
        )
        unknown = sorted(set(fields) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise RunError(f"{where}: unknown option(s) {', '.join(unknown)} in the run config")
        return cls(**fields)


PRECISIONS = {"fp32": None, "bf16": torch.bfloat16}
"""--precision: the autocast dtype of the forward pass (None: plain float32). Weights, optimizer
state and losses stay float32 either way."""

RESUMABLE_OVERRIDES = (
    "steps",
    "save_every",
    "keep_last",
    "log_every",
    "val_every",
    "device",
    "workers",
)
"""Options that may differ between the first run and a resume without changing the training."""


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
    if cfg.val_every < 0 or (cfg.val_every and not cfg.holdout_chunks):
        raise ConfigError("--val-every K scores held-out records: it needs --holdout-chunks K > 0")
    if not 0.0 <= cfg.ema < 1.0:
        raise ConfigError(f"--ema must be in [0, 1) (0 = off), got {cfg.ema}")
    if cfg.precision not in PRECISIONS:
        raise ConfigError(
            f"--precision must be one of {', '.join(PRECISIONS)}, got {cfg.precision!r}"
        )
    validate_source(cfg)
    student_config(cfg)  # an unknown preset or mixer fails before the store is read


ONLINE_ONLY = (
    "fasta",
    "window_bp",
    "mask_ratio",
    "contigs",
    "strands",
    "max_windows",
    "chunk_records",
)
"""Options that describe the online teacher's windows; a store fixes its own."""


def validate_source(cfg: PretrainConfig) -> None:
    """Exactly one source of batches: a store (--cache) or a teacher in memory
    (--online-teacher with --fasta); the window options belong to the latter only."""
    if (cfg.cache is None) == (cfg.online_teacher is None):
        raise ConfigError(
            "give --cache STORE or --online-teacher TEACHER --fasta FASTA"
            + (", not both" if cfg.cache is not None else "")
        )
    if cfg.online_teacher is not None:
        if cfg.fasta is None:
            raise ConfigError("--online-teacher needs --fasta FASTA (the genome to draw from)")
        if cfg.workers:
            raise ConfigError("--workers reads stores; with --online-teacher pass --workers 0")
        if cfg.chunk_records is not None and cfg.chunk_records <= 0:
            raise ConfigError(f"--chunk-records must be positive, got {cfg.chunk_records}")
        return
    defaults = PretrainConfig(cache=None, out="")
    given = [n for n in ONLINE_ONLY if getattr(cfg, n) != getattr(defaults, n)]
    if given:
        names = ", ".join(f"--{n.replace('_', '-')}" for n in given)
        raise ConfigError(
            f"{names} apply to --online-teacher; a store's windows are fixed when it is extracted"
        )


def load_run_config(run_dir: Path) -> PretrainConfig:
    path = Path(run_dir) / CONFIG_FILE
    if not path.exists():
        raise RunError(f"{run_dir} is not a pretraining run (no {CONFIG_FILE}); nothing to resume")
    return PretrainConfig.from_json(json.loads(path.read_text()), str(path))


def read_config_file(path: Path) -> dict[str, Any]:
    """`--config run.toml`: PretrainConfig fields at the top level (`steps = 10000`,
    `batch-size = 1024` or `batch_size = 1024`, `cache = "hg38.had.zarr"`)."""
    try:
        data = tomllib.loads(Path(path).read_text())
    except FileNotFoundError as err:
        raise ConfigError(f"--config {path}: no such file") from err
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"--config {path}: {err}") from err
    fields = {k.replace("-", "_"): v for k, v in data.items()}
    defaults = {f.name: f.default for f in dataclasses.fields(PretrainConfig)}
    unknown = sorted(set(fields) - set(defaults))
    if unknown:
        raise ConfigError(f"--config {path}: unknown option(s) {', '.join(unknown)}")
    kinds = {int: (int,), float: (int, float), str: (str,)}
    for name, value in fields.items():
        want = kinds.get(type(defaults[name]), (int, str))  # None defaults: an int or a name
        if not isinstance(value, want) or isinstance(value, bool):
            raise ConfigError(f"--config {path}: {name} = {value!r} is not a {want[-1].__name__}")
    return fields


def config_from_options(
    cache: Path | None,
    out: Path | None,
    resume: bool,
    given: Iterable[str],
    config_file: Path | None = None,
    **options: Any,
) -> PretrainConfig:
    """The command line's config: options given on the command line (`given`) win over a
    `--config` file, which wins over the defaults; `--out` defaults to runs/<store name>; with
    `--resume` the run's saved options apply, and of the options the user gave (on the command
    line or in the file) only the ones in RESUMABLE_OVERRIDES may differ from them."""
    given = set(given)
    if config_file is not None:
        from_file = read_config_file(config_file)
        file_cache, file_out = from_file.pop("cache", None), from_file.pop("out", None)
        cache, out = cache or file_cache, out or file_out
        options |= {k: v for k, v in from_file.items() if k not in given}
        given |= set(from_file)
    if cache is None and options.get("online_teacher") is None and resume and out is not None:
        saved = load_run_config(Path(out))  # `--resume --out RUN` alone: the run names its data
        cache = saved.cache
        options |= {"online_teacher": saved.online_teacher, "fasta": saved.fasta}
    if cache is None and options.get("online_teacher") is None:
        raise ConfigError(
            "--cache STORE (or --online-teacher TEACHER --fasta FASTA) is needed, on the "
            "command line or in --config"
        )
    out = Path(out) if out is not None else None
    if cache is not None:
        run_dir = out or default_run_dir(Path(cache))
    else:
        run_dir = out or default_online_run_dir(options.get("fasta") or "")
    cfg = PretrainConfig(
        cache=str(cache) if cache is not None else None, out=str(run_dir), **options
    )
    if not resume:
        return cfg
    saved = load_run_config(run_dir)
    clashes = [
        f"--{n.replace('_', '-')} {getattr(cfg, n)} (run has {getattr(saved, n)})"
        for n in sorted(given - set(RESUMABLE_OVERRIDES))
        if getattr(cfg, n) != getattr(saved, n)
    ]
    if clashes:
        raise ConfigError(f"--resume keeps the run's options; these differ: {', '.join(clashes)}")
    return dataclasses.replace(
        saved,
        cache=cfg.cache if cfg.cache is not None else saved.cache,
        **{n: getattr(cfg, n) for n in given & set(RESUMABLE_OVERRIDES)},
    )


def interrupted_note(run_dir: Path) -> str:
    """What a user reads after Ctrl-C: what is safe on disk and how to continue."""
    latest = checkpoint.latest_checkpoint(Path(run_dir))
    where = f"the latest complete checkpoint is {latest}" if latest else "no checkpoint yet"
    return f"interrupted: {where}; continue with --resume --out {run_dir}"


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


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """The forward pass's precision context: bfloat16 autocast, or nothing for fp32."""
    dtype = PRECISIONS[precision]
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


@dataclass
class Session:
    """Everything one pretraining run holds between steps."""

    cfg: PretrainConfig
    run_dir: Path
    device: torch.device
    data: PretrainBatches | OnlineBatches
    model: HadStudentForPretraining
    optimizer: torch.optim.Optimizer
    start: int  # first step to train (0, or the resumed checkpoint's step)
    latest: Path | None  # the newest complete checkpoint
    align_weight: float
    recon_weight: float
    world: World = World()
    train_model: torch.nn.Module | None = None  # `model`, wrapped in DDP when distributed
    ema: WeightEMA | None = None
    watch: losses.FiniteWatch | None = None
    lock: FileLock | None = None  # the run folder's (rank 0), released by `close`

    def close(self) -> None:
        if self.lock is not None:
            self.lock.release()

    @property
    def micro_batch(self) -> int:
        """Records per forward pass: the global batch split over ranks, then micro-batches."""
        return self.cfg.batch_size // (self.world.world_size * self.cfg.grad_accum)


@dataclass(frozen=True)
class StepResult:
    """One optimizer step as it left the device: this rank's shares of (loss, align, recon)
    and the gradient norm, still tensors, so the hot path never waits for the device."""

    terms: torch.Tensor
    grad_norm: torch.Tensor
    lr: float


@dataclass(frozen=True)
class StepStats:
    """What one optimizer step measured (losses are means over the global batch)."""

    loss: float
    align: float
    recon: float
    lr: float
    grad_norm: float


def setup(cfg: PretrainConfig, resume: bool = False) -> Session:
    """Validate, lock the run folder, open the store, build model and optimizer, restore a
    checkpoint when resuming, and write the run's config, store attributes and provenance.
    The caller releases the lock with `Session.close()` (`pretrain` does)."""
    validate(cfg)
    device = resolve_device(cfg.device)
    world = distributed.init(device)
    device = distributed.device_for(world, device)
    if cfg.batch_size % (world.world_size * cfg.grad_accum):
        raise ConfigError(
            f"--batch-size {cfg.batch_size} is not divisible by {world.world_size} rank(s) x "
            f"--grad-accum {cfg.grad_accum}"
        )
    run_dir = Path(cfg.out)
    if run_dir.exists() and not run_dir.is_dir():
        raise RunError(f"--out {run_dir} is a file; a run is a folder")
    lock = None
    if world.is_main:  # one run per folder; the ranks of one run share it
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
            lock = FileLock(run_dir / LOCK_FILE, "had-train pretrain").acquire()
        except PermissionError as err:
            raise RunError(f"--out {run_dir}: cannot write there ({err.strerror})") from None
    try:
        return _setup(cfg, resume, run_dir, lock, world, device)
    except BaseException:
        if lock is not None:
            lock.release()
        raise


def _setup(
    cfg: PretrainConfig,
    resume: bool,
    run_dir: Path,
    lock: FileLock | None,
    world: World,
    device: torch.device,
) -> Session:
    if resume and world.is_main:
        checkpoint.tidy(run_dir, cfg.keep_last)
    latest = distributed.broadcast_object(checkpoint.latest_checkpoint(run_dir))
    if latest is not None and not resume:
        raise RunError(
            f"{run_dir} already has checkpoints (latest {latest.name}); pass --resume to "
            "continue it or --out for a new run"
        )
    if resume and latest is None and world.is_main:
        tqdm.write(
            f"note: --resume: {run_dir} has no complete checkpoint yet (the run stopped before "
            f"its first save at step {min(cfg.save_every, cfg.steps)}); starting from step 0"
        )
    data = open_batches(cfg, device)
    if resume and latest is not None:
        check_store_fits(run_dir, data.attrs)
    if cfg.objective in losses.SOFT_OBJECTIVES and not data.attrs.has_predictions:
        raise ConfigError(
            f"--objective {cfg.objective} trains on the teacher's predictions, which "
            f"{cfg.cache or 'an --online-teacher run'} does not hold; extract a store with "
            "`had-cache extract --predictions 16`"
        )
    model = build_model(cfg, data.attrs.hidden_size)
    if model.config.group_size * data.attrs.n_tokens != data.attrs.window_bp:
        raise ConfigError(
            f"store groups {data.attrs.k} bases per token, the student {model.config.group_size}"
        )
    model.to(device)
    optimizer = torch.optim.AdamW(
        optim_groups(model, cfg.weight_decay), lr=cfg.lr, betas=(0.9, 0.95)
    )
    ema = WeightEMA(model, cfg.ema) if cfg.ema else None
    start = 0
    if resume and latest is not None:
        model.load_state_dict(HadStudentForPretraining.from_pretrained(latest).state_dict())
        optimizer.load_state_dict(
            torch.load(latest / checkpoint.OPTIMIZER_STATE, map_location=device)
        )
        start = int(checkpoint.load_trainer_state(latest)["step"])
        tensors = checkpoint.load_trainer_tensors(latest)
        checkpoint.set_rng_states(tensors.get("rng", {}))
        if ema is not None and "ema" in tensors:
            ema.load_state_dict(tensors["ema"])
    align_weight, recon_weight = losses.objective_weights(cfg.objective, cfg.align_weight)
    train_model = parallel.wrap(
        model, world, device, find_unused=not (align_weight and recon_weight)
    )
    session = Session(
        cfg,
        run_dir,
        device,
        data,
        model,
        optimizer,
        start,
        latest,
        align_weight,
        recon_weight,
        world,
        train_model,
        ema,
        losses.FiniteWatch(device),
        lock,
    )
    if world.is_main:
        _write_run_files(session)
    return session


def open_batches(cfg: PretrainConfig, device: torch.device) -> PretrainBatches | OnlineBatches:
    """The run's batches: read from the store, or made by the teacher in memory."""
    if cfg.online_teacher is not None:
        return OnlineBatches(
            online.extraction_config(cfg),
            cfg.batch_size,
            cfg.seed,
            cfg.shuffle_chunks,
            cfg.holdout_chunks,
            device,
        )
    return PretrainBatches(
        cfg.cache,
        cfg.batch_size,
        cfg.seed,
        cfg.shuffle_chunks,
        cfg.teacher_layer,
        cfg.holdout_chunks,
    )


STORE_SHAPE = {
    "teacher width": lambda a: a["teacher"]["hidden_size"],
    "window size": lambda a: a["window_bp"],
    "bases per token": lambda a: a["k"],
    "tokens per window": lambda a: a["n_tokens"],
    "masked groups per window": lambda a: a["n_masked"],
}
"""What a resumed run's model and heads were built for: a store must match the run's on all."""


def check_store_fits(run_dir: Path, attrs: Any) -> None:
    """One line before the first step if `attrs` (the store given to --resume) does not fit
    the store the run was started on (its store.json)."""
    path = Path(run_dir) / STORE_FILE
    if not path.exists():
        return
    saved, given = json.loads(path.read_text()), attrs.to_json()
    clashes = [
        f"{what} {shape(given)} (run has {shape(saved)})"
        for what, shape in STORE_SHAPE.items()
        if shape(given) != shape(saved)
    ]
    if clashes:
        raise RunError(
            f"the store does not fit the run in {run_dir}: {', '.join(clashes)}; resume with "
            "the store it was trained on, or start a new run with --out"
        )


def _write_run_files(s: Session) -> None:
    """The run's config, the store's attributes, and one provenance record per start."""
    s.run_dir.mkdir(parents=True, exist_ok=True)
    # Each written aside and renamed: a kill never leaves half a config for --resume to read.
    atomic_write_text(s.run_dir / CONFIG_FILE, json.dumps(s.cfg.to_json(), indent=2))
    atomic_write_text(s.run_dir / STORE_FILE, json.dumps(s.data.attrs.to_json(), indent=2))
    # A resumed run appends, so every command that shaped it is kept.
    prov = s.run_dir / PROVENANCE_FILE
    starts = json.loads(prov.read_text()) if prov.exists() else []
    record = provenance(seeds={"seed": s.cfg.seed}, inputs=s.data.provenance_inputs())
    started = {"start_step": s.start, "world_size": s.world.world_size}
    atomic_write_text(prov, json.dumps([*starts, record | started], indent=2))


def describe(s: Session) -> str:
    """The run in one line: model size and mixers, kernels, device, store, objective, steps."""
    cfg, config = s.cfg, s.model.config
    backends = " ".join(
        f"{m}={b}" for m, b in mixer_backends(s.device).items() if m in config.mixers
    )
    return (
        f"student: {count_parameters(s.model.had):,} encoder parameters ({cfg.preset}: "
        f"{','.join(config.mixers)}); {backends} device={s.device} precision={cfg.precision} "
        f"ranks={s.world.world_size}; "
        f"{s.data.describe()}, teacher layer {s.data.layer} "
        f"width {s.data.attrs.hidden_size}; objective {cfg.objective}; "
        f"steps {s.start}->{cfg.steps}"
    )


def train_step(s: Session, step: int, batch: Batch) -> StepResult:
    """One optimizer step on this rank's block of the global batch (`grad_accum` micro-batches;
    gradients all-reduced after the last). Losses are normalised over the global batch
    (`had_train.parallel`), so the gradient does not depend on the number of ranks."""
    cfg, model = s.cfg, s.train_model
    lr = lr_at(step, cfg)
    for group in s.optimizer.param_groups:
        group["lr"] = lr
    s.optimizer.zero_grad(set_to_none=True)
    masked_bases = cfg.batch_size * s.data.attrs.n_masked * s.data.attrs.k  # global batch
    terms = torch.zeros(3, device=s.device)
    for i, lo in enumerate(range(0, len(batch.record), s.micro_batch)):
        part = batch.rows(lo, lo + s.micro_batch).to(s.device)
        with parallel.sync_gradients(model, sync=i == cfg.grad_accum - 1):
            with autocast(s.device, cfg.precision):
                out = model(part.seq, part.group_mask)
            align = losses.alignment_loss(out.aligned, part.teacher) * (
                s.micro_batch / cfg.batch_size
            )
            targets = s.model.reconstruction_targets(part.seq, part.group_mask)
            if cfg.objective in losses.SOFT_OBJECTIVES:
                recon = losses.soft_reconstruction_loss(out.recon_logits, part.soft, targets, "sum")
            else:
                recon = losses.reconstruction_loss(out.recon_logits, targets, "sum")
            recon = recon / masked_bases
            loss = losses.had_loss(align, recon, s.align_weight, s.recon_weight)
            (loss * s.world.world_size).backward()
        s.watch.observe(step + 1, loss, align, recon, part.record, part.teacher)
        terms += torch.stack([loss, align, recon]).detach()
    grad_norm = torch.nn.utils.clip_grad_norm_(s.model.parameters(), cfg.grad_clip)
    s.optimizer.step()
    if s.ema is not None:
        s.ema.update()
    return StepResult(terms, grad_norm.detach(), lr)


def step_stats(s: Session, result: StepResult) -> StepStats:
    """The step's losses over the global batch (summed over ranks), as numbers, after the
    finite check: called on logging and checkpoint steps only, on every rank."""
    s.watch.check()
    values = distributed.all_reduce_sum(result.terms.detach().float().cpu().clone())
    loss, align, recon = values.tolist()
    return StepStats(loss, align, recon, result.lr, float(result.grad_norm))


def save(s: Session, step: int) -> Path:
    """Checkpoint `step` (model, optimizer, trainer state, RNG states, EMA weights); it counts
    once its marker is written. Every rank calls it; only rank 0 writes."""
    if s.world.is_main:
        tensors = {"rng": checkpoint.rng_states()}
        if s.ema is not None:
            tensors["ema"] = s.ema.state_dict()
        s.latest = checkpoint.save_checkpoint(
            s.run_dir,
            step,
            s.model,
            s.optimizer,
            {"config": s.cfg.to_json()},
            s.cfg.keep_last,
            tensors,
        )
    else:
        s.latest = checkpoint.step_dir(s.run_dir, step)
    return s.latest


EMA_DIR = "ema"


def save_ema(s: Session) -> Path:
    """The averaged weights as a model folder (<run>/ema, with the checkpoint marker, so
    `eval --checkpoint <run>/ema` and `export` take it)."""
    model = HadStudentForPretraining(s.model.config)
    s.ema.copy_to(model)
    folder = s.run_dir / EMA_DIR
    model.save_pretrained(folder)
    state = {"step": s.cfg.steps, "ema_decay": s.cfg.ema, "config": s.cfg.to_json()}
    (folder / checkpoint.TRAINER_STATE).write_text(json.dumps(state, indent=2))
    (folder / checkpoint.MARKER).write_text(f"{s.cfg.steps}\n")
    return folder


class LossLog:
    """losses.csv, one row every log_every steps; a resumed run keeps the rows up to its step."""

    def __init__(self, run_dir: Path, resume_step: int) -> None:
        path = Path(run_dir) / LOSSES_FILE
        rows = []
        if resume_step and path.exists():
            with open(path, newline="") as fh:
                # A kill mid-row leaves a short last row: it is after the checkpoint anyway.
                rows = [
                    r
                    for r in csv.DictReader(fh)
                    if r.get("step", "").isdigit() and int(r["step"]) <= resume_step
                ]
        # Rewritten aside and renamed, then appended to: the rows up to the checkpoint survive
        # a kill at any moment.
        tmp = path.with_name(f".{path.name}.tmp")
        with open(tmp, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=LOSS_COLUMNS)
            writer.writeheader()
            writer.writerows(rows)
        tmp.replace(path)
        self._fh = open(path, "a", newline="")  # noqa: SIM115 - kept open for the whole run
        self._writer = csv.DictWriter(self._fh, fieldnames=LOSS_COLUMNS)

    def write(self, step: int, stats: StepStats, seconds: float) -> None:
        values = (stats.loss, stats.align, stats.recon, stats.lr, stats.grad_norm, seconds)
        row = {k: f"{v:.6g}" for k, v in zip(LOSS_COLUMNS[1:], values, strict=True)}
        self._writer.writerow({"step": step} | row)
        self._fh.flush()

    def close(self) -> None:
        self._fh.close()


def pretrain(cfg: PretrainConfig, resume: bool = False, progress: bool = True) -> Path:
    """Train (or resume) the student; returns the final checkpoint folder. Under torchrun or
    srun every rank runs this and leaves the process group at the end."""
    with distributed.leave_when_done():
        s = setup(cfg, resume)
        try:
            return train(s, progress)
        finally:
            s.close()


def train(s: Session, progress: bool = True) -> Path:
    """The loop: steps, logs, checkpoints, then held-out scoring. Rank 0 alone writes and
    reports; every rank takes part in the collective steps (stats, checks, DDP)."""
    cfg, main = s.cfg, s.world.is_main
    if main:
        tqdm.write(describe(s))
        if s.data.attrs.full_teacher:
            tqdm.write(drift_line(s.data.attrs))
    log = LossLog(s.run_dir, s.start) if main else None
    monitor = Monitor(s.run_dir, s.start, validation=cfg.val_every > 0) if main else None
    bar = tqdm(
        total=cfg.steps,
        initial=s.start,
        desc="pretraining",
        unit="step",
        disable=not (progress and main),
    )
    t0 = t_log = time.perf_counter()
    logged = s.start
    try:
        s.train_model.train()
        batches = s.data.device_batches(
            s.start, cfg.workers, s.world.rank, s.world.world_size, s.device
        )
        for step, batch in zip(range(s.start, cfg.steps), batches, strict=False):
            result = train_step(s, step, batch)
            done = step + 1
            bar.update(1)
            logging = done % cfg.log_every == 0 or done == cfg.steps or done == s.start + 1
            saving = done % cfg.save_every == 0 or done == cfg.steps
            if logging or saving:  # the only host syncs: stats and the finite check
                stats = step_stats(s, result)
            if logging and main:
                now = time.perf_counter()
                rate = (done - logged) * cfg.batch_size / max(now - t_log, 1e-9)
                t_log, logged = now, done
                bar.set_postfix(
                    loss=f"{stats.loss:.4f}", lr=f"{stats.lr:.2e}", windows_s=f"{rate:.1f}"
                )
                log.write(done, stats, now - t0)
                if s.lock is not None:
                    s.lock.refresh()
                monitor.step(done, dataclasses.asdict(stats) | {"windows_per_s": rate})
            if cfg.val_every and done % cfg.val_every == 0 and main:
                monitor.validation(
                    done,
                    held_out_metrics(s.model, s.data, s.device, s.micro_batch, baseline=False),
                )
            if saving:
                save(s, done)
    finally:
        bar.close()
        for closing in (log, monitor):
            if closing is not None:
                closing.close()
    if s.latest is None:
        raise RunError(f"no checkpoint written in {s.run_dir}")
    if s.ema is not None and main:
        save_ema(s)
    if main:
        usage = record_usage(s.data, cfg.steps)
        atomic_write_text(s.run_dir / USAGE_FILE, json.dumps(usage, indent=2) + "\n")
        tqdm.write(
            f"records used: {usage['training_records']:,} training records, each used "
            f"{usage['uses_min']}-{usage['uses_max']} times (mean {usage['uses_mean']:.2f}) "
            f"over {usage['steps']:,} steps of {usage['batch_size']:,}"
        )
    if len(s.data.held_out) and main:
        scores = score_held_out(s.model, s.data, s.device, s.micro_batch)
        scores.write(s.run_dir)
        report = scores.report
        tqdm.write(
            f"held out: {report['records']} records, alignment cosine "
            f"{report['alignment_cosine']:.4f}, reconstruction accuracy "
            f"{report['reconstruction_accuracy']:.4f} (context-count baseline "
            f"{report['context_baseline']['best_accuracy']:.4f}, "
            f"k = {report['context_baseline']['best_k']}{lead_text(report)})"
        )
    return s.latest


def lead_text(report: dict[str, Any]) -> str:
    """The student's lead over the context-count model, for the end-of-run line (or "")."""
    lead = report.get("versus_context")
    if not lead:
        return ""
    low, high = lead["ci95"]
    return (
        f"; the student {lead['difference']:+.4f} over it, 95% CI {low:+.4f} to {high:+.4f} "
        f"over {lead['windows']:,} windows"
    )


def drift_line(attrs: Any) -> str:
    """What a run on an unmasked-teacher store trains towards, said before the first step."""
    if not attrs.drift:
        return (
            "note: unmasked-teacher store: the targets are T(x), not HAD's T(x_masked); its "
            "drift D was not measured (extracted with --drift-windows 0)"
        )
    from had_cache.drift import DriftReport

    return f"note: unmasked-teacher store: {DriftReport.from_json(attrs.drift).summary()}"


def record_usage(data: PretrainBatches | OnlineBatches, steps: int) -> dict[str, Any]:
    """How often steps 0..steps - 1 use each training record (`RecordOrder.usage`)."""
    counts = data.order.usage(steps)
    return {
        "steps": steps,
        "batch_size": data.order.batch_size,
        "training_records": int(len(counts)),
        "uses_min": int(counts.min()),
        "uses_mean": float(counts.mean()),
        "uses_max": int(counts.max()),
        "records_never_used": int((counts == 0).sum()),
    }


@dataclass
class HeldOutScores:
    """`held_out.json`'s report, and the student's masked-base counts per held-out window."""

    report: dict[str, Any]
    records: np.ndarray
    scored: np.ndarray
    correct: np.ndarray

    def write(self, run_dir: Path) -> None:
        atomic_write_text(run_dir / HELD_OUT_FILE, json.dumps(self.report, indent=2) + "\n")
        rows = "".join(
            f"{r},{s},{c}\n"
            for r, s, c in zip(self.records, self.scored, self.correct, strict=True)
        )
        atomic_write_text(run_dir / HELD_OUT_WINDOWS_FILE, "record,scored,correct\n" + rows)


def read_held_out_windows(run_dir: Path) -> dict[str, np.ndarray]:
    """A run's `held_out_windows.csv` as arrays (record, scored, correct)."""
    table = np.loadtxt(Path(run_dir) / HELD_OUT_WINDOWS_FILE, delimiter=",", skiprows=1, ndmin=2)
    return {k: table[:, i].astype(np.int64) for i, k in enumerate(("record", "scored", "correct"))}


def paired_difference(run_a: Path, run_b: Path) -> dict[str, Any]:
    """Masked-base accuracy of run a minus run b on the same held-out bases, with a 95%
    interval over windows (both runs must have scored the same windows of one store)."""
    a, b = read_held_out_windows(run_a), read_held_out_windows(run_b)
    if not (np.array_equal(a["record"], b["record"]) and np.array_equal(a["scored"], b["scored"])):
        raise ConfigError(f"{run_a} and {run_b} were not scored on the same held-out bases")
    return accuracy_difference(a["correct"], b["correct"], a["scored"])


def accuracy_difference(
    correct_a: np.ndarray, correct_b: np.ndarray, scored: np.ndarray
) -> dict[str, Any]:
    """Accuracy of a minus b from per-window counts on the same bases, with its 95% interval
    over windows (delta method, paired)."""
    difference, low, high = ratio_interval(correct_a - correct_b, scored)
    return {"difference": difference, "ci95": [low, high], "windows": len(scored)}


def held_out_metrics(
    model: HadStudentForPretraining,
    data: PretrainBatches | OnlineBatches,
    device: torch.device,
    batch_size: int,
    baseline: bool = True,
) -> dict[str, Any]:
    """`score_held_out`'s report (`held_out.json`; val.csv's columns without `baseline`)."""
    return score_held_out(model, data, device, batch_size, baseline).report


@torch.no_grad()
def score_held_out(
    model: HadStudentForPretraining,
    data: PretrainBatches | OnlineBatches,
    device: torch.device,
    batch_size: int,
    baseline: bool = True,
) -> HeldOutScores:
    """Both objectives on records never trained on: how well the student matches the teacher
    (mean per-token cosine of its aligned features; R², the share of the teacher features'
    variance around their mean that it explains, which a constant vector cannot game) and how
    well it reconstructs masked bases; with `baseline`, also the context-count model's accuracy
    on the same bases and the student's lead over it with a 95% interval over held-out windows
    (`versus_context`: what "clearly beats local base statistics" means)."""
    was_training = model.training
    model.eval()
    cos_sum = mse_sum = correct = teacher_correct = n_bases = n_tokens = 0.0
    correct_by_window, scored_by_window = [], []
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
        hits = (out.recon_logits.argmax(-1) == targets) & valid
        correct += float(hits.sum())
        correct_by_window.append(hits.reshape(len(hits), -1).sum(1).cpu())
        scored_by_window.append(valid.reshape(len(valid), -1).sum(1).cpu())
        if part.soft is not None:  # the teacher's own guess of each masked base
            guess = part.soft.reshape(out.recon_logits.shape).argmax(-1)
            teacher_correct += float((guess == targets)[valid].sum())
        n_bases += float(valid.sum())
    model.train(was_training)
    total_var = float((t_sq - t_sum**2 / n_tokens).sum())  # sum of squares around the mean
    correct_w = torch.cat(correct_by_window).numpy()
    scored_w = torch.cat(scored_by_window).numpy()
    report = (
        {
            "records": len(data.held_out),
            "first_record": int(data.held_out[0]),
            "teacher_layer": data.layer,
            "alignment_cosine": cos_sum / n_tokens,
            "alignment_mse": mse_sum / n_tokens,
            "alignment_r2": 1.0 - mse_sum * width / total_var,
            "reconstruction_accuracy": correct / n_bases,
        }
        | (
            {"teacher_base_accuracy": teacher_correct / n_bases}
            if data.attrs.has_predictions
            else {}
        )
        | (versus_context(data, correct_w, scored_w) if baseline else {})
    )
    return HeldOutScores(report, np.asarray(data.held_out), scored_w, correct_w)


CONTEXT_FIT_RECORDS = 20_000
"""Training records the context-count baseline is fitted on (whole chunks, spread evenly)."""


def context_baseline(
    data: PretrainBatches | OnlineBatches,
) -> tuple[dict[str, Any], tuple[np.ndarray, np.ndarray]]:
    """Masked-base accuracy of context-count models (k = 0..4 bases either side of a hidden
    group, `context_model.ContextCounts`) fitted on training records and scored on the
    held-out ones: the accuracy a student's reconstruction must beat to have learnt more than
    local base statistics. `best` is the best k on the held-out records (generous to it).
    Also the best k's (correct, scored) bases per held-out window, for paired comparisons."""
    seq, mask = data.training_windows(CONTEXT_FIT_RECORDS)
    model = ContextCounts(MAX_K).fit(seq, mask)
    held_seq, held_mask = data.held_out_windows()
    by_k, by_window = {}, {}
    for k in range(MAX_K + 1):
        sub = ContextCounts(k)
        sub.counts = model.counts[: k + 1]
        hits, scored = sub.correct_by_window(held_seq, held_mask)
        by_k[str(k)] = float(hits.sum() / scored.sum())
        by_window[str(k)] = (hits, scored)
    best = max(by_k, key=by_k.get)
    report = {
        "accuracy_by_k": by_k,
        "best_k": int(best),
        "best_accuracy": by_k[best],
        "fit_records": int(seq.shape[0]),
    }
    return report, by_window[best]


def versus_context(
    data: PretrainBatches | OnlineBatches, correct: np.ndarray, scored: np.ndarray
) -> dict[str, Any]:
    """The context-count baseline, and the student's masked-base accuracy minus the baseline's
    on the same held-out bases, with a 95% interval that resamples held-out windows (paired:
    both models are scored on every window). Given per-window (correct, scored) of the
    student, in held-out order."""
    report, (base_correct, base_scored) = context_baseline(data)
    out: dict[str, Any] = {"context_baseline": report}
    if len(scored) == len(base_scored) and np.array_equal(scored, base_scored):
        out["versus_context"] = accuracy_difference(correct, base_correct, scored) | {
            "bases": int(scored.sum())
        }
    return out
