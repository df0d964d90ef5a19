"""`had-cache`: stage one of HAD, teacher features of masked genome windows into a Zarr store."""

from __future__ import annotations

import json
import re
from pathlib import Path

import click

from had_cache import masking, tokenize, windows
from had_cache import teacher as teacher_mod
from had_cache.errors import ConfigError, StoreError, exit_on_had_error
from had_cache.extract import ExtractConfig, extract
from had_cache.gate import GateReport
from had_cache.reader import CacheReader
from had_cache.verify import verify_store


def fasta_path(name: str | Path) -> Path:
    """`demo` names the embedded chrX slice; anything else is a path."""
    return windows.DEMO_FASTA if str(name) == "demo" else Path(name)


def default_store_path(fasta: Path) -> Path:
    """hg38.fa.gz -> ./hg38.had.zarr"""
    stem = re.sub(r"\.(fa|fasta|fna)(\.gz|\.bgz)?$", "", fasta.name, flags=re.IGNORECASE)
    return Path(f"{stem}.had.zarr")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Stage one of HAD: run the teacher once over masked genome windows and cache its features.

    The store written by `extract` is what `had-train pretrain --cache STORE` trains from, so the
    teacher never needs to sit in memory during training.
    """


@main.command("extract")
@click.option(
    "--fasta",
    required=True,
    help="Genome FASTA (.fa, bgzip .fa.gz or plain-gzip .fa.gz, decompressed once to ~/.cache/had); `demo` = the embedded 9.5 Mb slice of human chrX (GRCh37).",
)
@click.option(
    "--teacher",
    default=teacher_mod.PAPER_TEACHER,
    show_default=True,
    help="Hugging Face hub id or local folder of an NT-vocabulary masked LM; `demo` = the small embedded teacher.",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=None,
    help="Store to write or resume. [default: ./<fasta name>.had.zarr]",
)
@click.option(
    "--window-bp",
    default=1020,
    show_default=True,
    help="Window length in bases; a multiple of 6 so every teacher token is a whole 6-mer (1,020 bp = 170 tokens, the ~1 kb windows of the paper's recipe).",
)
@click.option(
    "--mask-ratio",
    default=0.15,
    show_default=True,
    help="Share of 6-mer groups masked per window (rounded half up; exactly the same count in every window).",
)
@click.option(
    "--seed",
    default=0,
    show_default=True,
    help="Mask seed; the mask of record i depends only on (seed, i).",
)
@click.option(
    "--layer",
    type=int,
    default=None,
    help="Teacher hidden_states index to store: -1 = final layer after the final layer norm (the paper's choice), 0 = embeddings, negative counts from the end. [default: -1]",
)
@click.option(
    "--layers",
    default=None,
    help="Several layers to store, comma-separated (e.g. 10,20,-1), one features array each; training picks one with --teacher-layer.",
)
@click.option(
    "--batch-size", default=16, show_default=True, help="Windows per teacher forward pass."
)
@click.option(
    "--device",
    default="auto",
    show_default=True,
    help="auto (cuda if present, else cpu), cpu, cuda, cuda:1, ...",
)
@click.option(
    "--dtype",
    default="auto",
    show_default=True,
    help="Teacher precision: auto (bfloat16 on GPU, float32 on CPU), float32, bfloat16, float16. Stored features are float16.",
)
@click.option(
    "--max-windows",
    type=int,
    default=None,
    help="Keep this many windows, evenly spread over the genome. [default: all]",
)
@click.option(
    "--contigs",
    default="primary",
    show_default=True,
    help="`primary` (chr1-22, X, Y when the FASTA has them, else all), `all`, or a comma-separated list.",
)
@click.option(
    "--strands",
    type=click.Choice(["forward", "both"]),
    default="forward",
    show_default=True,
    help="`both` also caches every window's reverse complement as its own record.",
)
@click.option(
    "--chunk-records",
    type=int,
    default=None,
    help="Records per Zarr chunk. [default: ~16 MB of teacher features]",
)
@click.option(
    "--revision", default=None, help="Hub revision (branch, tag or commit) of the teacher."
)
@click.option(
    "--trust-remote-code/--no-trust-remote-code",
    default=True,
    show_default=True,
    help="Allow the checkpoint's own modeling code (NT v2 checkpoints need it).",
)
@click.option(
    "--min-teacher-accuracy",
    type=float,
    default=0.003,
    show_default=True,
    help="Teacher gate floor: masked-6-mer accuracy on held-out human DNA below which extraction refuses the teacher (random weights score ~0.0002). 0 skips the floor.",
)
@click.option(
    "--overwrite", is_flag=True, help="Replace an existing store at --out instead of resuming it."
)
@exit_on_had_error
def extract_cmd(
    fasta: str, out: Path | None, layer: int | None, layers: str | None, **options: object
) -> None:
    """Tile a genome into windows, mask 6-mer groups, run the teacher, write a Zarr store.

    Windows containing N are skipped. Rerunning the same command resumes an interrupted store.
    """
    path = fasta_path(fasta)
    cfg = ExtractConfig(
        fasta=path,
        out=out or default_store_path(path),
        layers=parse_layers(layer, layers),
        **options,
    )
    summary = extract(cfg)
    click.echo("\n".join(summary.lines()))


def parse_layers(layer: int | None, layers: str | None) -> tuple[int, ...]:
    """`--layer N` or `--layers a,b,c` (not both) -> hidden_states indices; default (-1,)."""
    if layer is not None and layers is not None:
        raise ConfigError("give --layer or --layers, not both")
    if layers is None:
        return (-1 if layer is None else layer,)
    try:
        parsed = tuple(int(x) for x in layers.split(",") if x.strip())
    except ValueError:
        raise ConfigError(f"--layers takes comma-separated integers, got {layers!r}") from None
    if not parsed:
        raise ConfigError("--layers needs at least one layer")
    return parsed


@main.command("inspect")
@click.argument("store", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the store's full attributes as JSON.")
@exit_on_had_error
def inspect_cmd(store: Path, as_json: bool) -> None:
    """Summarise a store: teacher, windows, shapes, completeness."""
    reader = CacheReader(store, require_complete=False)
    a = reader.attrs
    if as_json:
        click.echo(json.dumps(a.to_json(), indent=2))
        return
    click.echo(
        "\n".join(
            [
                f"store      {store} ({'complete' if a.complete else 'INCOMPLETE'})",
                f"teacher    {a.teacher.name_or_path} "
                f"layer{'s' if len(a.teacher.layers) > 1 else ''} "
                f"{', '.join(map(str, a.teacher.layers))} of 0..{a.teacher.num_layers} "
                f"(hidden {a.hidden_size})",
                f"records    {a.n_records:,} windows of {a.window_bp} bp "
                f"({a.n_tokens} tokens, {a.n_masked} masked), strands {a.strands}",
                f"fasta      {a.fasta.path}",
                "gate       "
                + (GateReport(**a.teacher_gate).summary() if a.teacher_gate else "not recorded"),
                f"chunks     {a.n_chunks} x {a.chunk_records} records",
            ]
        )
    )


REGION = re.compile(r"^(?P<contig>[^:]+):(?P<start>[\d,]+)-(?P<end>[\d,]+)$")


@main.command("tokenize")
@click.option("--seq", default=None, help="A DNA sequence to tokenize.")
@click.option(
    "--fasta",
    type=click.Path(path_type=Path),
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
@click.option("--mask-ratio", default=0.15, show_default=True)
@exit_on_had_error
def tokenize_cmd(
    seq: str | None,
    fasta: Path | None,
    region: str | None,
    seed: int | None,
    record: int,
    mask_ratio: float,
) -> None:
    """Show how the teacher tokenizes a sequence: each token, its id, the bases it covers, and
    (with --seed) whether the group mask of record --record hides it."""
    offset = 0
    if (seq is None) == (region is None):
        raise ConfigError("give either --seq or --fasta with --region")
    if region is not None:
        if fasta is None:
            raise ConfigError("--region needs --fasta")
        match = REGION.match(region)
        if not match:
            raise ConfigError(f"--region {region!r} is not contig:start-end")
        contig = match["contig"]
        start, end = (int(match[k].replace(",", "")) for k in ("start", "end"))
        genome = windows.open_fasta(fasta_path(fasta))
        if contig not in set(genome.keys()):
            raise ConfigError(f"contig {contig!r} is not in {fasta}")
        if not 1 <= start <= end <= len(genome[contig]):
            raise ConfigError(f"--region {region} is outside {contig} (1-{len(genome[contig])})")
        seq, offset = genome[contig][start - 1 : end], start - 1
    tokens = tokenize.tokenize(seq)
    masked = (
        masking.group_mask(seed, record, len(tokens), mask_ratio)
        if seed is not None and len(tokens) > 1
        else [False] * len(tokens)
    )
    click.echo(f"{'#':>5}  {'token':<7} {'id':>5}  {'bases (1-based)':<19} masked")
    for i, (tok, hidden) in enumerate(zip(tokens, masked, strict=True)):
        span = f"{offset + tok.start + 1}-{offset + tok.end}"
        click.echo(
            f"{i:>5}  {tokenize.VOCAB[tok.id]:<7} {tok.id:>5}  {span:<19} {'MASK' if hidden else ''}"
        )
    click.echo(
        f"{len(tokens)} tokens over {len(seq)} bases"
        + (
            f"; {int(sum(masked))} masked (seed {seed}, record {record})"
            if seed is not None
            else ""
        )
    )


@main.command("verify")
@click.argument("store", type=click.Path(path_type=Path))
@click.option(
    "--recompute",
    type=int,
    default=16,
    show_default=True,
    help="Records to re-run through the teacher, drawn at random.",
)
@click.option(
    "--min-cosine",
    type=float,
    default=0.99,
    show_default=True,
    help="Fail if any checked record's cosine similarity is below this.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Which records are drawn.")
@click.option(
    "--teacher",
    default=None,
    help="Teacher to compare against. [default: the one recorded in the store]",
)
@click.option("--device", default="auto", show_default=True)
@click.option("--dtype", default="auto", show_default=True)
@exit_on_had_error
def verify_cmd(
    store: Path,
    recompute: int,
    min_cosine: float,
    seed: int,
    teacher: str | None,
    device: str,
    dtype: str,
) -> None:
    """Re-run the teacher on random stored records and compare with the cached features."""
    report = verify_store(store, recompute, seed, device, dtype, teacher)
    click.echo("\n".join(report.lines()))
    layer, worst, cosine = report.worst
    if cosine < min_cosine:
        raise StoreError(
            f"record {worst} has cosine {cosine:.4f} < {min_cosine} at teacher layer {layer}: "
            "the store does not match its teacher (other weights, layer or masking?)"
        )
    click.echo("ok: the store matches its teacher")
