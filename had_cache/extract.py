"""Orchestrate stage one: plan windows, load the teacher, then fill the store chunk by chunk.

The teacher is loaded before anything is written, so a bad `--teacher` never leaves a half
store behind. Each chunk: read its windows, draw its group masks from (seed, record), mask the
teacher's input with `<mask>`, run the teacher in batches, keep the visible tokens' features,
write, mark done. A crash loses at most the chunk in flight; rerunning resumes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

import had_cache
from had_cache import dna, gate, masking, schema, tokenize, windows
from had_cache import teacher as teacher_mod
from had_cache.errors import ConfigError
from had_cache.provenance import provenance
from had_cache.runtime import resolve_device
from had_cache.writer import StoreWriter


@dataclass(frozen=True)
class ExtractConfig:
    """Options of `had-cache extract` (see its --help for the reasons behind each default)."""

    fasta: Path
    out: Path
    teacher: str = teacher_mod.PAPER_TEACHER
    window_bp: int = 1020
    mask_ratio: float = 0.15
    seed: int = 0
    layers: tuple[int, ...] = (-1,)
    batch_size: int = 16
    device: str = "auto"
    dtype: str = "auto"
    max_windows: int | None = None
    contigs: str = "primary"
    strands: str = "forward"
    chunk_records: int | None = None
    revision: str | None = None
    trust_remote_code: bool = True
    min_teacher_accuracy: float = gate.DEFAULT_MIN_ACCURACY
    overwrite: bool = False
    progress: bool = True


@dataclass(frozen=True)
class ExtractSummary:
    store: Path
    windows: int
    written_windows: int
    teacher_tokens: int
    skipped_n_windows: int
    bytes_on_disk: int
    seconds: float

    def lines(self) -> list[str]:
        return [
            f"store            {self.store}",
            f"windows          {self.windows:,} ({self.written_windows:,} written this run, "
            f"{self.skipped_n_windows:,} skipped for N)",
            f"teacher tokens   {self.teacher_tokens:,}",
            f"bytes on disk    {self.bytes_on_disk / 1e6:,.1f} MB",
            f"seconds          {self.seconds:,.1f}",
        ]


def directory_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def extract(cfg: ExtractConfig) -> ExtractSummary:
    """Run stage one end to end; resumable; returns what was done."""
    t0 = time.perf_counter()
    if cfg.batch_size <= 0:
        raise ConfigError(f"--batch-size must be positive, got {cfg.batch_size}")
    if cfg.window_bp % dna.K or cfg.window_bp <= 0:
        raise ConfigError(
            f"--window-bp must be a positive multiple of {dna.K}, got {cfg.window_bp}"
        )
    n_tokens = cfg.window_bp // dna.K
    if not 0.0 < cfg.mask_ratio < 1.0:
        raise ConfigError(f"--mask-ratio must be between 0 and 1, got {cfg.mask_ratio}")
    n_masked = masking.n_masked(n_tokens, cfg.mask_ratio)

    fasta = windows.open_fasta(cfg.fasta)
    device = resolve_device(cfg.device)
    teacher = teacher_mod.load_teacher(
        cfg.teacher,
        device,
        teacher_mod.resolve_dtype(cfg.dtype, device),
        cfg.layers,
        cfg.revision,
        cfg.trust_remote_code,
    )
    report = gate.check_teacher(teacher, cfg.min_teacher_accuracy)
    if cfg.progress:
        tqdm.write(f"teacher gate: {report.summary()}")
    if n_tokens + 1 > teacher.max_tokens:
        raise ConfigError(
            f"--window-bp {cfg.window_bp} needs {n_tokens + 1} teacher tokens with <cls>, more "
            f"than the teacher's maximum of {teacher.max_tokens}"
        )
    table = windows.plan_windows(
        fasta, cfg.window_bp, cfg.contigs, cfg.strands, cfg.max_windows, cfg.progress
    )
    n_visible = n_tokens - n_masked
    fasta_sha256 = windows.file_sha256(Path(cfg.fasta))
    attrs = schema.StoreAttrs(
        k=dna.K,
        window_bp=cfg.window_bp,
        n_tokens=n_tokens,
        n_masked=n_masked,
        mask_ratio=cfg.mask_ratio,
        mask_seed=cfg.seed,
        n_records=len(table),
        chunk_records=cfg.chunk_records
        or schema.default_chunk_records(n_visible, teacher.info.hidden_size),
        contigs=table.contigs,
        strands=cfg.strands,
        skipped_n_windows=table.skipped_n,
        max_windows=cfg.max_windows,
        teacher=teacher.info,
        fasta=schema.FastaInfo(
            path=str(Path(cfg.fasta).resolve()),
            size=Path(cfg.fasta).stat().st_size,
            sha256=fasta_sha256,
        ),
        had_version=had_cache.__version__,
        teacher_gate=report.to_json(),
        provenance=provenance(
            seeds={"mask_seed": cfg.seed},
            inputs={
                "fasta_sha256": fasta_sha256,
                "teacher_weights_sha256": teacher.info.weights_sha256,
            },
        ),
    )
    writer = StoreWriter.open_or_create(cfg.out, attrs, table, overwrite=cfg.overwrite)
    pending = writer.pending_chunks()
    n_pending = sum(len(range(attrs.n_records)[attrs.chunk_slice(c)]) for c in pending)
    bar = tqdm(total=n_pending, desc="extracting", unit="win", disable=not cfg.progress)
    for chunk in pending:
        rows = attrs.chunk_slice(chunk)
        records = range(rows.start, rows.stop)
        seq = windows.read_windows(fasta, table, records, cfg.window_bp)
        mask = masking.group_masks(
            cfg.seed, np.arange(rows.start, rows.stop), n_tokens, cfg.mask_ratio
        )
        ids = masking.teacher_input(tokenize.kmer_ids(seq), mask, tokenize.MASK_ID)
        shape = (len(records), n_visible, attrs.hidden_size)
        feats = {layer: np.empty(shape, schema.TEACHER_DTYPE) for layer in teacher.info.layers}
        for lo in range(0, len(records), cfg.batch_size):
            hi = min(lo + cfg.batch_size, len(records))
            visible = torch.as_tensor(~mask[lo:hi], device=teacher.device)
            for layer, out in teacher.features(ids[lo:hi]).items():
                feats[layer][lo:hi] = (
                    out[visible].reshape(hi - lo, n_visible, -1).to(torch.float16).cpu().numpy()
                )
            bar.update(hi - lo)
        writer.write_chunk(chunk, seq, mask, feats)
    bar.close()
    writer.finalize()
    return ExtractSummary(
        store=Path(cfg.out),
        windows=attrs.n_records,
        written_windows=n_pending,
        teacher_tokens=n_pending * n_tokens,
        skipped_n_windows=table.skipped_n,
        bytes_on_disk=directory_bytes(Path(cfg.out)),
        seconds=time.perf_counter() - t0,
    )
