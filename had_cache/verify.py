"""Check a store: every chunk's integrity, and (on request) its features against its teacher.

`check_integrity` reads every chunk of every done shard of every array: present (its shard's
file), checksum (schema 2.1 and later), shape and dtype as the schema says, finite features,
exactly M masked groups per record, bases A/C/G/T; the first problem is named by array and
chunk, and `--repair` unmarks the shards that hold damaged chunks. A store that silently disagrees with its teacher
(another checkpoint, another layer, dropout left on, a writer bug) trains a student towards the
wrong target; `verify_store` recomputes sampled records and catches that before anyone spends
GPU hours on it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from had_cache import schema
from had_cache.codecs import CodecReport
from had_cache.drift import DriftReport
from had_cache.gate import GateReport
from had_cache.reader import CacheReader, ChunkError, chunk_problem, open_group
from had_cache.schema import StoreError
from had_cache.teacher import AUTO_DTYPE, load_teacher, resolve_dtype
from had_common.device import AUTO, resolve_device
from had_common.errors import ConfigError

DEFAULT_RECOMPUTE = 16
DEFAULT_MIN_COSINE = 0.99
"""float16 storage and bf16 GPU kernels keep the same teacher above ~0.999; another checkpoint,
layer or mask rule falls far below."""


@dataclass(frozen=True)
class VerifyReport:
    records: np.ndarray  # the record ids checked
    cosine: dict[int, np.ndarray]  # per stored layer, per record: stored vs recomputed features
    max_abs: float  # largest absolute difference over all checked features

    def lines(self) -> list[str]:
        head = ", ".join(map(str, self.records[:8])) + (" ..." if len(self.records) > 8 else "")
        return [
            f"records checked  {len(self.records)} ({head})",
            *(
                f"cosine layer {layer:<3} min {c.min():.6f}, mean {c.mean():.6f}"
                for layer, c in self.cosine.items()
            ),
            f"max abs error    {self.max_abs:.4g}",
        ]

    def check(self, min_cosine: float) -> None:
        """StoreError if any checked record is less similar than `min_cosine` (or not a number:
        NaN features never compare below a threshold, so they are failures by name)."""
        for layer, c in self.cosine.items():
            bad = np.flatnonzero(~(c >= min_cosine))  # True for NaN too
            if not len(bad):
                continue
            i = int(bad[np.argmin(np.nan_to_num(c[bad], nan=-np.inf))])
            record, cosine = int(self.records[i]), float(c[i])
            if np.isnan(cosine):
                raise StoreError(
                    f"record {record} has a NaN cosine at teacher layer {layer}: its stored or "
                    "recomputed features are not finite; the store cannot be trusted"
                )
            raise StoreError(
                f"record {record} has cosine {cosine:.4f} < {min_cosine} at teacher layer "
                f"{layer}: the store does not match its teacher (other weights, layer or masking?)"
            )


def verify_store(
    path: Path,
    recompute: int = DEFAULT_RECOMPUTE,
    seed: int = 0,
    device: str = AUTO,
    dtype: str = AUTO_DTYPE,
    teacher: str | None = None,
    batch_size: int = 8,
) -> VerifyReport:
    """Re-run the store's teacher (or `teacher`) on `recompute` random records and compare."""
    if recompute <= 0:
        raise ConfigError(f"--recompute must be positive, got {recompute}")
    info = CacheReader(path).attrs.teacher
    readers = {layer: CacheReader(path, layer=layer) for layer in info.layers}
    attrs = readers[info.layers[0]].attrs
    dev = resolve_device(device)
    model = load_teacher(
        teacher or info.name_or_path, dev, resolve_dtype(dtype, dev), info.layers, info.revision
    )
    rng = np.random.default_rng(seed)
    records = np.sort(
        rng.choice(attrs.n_records, size=min(recompute, attrs.n_records), replace=False)
    )
    cosines: dict[int, list[np.ndarray]] = {layer: [] for layer in info.layers}
    max_abs = 0.0
    for lo in range(0, len(records), batch_size):
        ids = records[lo : lo + batch_size]
        blocks = {layer: reader.take(ids) for layer, reader in readers.items()}
        first = blocks[info.layers[0]]
        for layer, out in model.visible_features(first.seq, first.mask).items():
            a = blocks[layer].teacher.astype(np.float32).reshape(len(ids), -1)
            b = out.float().cpu().numpy().reshape(len(ids), -1)
            cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
            cosines[layer].append(cos)
            max_abs = max(max_abs, float(np.abs(a - b).max()))
    return VerifyReport(
        records=records,
        cosine={layer: np.concatenate(c) for layer, c in cosines.items()},
        max_abs=max_abs,
    )


