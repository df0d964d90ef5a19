"""`had-cache`: stage one of HAD, teacher features of masked genome windows into a Zarr store.

Each command parses its options and calls one library function; every default shown in --help is
read from the library (`ExtractConfig`, `verify`, `masking`), so it cannot drift from what runs.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from had_cache import codecs, schema, teacher, verify, windows
from had_cache.drift import DriftConfig, drift
from had_cache.explain import explain_tokens
from had_cache.extract import ExtractConfig, extract
from had_cache.plan import make_plan
from had_cache.reader import is_url
from had_cache.writer import finalize_store
from had_common.cli import CONTEXT_SETTINGS, device_option, exit_on_had_error

F = TypeVar("F", bound=Callable[..., Any])
_DEFAULTS = ExtractConfig(fasta=Path(), out=Path())


def _d(name: str) -> object:
    return getattr(_DEFAULTS, name)


@click.group(context_settings=CONTEXT_SETTINGS)
def main() -> None:
    """Stage one of HAD: run the teacher once over masked genome windows and cache its features.

    The store written by `extract` is what `had-train pretrain --cache STORE` trains from, so the
    teacher never needs to sit in memory during training.
    """


_RECIPE = [
    click.option(
        "--fasta",
        required=True,
        help="Genome FASTA (.fa, bgzip .fa.gz or plain-gzip .fa.gz, decompressed once to ~/.cache/had); `demo` = the embedded 9.5 Mb slice of human chrX (GRCh37). `plan` and --dry-run read only its index, and take a .fai file alone.",
    ),
    click.option(
        "--teacher",
        default=_d("teacher"),
        show_default=True,
        help="Hugging Face hub id or local folder of an NT-vocabulary masked LM; `demo` = the small embedded teacher.",
    ),
    click.option(
        "--window-bp",
        default=_d("window_bp"),
        show_default=True,
        help="Window length in bases; a multiple of 6 so every teacher token is a whole 6-mer (1,020 bp = 170 tokens, the ~1 kb windows of the paper's recipe).",
    ),
    click.option(
        "--mask-ratio",
        default=_d("mask_ratio"),
        show_default=True,
        help="Share of 6-mer groups masked per window (rounded half up; exactly the same count in every window).",
    ),
    click.option(
        "--seed",
        default=_d("seed"),
        show_default=True,
        help="Mask seed; the mask of record i depends only on (seed, i).",
    ),
    click.option(
        "--layer",
        type=int,
        default=None,
        help=f"Teacher hidden_states index to store: -1 = final layer after the final layer norm (the paper's choice), 0 = embeddings, negative counts from the end. [default: {','.join(map(str, teacher.DEFAULT_LAYERS))}]",
    ),
    click.option(
        "--layers",
        default=None,
        help="Several layers to store, comma-separated (e.g. 10,20,-1), one features array each; training picks one with --teacher-layer.",
    ),
    click.option(
        "--max-windows",
        type=int,
        default=None,
        help="Keep this many windows, evenly spread over the genome. [default: all]",
    ),
    click.option(
        "--contigs",
        default=_d("contigs"),
        show_default=True,
        help="`primary` (chr1-22, X, Y when the FASTA has them, else all; no chrM, chrUn_*, *_random), `all`, or a comma-separated list.",
    ),
    click.option(
        "--strands",
        type=click.Choice(windows.STRAND_CHOICES),
        default=_d("strands"),
        show_default=True,
        help="`both` also caches every window's reverse complement as its own record (in a replay store each draw's strand is a coin flip instead).",
    ),
    click.option(
        "--stride",
        type=int,
        default=None,
        help="Bases between the starts of consecutive windows; less than --window-bp makes them overlap. [default: --window-bp, no overlap]",
    ),
    click.option(
        "--bed",
        type=click.Path(path_type=Path),
        default=None,
        help="BED file of regions (0-based, end exclusive): windows are tiled from each region's start and lie wholly inside it (overlapping regions are merged). [default: whole contigs]",
    ),
    click.option(
        "--chunk-records",
        type=int,
        default=None,
        help="Records per Zarr chunk, the unit a reader decodes at once. [default: ~16 MB of teacher features]",
    ),
    click.option(
        "--shard-chunks",
        type=int,
        default=None,
        help="Chunks per shard, the unit one process writes whole, marks done and resumes (one file per shard and array). [default: ~256 MB of teacher features]",
    ),
    click.option(
        "--predictions",
        type=int,
        default=_d("predictions"),
        show_default=True,
        help="Also store the teacher's predictions at each masked group: its top K 6-mers with their probabilities and the exact per-base marginals (~K x 4 + 48 bytes per masked group), the soft targets of `had-train pretrain --objective had-soft`. 0 = off.",
    ),
    click.option(
        "--revision", default=None, help="Hub revision (branch, tag or commit) of the teacher."
    ),
    click.option(
        "--codec",
        type=click.Choice(codecs.CODEC_NAMES),
        default=_d("codec"),
        show_default=True,
        help="How teacher features are stored: fp16 (the reference, exact), int8 (a fixed Hadamard or seeded random rotation, then int8 with a float32 scale per token: half the bytes), pca-int8 (a PCA basis of --pca-dim directions fitted on a sample of windows before the run, then rotation and int8). Training decodes on the device; the store records the codec's measured round-trip error.",
    ),
    click.option(
        "--pca-dim",
        type=int,
        default=None,
        help="Directions kept by --codec pca-int8 (e.g. 256 of NTv2-500M's 1,024: ~37 kB per 1,020-bp record).",
    ),
    click.option(
        "--stochastic-rounding",
        is_flag=True,
        help="int8 codecs: round up or down at random (seeded) so the stored value is an unbiased estimate of the feature (the expected MSE gradient is then exact).",
    ),
    click.option(
        "--codec-sample",
        type=int,
        default=_d("codec_sample"),
        show_default=True,
        help="Windows (spread over the store) the teacher runs on before the first shard: PCA is fitted on 3 of every 4, the codec's round-trip error and explained variance measured on the 4th.",
    ),
    click.option(
        "--records",
        type=int,
        default=None,
        help="Replay store of N records: record i is a draw (window, offset 0..stride-1, strand if --strands both, group mask), a pure function of (--seed, i); draws of one window are consecutive records. [default: one record per window]",
    ),
    click.option(
        "--records-per-window",
        type=int,
        default=None,
        help="Replay store of K draws of every window (instead of --records N).",
    ),
    click.option(
        "--teacher-input",
        type=click.Choice(schema.TEACHER_INPUTS),
        default=_d("teacher_input"),
        show_default=True,
        help="masked: the teacher reads each record's masked window (HAD). full: one pass on the unmasked window, every token's features stored, masks drawn at training time; its drift D from the masked teacher is measured and stored.",
    ),
    click.option(
        "--drift-windows",
        type=int,
        default=_d("drift_windows"),
        show_default=True,
        help="--teacher-input full: windows on which D is measured (all if the store has fewer); 0 skips it.",
    ),
    click.option(
        "--hidden-size",
        type=int,
        default=None,
        help="Plan only: the teacher's width, where its config is not available here. [default: from the teacher's config]",
    ),
    click.option(
        "--train-batch-size",
        type=int,
        default=_d("train_batch_size"),
        show_default=True,
        help="Plan only: records per training step, for the loader's bytes per step (the paper's 1,024).",
    ),
    click.option(
        "--tokens-per-second",
        type=float,
        default=None,
        help="Plan only: the teacher's measured throughput per GPU (tokens/s). [default: an estimate from the teacher's FLOPs per token, said as such]",
    ),
    click.option(
        "--gpus",
        default=_d("gpus"),
        show_default=True,
        help="Plan only: GPU counts to give the teacher's wall-clock hours for, comma-separated.",
    ),
]


def _recipe_options(func: F) -> F:
    """The options that define a store (shared by `extract` and `plan`)."""
    for option in reversed(_RECIPE):
        func = option(func)
    return func


@main.command("extract")
@click.option(
    "--out",
    default=None,
    help="Store to write or resume: a folder, or any fsspec URL (s3://bucket/hg38.had.zarr, gs://..., file:///...; the filesystem's package, e.g. s3fs, must be installed). [default: ./<fasta name>.had.zarr]",
)
@click.option(
    "--batch-size",
    default=_d("batch_size"),
    show_default=True,
    help="Windows per teacher forward pass.",
)
@device_option()
@click.option(
    "--dtype",
    type=click.Choice([teacher.AUTO_DTYPE, *teacher.DTYPES]),
    default=_d("dtype"),
    show_default=True,
    help="Teacher precision: auto (bfloat16 on GPU, float32 on CPU). Stored features are float16.",
)
@click.option(
    "--shard",
    default=None,
    help="This process's share as r/R (0 <= r < R) for job arrays without a launcher; under torchrun or srun the rank is read from the environment. Ranks share one store and write disjoint shards; the last to finish marks it complete. [default: the launcher's rank, else 0/1]",
)
@click.option(
    "--workers",
    default=_d("workers"),
    show_default=True,
    help="Threads that read windows, draw masks and tokenise ahead of the teacher (0: on the teacher's thread).",
)
@click.option(
    "--write-queue",
    default=_d("write_queue"),
    show_default=True,
    help="Whole shards that may wait for the background writer (bounds host memory: each is one shard of every array).",
)
@click.option(
    "--trust-remote-code/--no-trust-remote-code",
    default=_d("trust_remote_code"),
    show_default=True,
    help="Allow the checkpoint's own modeling code (NT v2 checkpoints need it).",
)
@click.option(
    "--min-teacher-accuracy",
    type=float,
    default=_d("min_teacher_accuracy"),
    show_default=True,
    help="Teacher gate floor: masked-6-mer accuracy on held-out human DNA below which extraction refuses the teacher (random weights score ~0.0002). 0 skips the floor.",
)
@click.option(
    "--overwrite",
    is_flag=True,
    help="Replace an existing store at --out instead of resuming it (only a had-cache store is ever deleted).",
)
@click.option(
    "--dry-run",
    is_flag=True,
    help="Print the plan (`had-cache plan`: windows, records, tokens, bytes, GPU-hours, from the FASTA's index alone) and stop.",
)
@click.option(
    "--no-space-check",
    "space_check",
    flag_value=False,
    default=True,
    help="Start even when the disk under a local --out has less free space than the store's estimated size.",
)
@_recipe_options
@exit_on_had_error
def extract_cmd(**options: object) -> None:
    """Tile a genome into windows, mask 6-mer groups, run the teacher, write a Zarr store.

    Windows containing N (or another IUPAC code) are skipped; soft-masked bases read as upper
    case. Rerunning the same command resumes an interrupted store. Run it under
    `torchrun --nproc-per-node G -m had_cache extract ...`, `srun`, or as R processes with
    `--shard r/R`: each takes its own shards of the one store.
    """
    cfg = ExtractConfig.from_options(**options)  # type: ignore[arg-type]
    if cfg.dry_run:
        click.echo("\n".join(make_plan(cfg).lines()))
        return
    click.echo("\n".join(extract(cfg).lines()))


@main.command("plan")
@_recipe_options
@exit_on_had_error
def plan_cmd(**options: object) -> None:
    """What `extract` with these options will cost, in seconds and before anything runs:
    windows, records, teacher tokens, bytes on disk, the loader's bytes per training step and
    the teacher's GPU-hours. Reads only the FASTA's index (--fasta may name the .fai itself)
    and --bed; the teacher's config, not its weights (or --hidden-size)."""
    cfg = ExtractConfig.from_options(**options)  # type: ignore[arg-type]
    click.echo("\n".join(make_plan(cfg).lines()))


