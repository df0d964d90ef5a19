"""Orchestrate stage one: plan windows, load the teacher, then fill the store chunk by chunk.

Every check that needs only the options, the FASTA (its index and window table) and the
teacher's config runs before the teacher's weights are loaded (seconds for the demo teacher,
minutes for NTv2-500M); the teacher is loaded and gated before anything is written, so a bad
`--teacher` never leaves a half store behind. Each chunk: read its windows, draw its group masks from (seed, record), mask the
teacher's input with `<mask>`, run the teacher in batches, keep the visible tokens' features,
write, mark done. A crash loses at most the chunk in flight; rerunning resumes.
"""

from __future__ import annotations

import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

import had_cache
from had_cache import dna, gate, masking, predictions, schema, windows
from had_cache import teacher as teacher_mod
from had_cache.reader import read_attrs
from had_cache.schema import StoreError
from had_cache.writer import StoreWriter, check_target, lock_store, store_state
from had_common import device as device_rule
from had_common.checksums import file_sha256
from had_common.errors import ConfigError
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
    out: Path
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
    predictions: int = predictions.DEFAULT_TOP_K
    revision: str | None = None
    trust_remote_code: bool = True
    min_teacher_accuracy: float = gate.DEFAULT_MIN_ACCURACY
    overwrite: bool = False
    progress: bool = True

    @classmethod
    def from_options(
        cls,
        fasta: str | Path,
        out: Path | None = None,
        layer: int | None = None,
        layers: str | None = None,
        **options: object,
    ) -> ExtractConfig:
        """The command line's form: `demo` names the embedded FASTA, `--out` defaults to
        ./<fasta name>.had.zarr, and `--layer`/`--layers` become one tuple."""
        path = windows.fasta_path(fasta)
        return cls(
            fasta=path,
            out=out or default_store_path(path),
            layers=teacher_mod.parse_layers(layer, layers),
            **options,  # type: ignore[arg-type]
        )


@dataclass(frozen=True)
class ExtractSummary:
    store: Path
    windows: int
    written_windows: int
    teacher_tokens: int
    skipped_n_windows: int
    bytes_on_disk: int
    seconds: float
    skipped_ambiguous_windows: int = 0

    def lines(self) -> list[str]:
        ambiguous, n = self.skipped_ambiguous_windows, self.skipped_n_windows
        skipped = f"{n - ambiguous:,} skipped for N"
        if ambiguous:
            skipped += f", {ambiguous:,} for other IUPAC ambiguity codes"
        return [
            f"store            {self.store}",
            f"windows          {self.windows:,} ({self.written_windows:,} written this run, "
            f"{skipped})",
            f"teacher tokens   {self.teacher_tokens:,}",
            f"bytes on disk    {self.bytes_on_disk / 1e6:,.1f} MB",
            f"seconds          {self.seconds:,.1f}",
        ]


def directory_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def extract(cfg: ExtractConfig) -> ExtractSummary:
    """Run stage one end to end; resumable; returns what was done."""
    t0 = time.perf_counter()
    # Everything that needs no teacher weights, cheapest first.
    n_tokens, n_masked = _check_options(cfg)
    check_target(cfg.out, cfg.overwrite)
    device = device_rule.resolve_device(cfg.device)
    dtype = teacher_mod.resolve_dtype(cfg.dtype, device)
    config = teacher_mod.load_config(cfg.teacher, cfg.revision, cfg.trust_remote_code)
    if config is not None:
        _check_window_fits(cfg, n_tokens, teacher_mod.max_tokens(config))
        info = teacher_mod.teacher_info(cfg.teacher, config, dtype, cfg.layers, cfg.revision)
    fasta = windows.open_fasta(cfg.fasta)
    table = windows.plan_windows(
        fasta, cfg.window_bp, cfg.contigs, cfg.strands, cfg.max_windows, cfg.progress
    )
    fasta_sha256 = file_sha256(Path(cfg.fasta))
    if config is not None:
        planned = store_attrs(cfg, table, info, None, n_tokens, n_masked, fasta_sha256)
        _check_resumable(cfg, planned)
    out_existed = Path(cfg.out).exists()
    lock = lock_store(cfg.out, cfg.overwrite)  # a second writer is refused before the weights
    try:
        # The expensive part: weights, gate, then the store.
        teacher, report = _gated_teacher(cfg, n_tokens, device, dtype)
    except BaseException:
        lock.release()
        if not out_existed and store_state(cfg.out) == "absent":
            shutil.rmtree(cfg.out, ignore_errors=True)  # only the folder made for the lock
        raise
    attrs = store_attrs(cfg, table, teacher.info, report, n_tokens, n_masked, fasta_sha256)
    with StoreWriter.open_or_create(cfg.out, attrs, table, cfg.overwrite, lock) as writer:
        pending = writer.pending_chunks()
        n_pending = sum(len(range(attrs.n_records)[attrs.chunk_slice(c)]) for c in pending)
        # Closed on any error too, so the one-line error starts a line of its own.
        with tqdm(total=n_pending, desc="extracting", unit="win", disable=not cfg.progress) as bar:
            for chunk in pending:
                seq, mask, feats, preds = extract_chunk(
                    fasta, table, teacher, attrs, chunk, cfg.batch_size, bar
                )
                writer.write_chunk(chunk, seq, mask, feats, preds)
        writer.finalize()
    return ExtractSummary(
        store=Path(cfg.out),
        windows=attrs.n_records,
        written_windows=n_pending,
        teacher_tokens=n_pending * n_tokens,
        skipped_n_windows=table.skipped_n,
        skipped_ambiguous_windows=table.skipped_ambiguous,
        bytes_on_disk=directory_bytes(Path(cfg.out)),
        seconds=time.perf_counter() - t0,
    )


