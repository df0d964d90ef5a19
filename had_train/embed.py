"""`had-train embed`: the pretrained student's embeddings of any sequences, for use outside
the benchmarks (clustering, nearest neighbours, features for another model).

Input: every record of a FASTA, every interval of a BED over a FASTA, or the `sequence` column
of a CSV. Output: `.npy` holds the mean-pooled embeddings [N, d_model] (float32) with a JSON
sidecar `<out>.json` (names, lengths, checkpoint, provenance); `.zarr` is a group with
`pooled` [N, d_model] float32, `names`, `lengths` and, with `per_base`, `per_base`
[N, L_max, d_model] float16 (zero past each row's length), chunked along N, with the same
facts in its attributes.

Sequences are sorted by length into batches (little padding) and put back in input order;
the student's padding contract makes a sequence's embedding the same whatever it is batched
with (tested). The attention block is global (quadratic in length): `max_len` crops longer
sequences around their centre, as `had-train eval` does, and `attention_window` makes
attention local for long inputs. A whole chromosome as one FASTA record is not a sensible
input: give a BED of intervals.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from had_cache.windows import FastaError, Region, fasta_path, open_fasta
from had_cache.writer import ArrayGroupWriter
from had_common.checksums import file_sha256
from had_common.device import AUTO, resolve_device
from had_common.errors import ConfigError
from had_common.provenance import provenance
from had_train.checkpoint import (
    CheckpointError,
    check_encoder_loaded,
    resolve_model_dir,
    weights_sha256,
)
from had_train.eval.finetune import encode_padded, make_batch
from had_train.eval.tasks import SEQUENCE_COLUMN, TaskError, check_example
from had_train.model import HadStudentModel

FORMAT = "had-embeddings"
FORMAT_VERSION = "1.0"
OUTPUT_SUFFIXES = (".npy", ".zarr")
NAME_COLUMNS = ("name", "id")
"""CSV columns that name a row, in order of preference (default: `row<line>`)."""
_UNLABELLED = "unlabelled"
"""Embedding rows carry no label; `check_example`'s label rule is satisfied by this stand-in."""
PER_BASE_DTYPE = np.float16
CHUNK_BYTES = 16 << 20
"""Target size of a `per_base` chunk (rows of L_max x d_model float16)."""
BLOCK_BYTES = 256 << 20
"""Per-base features held in memory before a block of whole chunks is written."""


@dataclass
class EmbedConfig:
    """Options of `had-train embed`; saved into the output's attributes.

    Exactly one of `fasta` (with an optional `bed`) and `csv`. `max_len` crops longer
    sequences around their centre; `attention_window` overrides the checkpoint's.
    """

    out: Path
    fasta: Path | None = None
    bed: Path | None = None
    csv: Path | None = None
    per_base: bool = False
    batch_size: int = 64
    max_len: int | None = None
    attention_window: int | None = None
    device: str = AUTO
    progress: bool = True

    def validate(self) -> None:
        """Reject option combinations that cannot work, before anything is read or loaded."""
        out = Path(self.out)
        if out.suffix not in OUTPUT_SUFFIXES:
            raise ConfigError(f"--out must end in .npy or .zarr, got {out}")
        if self.per_base and out.suffix == ".npy":
            raise ConfigError(
                "--per-base needs a .zarr --out (per-base features are [N, L, d] and padded)"
            )
        if (self.fasta is None) == (self.csv is None):
            raise ConfigError("give --fasta (optionally with --bed) or --csv, not both or neither")
        if self.bed is not None and self.fasta is None:
            raise ConfigError("--bed needs --fasta (the genome its intervals refer to)")
        if self.batch_size < 1:
            raise ConfigError(f"--batch-size must be >= 1, got {self.batch_size}")
        if self.max_len is not None and self.max_len < 1:
            raise ConfigError(f"--max-len must be >= 1, got {self.max_len}")
        if self.attention_window is not None and self.attention_window < 1:
            raise ConfigError(f"--attention-window must be >= 1, got {self.attention_window}")
        if out.exists() or (out.suffix == ".npy" and sidecar_path(out).exists()):
            raise ConfigError(f"{out} already exists; choose another --out or delete it")


