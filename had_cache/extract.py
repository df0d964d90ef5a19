"""Orchestrate stage one: plan windows, load the teacher, then fill this rank's shards.

Every check that needs only the options, the FASTA (its index and window table) and the
teacher's config runs before the teacher's weights are loaded (seconds for the demo teacher,
minutes for NTv2-500M), and the window plan is printed then; the teacher is loaded and gated
before anything is written, so a bad `--teacher` never leaves a half store behind.

Ranks: under torchrun or srun (RANK/WORLD_SIZE, SLURM_PROCID/SLURM_NTASKS) or with `--shard r/R`
(job arrays, no launcher), every process plans the same window list and takes its own
contiguous range of shards; no process group is needed (a crashed rank never hangs the
others), the store is created once under a setup lock and the last rank to finish marks it
complete. Each shard: windows read, masked and tokenised ahead in threads, the teacher run
batch by batch, the visible tokens' features gathered into the shard, the whole shard handed
to the writer thread (`pipeline.py`). A crash loses at most the shards in flight; the same
command resumes.
"""

from __future__ import annotations

import dataclasses
import functools
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

import had_cache
from had_cache import codecs, dna, gate, masking, predictions, schema, tokenize, windows
from had_cache import teacher as teacher_mod
from had_cache.pipeline import BackgroundWriter, Batch, Prefetcher, ShardBuffer
from had_cache.reader import Location, StoreLike, is_url, read_attrs
from had_cache.schema import StoreError
from had_cache.writer import (
    StoreWriter,
    check_target,
    check_writable_version,
    lock_store,
    store_state,
)
from had_common import device as device_rule
from had_common import distributed
from had_common.checksums import file_sha256
from had_common.distributed import World
from had_common.errors import ConfigError
from had_common.files import DiskFullError
from had_common.provenance import provenance

FEATURES_TORCH_DTYPE = getattr(torch, schema.TEACHER_DTYPE.name)
"""The stored feature dtype (schema.TEACHER_DTYPE) as torch names it: features are cast on the
device, so only stored-size bytes cross to the host."""


def default_store_path(fasta: Path) -> Path:
    """hg38.fa.gz -> ./hg38.had.zarr"""
    stem = re.sub(r"\.(fa|fasta|fna)(\.gz|\.bgz)?$", "", Path(fasta).name, flags=re.IGNORECASE)
    return Path(f"{stem}.had.zarr")


@dataclass(frozen=True)
class ExtractConfig:
    """Options of `had-cache extract` (see its --help for the reasons behind each default)."""

    fasta: Path
    out: StoreLike
    teacher: str = teacher_mod.PAPER_TEACHER
    window_bp: int = 1020
    mask_ratio: float = masking.DEFAULT_RATIO
    seed: int = 0
    layers: tuple[int, ...] = teacher_mod.DEFAULT_LAYERS
    batch_size: int = 16
    device: str = device_rule.AUTO
    dtype: str = teacher_mod.AUTO_DTYPE
    max_windows: int | None = None
    contigs: str = windows.CONTIG_CHOICES[0]
    strands: str = windows.STRAND_CHOICES[0]
    chunk_records: int | None = None
    shard_chunks: int | None = None
    stride: int | None = None
    bed: Path | None = None
    shard: str | None = None
    workers: int = 2
    write_queue: int = 2
    predictions: int = predictions.DEFAULT_TOP_K
    revision: str | None = None
    trust_remote_code: bool = True
    min_teacher_accuracy: float = gate.DEFAULT_MIN_ACCURACY
    overwrite: bool = False
    progress: bool = True
    codec: str = "fp16"
    pca_dim: int | None = None
    stochastic_rounding: bool = False
    codec_sample: int = 256
    records: int | None = None
    records_per_window: int | None = None
    teacher_input: str = schema.TEACHER_INPUTS[0]
    drift_windows: int = 1000
    space_check: bool = True
    dry_run: bool = False
    train_batch_size: int = 1024
    tokens_per_second: float | None = None
    gpus: str = "1,8,64"
    hidden_size: int | None = None

    @property
    def replay(self) -> bool:
        """True if the store holds replay records (draws of loci) rather than the tiling."""
        return self.records is not None or (self.records_per_window or 1) > 1

    @property
    def max_offset(self) -> int:
        """Replay draws shift a locus's window by 0..stride - 1 bases (the tiling's gap, so the
        draws cover the genome evenly); the tiling itself is never shifted."""
        return (self.stride or self.window_bp) - 1 if self.replay else 0

    @classmethod
    def from_options(
        cls,
        fasta: str | Path,
        out: str | Path | None = None,
        layer: int | None = None,
        layers: str | None = None,
        **options: object,
    ) -> ExtractConfig:
        """The command line's form: `demo` names the embedded FASTA, `--out` defaults to
        ./<fasta name>.had.zarr (a URL stays a URL), and `--layer`/`--layers` become one tuple."""
        path = windows.fasta_path(fasta)
        return cls(
            fasta=path,
            out=default_store_path(path) if out is None else out if is_url(out) else Path(out),
            layers=teacher_mod.parse_layers(layer, layers),
            **options,  # type: ignore[arg-type]
        )