@main.command("finalize")
@click.argument("store")
@exit_on_had_error
def finalize_cmd(store: str) -> None:
    """Mark a store complete once every shard is written (the last rank of a sharded run does
    this itself; use it when that rank was killed after its shards, e.g. in a job array)."""
    attrs = finalize_store(_store(store))
    click.echo(f"complete: {store} ({attrs.n_records:,} windows in {attrs.n_shards:,} shards)")


def _store(store: str) -> Path | str:
    """A store argument: an fsspec URL stays a string, anything else is a local path."""
    return store if is_url(store) else Path(store)


@main.command("inspect")
@click.argument("store")
@click.option("--json", "as_json", is_flag=True, help="Print the store's full attributes as JSON.")
@exit_on_had_error
def inspect_cmd(store: str, as_json: bool) -> None:
    """Summarise a store: teacher, windows, shapes, completeness."""
    click.echo("\n".join(verify.describe_store(_store(store), as_json)))


@main.command("tokenize")
@click.option("--seq", default=None, help="A DNA sequence to tokenize.")
@click.option(
    "--fasta",
    default=None,
    help="FASTA to read --region from (`demo` = the embedded slice).",
)
@click.option(
    "--region",
    default=None,
    help="contig:start-end, 1-based inclusive (e.g. chrX_15000001_24500000:1-60).",
)
@click.option(
    "--seed",
    type=int,
    default=None,
    help="Mark the groups this mask seed would hide (with --record and --mask-ratio).",
)
@click.option(
    "--record", type=int, default=0, show_default=True, help="Record index whose mask to show."
)
@click.option("--mask-ratio", default=_d("mask_ratio"), show_default=True)
@exit_on_had_error
def tokenize_cmd(**options: object) -> None:
    """Show how the teacher tokenizes a sequence: each token, its id, the bases it covers, and
    (with --seed) whether the group mask of record --record hides it."""
    click.echo("\n".join(explain_tokens(**options)))  # type: ignore[arg-type]