@dataclass(frozen=True)
class IntegrityReport:
    """What `check_integrity` read, and the problems it found (empty: the store is sound)."""

    store: Path | str
    checksums: bool
    written_as: str
    chunks_read: int
    arrays: int
    problems: list[tuple[str, int | None, str]]  # (array, chunk or None, what)
    shard_chunks: int = 1
    done_array: str = schema.SHARD_DONE

    def lines(self) -> list[str]:
        sums = (
            f"crc32c checksums verified on {self.chunks_read:,} chunks of {self.arrays} arrays"
            if self.checksums
            else f"no checksums in this store (schema {self.written_as}); "
            f"{self.chunks_read:,} chunks of {self.arrays} arrays read and checked for "
            "presence, shape and finite values"
        )
        return [f"integrity        {sums}"]

    def check(self) -> None:
        """StoreError naming the first problem's array and chunk, and how many there are."""
        if not self.problems:
            return
        name, chunk, what = self.problems[0]
        more = (
            f" ({len(self.problems) - 1} more problem(s) found)" if len(self.problems) > 1 else ""
        )
        if chunk is None:
            raise StoreError(f"{self.store}: array {name} {what}{more}")
        err = chunk_problem(self.store, name, chunk, what)
        raise StoreError(f"{err}{more}")

    @property
    def bad_shards(self) -> list[int]:
        """Shards holding a damaged chunk (or whose done marker is damaged)."""
        return sorted(
            {
                c if name == self.done_array else c // self.shard_chunks
                for name, c, _ in self.problems
                if c is not None
            }
        )


def check_integrity(path: Path, max_problems: int = 100) -> IntegrityReport:
    """Read every chunk of every done shard of every array of the store at `path` and check it
    (see the module docstring)."""
    reader = CacheReader(path, require_complete=False)
    a = reader.attrs
    written_as = str(dict(open_group(path).attrs)[schema.ATTRS_KEY].get("schema_version"))
    problems: list[tuple[str, int | None, str]] = []
    specs = schema.array_specs(a)

    def report(chunks_read: int, checksums: bool) -> IntegrityReport:
        return IntegrityReport(
            path,
            checksums,
            written_as,
            chunks_read,
            len(specs),
            problems,
            a.shard_chunks,
            a.done_array,
        )

    for name, expected in specs.items():
        found = reader.layout(name)
        if found is None:
            problems.append((name, None, "is missing"))
        elif found != expected:
            problems.append((name, None, f"has shape, dtype, chunks {found}, expected {expected}"))
    if problems:
        return report(0, a.checksum is not None)
    checksums = all(reader.has_checksums(name) for name in specs)
    done = np.zeros(a.n_shards, dtype=bool)
    for shard in range(a.n_shards):  # one marker per shard: a damaged one names its shard
        try:
            done[shard] = reader.read_array_chunk(a.done_array, shard, check_present=False)[0]
        except ChunkError as err:
            problems.append((err.name, shard, err.what))
    n_read = a.n_shards
    for shard in np.flatnonzero(done):
        for chunk in a.shard_chunk_range(int(shard)):
            for name in specs:
                if name == a.done_array:
                    continue
                try:
                    data = reader.read_array_chunk(name, chunk)
                except ChunkError as err:
                    problems.append((name, chunk, err.what))
                else:
                    what = _content_problem(a, name, data)
                    if what:
                        problems.append((name, chunk, what))
                n_read += 1
        if len(problems) >= max_problems:
            break
    if a.complete and not done.all():
        problems.append((a.done_array, None, "says not every shard is done in a complete store"))
    return report(n_read, checksums)


def _content_problem(a: schema.StoreAttrs, name: str, data: np.ndarray) -> str | None:
    """What is wrong with a decoded chunk's values, by the schema's rules (None: nothing)."""
    if name == schema.MASK:
        counts = data.sum(axis=1)
        if (counts != a.n_masked).any():
            return f"has a record with {int(counts[counts != a.n_masked][0])} masked groups, not {a.n_masked}"
    if name == schema.SEQ and (data > 3).any():
        return "holds codes other than A, C, G, T"
    if name == schema.BASE_PROB:
        # Marginals over A, C, G, T sum to 1 (float16 rounding of four terms stays within 1e-2).
        sums = data.astype(np.float32).sum(axis=-1)
        if (np.abs(sums - 1.0) > 1e-2).any() or (data < 0).any():
            return "holds base probabilities that are negative or do not sum to 1"
    return None