def resolve_world(shard: str | None) -> World:
    """This process's rank and world size: `--shard r/R`, else the launcher's variables
    (torchrun, srun), else one process. `--shard` under a launcher must agree with it."""
    launched = distributed.world_from_env()
    if shard is None:
        return launched
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", shard)
    if not match or not 0 <= int(match[1]) < int(match[2]):
        raise ConfigError(f"--shard takes r/R with 0 <= r < R (e.g. 0/8), got {shard!r}")
    rank, size = int(match[1]), int(match[2])
    if launched.distributed and (launched.rank, launched.world_size) != (rank, size):
        raise ConfigError(
            f"--shard {rank}/{size} disagrees with the launcher, which says rank "
            f"{launched.rank} of {launched.world_size}; drop --shard under torchrun or srun"
        )
    return World(rank, size, launched.local_rank)


@dataclass(frozen=True)
class ExtractSummary:
    store: str
    windows: int
    written_windows: int
    teacher_tokens: int
    skipped_n_windows: int
    bytes_on_disk: int
    seconds: float
    skipped_ambiguous_windows: int = 0
    world: World = field(default_factory=World)
    shards: range = range(0)
    complete: bool = True
    shards_left: int = 0

    def lines(self) -> list[str]:
        ambiguous, n = self.skipped_ambiguous_windows, self.skipped_n_windows
        skipped = f"{n - ambiguous:,} skipped for N"
        if ambiguous:
            skipped += f", {ambiguous:,} for other IUPAC ambiguity codes"
        lines = [
            f"store            {self.store}"
            + ("" if self.complete else f" (incomplete: {self.shards_left:,} shard(s) to go)"),
            f"windows          {self.windows:,} ({self.written_windows:,} written this run, "
            f"{skipped})",
            f"teacher tokens   {self.teacher_tokens:,}",
            f"bytes on disk    {self.bytes_on_disk / 1e6:,.1f} MB",
            f"seconds          {self.seconds:,.1f}",
        ]
        if self.world.distributed:
            owned = f"{self.shards.start}-{self.shards.stop - 1}" if self.shards else "none"
            lines.append(
                f"rank             {self.world.rank} of {self.world.world_size} (shards {owned})"
                + (
                    "; the store is complete"
                    if self.complete
                    else "; the last rank to finish marks the store complete"
                )
            )
        return lines


