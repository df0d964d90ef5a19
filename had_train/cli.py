"""`had-train`: stage two of HAD, pretraining the student from a store and evaluating it."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import click

from had_cache.errors import ConfigError, HadError, exit_on_had_error
from had_train import checkpoint, losses
from had_train.ablate import ARMS
from had_train.eval.finetune import EVAL_MODES
from had_train.pretrain import (
    PRECISIONS,
    RESUMABLE_OVERRIDES,
    PretrainConfig,
    load_run_config,
    pretrain,
)

RUNS_DIR = Path("runs")
_DEFAULTS = PretrainConfig(cache="", out="")
F = TypeVar("F", bound=Callable[..., object])


def default_run_dir(cache: Path) -> Path:
    """store.had.zarr -> runs/store"""
    return RUNS_DIR / cache.name.removesuffix(".zarr").removesuffix(".had")


def latest_run(runs: Path = RUNS_DIR) -> Path:
    """The run under ./runs whose newest complete checkpoint was written last."""
    candidates = []
    if runs.is_dir():
        for run in runs.iterdir():
            latest = checkpoint.latest_checkpoint(run)
            if latest is not None:
                candidates.append(((latest / checkpoint.MARKER).stat().st_mtime, run))
    if not candidates:
        raise HadError(
            f"no pretraining run with a checkpoint under ./{runs}; pass --checkpoint RUN_DIR "
            "(or --checkpoint none for a no-pretraining baseline)"
        )
    return max(candidates)[1]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Stage two of HAD: pretrain the student from a `had-cache` store, then evaluate it."""


def _d(name: str) -> object:
    return getattr(_DEFAULTS, name)


# The pretraining recipe's options, defined once: `pretrain` takes them all, `ablate` the
# ones its arms share.
RECIPE_OPTIONS = {
    "preset": click.option(
        "--preset",
        default=_d("preset"),
        show_default=True,
        help="Student architecture preset: `paper` (~1.1M-parameter Bi-GDN + attention hybrid) or `tiny` (tests).",
    ),
    "mixers": click.option(
        "--mixers",
        default=None,
        help="Replace the preset's stack, one mixer per block: gdn, mamba or attention, comma-separated (e.g. mamba,mamba,mamba,mamba,attention). [default: the preset's, paper = gdn,gdn,gdn,gdn,attention]",
    ),
    "steps": click.option(
        "--steps",
        type=int,
        default=_d("steps"),
        show_default=True,
        help="Optimizer steps (the paper: 10k).",
    ),
    "batch_size": click.option(
        "--batch-size",
        type=int,
        default=_d("batch_size"),
        show_default=True,
        help="Windows per step (the Caduceus 1k recipe: 1024; use ~16 on a CPU).",
    ),
    "grad_accum": click.option(
        "--grad-accum",
        type=int,
        default=_d("grad_accum"),
        show_default=True,
        help="Split each batch into this many micro-batches to save memory.",
    ),
    "lr": click.option(
        "--lr", type=float, default=_d("lr"), show_default=True, help="Peak learning rate (AdamW)."
    ),
    "warmup_frac": click.option(
        "--warmup-frac",
        type=float,
        default=_d("warmup_frac"),
        show_default=True,
        help="Share of steps for linear warm-up before cosine decay.",
    ),
    "weight_decay": click.option(
        "--weight-decay", type=float, default=_d("weight_decay"), show_default=True
    ),
    "grad_clip": click.option(
        "--grad-clip", type=float, default=_d("grad_clip"), show_default=True
    ),
    "align_weight": click.option(
        "--align-weight",
        "align_weight",
        type=float,
        default=_d("align_weight"),
        show_default=True,
        help="λ: weight of the alignment loss against reconstruction (not published; ours).",
    ),
    "objective": click.option(
        "--objective",
        type=click.Choice(losses.OBJECTIVES),
        default=_d("objective"),
        show_default=True,
        help="had = alignment + reconstruction; mlm = reconstruction only; distill = alignment only (everything else identical, for ablations).",
    ),
    "teacher_layer": click.option(
        "--teacher-layer",
        type=int,
        default=None,
        help="Which stored teacher layer to align to (hidden_states index, negative from the end). [default: the deepest layer in the store]",
    ),
    "seed": click.option(
        "--seed",
        type=int,
        default=_d("seed"),
        show_default=True,
        help="Pretraining seed: initialisation and data order.",
    ),
    "save_every": click.option(
        "--save-every",
        type=int,
        default=_d("save_every"),
        show_default=True,
        help="Checkpoint every K steps (and always at the end).",
    ),
    "keep_last": click.option(
        "--keep-last",
        type=int,
        default=_d("keep_last"),
        show_default=True,
        help="Complete checkpoints to keep.",
    ),
    "log_every": click.option(
        "--log-every",
        type=int,
        default=_d("log_every"),
        show_default=True,
        help="Write a losses.csv row every K steps.",
    ),
    "holdout_chunks": click.option(
        "--holdout-chunks",
        type=int,
        default=_d("holdout_chunks"),
        show_default=True,
        help="Never train on the store's last K chunks; score alignment cosine and reconstruction on them at the end (held_out.json).",
    ),
    "workers": click.option(
        "--workers",
        type=int,
        default=_d("workers"),
        show_default=True,
        help="Loader processes that read and decode the store ahead of training (the batch order does not depend on it).",
    ),
    "precision": click.option(
        "--precision",
        type=click.Choice(list(PRECISIONS)),
        default=_d("precision"),
        show_default=True,
        help="bf16: run the forward pass under bfloat16 autocast (for GPUs; weights, optimizer and losses stay fp32). CPUs without bf16 units run it slower than fp32.",
    ),
    "device": click.option(
        "--device",
        default=_d("device"),
        show_default=True,
        help="auto (cuda if present, else cpu), cpu, cuda, cuda:1, ...",
    ),
}


