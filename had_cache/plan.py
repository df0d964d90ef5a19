"""`had-cache plan` (and `extract --dry-run`): what an extraction will cost, before it runs.

From the FASTA's index alone (`.fai`: contig names and lengths; a FASTA's own index is built or
read, its bases never are) plus an optional --bed and the recipe (window, stride, strands,
records, codec, teacher width), in seconds even for hg38: windows, records, teacher tokens,
bytes on disk, the loader's bytes per training step and the teacher's GPU-hours.

What the index cannot see: N runs. Windows holding an N are skipped by `extract`, so the plan's
window count is an upper bound (hg38's primary assembly is ~5% N; the demo slice under 0.1%).
With --max-windows below that bound the count is exact.

Bytes on disk come from the store's own array list (`schema.array_specs`, so a new array is
counted without touching this file) times each kind of array's zstd ratio, measured on the demo
teacher's stores (`COMPRESSION`, docs/benchmarks.md), plus the codec's parameter arrays and the
metadata files. `tests/cache/test_plan.py` holds the estimate within 5% of what `extract`
writes on the demo data for every codec.
"""

from __future__ import annotations

import math
import shutil
from dataclasses import dataclass, replace
from pathlib import Path

from had_cache import schema, windows
from had_cache import teacher as teacher_mod
from had_common.errors import ConfigError

COMPRESSION = {
    "seq": 0.296,
    "mask": 0.165,
    "fp16": 0.93,
    "int8": 0.94,
    "scale": 0.85,
    "index": 0.5,
    "predictions": 0.70,
    "parameters": 0.93,
}
"""Bytes on disk per raw byte of each kind of array under zstd level 1 (writer.COMPRESSOR),
measured on the demo teacher's stores of 512 windows (`benchmarks/plan.py`, docs/benchmarks.md
"Plan"; predictions: the three arrays of --predictions 16 together). Features barely compress;
bases (2 bits of 8) and masks do."""
METADATA_BYTES = {"group": 3_500, "array": 600}
"""The group's zarr.json (the store's attributes, provenance included) and one array's: measured
on demo stores (docs/benchmarks.md, "Plan")."""
SHARD_INDEX_BYTES = 16
"""Per inner chunk, in each shard's index (offset and length, uint64 each)."""
CHUNK_CHECKSUM_BYTES = 4
"""crc32c per chunk (and per shard index)."""

NTV2_500M = {"num_hidden_layers": 29, "hidden_size": 1024, "intermediate_size": 4096}
"""The paper's teacher's shape (design.md section 1), used when its config is not cached here."""
ASSUMED_GPU_FLOPS = 989e12
"""An H100 SXM's dense bf16 peak (FLOP/s)."""
ASSUMED_MFU = 0.4
"""Share of that peak the teacher's forward pass is assumed to reach. Not measured on a GPU yet
(docs/benchmarks.md says so); --tokens-per-second replaces the whole estimate."""


@dataclass(frozen=True)
class ByteEstimate:
    """Bytes a store takes on disk, by array."""

    arrays: dict[str, int]
    parameters: int
    metadata: int

    @property
    def total(self) -> int:
        return sum(self.arrays.values()) + self.parameters + self.metadata

    def per_record(self, n_records: int) -> float:
        return self.total / max(1, n_records)


def _kind(attrs: schema.StoreAttrs, name: str) -> str:
    if name == schema.SEQ:
        return "seq"
    if name == schema.MASK:
        return "mask"
    if name in schema.PREDICTION_ARRAYS:
        return "predictions"
    for layer in attrs.teacher.layers:
        arrays = schema.feature_arrays(attrs, layer)
        if name in arrays:
            if name != schema.teacher_array(layer):
                return "scale"
            return "fp16" if attrs.codec_name == "fp16" else "int8"
    return "index"


def parameter_bytes(attrs: schema.StoreAttrs) -> int:
    """Raw bytes of the codec's store-level arrays (rotation; PCA mean and basis), all layers."""
    name, d = attrs.codec_name, attrs.hidden_size
    if name == "fp16":
        return 0
    r = attrs.codec.get("pca_dim") or d
    per_layer = 4 * (r * r + ((d + d * r) if name == "pca-int8" else 0))
    return per_layer * len(attrs.teacher.layers)