def plan_lines(
    cfg: ExtractConfig,
    table: windows.WindowTable,
    attrs: schema.StoreAttrs,
    world: World,
) -> list[str]:
    """The window plan, printed before the teacher loads: what will be extracted, what was
    skipped and why, and this rank's share."""
    ambiguous = table.skipped_ambiguous
    skipped = f"{table.skipped_n - ambiguous:,} with N"
    if ambiguous:
        skipped += f", {ambiguous:,} with other IUPAC ambiguity codes"
    where = f"{len(table.contigs)} contig(s)"
    if cfg.bed is not None:
        where += f", inside the regions of {cfg.bed}"
    stride = cfg.stride or cfg.window_bp
    what = f"{attrs.n_records:,} windows"
    if attrs.is_replay:
        what = (
            f"{attrs.n_records:,} replay records, drawn from {attrs.replay['loci']:,} windows "
            f"with offsets 0-{attrs.replay['max_offset']:,},"
        )
    lines = [
        f"plan             {what} of {attrs.window_bp:,} bp "
        f"(stride {stride:,}, strands {cfg.strands}) on {where}",
        f"                 {attrs.n_records * attrs.n_tokens:,} teacher tokens, "
        f"{attrs.n_masked} of {attrs.n_tokens} masked per window; skipped {skipped}"
        + (f"; --max-windows kept {cfg.max_windows:,}" if cfg.max_windows else ""),
        f"                 {attrs.n_shards:,} shard(s) of {attrs.shard_records:,} records "
        f"({attrs.shard_chunks} chunk(s) of {attrs.chunk_records:,}) per array",
    ]
    if world.distributed:
        share = attrs.rank_shards(world.rank, world.world_size)
        records = sum(len(range(attrs.n_records)[attrs.shard_slice(s)]) for s in share)
        owned = f"shards {share.start}-{share.stop - 1}" if share else "no shard"
        lines.append(
            f"rank             {world.rank} of {world.world_size}: {owned} ({records:,} windows)"
        )
    return lines


def directory_bytes(path: StoreLike | Location) -> int:
    return Location(path).nbytes()


def extract(cfg: ExtractConfig) -> ExtractSummary:
    """Run stage one end to end (this rank's share of it); resumable; returns what was done."""
    t0 = time.perf_counter()
    # Everything that needs no teacher weights, cheapest first.
    world = resolve_world(cfg.shard)
    n_tokens, n_masked = _check_options(cfg)
    where = Location(cfg.out)
    if world.distributed and cfg.overwrite:
        lock_store(where, cfg.overwrite, world)  # raises: ranks cannot --overwrite
    check_target(where, cfg.overwrite)
    device = distributed.device_for(world, device_rule.resolve_device(cfg.device))
    dtype = teacher_mod.resolve_dtype(cfg.dtype, device)
    config = teacher_mod.load_config(cfg.teacher, cfg.revision, cfg.trust_remote_code)
    if config is not None:
        _check_window_fits(cfg, n_tokens, teacher_mod.max_tokens(config))
        info = teacher_mod.teacher_info(cfg.teacher, config, dtype, cfg.layers, cfg.revision)
    fasta = windows.open_fasta(cfg.fasta)  # builds the .fai once, before any thread reads
    table = plan_table(fasta, cfg)
    fasta_sha256 = file_sha256(Path(cfg.fasta))
    if config is not None:
        planned = store_attrs(cfg, table, info, None, n_tokens, n_masked, fasta_sha256)
        _check_resumable(cfg, where, planned)
        check_space(cfg, where, planned)
    out_existed = where.local is None or where.local.exists()
    lock = lock_store(where, cfg.overwrite, world)  # a second writer is refused before the weights
    if config is not None and cfg.progress:
        tqdm.write("\n".join(plan_lines(cfg, table, planned, world)))
    try:
        # The expensive part: weights, gate, then the store.
        teacher, report = _gated_teacher(cfg, n_tokens, device, dtype)
        if config is None:
            check_space(
                cfg,
                where,
                store_attrs(cfg, table, teacher.info, None, n_tokens, n_masked, fasta_sha256),
            )
    except BaseException:
        lock.release()
        if not out_existed and store_state(where) == "absent":
            shutil.rmtree(where.local, ignore_errors=True)  # only the folder made for the lock
        raise
    attrs = store_attrs(cfg, table, teacher.info, report, n_tokens, n_masked, fasta_sha256)
    prepare = functools.partial(prepare_store, cfg, table, teacher)
    with StoreWriter.open_or_create(
        where, attrs, table, cfg.overwrite, lock, world, prepare
    ) as writer:
        attrs = writer.attrs  # the store's own (a resumed store keeps its attributes)
        if cfg.progress:
            tqdm.write("\n".join(codec_lines(attrs)))
        pending = writer.pending_shards()
        n_pending = sum(len(range(attrs.n_records)[attrs.shard_slice(s)]) for s in pending)
        # Closed on any error too, so the one-line error starts a line of its own.
        with tqdm(
            total=n_pending,
            desc="extracting" if not world.distributed else f"extracting (rank {world.rank})",
            unit="win",
            disable=not cfg.progress,
            smoothing=0.05,
        ) as bar:
            extract_shards(cfg.fasta, table, teacher, writer, pending, cfg, bar)
        complete = writer.finalize()
        left = 0 if complete else len(writer.all_pending_shards())
    return ExtractSummary(
        store=str(where),
        windows=attrs.n_records,
        written_windows=n_pending,
        teacher_tokens=n_pending * n_tokens,
        skipped_n_windows=table.skipped_n,
        skipped_ambiguous_windows=table.skipped_ambiguous,
        bytes_on_disk=directory_bytes(where),
        seconds=time.perf_counter() - t0,
        world=world,
        shards=attrs.rank_shards(world.rank, world.world_size),
        complete=complete,
        shards_left=left,
    )