# How `eval` (and each `ablate` evaluation) uses the encoder.
EVAL_MODE_OPTION = click.option(
    "--mode",
    type=click.Choice(EVAL_MODES),
    default="finetune",
    show_default=True,
    help="finetune = train encoder and head; linear = frozen encoder, logistic regression on its embeddings (fast probe).",
)


def recipe_options(*names: str) -> Callable[[F], F]:
    """Apply RECIPE_OPTIONS[name] for each name, in this order in --help."""

    def apply(command: F) -> F:
        for name in reversed(names):
            command = RECIPE_OPTIONS[name](command)
        return command

    return apply


@main.command("pretrain")
@click.option(
    "--cache",
    type=click.Path(path_type=Path),
    required=True,
    help="Store written by `had-cache extract`.",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=None,
    help="Run folder for checkpoints, losses.csv and configs. [default: runs/<store name>]",
)
@click.option(
    "--resume",
    is_flag=True,
    help="Continue the run in --out from its latest complete checkpoint (its saved options apply; --steps may be raised).",
)
@recipe_options(
    "preset",
    "mixers",
    "steps",
    "batch_size",
    "grad_accum",
    "lr",
    "warmup_frac",
    "weight_decay",
    "grad_clip",
    "align_weight",
    "objective",
    "teacher_layer",
    "seed",
    "save_every",
    "keep_last",
    "log_every",
    "holdout_chunks",
    "workers",
    "precision",
    "device",
)
@click.pass_context
@exit_on_had_error
def pretrain_cmd(
    ctx: click.Context, cache: Path, out: Path | None, resume: bool, **options: object
) -> None:
    """Train the student on a store: alignment to the teacher's visible-group features plus
    reconstruction of the masked bases. The teacher is never loaded."""
    run_dir = out or default_run_dir(cache)
    cfg = PretrainConfig(cache=str(cache), out=str(run_dir), **options)
    if resume:
        saved = load_run_config(run_dir)
        given = {
            name
            for name in options
            if ctx.get_parameter_source(name) is not click.core.ParameterSource.DEFAULT
        }
        clashes = [
            f"--{n.replace('_', '-')} {getattr(cfg, n)} (run has {getattr(saved, n)})"
            for n in sorted(given - set(RESUMABLE_OVERRIDES))
            if getattr(cfg, n) != getattr(saved, n)
        ]
        if clashes:
            raise ConfigError(
                f"--resume keeps the run's options; these differ: {', '.join(clashes)}"
            )
        cfg = dataclasses.replace(
            saved,
            cache=str(cache),
            **{n: getattr(cfg, n) for n in given & set(RESUMABLE_OVERRIDES)},
        )
    try:
        final = pretrain(cfg, resume=resume)
    except KeyboardInterrupt:
        latest = checkpoint.latest_checkpoint(Path(cfg.out))
        where = f"the latest complete checkpoint is {latest}" if latest else "no checkpoint yet"
        click.echo(f"\ninterrupted: {where}; continue with --resume --out {cfg.out}", err=True)
        raise SystemExit(130) from None
    click.echo(f"checkpoint  {final}\nlosses      {Path(cfg.out) / 'losses.csv'}")