def estimate_bytes(attrs: schema.StoreAttrs) -> ByteEstimate:
    """Bytes on disk of a complete store with these attributes (see the module docstring)."""
    arrays = {}
    for name, (shape, dtype, chunks) in schema.array_specs(attrs).items():
        raw = math.prod(shape) * dtype.itemsize
        n_chunks = -(-shape[0] // chunks[0])
        overhead = n_chunks * CHUNK_CHECKSUM_BYTES
        if schema.shard_shape(attrs, name, chunks) is not None:
            overhead += n_chunks * SHARD_INDEX_BYTES + attrs.n_shards * CHUNK_CHECKSUM_BYTES
        arrays[name] = round(raw * COMPRESSION[_kind(attrs, name)]) + overhead
    n_params = (
        0
        if attrs.codec_name == "fp16"
        else len(attrs.teacher.layers) * (1 if attrs.codec_name == "int8" else 3)
    )
    params = round(parameter_bytes(attrs) * COMPRESSION["parameters"])
    metadata = METADATA_BYTES["group"] + METADATA_BYTES["array"] * (len(arrays) + n_params)
    return ByteEstimate(arrays, params, metadata)


def contig_lengths(path: str | Path) -> tuple[str, dict[str, int]]:
    """(what was read, contig name -> length) from a `.fai` file, or a FASTA's index (built
    once if missing; the bases are not read)."""
    path = Path(path)
    if path.suffix == ".fai":
        if not path.is_file():
            raise ConfigError(f"--fasta {path}: no such index file")
        lengths = {}
        for number, line in enumerate(path.read_text().splitlines(), 1):
            fields = line.split("\t")
            if not line.strip():
                continue
            try:
                lengths[fields[0]] = int(fields[1])
            except (IndexError, ValueError):
                raise ConfigError(
                    f"{path}, line {number}: not a .fai line (name, length, ...)"
                ) from None
        if not lengths:
            raise ConfigError(f"{path} lists no contig")
        return str(path), lengths
    fasta = windows.open_fasta(path)
    names = list(fasta.keys())  # iterating a pyfaidx Fasta yields records, not names
    return f"{windows.fasta_path(path)} (its index)", {n: len(fasta[n]) for n in names}


@dataclass(frozen=True)
class _Counts:
    """What `extract.store_attrs` reads of a window table, from counts alone."""

    contigs: list[str]
    n: int
    n_loci: int | None = None
    skipped_n: int = 0
    skipped_ambiguous: int = 0

    def __len__(self) -> int:
        return self.n


def count_loci(cfg: object, lengths: dict[str, int]) -> tuple[list[str], int]:
    """(contigs, windows) of the tiling `extract` plans, N runs not excluded (see above)."""
    names = windows.select_contigs(list(lengths), cfg.contigs)  # type: ignore[attr-defined]
    tile = cfg.window_bp + cfg.max_offset  # type: ignore[attr-defined]
    stride = cfg.stride or cfg.window_bp  # type: ignore[attr-defined]
    if cfg.bed is not None:  # type: ignore[attr-defined]
        regions = windows.read_bed(cfg.bed, lengths).intervals  # type: ignore[attr-defined]
    else:
        regions = {n: [(0, lengths[n])] for n in names}
    count = 0
    for name in names:
        for a, b in regions.get(name, []):
            if b - a >= tile:
                count += (b - a - tile) // stride + 1
    if not count:
        raise ConfigError(
            f"no window of {tile:,} bp fits the selected contigs or regions; lower --window-bp"
        )
    return names, count


def teacher_shape(cfg: object) -> tuple[dict[str, int] | None, str]:
    """The teacher's (layers, width, FFN width) from its config without weights, the paper
    teacher's known shape if its config is not cached, or None (then --hidden-size is needed)."""
    config = teacher_mod.load_config(cfg.teacher, cfg.revision, cfg.trust_remote_code)  # type: ignore[attr-defined]
    if config is not None:
        shape = {k: int(getattr(config, k)) for k in NTV2_500M}
        return shape, f"{cfg.teacher}'s config"  # type: ignore[attr-defined]
    if cfg.teacher == teacher_mod.PAPER_TEACHER:  # type: ignore[attr-defined]
        return dict(NTV2_500M), "NTv2-500M's published shape (its config is not cached here)"
    return None, ""


def flops_per_token(shape: dict[str, int], n_tokens: int) -> float:
    """Forward FLOPs per token of an ESM-style encoder with a gated FFN: 2 x the layers'
    weights (4 D^2 attention + 3 D F FFN) plus attention over `n_tokens` (4 T D per layer)."""
    d, f, layers = shape["hidden_size"], shape["intermediate_size"], shape["num_hidden_layers"]
    return layers * (2 * (4 * d * d + 3 * d * f) + 4 * n_tokens * d)


@dataclass(frozen=True)
class Plan:
    """Everything `had-cache plan` prints."""

    source: str
    contigs: int
    bases: int
    loci: int
    attrs: schema.StoreAttrs
    bytes: ByteEstimate
    step_bytes: int
    step_decoded_bytes: int
    train_batch_size: int
    teacher_tokens: int
    tokens_per_second: float | None
    throughput_source: str
    gpus: tuple[int, ...]
    exact_windows: bool
    shape_source: str

    def gpu_hours(self, gpus: int) -> float | None:
        if not self.tokens_per_second:
            return None
        return self.teacher_tokens / self.tokens_per_second / 3600 / gpus

    def lines(self) -> list[str]:
        a = self.attrs
        stride = (a.windowing or {}).get("stride", a.window_bp)
        bound = "" if self.exact_windows else "at most "
        lines = [
            f"source           {self.source}: {self.contigs} contig(s), {self.bases:,} bp",
            f"windows          {bound}{self.loci:,} of {a.window_bp:,} bp, stride {stride:,}"
            + (
                ""
                if self.exact_windows
                else " (the index cannot see N runs: windows holding N are skipped by extract)"
            ),
        ]
        if a.is_replay:
            r = a.replay
            lines.append(
                f"records          {a.n_records:,} replay draws, {a.n_records / self.loci:.2f} per "
                f"window: offsets 0-{r['max_offset']:,} bp"
                + (", strand drawn" if r["strand_draws"] else ", forward strand")
                + ", a fresh mask each"
            )
        else:
            lines.append(
                f"records          {a.n_records:,} (one per window{', both strands' if a.strands == 'both' else ''})"
            )
        per_record = self.bytes.per_record(a.n_records)
        feats = sum(
            self.bytes.arrays[n]
            for layer in a.teacher.layers
            for n in schema.feature_arrays(a, layer)
        )
        lines += [
            f"teacher tokens   {self.teacher_tokens:,} ({a.n_tokens + 1} per record with <cls>; "
            + (
                "one unmasked pass per window, every token stored)"
                if a.full_teacher
                else f"one masked pass per record, {a.n_visible} visible tokens stored)"
            ),
            f"codec            {codec_label(a)}, teacher width {a.hidden_size} "
            f"({self.shape_source}), {len(a.teacher.layers)} layer(s) stored",
            f"bytes on disk    {_size(self.bytes.total)} ({per_record / 1e3:,.1f} kB per record, "
            f"{feats / max(1, a.n_records) / 1e3:,.1f} kB of it features; zstd ratios measured "
            "on the demo teacher)",
            f"loader per step  {_size(self.step_bytes)} read for --train-batch-size "
            f"{self.train_batch_size:,} (features decoded on the device: "
            f"{_size(self.step_decoded_bytes)} as float32)",
        ]
        if self.tokens_per_second is None:
            lines.append(
                "teacher GPU-h    unknown: the teacher's config is not available here; pass "
                "--tokens-per-second (measured teacher throughput per GPU)"
            )
        else:
            hours = ", ".join(f"{g} GPU(s) {_hours(self.gpu_hours(g))}" for g in self.gpus)
            total = self.teacher_tokens / self.tokens_per_second / 3600
            lines.append(
                f"teacher GPU-h    {total:,.3g} GPU-hours; wall clock {hours} "
                f"(at {self.tokens_per_second:,.0f} tokens/s per GPU: {self.throughput_source})"
            )
        return lines


def codec_label(attrs: schema.StoreAttrs) -> str:
    name = attrs.codec_name
    if name == "pca-int8":
        return f"pca-int8 R = {attrs.codec['pca_dim']}"
    return name + (" (stochastic rounding)" if attrs.codec.get("stochastic_rounding") else "")


def _hours(h: float) -> str:
    return f"{h:,.2f} h" if h >= 1 else f"{h * 60:,.1f} min" if h * 60 >= 1 else f"{h * 3600:.0f} s"


def _size(n: float) -> str:
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:,.2f} {unit}"
    return f"{n:,.0f} B"