def _check_options(cfg: ExtractConfig) -> tuple[int, int]:
    """(tokens, masked tokens) per window, or a ConfigError before anything is loaded."""
    if cfg.batch_size <= 0:
        raise ConfigError(f"--batch-size must be positive, got {cfg.batch_size}")
    if cfg.chunk_records is not None and cfg.chunk_records <= 0:
        raise ConfigError(f"--chunk-records must be positive, got {cfg.chunk_records}")
    if not 0 <= cfg.predictions <= predictions.N_KMERS:
        raise ConfigError(
            f"--predictions takes 0 (off) to {predictions.N_KMERS} 6-mers, got {cfg.predictions}"
        )
    n_tokens = dna.groups_per_window(cfg.window_bp)
    if not 0.0 < cfg.mask_ratio < 1.0:
        raise ConfigError(f"--mask-ratio must be between 0 and 1, got {cfg.mask_ratio}")
    return n_tokens, masking.n_masked(n_tokens, cfg.mask_ratio)


def _check_window_fits(cfg: ExtractConfig, n_tokens: int, max_tokens: int) -> None:
    if n_tokens + 1 > max_tokens:
        raise ConfigError(
            f"--window-bp {cfg.window_bp} needs {n_tokens + 1} teacher tokens with <cls>, more "
            f"than the teacher's maximum of {max_tokens}"
        )


def _check_resumable(cfg: ExtractConfig, planned: schema.StoreAttrs) -> None:
    """Refuse, before the weights load, a store at --out that holds another extraction."""
    if cfg.overwrite or store_state(cfg.out) != "store":
        return
    if not read_attrs(cfg.out).same_extraction(planned):
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
) -> schema.StoreAttrs:
    """The attributes of the store these options describe (compared on resume); new stores
    carry checksums."""
    return schema.StoreAttrs(
        k=dna.K,
        window_bp=cfg.window_bp,
        n_tokens=n_tokens,
        n_masked=n_masked,
        mask_ratio=cfg.mask_ratio,
        mask_seed=cfg.seed,
        n_records=len(table),
        chunk_records=cfg.chunk_records
        or schema.default_chunk_records(n_tokens - n_masked, info.hidden_size),
        contigs=table.contigs,
        strands=cfg.strands,
        skipped_n_windows=table.skipped_n,
        skipped_ambiguous_windows=table.skipped_ambiguous,
        prediction_top_k=cfg.predictions,
        max_windows=cfg.max_windows,
        teacher=info,
        fasta=schema.FastaInfo(
            path=str(Path(cfg.fasta).resolve()),
            size=Path(cfg.fasta).stat().st_size,
            sha256=fasta_sha256,
        ),
        had_version=had_cache.__version__,
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


def extract_chunk(
    fasta: object,
    table: windows.WindowTable,
    teacher: teacher_mod.Teacher,
    attrs: schema.StoreAttrs,
    chunk: int,
    batch_size: int,
    bar: tqdm | None = None,
) -> tuple[np.ndarray, np.ndarray, dict[int, np.ndarray], dict[str, np.ndarray] | None]:
    """(seq, group mask, visible features per layer, predictions by array name or None) of one
    chunk's records, ready to write."""
    rows = attrs.chunk_slice(chunk)
    records = range(rows.start, rows.stop)
    seq = windows.read_windows(fasta, table, records, attrs.window_bp)
    mask = masking.group_masks(
        attrs.mask_seed, np.arange(rows.start, rows.stop), attrs.n_tokens, attrs.mask_ratio
    )
    shape = (len(records), attrs.n_visible, attrs.hidden_size)
    feats = {layer: np.empty(shape, schema.TEACHER_DTYPE) for layer in teacher.info.layers}
    parts: list[predictions.MaskedPredictions] = []
    for lo in range(0, len(records), batch_size):
        hi = min(lo + batch_size, len(records))
        out, preds = teacher.encode(seq[lo:hi], mask[lo:hi], attrs.prediction_top_k)
        for layer, values in out.items():
            feats[layer][lo:hi] = values.to(FEATURES_TORCH_DTYPE).cpu().numpy()
        if preds is not None:
            parts.append(preds)
        if bar is not None:
            bar.update(hi - lo)
    stored = None
    if parts:
        stored = {
            schema.TOPK_KMER: np.concatenate([p.topk_kmer for p in parts]),
            schema.TOPK_PROB: np.concatenate([p.topk_prob for p in parts]),
            schema.BASE_PROB: np.concatenate([p.base_prob for p in parts]),
        }
    return seq, mask, feats, stored
