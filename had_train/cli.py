"""`had-train`: stage two of HAD, pretraining the student from a store and evaluating it.

Each command parses its options and calls one library function; every default shown in --help is
read from the library's config dataclasses, so it cannot drift from what runs.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
from click.core import ParameterSource

from had_cache.windows import STRAND_CHOICES
from had_common import distributed
from had_common.cli import CONTEXT_SETTINGS, device_option, exit_on_had_error
from had_common.errors import ConfigError
from had_train import losses
from had_train.ablate import ABLATION_HOLDOUT_CHUNKS, AblationConfig
from had_train.embed import EmbedConfig
from had_train.eval.finetune import EVAL_MODES, EvalConfig
from had_train.model.configuration_had import ALLOWED_POOLINGS
from had_train.pretrain import PRECISIONS, PretrainConfig

_DEFAULTS = PretrainConfig(cache="", out="")
_EVAL = EvalConfig()
_ABLATE = AblationConfig(cache="", out="")
SUITE_ONLY_OPTIONS = {
    "tasks",
    "data_dir",
    "replicates",
    "patience",
    "rc_average",
    "teacher",
    "teacher_layer",
    "teacher_finetune",
    "models",
}
F = TypeVar("F", bound=Callable[..., object])


@click.group(context_settings=CONTEXT_SETTINGS)
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
        help="Windows per step over all processes (the global batch; the Caduceus 1k recipe: 1024; use ~16 on a CPU).",
    ),
    "grad_accum": click.option(
        "--grad-accum",
        type=int,
        default=_d("grad_accum"),
        show_default=True,
        help="Split each process's share of the batch into this many micro-batches to save memory (the gradient is the same).",
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
        help="had = alignment + reconstruction; mlm = reconstruction only; distill = alignment only; had-soft = alignment + reconstruction of the teacher's per-base predictions (a store extracted with --predictions K); everything else identical, for ablations.",
    ),
    "teacher_layer": click.option(
        "--teacher-layer",
        type=int,
        default=None,
        help="Which stored teacher layer to align to (hidden_states index, negative from the end); with --online-teacher, the layer the teacher computes. [default: the deepest layer in the store; online: -1, the final layer]",
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
    "ema": click.option(
        "--ema",
        type=float,
        default=_d("ema"),
        show_default=True,
        help="Keep an exponential moving average of the weights with this decay (e.g. 0.999; 0 = off); saved in checkpoints and, at the end, as <run>/ema (a model folder eval and export take).",
    ),
    "val_every": click.option(
        "--val-every",
        type=int,
        default=_d("val_every"),
        show_default=True,
        help="Score the held-out records (alignment cosine and R², masked-base accuracy) every K steps into val.csv (needs --holdout-chunks; 0 = only at the end).",
    ),
    "device": device_option(),
}


# How `eval` (and each `ablate` evaluation) uses the encoder.
EVAL_MODE_OPTION = click.option(
    "--mode",
    type=click.Choice(EVAL_MODES),
    default=_EVAL.mode,
    show_default=True,
    help="finetune = train encoder and head; linear = frozen encoder, logistic regression on its embeddings (fast probe).",
)
POOLING_OPTION = click.option(
    "--pooling",
    type=click.Choice(ALLOWED_POOLINGS),
    default=None,
    help="How the head pools per-base features: mean over the sequence, the centre base (tasks centred on what they label, e.g. splice sites), or learned attention weights. [default: the task's own: center for the built-in splice task, mean (the paper's) elsewhere]",
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
    default=None,
    help="Store written by `had-cache extract`: a folder or an fsspec URL such as s3://bucket/hg38.had.zarr (required, here or in --config, unless --online-teacher is given).",
)
@click.option(
    "--config",
    "config_file",
    type=click.Path(path_type=Path),
    default=None,
    help='A TOML file of these options (steps = 10000, batch-size = 1024, cache = "hg38.had.zarr", ...); options on the command line override it. The resolved options are saved as <run>/pretrain_config.json.',
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=None,
    help="Run folder for checkpoints, losses.csv and configs. [default: runs/<store name>; with --online-teacher runs/online-<fasta name>]",
)
@click.option(
    "--resume",
    is_flag=True,
    help="Continue the run in --out from its latest complete checkpoint (its saved options apply; --steps may be raised).",
)
@click.option(
    "--online-teacher",
    default=None,
    help="Instead of --cache: keep this teacher (hub id, folder or `demo`) in memory and draw a fresh group mask for every window of every step (the paper's recipe; the reference for cache runs). Needs --fasta; the windows, their order and --holdout-chunks are those of the store `had-cache extract` would write with the same options.",
)
@click.option(
    "--fasta",
    default=None,
    help="With --online-teacher: the genome FASTA to train on (`demo` = the embedded chrX slice).",
)
@click.option(
    "--window-bp",
    type=int,
    default=_d("window_bp"),
    show_default=True,
    help="With --online-teacher: window length in bases, as `had-cache extract --window-bp`.",
)
@click.option(
    "--mask-ratio",
    type=float,
    default=_d("mask_ratio"),
    show_default=True,
    help="With --online-teacher: share of 6-mer groups masked per window, as for extraction.",
)
@click.option(
    "--contigs",
    default=_d("contigs"),
    show_default=True,
    help="With --online-teacher: primary, all, or a comma-separated list, as for extraction.",
)
@click.option(
    "--strands",
    type=click.Choice(STRAND_CHOICES),
    default=_d("strands"),
    show_default=True,
    help="With --online-teacher: `both` adds every window's reverse complement, as for extraction.",
)
@click.option(
    "--max-windows",
    type=int,
    default=None,
    help="With --online-teacher: keep this many windows, evenly spread, as for extraction. [default: all]",
)
@click.option(
    "--chunk-records",
    type=int,
    default=None,
    help="With --online-teacher: records per chunk of the equivalent store, the unit of --holdout-chunks, as for extraction. [default: extraction's, ~16 MB of features]",
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
    "val_every",
    "workers",
    "precision",
    "ema",
    "device",
)
@click.pass_context
@exit_on_had_error
def pretrain_cmd(
    ctx: click.Context,
    cache: Path | None,
    out: Path | None,
    resume: bool,
    config_file: Path | None,
    **options: object,
) -> None:
    """Train the student on a store: alignment to the teacher's visible-group features plus
    reconstruction of the masked bases. The teacher is never loaded, except with
    --online-teacher, which computes the features of freshly masked windows every step."""
    from had_train.pretrain import config_from_options, interrupted_note, pretrain

    given = {n for n in options if ctx.get_parameter_source(n) is not ParameterSource.DEFAULT}
    cfg = config_from_options(cache, out, resume, given, config_file, **options)
    try:
        final = pretrain(cfg, resume=resume)
    except KeyboardInterrupt:
        if distributed.is_main():
            click.echo(f"\n{interrupted_note(Path(cfg.out))}", err=True)
        raise SystemExit(130) from None
    if distributed.is_main():
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
    default=_EVAL.task,
    show_default=True,
    help="Built-in task name (`splice`: UCI primate splice junctions, 3 classes) or a CSV with `sequence,label` columns.",
)
@click.option(
    "--folds",
    type=int,
    default=_EVAL.folds,
    show_default=True,
    help="0 = one stratified train/test split; k >= 2 = stratified k-fold cross-validation.",
)
@click.option(
    "--test-frac",
    type=float,
    default=_EVAL.test_frac,
    show_default=True,
    help="Test share of the single split.",
)
@click.option("--epochs", type=int, default=_EVAL.epochs, show_default=True)
@click.option("--batch-size", type=int, default=_EVAL.batch_size, show_default=True)
@click.option("--lr", type=float, default=_EVAL.lr, show_default=True)
@click.option("--seed", type=int, default=_EVAL.seed, show_default=True)
@click.option(
    "--max-len",
    type=int,
    default=None,
    help="Crop longer sequences around their centre. [default: no crop]",
)
@click.option(
    "--preset", default=_EVAL.preset, show_default=True, help="Architecture for --checkpoint none."
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
@POOLING_OPTION
@click.option("--no-tsne", is_flag=True, help="Skip the t-SNE figure.")
@device_option()
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=None,
    help="Folder for results.json and tsne.png. [default: <run>/eval-<task>, runs/baseline/eval-<task> for --checkpoint none; with --tasks: <run>/bench-<tasks>]",
)
@click.option(
    "--tasks",
    default=None,
    help="Run benchmark tasks under their published protocols, with baselines: all, nt, nt-revised, gb, or comma-separated names (H3K4me3, gb/human_nontata_promoters, a CSV path...). See --list-tasks.",
)
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Folder holding the benchmark datasets as `hf download` / genomic-benchmarks leave them (see docs/evaluation.md).",
)
@click.option("--list-tasks", is_flag=True, help="Print the task registry and exit.")
@click.option(
    "--replicates",
    type=int,
    default=None,
    help="With --tasks: replicates per task. [default: the protocol's, 10 seeds / 5 seeds / 10 folds]",
)
@click.option(
    "--patience",
    type=int,
    default=None,
    help="With --tasks: epochs without validation improvement before early stopping. [default: the protocol's]",
)
@click.option(
    "--rc-average",
    is_flag=True,
    help="With --tasks: average each test sequence's predictions with its reverse complement's (off: it hurts splice tasks in published ablations).",
)
@click.option(
    "--teacher",
    default=None,
    help="With --tasks: teacher (hub id, folder or `demo`) whose mean-pooled features are probed as a baseline. [default: not run]",
)
@click.option(
    "--teacher-layer",
    type=int,
    default=-1,
    show_default=True,
    help="With --teacher: hidden_states index of the probed features (-1 = final layer).",
)
@click.option(
    "--teacher-finetune/--no-teacher-finetune",
    default=None,
    help="With --teacher: also fine-tune the teacher itself (a head on those features), same recipe. [default: when it fits the device: up to 20M parameters on a CPU, half the memory on a GPU]",
)
@click.option(
    "--models",
    default=None,
    help="With --tasks: score only these, comma-separated: student, random-init, teacher, teacher-ft, kmer, onehot (e.g. `student` for several checkpoints that share one baseline run). [default: every one that applies]",
)
@click.pass_context
@exit_on_had_error
def eval_cmd(
    ctx: click.Context,
    checkpoint_path: str | None,
    out: Path | None,
    no_tsne: bool,
    list_tasks: bool,
    **options: Any,
) -> None:
    """Fine-tune the student with a classification head on a labelled set; print accuracy, MCC
    and macro-F1, write results.json and a t-SNE PNG of the test-set embeddings.

    With --tasks: every selected benchmark task under its published protocol (splits, seeds,
    early stopping), the student beside a random-init copy of itself, a k-mer logistic
    regression and (with --teacher) the teacher's features, and the published numbers."""
    from had_train.eval.finetune import evaluate
    from had_train.eval.report import format_table
    from had_train.runs import checkpoint_option, default_eval_dir

    if list_tasks:
        from had_train.eval.registry import format_task_list

        click.echo(format_task_list())
        return
    given = {n for n in options if ctx.get_parameter_source(n) is not ParameterSource.DEFAULT}
    model_dir = checkpoint_option(checkpoint_path)
    if options["tasks"] is not None:
        from had_train.eval.suite import run_suite, suite_config_from_options
        from had_train.runs import default_bench_dir

        cfg = suite_config_from_options(given, tsne=not no_tsne, **options)
        out = out or default_bench_dir(model_dir, cfg.tasks)
        run_suite(model_dir, cfg, out, echo=click.echo)
        click.echo((out / "results.md").read_text())
        click.echo(f"results  {out / 'results.json'} (tables: results.md, results.csv)")
        return
    suite_only = given & SUITE_ONLY_OPTIONS
    if suite_only:
        raise ConfigError(
            f"--{sorted(suite_only)[0].replace('_', '-')} applies to --tasks runs; add --tasks"
        )
    for name in SUITE_ONLY_OPTIONS:
        options.pop(name)
    out = out or default_eval_dir(model_dir, options["task"])
    results = evaluate(model_dir, EvalConfig(tsne=not no_tsne, **options), out)
    click.echo(format_table(results))
    click.echo(f"results  {out / 'results.json'}")
    if results.get("tsne"):
        click.echo(f"t-SNE    {out / results['tsne']}")