def parse_gpus(text: str) -> tuple[int, ...]:
    try:
        gpus = tuple(int(g) for g in text.split(",") if g.strip())
    except ValueError:
        gpus = ()
    if not gpus or min(gpus) <= 0:
        raise ConfigError(
            f"--gpus takes positive counts, comma-separated (e.g. 1,8,64), got {text!r}"
        )
    return gpus


def make_plan(cfg: object) -> Plan:
    """The plan of `extract` with these options (an `ExtractConfig`), from the index alone."""
    from had_cache.extract import _check_options, store_attrs

    n_tokens, n_masked = _check_options(cfg)  # type: ignore[arg-type]
    gpus = parse_gpus(cfg.gpus)  # type: ignore[attr-defined]
    source, lengths = contig_lengths(cfg.fasta)  # type: ignore[attr-defined]
    names, loci = count_loci(cfg, lengths)
    exact = cfg.max_windows is not None and cfg.max_windows < loci  # type: ignore[attr-defined]
    if cfg.max_windows is not None:  # type: ignore[attr-defined]
        loci = min(loci, cfg.max_windows)  # type: ignore[attr-defined]
    if cfg.replay:  # type: ignore[attr-defined]
        records = cfg.records or loci * (cfg.records_per_window or 1)  # type: ignore[attr-defined]
    else:
        both = cfg.strands == "both"  # type: ignore[attr-defined]
        records = loci * 2 if both else loci
        if cfg.max_windows is not None:  # type: ignore[attr-defined]
            records = min(records, cfg.max_windows)  # type: ignore[attr-defined]
            loci = records // 2 if both else records
    shape, shape_source = teacher_shape(cfg)
    hidden = cfg.hidden_size or (shape or {}).get("hidden_size")  # type: ignore[attr-defined]
    if hidden is None:
        raise ConfigError(
            f"the config of --teacher {cfg.teacher} is not available here (no weights are "  # type: ignore[attr-defined]
            "needed, but its config is); pass --hidden-size D"
        )
    if cfg.hidden_size:  # type: ignore[attr-defined]
        shape_source = "--hidden-size"
    n_layers = (shape or {}).get("num_hidden_layers", 0)
    layers = (
        [schema.hidden_state_index(layer, n_layers) for layer in cfg.layers]  # type: ignore[attr-defined]
        if shape
        else list(cfg.layers)  # type: ignore[attr-defined]
    )
    info = schema.TeacherInfo(
        name_or_path=cfg.teacher,  # type: ignore[attr-defined]
        revision=cfg.revision,  # type: ignore[attr-defined]
        weights_sha256=None,
        layers=list(dict.fromkeys(layers)),
        num_layers=n_layers,
        hidden_size=int(hidden),
        dtype="bfloat16",
        token_dropout=None,
        mask_token_id=2,
    )
    counts = _Counts(names, records, loci if cfg.replay else None)  # type: ignore[attr-defined]
    fasta = schema.FastaInfo(path=source, size=0, sha256="")
    attrs = store_attrs(cfg, counts, info, None, n_tokens, n_masked, "", fasta)  # type: ignore[arg-type]
    if attrs.codec_name == "pca-int8" and attrs.codec["pca_dim"] > attrs.hidden_size:
        raise ConfigError(f"--pca-dim must be in 1..{attrs.hidden_size} (the teacher width)")
    estimate = estimate_bytes(attrs)
    # One training step reads its records' bases, masks and one layer's features.
    one = replace(attrs, n_records=1, chunk_records=1, shard_chunks=1)
    layer = attrs.teacher.default_layer
    read = [schema.SEQ, schema.MASK, *schema.feature_arrays(attrs, layer)]
    specs = schema.array_specs(one)
    step_record = sum(math.prod(specs[n][0]) * specs[n][1].itemsize for n in read)
    batch = cfg.train_batch_size  # type: ignore[attr-defined]
    decoded = batch * attrs.n_visible * attrs.hidden_size * 4
    tokens = records * (n_tokens + 1)
    if cfg.tokens_per_second is not None:  # type: ignore[attr-defined]
        tps, tps_source = float(cfg.tokens_per_second), "--tokens-per-second"  # type: ignore[attr-defined]
    elif shape is not None:
        tps = ASSUMED_GPU_FLOPS * ASSUMED_MFU / flops_per_token(shape, n_tokens + 1)
        tps_source = (
            f"estimate, {flops_per_token(shape, n_tokens + 1) / 1e9:.2f} GFLOP per token at "
            f"{ASSUMED_MFU:.0%} of an H100's {ASSUMED_GPU_FLOPS / 1e12:.0f} bf16 TFLOP/s, not "
            "measured (docs/benchmarks.md); pass --tokens-per-second to replace it"
        )
    else:
        tps, tps_source = None, ""
    return Plan(
        source=source,
        contigs=len(names),
        bases=sum(lengths[n] for n in names),
        loci=loci,
        attrs=attrs,
        bytes=estimate,
        step_bytes=batch * step_record,
        step_decoded_bytes=decoded,
        train_batch_size=batch,
        teacher_tokens=tokens,
        tokens_per_second=tps,
        throughput_source=tps_source,
        gpus=gpus,
        exact_windows=exact,
        shape_source=shape_source,
    )


def disk_free(path: Path) -> int:
    """Free bytes on the file system that holds `path` (or its nearest existing parent)."""
    for folder in (Path(path).absolute(), *Path(path).absolute().parents):
        if folder.exists():
            return shutil.disk_usage(folder).free
    return shutil.disk_usage("/").free