def extract_shards(
    fasta: Path,
    table: windows.WindowTable,
    teacher: teacher_mod.Teacher,
    writer: StoreWriter,
    shards: list[int],
    cfg: ExtractConfig,
    bar: tqdm | None = None,
) -> None:
    """Fill `shards`: inputs prefetched in threads, the teacher on this thread, each whole
    shard handed to the writer thread. A batch's features are copied to the host after the
    next batch was launched, so an accelerator never waits for that copy."""
    attrs = writer.attrs
    spans = [
        (lo, min(lo + cfg.batch_size, rows.stop))
        for rows in map(attrs.shard_slice, shards)
        for lo in range(rows.start, rows.stop, cfg.batch_size)
    ]
    prefetch = Prefetcher(fasta, table, attrs, cfg.workers)
    buffer: ShardBuffer | None = None
    Landing = tuple[Batch, dict[int, torch.Tensor], predictions.MaskedPredictions | None]
    with BackgroundWriter(writer, cfg.write_queue) as background:

        def land(batch: Batch, out: dict[int, torch.Tensor], preds: object) -> None:
            nonlocal buffer
            if buffer is None or not buffer.holds(batch):
                buffer = ShardBuffer(attrs, batch.lo // attrs.shard_records)
            feats = {layer: v.cpu().numpy() for layer, v in out.items()}
            if buffer.add(batch, feats, preds):  # type: ignore[arg-type]
                background.put(buffer.shard())
                buffer = None
            if bar is not None:
                bar.update(batch.hi - batch.lo)

        in_flight: Landing | None = None
        for batch in prefetch.batches(spans, depth=max(2, 2 * cfg.workers)):
            if attrs.full_teacher:  # one unmasked pass, every token kept
                features, preds = teacher.features(batch.token_ids), None
            else:
                features, preds = teacher.encode(
                    batch.seq, batch.mask, attrs.prediction_top_k, token_ids=batch.token_ids
                )
            out = {layer: v.to(FEATURES_TORCH_DTYPE) for layer, v in features.items()}
            if in_flight is not None:
                land(*in_flight)
            in_flight = (batch, out, preds)
        if in_flight is not None:
            land(*in_flight)


def _check_options(cfg: ExtractConfig) -> tuple[int, int]:
    """(tokens, masked tokens) per window, or a ConfigError before anything is loaded."""
    for name in ("batch_size", "chunk_records", "shard_chunks", "stride", "write_queue"):
        value = getattr(cfg, name)
        if value is not None and value <= 0:
            raise ConfigError(f"--{name.replace('_', '-')} must be positive, got {value}")
    if cfg.workers < 0:
        raise ConfigError(f"--workers must be 0 or more, got {cfg.workers}")
    if not 0 <= cfg.predictions <= predictions.N_KMERS:
        raise ConfigError(
            f"--predictions takes 0 (off) to {predictions.N_KMERS} 6-mers, got {cfg.predictions}"
        )
    n_tokens = dna.groups_per_window(cfg.window_bp)
    if not 0.0 < cfg.mask_ratio < 1.0:
        raise ConfigError(f"--mask-ratio must be between 0 and 1, got {cfg.mask_ratio}")
    check_recipe(cfg)
    return n_tokens, masking.n_masked(n_tokens, cfg.mask_ratio)


def check_recipe(cfg: ExtractConfig) -> None:
    """The codec, replay and teacher-input options agree with each other (before anything
    is read): one-line ConfigErrors."""
    if cfg.codec not in codecs.CODEC_NAMES:
        raise ConfigError(
            f"--codec must be one of {', '.join(codecs.CODEC_NAMES)}, got {cfg.codec!r}"
        )
    if (cfg.codec == "pca-int8") != (cfg.pca_dim is not None):
        raise ConfigError(
            "--codec pca-int8 needs --pca-dim R"
            if cfg.pca_dim is None
            else f"--pca-dim applies to --codec pca-int8, not {cfg.codec}"
        )
    if cfg.pca_dim is not None and cfg.pca_dim <= 0:
        raise ConfigError(f"--pca-dim must be positive, got {cfg.pca_dim}")
    if cfg.stochastic_rounding and cfg.codec == "fp16":
        raise ConfigError("--stochastic-rounding applies to --codec int8 or pca-int8, not fp16")
    if cfg.codec_sample <= 0:
        raise ConfigError(f"--codec-sample must be positive, got {cfg.codec_sample}")
    if cfg.records is not None and cfg.records_per_window is not None:
        raise ConfigError("pass --records N or --records-per-window K, not both")
    for name in ("records", "records_per_window", "train_batch_size"):
        value = getattr(cfg, name)
        if value is not None and value <= 0:
            raise ConfigError(f"--{name.replace('_', '-')} must be positive, got {value}")
    if cfg.tokens_per_second is not None and cfg.tokens_per_second <= 0:
        raise ConfigError(f"--tokens-per-second must be positive, got {cfg.tokens_per_second}")
    if cfg.teacher_input not in schema.TEACHER_INPUTS:
        raise ConfigError(
            f"--teacher-input must be one of {', '.join(schema.TEACHER_INPUTS)}, "
            f"got {cfg.teacher_input!r}"
        )
    if cfg.teacher_input == "full" and cfg.predictions:
        raise ConfigError(
            "--predictions needs the masked teacher (its guesses at the masked groups); "
            "pass --predictions 0 with --teacher-input full"
        )
    if cfg.drift_windows == 1 or cfg.drift_windows < 0:
        raise ConfigError(f"--drift-windows takes 0 (skip) or 2 or more, got {cfg.drift_windows}")


def plan_table(fasta: object, cfg: ExtractConfig) -> windows.WindowTable:
    """The records to extract: the tiling of the FASTA, or (replay) draws from its loci, each
    locus clean over its window and the largest offset after it."""
    loci = windows.plan_windows(
        fasta,
        cfg.window_bp,
        cfg.contigs,
        "forward" if cfg.replay else cfg.strands,
        cfg.max_windows,
        cfg.progress,
        stride=cfg.stride,
        bed=cfg.bed,
        extra_bp=cfg.max_offset,
    )
    if not cfg.replay:
        return loci
    n = cfg.records if cfg.records is not None else len(loci) * (cfg.records_per_window or 1)
    return windows.replay_table(loci, n, cfg.seed, cfg.max_offset, cfg.strands == "both")


def check_space(cfg: ExtractConfig, where: Location, attrs: schema.StoreAttrs) -> None:
    """Refuse to start when the disk under a local --out has less free space than the store
    still needs (`had_cache.plan`'s estimate, less what a resumed store already holds)."""
    from had_cache.plan import disk_free, estimate_bytes

    if not cfg.space_check or where.local is None:
        return
    held = where.nbytes() if where.local.exists() else 0
    needed = max(0, estimate_bytes(attrs).total - held)
    free = disk_free(where.local)
    if free < needed:
        raise DiskFullError(
            f"--out {where}: the store needs about {needed / 1e9:,.2f} GB more "
            f"(`had-cache extract --dry-run` shows the estimate) but only {free / 1e9:,.2f} GB "
            "are free there; free space, choose another --out, or pass --no-space-check"
        )


def sample_records(n_records: int, limit: int) -> np.ndarray:
    """`limit` records spread evenly over the store (all of them if fewer)."""
    return np.unique(np.linspace(0, n_records - 1, min(limit, n_records)).round().astype(np.int64))


def _sample_features(
    cfg: ExtractConfig,
    table: windows.WindowTable,
    teacher: teacher_mod.Teacher,
    attrs: schema.StoreAttrs,
    records: np.ndarray,
) -> dict[int, np.ndarray]:
    """The features the store will hold for `records` (float32, as the teacher gave them)."""
    fasta = windows.open_fasta(cfg.fasta)
    seq = windows.read_windows(fasta, table, records, attrs.window_bp)
    mask = masking.group_masks(attrs.mask_seed, records, attrs.n_tokens, attrs.mask_ratio)
    parts: dict[int, list[np.ndarray]] = {layer: [] for layer in attrs.teacher.layers}
    for lo in range(0, len(records), cfg.batch_size):
        s, m = seq[lo : lo + cfg.batch_size], mask[lo : lo + cfg.batch_size]
        out = (
            teacher.features(tokenize.kmer_ids(s))
            if attrs.full_teacher
            else teacher.visible_features(s, m)
        )
        for layer, values in out.items():
            parts[layer].append(values.float().cpu().numpy())
    return {layer: np.concatenate(p) for layer, p in parts.items()}


def prepare_store(
    cfg: ExtractConfig,
    table: windows.WindowTable,
    teacher: teacher_mod.Teacher,
    attrs: schema.StoreAttrs,
) -> tuple[schema.StoreAttrs, dict[str, np.ndarray]]:
    """What a new store records before its first shard (`StoreWriter.open_or_create` calls
    it once per store, under the setup lock in a sharded run, so every rank reads one fit):
    each layer's codec, fitted (PCA) on 3 of every 4 of `--codec-sample` windows spread over
    the store and measured (round-trip error, explained variance) on the 4th; for a
    full-teacher store, the drift D on `--drift-windows` windows."""
    records = sample_records(attrs.n_records, cfg.codec_sample)
    feats = _sample_features(cfg, table, teacher, attrs, records)
    held = np.arange(len(records)) % 4 == 3
    if not held.any():
        held[-1] = True
    fit: dict[str, object] = {}
    params: dict[str, np.ndarray] = {}
    for layer, values in feats.items():
        fitting = values[~held] if (~held).any() else values
        codec = codecs.make_codec(
            cfg.codec,
            attrs.hidden_size,
            cfg.pca_dim,
            sample=fitting.reshape(-1, attrs.hidden_size) if cfg.codec == "pca-int8" else None,
            seed=cfg.seed,
            stochastic=cfg.stochastic_rounding,
        )
        measured = values[held].reshape(-1, attrs.hidden_size)
        report = codecs.measure(codec, measured, attrs.feature_tokens)
        fit[str(layer)] = {"codec": codec.to_json(), "report": report.to_json()}
        params |= {
            schema.codec_parameter_array(layer, name): array
            for name, array in codec.parameter_arrays().items()
        }
    drift = None
    if attrs.full_teacher and cfg.drift_windows:
        drift = measure_store_drift(cfg, table, teacher, attrs)
    return dataclasses.replace(attrs, codec_fit=fit, drift=drift), params


def measure_store_drift(
    cfg: ExtractConfig,
    table: windows.WindowTable,
    teacher: teacher_mod.Teacher,
    attrs: schema.StoreAttrs,
) -> dict[str, object]:
    """D (`had_cache.drift`) of the deepest stored layer on `--drift-windows` records spread
    over the store (all of them if fewer), each with the store's mask of that record."""
    from had_cache.drift import measure_drift, teacher_features

    records = sample_records(attrs.n_records, cfg.drift_windows)
    if len(records) < 2:
        raise ConfigError("drift needs at least 2 records; pass --drift-windows 0 to skip it")
    seq = windows.read_windows(windows.open_fasta(cfg.fasta), table, records, attrs.window_bp)
    mask = masking.group_masks(attrs.mask_seed, records, attrs.n_tokens, attrs.mask_ratio)
    layer = attrs.teacher.default_layer
    if cfg.progress:
        tqdm.write(f"measuring the unmasked-teacher drift D on {len(records):,} windows")
    report = measure_drift(teacher_features(teacher, layer), seq, mask, cfg.batch_size)
    return report.to_json() | {
        "teacher": attrs.teacher.name_or_path,
        "layer": layer,
        "window_bp": attrs.window_bp,
        "mask_ratio": attrs.mask_ratio,
        "seed": attrs.mask_seed,
    }


def codec_lines(attrs: schema.StoreAttrs) -> list[str]:
    """The store's codec and what it costs, and (full-teacher stores) its drift D."""
    lines = []
    for layer, fit in sorted(attrs.codec_fit.items()):
        lines.append(
            f"codec            layer {layer}: {codecs.CodecReport(**fit['report']).summary()}"
        )
    if attrs.drift:
        from had_cache.drift import DriftReport

        lines.append(f"drift            {DriftReport.from_json(attrs.drift).summary()}")
    return lines


def _check_window_fits(cfg: ExtractConfig, n_tokens: int, max_tokens: int) -> None:
    if n_tokens + 1 > max_tokens:
        raise ConfigError(
            f"--window-bp {cfg.window_bp} needs {n_tokens + 1} teacher tokens with <cls>, more "
            f"than the teacher's maximum of {max_tokens}"
        )


def _check_resumable(cfg: ExtractConfig, where: Location, planned: schema.StoreAttrs) -> None:
    """Refuse, before the weights load, a store at --out that holds another extraction."""
    if cfg.overwrite or store_state(where) != "store":
        return
    existing = read_attrs(where)
    check_writable_version(where, existing)
    if not existing.same_extraction(planned):
        raise StoreError(
            f"{cfg.out} already holds a different extraction (other FASTA, teacher or "
            "options); pass --overwrite to replace it or choose another --out"
        )


def _gated_teacher(
    cfg: ExtractConfig, n_tokens: int, device: torch.device, dtype: torch.dtype
) -> tuple[teacher_mod.Teacher, gate.GateReport]:
    """Load the teacher and run the gate: both before a single byte is written."""
    teacher = teacher_mod.load_teacher(
        cfg.teacher, device, dtype, cfg.layers, cfg.revision, cfg.trust_remote_code
    )
    _check_window_fits(cfg, n_tokens, teacher.max_tokens)
    report = gate.check_teacher(teacher, cfg.min_teacher_accuracy)
    if cfg.progress:
        tqdm.write(f"teacher gate: {report.summary()}")
    return teacher, report


def store_attrs(
    cfg: ExtractConfig,
    table: windows.WindowTable,
    info: schema.TeacherInfo,
    report: gate.GateReport | None,
    n_tokens: int,
    n_masked: int,
    fasta_sha256: str,
    fasta: schema.FastaInfo | None = None,
) -> schema.StoreAttrs:
    """The attributes of the store these options describe (compared on resume); new stores
    carry checksums. `table` needs only its length, contigs and skip counts (`had-cache plan`
    passes counts); `fasta` replaces reading the FASTA's size."""
    feature_tokens = n_tokens if cfg.teacher_input == "full" else n_tokens - n_masked
    fields = codecs.field_specs(cfg.codec, info.hidden_size, cfg.pca_dim)
    record_bytes = feature_tokens * sum(f.bytes_per_row for f in fields.values())
    chunk_records = cfg.chunk_records or schema.default_chunk_records(
        feature_tokens, info.hidden_size, record_bytes=record_bytes
    )
    windowing: dict[str, object] = {}
    if cfg.stride is not None and cfg.stride != cfg.window_bp:
        windowing["stride"] = cfg.stride
    if cfg.bed is not None:
        windowing["bed"] = {"path": str(Path(cfg.bed).resolve()), "sha256": file_sha256(cfg.bed)}
    return schema.StoreAttrs(
        k=dna.K,
        window_bp=cfg.window_bp,
        n_tokens=n_tokens,
        n_masked=n_masked,
        mask_ratio=cfg.mask_ratio,
        mask_seed=cfg.seed,
        n_records=len(table),
        chunk_records=chunk_records,
        shard_chunks=cfg.shard_chunks
        or schema.default_shard_chunks(chunk_records, feature_tokens, info.hidden_size, len(table)),
        windowing=windowing,
        contigs=table.contigs,
        strands=cfg.strands,
        skipped_n_windows=table.skipped_n,
        skipped_ambiguous_windows=table.skipped_ambiguous,
        prediction_top_k=cfg.predictions,
        max_windows=cfg.max_windows,
        teacher=info,
        fasta=fasta
        or schema.FastaInfo(
            path=str(Path(cfg.fasta).resolve()),
            size=Path(cfg.fasta).stat().st_size,
            sha256=fasta_sha256,
        ),
        had_version=had_cache.__version__,
        codec=codec_options(cfg),
        replay=replay_options(cfg, table),
        teacher_input=cfg.teacher_input,
        teacher_gate=report.to_json() if report else None,
        checksum=schema.CHECKSUM,
        provenance=provenance(
            seeds={"mask_seed": cfg.seed},
            inputs={
                "fasta_sha256": fasta_sha256,
                "teacher_weights_sha256": info.weights_sha256,
            },
        ),
    )


def codec_options(cfg: ExtractConfig) -> dict[str, object]:
    """The codec's defining options as the store records them (empty for fp16, so stores of
    schema 3.0 and before keep their fingerprints)."""
    if cfg.codec == "fp16":
        return {}
    out: dict[str, object] = {
        "name": cfg.codec,
        "stochastic_rounding": cfg.stochastic_rounding,
        "seed": cfg.seed,
        "sample_windows": cfg.codec_sample,
    }
    return out | ({"pca_dim": cfg.pca_dim} if cfg.pca_dim is not None else {})


def replay_options(cfg: ExtractConfig, table: object) -> dict[str, object]:
    """A replay store's draw parameters (empty for the tiling)."""
    if not cfg.replay:
        return {}
    return {
        "records": len(table),  # type: ignore[arg-type]
        "loci": int(getattr(table, "n_loci", 0) or 0),
        "records_per_window": cfg.records_per_window,
        "max_offset": cfg.max_offset,
        "strand_draws": cfg.strands == "both",
    }