@main.command("ablate")
@click.option("--cache", required=True, help="Store to pretrain on (a folder or an fsspec URL).")
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=None,
    help="Folder for the arms' runs, evaluations and the table. [default: runs/ablate-<store>]",
)
@click.option("--task", default=_ABLATE.task, show_default=True, help="Built-in task or CSV.")
@click.option(
    "--arms",
    default=",".join(_ABLATE.arms),
    show_default=True,
    help="Comma-separated: had, mlm (reconstruction only), distill (alignment only), had-soft (HAD reconstructing the teacher's per-base predictions; needs a store extracted with --predictions K), none (no pretraining).",
)
@click.option(
    "--seeds",
    default=",".join(map(str, _ABLATE.seeds)),
    show_default=True,
    help="Evaluation seeds.",
)
@click.option(
    "--folds", type=int, default=_ABLATE.folds, show_default=True, help="Stratified k-fold."
)
@EVAL_MODE_OPTION
@POOLING_OPTION
@click.option(
    "--epochs", type=int, default=_ABLATE.epochs, show_default=True, help="Fine-tuning epochs."
)
@click.option(
    "--eval-batch-size",
    type=int,
    default=_ABLATE.eval_batch_size,
    show_default=True,
    help="Fine-tuning batch size.",
)
@click.option(
    "--eval-lr",
    type=float,
    default=_ABLATE.eval_lr,
    show_default=True,
    help="Fine-tuning learning rate.",
)
@recipe_options("preset", "mixers", "steps", "batch_size", "lr", "align_weight", "teacher_layer")
@click.option(
    "--holdout-chunks",
    type=int,
    default=ABLATION_HOLDOUT_CHUNKS,
    show_default=True,
    help="Store chunks no arm trains on; alignment cosine and reconstruction are scored there.",
)
@recipe_options("seed", "save_every", "precision", "device")
@exit_on_had_error
def ablate_cmd(cache: Path, out: Path | None, arms: str, seeds: str, **options: Any) -> None:
    """Pretrain HAD, reconstruction-only and alignment-only students at equal compute (same
    store, steps, batch, seed), evaluate them and a no-pretraining baseline on a task with
    several seeds, and write a table (md, csv, json) and a bar chart."""
    from had_train.ablate import run_ablation

    cfg = AblationConfig.from_options(cache, out, arms, seeds, **options)
    run_ablation(cfg)
    click.echo((Path(cfg.out) / "ablation.md").read_text())
    click.echo(f"table    {Path(cfg.out) / 'ablation.md'} (.csv, .json, .png)")