@main.command("eval")
@click.option(
    "--checkpoint",
    "checkpoint_path",
    default=None,
    help="Pretraining run folder or step folder; `none` = no pretraining (random init). [default: the latest run under ./runs]",
)
@click.option(
    "--task",
    default="splice",
    show_default=True,
    help="Built-in task name (`splice`: UCI primate splice junctions, 3 classes) or a CSV with `sequence,label` columns.",
)
@click.option(
    "--folds",
    type=int,
    default=0,
    show_default=True,
    help="0 = one stratified train/test split; k >= 2 = stratified k-fold cross-validation.",
)
@click.option(
    "--test-frac",
    type=float,
    default=0.2,
    show_default=True,
    help="Test share of the single split.",
)
@click.option("--epochs", type=int, default=10, show_default=True)
@click.option("--batch-size", type=int, default=64, show_default=True)
@click.option("--lr", type=float, default=1e-3, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--max-len",
    type=int,
    default=None,
    help="Crop longer sequences around their centre. [default: no crop]",
)
@click.option(
    "--preset", default="paper", show_default=True, help="Architecture for --checkpoint none."
)
@click.option(
    "--mixers",
    default=None,
    help="With --checkpoint none: replace the preset's stack (comma-separated gdn, mamba, attention).",
)
@EVAL_MODE_OPTION
@click.option(
    "--attention-window",
    type=int,
    default=None,
    help="Let the attention block attend within blocks of this many bases: linear cost for long sequences, identical for shorter ones; not in the paper. [default: global attention]",
)
@click.option("--no-tsne", is_flag=True, help="Skip the t-SNE figure.")
@click.option("--device", default="auto", show_default=True)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=None,
    help="Folder for results.json and tsne.png. [default: <run>/eval-<task>]",
)
@exit_on_had_error
def eval_cmd(
    checkpoint_path: str | None, out: Path | None, no_tsne: bool, **options: object
) -> None:
    """Fine-tune the student with a classification head on a labelled set; print accuracy, MCC
    and macro-F1, write results.json and a t-SNE PNG of the test-set embeddings."""
    from had_train.eval.finetune import EvalConfig, evaluate
    from had_train.eval.report import format_table

    if checkpoint_path is None:
        model_dir: Path | None = latest_run()
    elif checkpoint_path.lower() == "none":
        model_dir = None
    else:
        model_dir = Path(checkpoint_path)
    task = str(options["task"])
    task_name = Path(task).stem if task.endswith(".csv") else task
    if out is None:
        base = model_dir if model_dir is not None and model_dir.is_dir() else Path("runs/baseline")
        if model_dir is not None and (model_dir / checkpoint.MARKER).exists():
            base = model_dir.parent
        out = base / f"eval-{task_name}"
    cfg = EvalConfig(tsne=not no_tsne, **options)
    results = evaluate(model_dir, cfg, out)
    click.echo(format_table(results))
    click.echo(f"results  {out / 'results.json'}")
    if results.get("tsne"):
        click.echo(f"t-SNE    {out / results['tsne']}")