@dataclass(frozen=True)
class NamedSequences:
    """Sequences to embed with their names, in input order."""

    names: list[str]
    sequences: list[str]
    source: dict[str, str]  # role -> path, for the attributes


def sidecar_path(out: Path) -> Path:
    """X.npy -> X.npy.json: names, lengths and provenance beside a .npy output."""
    return Path(out).with_name(Path(out).name + ".json")


def read_bed(path: Path, fasta: Any) -> tuple[list[str], list[str]]:
    """(names, sequences) of every interval of a BED file (0-based, half-open; extra columns
    ignored). Names are `chrom:start-end` in 1-based inclusive coordinates, as genome browsers
    and `had-cache tokenize --region` write them."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"BED file not found: {path}")
    names, sequences = [], []
    with path.open(encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, start=1):
            fields = line.split()
            if not fields or fields[0].startswith(("#", "track", "browser")):
                continue
            where = f"{path}, line {line_no}"
            if len(fields) < 3:
                raise ConfigError(f"{where}: a BED line needs chrom, start and end")
            try:
                start, end = int(fields[1]), int(fields[2])
            except ValueError:
                raise ConfigError(f"{where}: start and end must be integers") from None
            if start < 0 or end <= start:
                raise ConfigError(f"{where}: needs 0 <= start < end, got {start}-{end}")
            region = Region(fields[0], start + 1, end)
            try:
                sequences.append(region.read(fasta))
            except ConfigError as err:
                raise ConfigError(f"{where}: {err}") from None
            names.append(f"{region.contig}:{region.start}-{region.end}")
    if not names:
        raise ConfigError(f"{path}: no intervals")
    return names, sequences


def read_sequence_csv(path: Path) -> tuple[list[str], list[str]]:
    """(names, sequences) of a CSV's `sequence` column (the task reader's sequence rule);
    names from a `name` or `id` column, else `row<line>`."""
    path = Path(path)
    if not path.is_file():
        raise TaskError(f"CSV file not found: {path}")
    names, sequences = [], []
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            header = [h.strip() for h in (reader.fieldnames or [])]
            if SEQUENCE_COLUMN not in header:
                raise TaskError(f"{path}: no '{SEQUENCE_COLUMN}' column; found header {header}")
            reader.fieldnames = header
            name_column = next((c for c in NAME_COLUMNS if c in header), None)
            for row in reader:
                seq = (row.get(SEQUENCE_COLUMN) or "").strip()
                if not any((v or "").strip() for v in row.values() if isinstance(v, str)):
                    continue  # blank line
                check_example(seq, _UNLABELLED, f"{path}, line {reader.line_num}")
                name = (row.get(name_column) or "").strip() if name_column else ""
                names.append(name or f"row{reader.line_num}")
                sequences.append(seq)
    except UnicodeDecodeError as err:
        raise TaskError(f"{path}: not a UTF-8 text CSV ({err.reason} at byte {err.start})") from err
    except csv.Error as err:
        raise TaskError(f"{path}: malformed CSV ({err})") from err
    if not sequences:
        raise TaskError(f"{path}: no rows")
    return names, sequences


def read_inputs(cfg: EmbedConfig) -> NamedSequences:
    """The sequences named by the options: FASTA records, BED intervals, or CSV rows."""
    if cfg.csv is not None:
        names, sequences = read_sequence_csv(Path(cfg.csv))
        return NamedSequences(names, sequences, {"csv": str(cfg.csv)})
    fasta = open_fasta(cfg.fasta)
    source = {"fasta": str(fasta_path(cfg.fasta))}
    if cfg.bed is not None:
        names, sequences = read_bed(Path(cfg.bed), fasta)
        return NamedSequences(names, sequences, source | {"bed": str(cfg.bed)})
    names = list(fasta.keys())
    sequences = [fasta[name][:] for name in names]
    empty = [n for n, s in zip(names, sequences, strict=True) if not s]
    if empty:
        raise FastaError(f"{source['fasta']}: record {empty[0]!r} has no bases")
    return NamedSequences(names, sequences, source)


def load_encoder(model_dir: Path, attention_window: int | None = None) -> HadStudentModel:
    """The student encoder of a pretraining run or step folder (its heads are left out)."""
    model_dir = resolve_model_dir(Path(model_dir))
    extra = {} if attention_window is None else {"attention_window": attention_window}
    try:
        model, info = HadStudentModel.from_pretrained(model_dir, output_loading_info=True, **extra)
    except (OSError, RuntimeError) as err:
        raise CheckpointError(f"{model_dir}: cannot load the student from it: {err}") from err
    check_encoder_loaded(model_dir, info)
    return model.eval()


@dataclass(frozen=True)
class Batch:
    """One forward pass: input rows `rows`, their lengths, pooled and per-base features."""

    rows: np.ndarray
    lengths: np.ndarray
    pooled: np.ndarray  # float32 [B, d]
    hidden: np.ndarray | None  # float32 [B, max(lengths), d], zero past each length


@torch.inference_mode()
def iter_batches(
    model: HadStudentModel,
    sequences: Sequence[str],
    rows: np.ndarray,
    batch_size: int,
    device: torch.device,
    max_len: int | None = None,
    per_base: bool = False,
) -> Iterator[Batch]:
    """Embed `sequences[rows]`, longest first in batches of similar length: the mean over
    each sequence's own bases (`HadStudentModel.pool`), independent of its batch mates."""
    lengths = np.array([len(sequences[r]) for r in rows], dtype=np.int64)
    order = rows[np.argsort(-lengths, kind="stable")]
    for start in range(0, order.size, batch_size):
        batch = order[start : start + batch_size]
        codes, lens = encode_padded(tuple(sequences[r] for r in batch), max_len)
        input_ids, mask = make_batch(codes, lens, np.arange(batch.size), device)
        hidden = model(input_ids, mask).last_hidden_state
        pooled = model.pool(hidden, mask).float().cpu().numpy()
        per = hidden.float().cpu().numpy() if per_base else None
        yield Batch(batch, lens, pooled, per)