def repair_marks(path: Path, report: IntegrityReport) -> list[int]:
    """Unmark the shards holding damaged chunks so that rerunning extraction rewrites them."""
    from had_cache.writer import unmark_shards

    return unmark_shards(path, report.bad_shards)


def describe_store(path: Path, as_json: bool = False) -> list[str]:
    """`had-cache inspect`: a summary of a (possibly incomplete) store, or its attributes."""
    reader = CacheReader(path, require_complete=False)
    a = reader.attrs
    if as_json:
        return [json.dumps(a.to_json(), indent=2)]
    missing = _missing_chunks(reader)
    state = "complete" if a.complete else "INCOMPLETE"
    if missing:
        name, chunk = missing[0]
        state += (
            f", DAMAGED: {len(missing)} chunk file(s) missing, first chunk {chunk} of {name}; "
            f"run `had-cache verify {path}`"
        )
    return [
        f"store      {path} ({state})",
        f"teacher    {a.teacher.name_or_path} "
        f"layer{'s' if len(a.teacher.layers) > 1 else ''} "
        f"{', '.join(map(str, a.teacher.layers))} of 0..{a.teacher.num_layers} "
        f"(hidden {a.hidden_size})",
        f"records    {a.n_records:,} windows of {a.window_bp} bp "
        f"({a.n_tokens} tokens, {a.n_masked} masked), strands {a.strands}",
        f"fasta      {a.fasta.path}",
        "gate       "
        + (GateReport(**a.teacher_gate).summary() if a.teacher_gate else "not recorded"),
        "predicts   "
        + (
            f"top {a.prediction_top_k} 6-mers and per-base marginals of each masked group"
            if a.has_predictions
            else "not stored (extract with --predictions K for soft targets)"
        ),
        *_codec_lines(a, path),
        *(
            [
                f"replay     {a.n_records:,} draws of {a.replay['loci']:,} windows "
                f"(offsets 0-{a.replay['max_offset']} bp"
                + (", strand drawn" if a.replay["strand_draws"] else "")
                + ")"
            ]
            if a.is_replay
            else []
        ),
        "teacher in "
        + (
            "full: unmasked windows, every token stored, masks drawn at training time; "
            + (DriftReport.from_json(a.drift).summary() if a.drift else "drift D not measured")
            if a.full_teacher
            else "masked: each record's masked window (HAD)"
        ),
        f"shards     {a.n_shards} x {a.shard_records} records "
        f"({a.shard_chunks} chunk(s) of {a.chunk_records}; one file per shard and array)",
        f"schema     {a.schema_version}"
        + (", crc32c checksums" if a.checksum else ", no checksums"),
    ]


def _codec_lines(a: schema.StoreAttrs, path: Path | str) -> list[str]:
    """The codec, its parameters, measured error and bytes per record (`had-cache inspect`)."""
    from had_cache.plan import codec_label
    from had_cache.reader import Location

    per_record = Location(path).nbytes() / max(1, a.n_records)
    lines = [
        f"codec      {codec_label(a)}: features {a.feature_tokens} tokens x "
        f"{a.codec.get('pca_dim') or a.hidden_size} per record"
    ]
    for layer, fit in sorted(a.codec_fit.items()):
        report = CodecReport(**fit["report"])
        params = {k: v for k, v in fit["codec"].items() if k not in ("name", "hidden_size")}
        lines.append(
            f"  layer {layer}  {report.bytes_per_record:,} B of features per record "
            f"(fp16: {report.fp16_bytes_per_record:,}); round-trip relative error "
            f"{report.relative_error:.2e}, explained variance {report.explained_variance:.5f} "
            f"on {report.rows:,} held-out rows; parameters {params}"
        )
    if not a.codec_fit:
        lines.append("  layer(s)   float16 as the teacher gave them (no codec parameters)")
    lines.append(
        f"  on disk    {per_record / 1e3:,.1f} kB per record, every file of the store counted"
    )
    return lines


def _missing_chunks(reader: CacheReader) -> list[tuple[str, int]]:
    """(array, first chunk) of every done shard whose file is missing (a stat per shard and
    array, no reads)."""
    a = reader.attrs
    done = [s for s in range(a.n_shards) if reader.chunk_present(a.done_array, s)]
    names = [n for n in schema.array_specs(a) if n != a.done_array and reader.must_exist(n)]
    firsts = [a.shard_chunk_range(s).start for s in done]
    return [(n, c) for c in firsts for n in names if not reader.chunk_present(n, c)]