@main.command("ablate")
@click.option(
    "--cache", type=click.Path(path_type=Path), required=True, help="Store to pretrain on."
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=None,
    help="Folder for the arms' runs, evaluations and the table. [default: runs/ablate-<store>]",
)
@click.option("--task", default="splice", show_default=True, help="Built-in task or CSV.")
@click.option(
    "--arms",
    default=",".join(ARMS),
    show_default=True,
    help="Comma-separated: had, mlm (reconstruction only), distill (alignment only), none (no pretraining).",
)
@click.option("--seeds", default="0,1,2", show_default=True, help="Evaluation seeds.")
@click.option("--folds", type=int, default=5, show_default=True, help="Stratified k-fold.")
@EVAL_MODE_OPTION
@click.option("--epochs", type=int, default=10, show_default=True, help="Fine-tuning epochs.")
@click.option(
    "--eval-batch-size", type=int, default=64, show_default=True, help="Fine-tuning batch size."
)
@click.option(
    "--eval-lr", type=float, default=1e-3, show_default=True, help="Fine-tuning learning rate."
)
@recipe_options("preset", "mixers", "steps", "batch_size", "lr", "align_weight", "teacher_layer")
@click.option(
    "--holdout-chunks",
    type=int,
    default=1,
    show_default=True,
    help="Store chunks no arm trains on; alignment cosine and reconstruction are scored there.",
)
@recipe_options("seed", "save_every", "precision", "device")
@exit_on_had_error
def ablate_cmd(
    cache: Path,
    out: Path | None,
    task: str,
    arms: str,
    seeds: str,
    folds: int,
    mode: str,
    epochs: int,
    eval_batch_size: int,
    eval_lr: float,
    **recipe: object,
) -> None:
    """Pretrain HAD, reconstruction-only and alignment-only students at equal compute (same
    store, steps, batch, seed), evaluate them and a no-pretraining baseline on a task with
    several seeds, and write a table (md, csv, json) and a bar chart."""
    from had_train.ablate import AblationConfig, run_ablation

    try:
        seed_list = tuple(int(s) for s in seeds.split(","))
    except ValueError:
        raise ConfigError(f"--seeds takes comma-separated integers, got {seeds!r}") from None
    cfg = AblationConfig(
        cache=str(cache),
        out=str(out or RUNS_DIR / f"ablate-{default_run_dir(cache).name}"),
        task=task,
        arms=tuple(a.strip() for a in arms.split(",") if a.strip()),
        seeds=seed_list,
        folds=folds,
        mode=mode,
        epochs=epochs,
        eval_batch_size=eval_batch_size,
        eval_lr=eval_lr,
        pretrain=recipe,
    )
    run_ablation(cfg)
    click.echo((Path(cfg.out) / "ablation.md").read_text())
    click.echo(f"table    {Path(cfg.out) / 'ablation.md'} (.csv, .json, .png)")


TESTED = {"torch": "2.13", "transformers": "5.24", "zarr": "3.1"}
"""Versions the test suite ran under (CI); other versions may work but are not tested."""


def _version(module: str) -> str:
    from importlib import import_module

    try:
        return str(getattr(import_module(module), "__version__", "installed"))
    except Exception as err:  # an optional kernel that fails to import for any reason
        return f"not available ({type(err).__name__})"


@main.command("doctor")
@click.option("--device", default="auto", show_default=True)
@exit_on_had_error
def doctor_cmd(device: str) -> None:
    """Print package versions, the device, and which implementation each mixer will use."""
    import platform

    import torch

    from had_cache.runtime import resolve_device
    from had_train.ops import mixer_backends

    dev = resolve_device(device)
    rows = [("python", platform.python_version(), "")]
    for name in ("torch", "transformers", "zarr", "numcodecs", "pyfaidx", "had_cache"):
        rows.append((name, _version(name), f"tested {TESTED[name]}.x" if name in TESTED else ""))
    for name in ("fla", "mamba_ssm", "triton"):
        rows.append((name, _version(name), "optional GPU kernel"))
    gpu = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "no CUDA device"
    rows.append(("device", str(dev), gpu))
    rows += [(f"mixer {m}", b, "") for m, b in mixer_backends(dev).items()]
    w0, w1 = (max(len(r[i]) for r in rows) for i in (0, 1))
    click.echo("\n".join(f"{a:<{w0}}  {b:<{w1}}  {c}".rstrip() for a, b, c in rows))