def embed_sequences(
    model: HadStudentModel,
    sequences: Sequence[str],
    batch_size: int = 64,
    device: torch.device | str = "cpu",
    max_len: int | None = None,
    progress: bool = False,
) -> np.ndarray:
    """Mean-pooled student embeddings [N, d_model] (float32) of `sequences`, in their order
    (`max_len` crops longer ones around their centre)."""
    device = torch.device(device)
    model.to(device).eval()
    out = np.zeros((len(sequences), model.config.d_model), dtype=np.float32)
    rows = np.arange(len(sequences))
    with tqdm(total=len(sequences), desc="embed", unit="seq", disable=not progress) as bar:
        for b in iter_batches(model, sequences, rows, batch_size, device, max_len):
            out[b.rows] = b.pooled
            bar.update(b.rows.size)
    return out


def cropped_lengths(sequences: Sequence[str], max_len: int | None) -> np.ndarray:
    """Bases each sequence contributes after the `max_len` crop."""
    lengths = np.array([len(s) for s in sequences], dtype=np.int64)
    return lengths if max_len is None else np.minimum(lengths, max_len)


def embed_to_file(model_dir: Path | None, cfg: EmbedConfig) -> dict[str, Any]:
    """Embed the sequences `cfg` names with the student of `model_dir` (a run or step folder)
    and write `cfg.out` (.npy + .json sidecar, or .zarr). Returns the attributes written."""
    if model_dir is None:  # `--checkpoint none`
        raise ConfigError("embed needs a pretrained student: pass --checkpoint RUN")
    cfg.validate()
    device = resolve_device(cfg.device)
    checkpoint = resolve_model_dir(Path(model_dir))
    inputs = read_inputs(cfg)
    model = load_encoder(checkpoint, cfg.attention_window).to(device)
    lengths = cropped_lengths(inputs.sequences, cfg.max_len)
    attrs = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "checkpoint": str(checkpoint),
        "n_sequences": len(inputs.sequences),
        "d_model": model.config.d_model,
        "pooling": "mean over each sequence's bases",
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(cfg).items()},
        "provenance": provenance(
            inputs={
                **{f"{role}_sha256": file_sha256(Path(p)) for role, p in inputs.source.items()},
                "checkpoint_weights_sha256": weights_sha256(checkpoint),
            }
        ),
    }
    out = Path(cfg.out)
    if out.suffix == ".npy":
        pooled = embed_sequences(
            model, inputs.sequences, cfg.batch_size, device, cfg.max_len, cfg.progress
        )
        _write_npy(out, pooled, attrs | {"names": inputs.names, "lengths": lengths.tolist()})
    else:
        _write_zarr(model, inputs, lengths, cfg, device, attrs)
    return attrs