@main.command("verify")
@click.argument("store")
@click.option(
    "--recompute",
    type=int,
    default=None,
    help=f"Also re-run the teacher on this many records drawn at random and compare (e.g. {verify.DEFAULT_RECOMPUTE}). [default: integrity only, no teacher]",
)
@click.option(
    "--min-cosine",
    type=float,
    default=verify.DEFAULT_MIN_COSINE,
    show_default=True,
    help="With --recompute: fail if any checked record's cosine similarity is below this (or NaN).",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Which records are drawn.")
@click.option(
    "--teacher",
    default=None,
    help="Teacher to compare against. [default: the one recorded in the store]",
)
@device_option()
@click.option(
    "--dtype",
    type=click.Choice([teacher.AUTO_DTYPE, *teacher.DTYPES]),
    default=teacher.AUTO_DTYPE,
    show_default=True,
    help="Teacher precision for the recomputation.",
)
@click.option(
    "--repair",
    is_flag=True,
    help="Clear the done markers of the shards holding damaged chunks, so rerunning the same `extract` rewrites them.",
)
@exit_on_had_error
def verify_cmd(
    store: str, min_cosine: float, recompute: int | None, repair: bool, **options: object
) -> None:
    """Read every chunk of a store and check it (present, checksum, shape, finite values,
    masks, bases); with --recompute, also re-run the teacher on random records and compare."""
    store = _store(store)  # type: ignore[assignment]
    integrity = verify.check_integrity(store)
    click.echo("\n".join(integrity.lines()))
    if repair and integrity.bad_shards:
        shards = verify.repair_marks(store, integrity)
        click.echo(
            f"repaired         {len(shards)} shard(s) holding damaged chunks marked for "
            f"re-extraction ({', '.join(map(str, shards[:10]))}); rerun the same "
            "`had-cache extract` command"
        )
        return
    integrity.check()
    if recompute is None:
        click.echo("ok: every chunk is present, intact and finite")
        return
    report = verify.verify_store(store, recompute=recompute, **options)  # type: ignore[arg-type]
    click.echo("\n".join(report.lines()))
    report.check(min_cosine)
    click.echo("ok: every chunk is intact and the store matches its teacher")


_DRIFT = DriftConfig(fasta=Path())


@main.command("drift")
@click.option(
    "--fasta",
    required=True,
    help="Genome FASTA to draw windows from (`demo` = the embedded chrX slice).",
)
@click.option(
    "--teacher",
    default=_DRIFT.teacher,
    show_default=True,
    help="Hugging Face hub id or local folder of an NT-vocabulary masked LM; `demo` = the small embedded teacher.",
)
@click.option(
    "--windows",
    "n_windows",
    type=int,
    default=_DRIFT.windows,
    show_default=True,
    help="Windows drawn uniformly from the FASTA's window table (the unit of the confidence interval).",
)
@click.option(
    "--seed",
    type=int,
    default=_DRIFT.seed,
    show_default=True,
    help="Which windows are drawn and their group masks.",
)
@click.option(
    "--window-bp",
    type=int,
    default=_DRIFT.window_bp,
    show_default=True,
    help="Window length (a multiple of 6).",
)
@click.option(
    "--mask-ratio",
    type=float,
    default=_DRIFT.mask_ratio,
    show_default=True,
    help="Share of 6-mer groups masked per window, as extraction masks them.",
)
@click.option(
    "--layer",
    type=int,
    default=_DRIFT.layer,
    show_default=True,
    help="Teacher hidden_states index (-1 = final layer after the final layer norm).",
)
@click.option("--contigs", default=_DRIFT.contigs, show_default=True, help="As for `extract`.")
@click.option(
    "--strands",
    type=click.Choice(windows.STRAND_CHOICES),
    default=_DRIFT.strands,
    show_default=True,
    help="As for `extract`: `both` draws from both strands.",
)
@click.option(
    "--batch-size",
    type=int,
    default=_DRIFT.batch_size,
    show_default=True,
    help="Windows per teacher pass.",
)
@device_option()
@click.option(
    "--dtype",
    type=click.Choice([teacher.AUTO_DTYPE, *teacher.DTYPES]),
    default=_DRIFT.dtype,
    show_default=True,
    help="Teacher precision: auto (bfloat16 on GPU, float32 on CPU).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON on stdout.")
@exit_on_had_error
def drift_cmd(n_windows: int, as_json: bool, fasta: str, **options: object) -> None:
    """Measure how far the teacher's features of visible tokens move when it also sees the
    masked groups: D = E||T(x_masked)_v - T(x)_v||^2 / E||T(x)_v - mean||^2, with a 95% interval
    over windows. The figure that decides whether one unmasked teacher pass per window (masks
    drawn at training time) is an acceptable stand-in for HAD's masked-input targets."""
    cfg = DriftConfig(
        fasta=windows.fasta_path(fasta), windows=n_windows, progress=not as_json, **options
    )
    report = drift(cfg)  # type: ignore[arg-type]
    click.echo(json.dumps(report.to_json(), indent=2) if as_json else report.summary())