@main.command("export")
@click.argument("run", type=click.Path(path_type=Path))
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    required=True,
    help="Folder to write the Hugging Face model to (created; must not exist or be empty).",
)
@exit_on_had_error
def export_cmd(run: Path, out: Path) -> None:
    """Write a pretrained student as a self-contained Hugging Face folder (config, encoder
    weights, its code as remote code, a tokenizer, a model card) that loads without had:
    `AutoModel.from_pretrained(DIR, trust_remote_code=True)`."""
    from had_train.export import export_student

    folder = export_student(run, out)
    click.echo(f"exported  {folder}")


@main.command("doctor")
@device_option()
@exit_on_had_error
def doctor_cmd(device: str) -> None:
    """Print package versions, the device, and which implementation each mixer will use."""
    from had_train.doctor import doctor_lines

    click.echo("\n".join(doctor_lines(device)))


_EMBED = EmbedConfig(out=Path())


@main.command("embed")
@click.option(
    "--checkpoint",
    "checkpoint_path",
    default=None,
    help="Pretraining run folder or step folder. [default: the latest run under ./runs]",
)
@click.option(
    "--fasta",
    type=click.Path(path_type=Path),
    default=None,
    help="FASTA (plain, bgzip or gzip; `demo`): each record is one sequence, or with --bed each interval.",
)
@click.option(
    "--bed",
    type=click.Path(path_type=Path),
    default=None,
    help="BED intervals of --fasta to embed, named chrom:start-end (1-based, inclusive).",
)
@click.option(
    "--csv",
    type=click.Path(path_type=Path),
    default=None,
    help="CSV with a `sequence` column (and optionally `name` or `id`).",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    required=True,
    help="X.npy (pooled [N, d] float32 + X.npy.json with names) or X.zarr (pooled, names, lengths, per_base).",
)
@click.option(
    "--per-base",
    is_flag=True,
    help="Also write per-base features [N, L_max, d] float16, zero-padded (.zarr only).",
)
@click.option("--batch-size", type=int, default=_EMBED.batch_size, show_default=True)
@click.option(
    "--max-len",
    type=int,
    default=None,
    help="Crop longer sequences around their centre (attention is global: quadratic in length). [default: no crop]",
)
@click.option(
    "--attention-window",
    type=int,
    default=None,
    help="Let the attention block attend within blocks of this many bases (linear cost for long sequences). [default: the checkpoint's]",
)
@device_option()
@exit_on_had_error
def embed_cmd(checkpoint_path: str | None, **options: Any) -> None:
    """Write the pretrained student's embeddings of FASTA records, BED intervals or CSV rows:
    mean-pooled per sequence and, with --per-base, per base; batched, padding-invariant."""
    from had_train.embed import embed_to_file
    from had_train.runs import checkpoint_option

    attrs = embed_to_file(checkpoint_option(checkpoint_path), EmbedConfig(**options))
    click.echo(
        f"embedded  {attrs['n_sequences']} sequences x {attrs['d_model']} "
        f"from {attrs['checkpoint']}\nwrote     {options['out']}"
    )