def _write_npy(out: Path, pooled: np.ndarray, meta: dict[str, Any]) -> None:
    """Pooled embeddings to X.npy; names, lengths and attributes to X.npy.json. Each is written
    to a temp file and renamed (the array last), so a reader never sees half of either."""
    side = sidecar_path(out)
    tmp_side = side.with_name(side.name + ".partial")
    tmp_side.write_text(json.dumps(meta, indent=1) + "\n")
    os.replace(tmp_side, side)
    tmp = out.with_name(out.name + ".partial.npy")
    np.save(tmp, pooled)
    os.replace(tmp, out)


def _write_zarr(
    model: HadStudentModel,
    inputs: NamedSequences,
    lengths: np.ndarray,
    cfg: EmbedConfig,
    device: torch.device,
    attrs: dict[str, Any],
) -> None:
    """A group with `pooled`, `names`, `lengths` (and `per_base`). Per-base rows are computed
    and written in blocks of whole chunks along N (bounded memory), each block sorted by
    length into batches."""
    n, d = len(lengths), model.config.d_model
    arrays = {
        "pooled": ((n, d), np.float32, (max(1, min(n, CHUNK_BYTES // (4 * d))), d)),
        "lengths": ((n,), np.int64, (n,)),
        "names": ((n,), str, (n,)),
    }
    block, l_max = n, int(lengths.max())
    if cfg.per_base:
        row_bytes = l_max * d * np.dtype(PER_BASE_DTYPE).itemsize
        chunk = max(1, min(n, CHUNK_BYTES // row_bytes))
        block = chunk * max(1, BLOCK_BYTES // (chunk * row_bytes))
        arrays["per_base"] = ((n, l_max, d), PER_BASE_DTYPE, (chunk, l_max, d))
    writer = ArrayGroupWriter(Path(cfg.out), arrays, {FORMAT: attrs})
    writer.write("names", slice(None), np.array(inputs.names, dtype=str))
    writer.write("lengths", slice(None), lengths)
    pooled = np.zeros((n, d), dtype=np.float32)
    with tqdm(total=n, desc="embed", unit="seq", disable=not cfg.progress) as bar:
        for lo in range(0, n, block):
            hi = min(n, lo + block)
            per = np.zeros((hi - lo, l_max, d), PER_BASE_DTYPE) if cfg.per_base else None
            rows = np.arange(lo, hi)
            for b in iter_batches(
                model, inputs.sequences, rows, cfg.batch_size, device, cfg.max_len, cfg.per_base
            ):
                pooled[b.rows] = b.pooled
                if per is not None and b.hidden is not None:
                    for row, length, feats in zip(b.rows, b.lengths, b.hidden, strict=True):
                        per[row - lo, :length] = feats[:length]
                bar.update(b.rows.size)
            if per is not None:
                writer.write("per_base", slice(lo, hi), per)
    writer.write("pooled", slice(None), pooled)
    writer.close()
