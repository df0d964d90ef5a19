"""The store contract between the two stages: array names, dtypes, shapes and attributes.

Nothing else in the project spells an array name or an attribute key. A store is one Zarr v3
group; every array is chunked along the record axis N with the same `chunk_records` (the unit a
reader decodes) and, since schema 3.0, grouped by zarr's sharding codec into shards of
`shard_chunks` chunks (the unit one writer owns and writes once, whole: one file per shard and
array). Both grids are the same in every array, so chunk c and shard s address the same records
everywhere. `shard_done[s]` is set only after shard s of every array is written, and the
`complete` attribute only after every shard is done: completion is a marker written last, never
inferred from which files exist (zarr v3 skips writing chunks equal to the fill value).

Evolution: `SCHEMA_VERSION` is MAJOR.MINOR (`had_common.versions`). A new optional attribute is
a field with a default and a minor bump, so older stores still read (the field takes its
default); a reader refuses a newer minor or another major version in one line naming both.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from had_cache import codecs
from had_common.errors import ConfigError, HadError
from had_common.versions import check_readable, format_version, parse_version

SCHEMA_VERSION = "3.1"
"""2.0: the layout of schema 2 (stores written as a bare `2` read as 2.0). 2.1: crc32c checksums
on every chunk, every chunk written (the `checksum` attribute). 2.2: optional teacher predictions
at the masked groups (`prediction_top_k` > 0: the PREDICTION_ARRAYS). 3.0: shards of
`shard_chunks` chunks through zarr's sharding codec, one done marker per shard (`shard_done`); a
new layout, so a major version: 2.x stores still read (every chunk is its own shard there, its
marker in `chunk_done`) but are not resumed by this version. 3.1: feature codecs (`codec`, the
fitted parameters in `codec_fit` and arrays `<features>_<param>`, a per-row `<features>_scale`
for the int8 codecs), replay records (`replay`, arrays `locus` and `offset`), the unmasked
teacher (`teacher_input` = `full`: every token's features, and its `drift`); a 3.0 store reads
as an fp16 store of one record per window and a masked teacher, its fingerprint unchanged."""
READS_OLDER_MAJORS = (2,)
"""Older major versions the reader still reads (never writes to)."""
FORMAT_NAME = "had-cache"
ATTRS_KEY = "had"


class StoreError(HadError):
    """A Zarr store is missing, incomplete, or disagrees with what the caller expects."""


SEQ = "seq"
MASK = "mask"
CONTIG = "contig"
START = "start"
STRAND = "strand"
LOCUS = "locus"
"""Replay stores: the window (locus) of the planned tiling that record i was drawn from."""
OFFSET = "offset"
"""Replay stores: bases between the locus start and record i's window (`start` = both added)."""
TEACHER_INPUTS = ("masked", "full")
"""`masked`: the teacher reads each record's masked window (HAD's rule). `full`: one pass on
the unmasked window, every token stored, masks drawn at training time (design.md section 6)."""
SHARD_DONE = "shard_done"
CHUNK_DONE = "chunk_done"
"""The done markers of schema 2 stores, one per chunk (each chunk was its own shard)."""
TOPK_KMER = "teacher_topk_kmer"
TOPK_PROB = "teacher_topk_prob"
BASE_PROB = "teacher_base_prob"
PREDICTION_ARRAYS = (TOPK_KMER, TOPK_PROB, BASE_PROB)
"""The teacher's predictions at the masked groups (`had_cache.predictions`), when stored."""

CHECKSUM = "crc32c"
"""The checksum codec new stores carry in every array's codec chain (zarr's `Crc32cCodec`)."""
LOCK_FILE = "had.lock"
"""The writer's lock file in the store folder (`had_common.lock`): who writes it, since when."""
CREATING_MARKER = "had.creating"
"""Present while a store is being created, removed once its arrays and attributes exist: a folder
holding it is a store of ours that a rerun recreates."""
INDEX_ARRAYS = (CONTIG, START, STRAND)
"""Written whole at creation (the window table), not shard by shard."""
RANK_LOCK_PREFIX = f"{LOCK_FILE}.rank-"
"""`had.lock.rank-R-of-W`: the lock of rank R of a run of W ranks (sharded extraction)."""
SETUP_LOCK = f"{LOCK_FILE}.setup"
"""Held for seconds by the rank that creates or finalises a sharded store: ranks of one run
create the store once (the first to arrive) and the last to finish marks it complete."""


def rank_lock(rank: int, world_size: int) -> str:
    return f"{RANK_LOCK_PREFIX}{rank}-of-{world_size}"


TEACHER_PREFIX = "teacher_layer_"


def teacher_array(layer: int) -> str:
    """Name of the features array of teacher hidden_states index `layer` (non-negative)."""
    return f"{TEACHER_PREFIX}{layer}"


TEACHER_DTYPE = np.dtype("float16")
"""bfloat16 is not a portable zarr dtype; float16 holds layer-normed features without loss that matters."""
PREDICTION_DTYPE = np.dtype("float16")
"""Probabilities in [0, 1]: float16's 3 significant digits are plenty for a training target."""


def hidden_state_index(layer: int, num_layers: int) -> int:
    """`layer` as a non-negative index into HF hidden_states (num_layers + 1 entries)."""
    if not -(num_layers + 1) <= layer <= num_layers:
        raise ConfigError(
            f"layer {layer} is out of range for a teacher with {num_layers} layers "
            f"(valid: {-(num_layers + 1)}..{num_layers}; 0 = embeddings, -1 = final layer)"
        )
    return layer % (num_layers + 1)


@dataclass(frozen=True)
class TeacherInfo:
    """Which teacher produced the features, and how they were taken."""

    name_or_path: str
    revision: str | None
    weights_sha256: str | None
    layers: list[int]
    num_layers: int
    hidden_size: int
    dtype: str
    token_dropout: bool | None
    mask_token_id: int
    layer_rule: str = (
        "index into Hugging Face hidden_states, stored non-negative: 0 is the embedding output, "
        "num_layers (= -1) the final layer's output after the final layer norm "
        "(= last_hidden_state)"
    )

    def resolve_layer(self, layer: int) -> int:
        """A hidden_states index, negative ones counted from the end, as stored (non-negative)."""
        return hidden_state_index(layer, self.num_layers)

    @property
    def default_layer(self) -> int:
        """The layer a reader serves unless told otherwise: the deepest stored one."""
        return max(self.layers)


@dataclass(frozen=True)
class FastaInfo:
    """Which genome the windows came from."""

    path: str
    size: int
    sha256: str


@dataclass(frozen=True)
class StoreAttrs:
    """Everything a reader needs to trust and interpret a store (saved as the group's attributes)."""

    k: int
    window_bp: int
    n_tokens: int
    n_masked: int
    mask_ratio: float
    mask_seed: int
    n_records: int
    chunk_records: int
    contigs: list[str]
    strands: str
    skipped_n_windows: int
    max_windows: int | None
    teacher: TeacherInfo
    fasta: FastaInfo
    had_version: str
    schema_version: str = SCHEMA_VERSION
    format: str = FORMAT_NAME
    complete: bool = False
    checksum: str | None = None
    skipped_ambiguous_windows: int = 0
    prediction_top_k: int = 0
    shard_chunks: int = 1
    windowing: dict[str, Any] = field(default_factory=dict)
    teacher_gate: dict[str, Any] | None = None
    provenance: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    codec: dict[str, Any] = field(default_factory=dict)
    codec_fit: dict[str, Any] = field(default_factory=dict)
    replay: dict[str, Any] = field(default_factory=dict)
    teacher_input: str = "masked"
    drift: dict[str, Any] | None = None

    @property
    def n_visible(self) -> int:
        return self.n_tokens - self.n_masked

    @property
    def codec_name(self) -> str:
        """The features' codec (`had_cache.codecs`); stores before 3.1 hold float16."""
        return self.codec.get("name", "fp16")

    @property
    def full_teacher(self) -> bool:
        """True for an unmasked-teacher store: every token's features, masks drawn later."""
        return self.teacher_input == "full"

    @property
    def feature_tokens(self) -> int:
        """Tokens per record whose features are stored: the visible ones, or all of them."""
        return self.n_tokens if self.full_teacher else self.n_visible

    @property
    def is_replay(self) -> bool:
        """True if records are draws (locus, offset, strand, mask) rather than the tiling."""
        return bool(self.replay)

    @property
    def hidden_size(self) -> int:
        return self.teacher.hidden_size

    @property
    def has_predictions(self) -> bool:
        """Whether the store holds the teacher's predictions at the masked groups."""
        return self.prediction_top_k > 0

    @property
    def n_chunks(self) -> int:
        return -(-self.n_records // self.chunk_records)

    def chunk_slice(self, chunk: int) -> slice:
        """Record range of chunk `chunk` (the unit a reader decodes)."""
        start = chunk * self.chunk_records
        return slice(start, min(start + self.chunk_records, self.n_records))

    @property
    def shard_records(self) -> int:
        return self.chunk_records * self.shard_chunks

    @property
    def n_shards(self) -> int:
        return -(-self.n_records // self.shard_records)

    def shard_slice(self, shard: int) -> slice:
        """Record range of shard `shard` (the unit one writer owns, writes whole and marks)."""
        start = shard * self.shard_records
        return slice(start, min(start + self.shard_records, self.n_records))

    def shard_chunk_range(self, shard: int) -> range:
        """The chunks of shard `shard`."""
        first = shard * self.shard_chunks
        return range(first, min(first + self.shard_chunks, self.n_chunks))

    def rank_shards(self, rank: int, world_size: int) -> range:
        """The shards rank `rank` of `world_size` owns: a contiguous, disjoint share (the
        window list is the same on every rank, so the shares tile the store)."""
        return range(rank * self.n_shards // world_size, (rank + 1) * self.n_shards // world_size)

    @property
    def version(self) -> tuple[int, int]:
        """(major, minor) of the schema the store was written with."""
        parsed = parse_version(self.schema_version)
        assert parsed is not None, self.schema_version
        return parsed

    @property
    def done_array(self) -> str:
        """The array of done markers: one per shard (3.0), one per chunk before."""
        return SHARD_DONE if self.version[0] >= 3 else CHUNK_DONE

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any], where: str) -> StoreAttrs:
        """Parse stored attributes, refusing other formats and unreadable schema versions."""
        if not is_store_attrs(data):
            raise StoreError(f"{where} is not a had-cache store (no '{ATTRS_KEY}' attributes)")
        version = check_readable(
            data.get("schema_version"),
            SCHEMA_VERSION,
            "schema",
            where,
            StoreError,
            also_reads=READS_OLDER_MAJORS,
        )
        fields = dict(data)
        fields["teacher"] = _dataclass_from_json(TeacherInfo, fields.get("teacher"), where)
        fields["fasta"] = _dataclass_from_json(FastaInfo, fields.get("fasta"), where)
        # The version it was written with decides the layout (the done markers' array);
        # a writer that finalises a store writes it as this version (`StoreWriter.finalize`).
        fields["schema_version"] = format_version(version)
        attrs = _dataclass_from_json(cls, fields, where)
        if attrs.codec_name not in codecs.CODEC_NAMES:
            raise StoreError(
                f"{where}: unknown codec {attrs.codec_name!r} (this had reads "
                f"{', '.join(codecs.CODEC_NAMES)})"
            )
        if attrs.teacher_input not in TEACHER_INPUTS:
            raise StoreError(f"{where}: unknown teacher input {attrs.teacher_input!r}")
        return attrs

    def extraction(self) -> dict[str, Any]:
        """The attributes that define the extracted data (not how or when it was written)."""
        data = self.to_json()
        # The format version says how the attributes are written, not what was extracted; the
        # shard size is how the records are grouped in files (compared by `same_extraction`).
        for volatile in (
            "complete",
            "checksum",
            "skipped_ambiguous_windows",
            "had_version",
            "schema_version",
            "shard_chunks",
            "teacher_gate",
            "provenance",
            "extra",
            "codec_fit",
            "drift",
        ):
            data.pop(volatile)
        # Added in 2.2 and 3.0; at their defaults (nothing stored, whole contigs) they leave
        # older stores' fingerprints as they were recorded.
        if not data["prediction_top_k"]:
            data.pop("prediction_top_k")
        if not data["windowing"]:
            data.pop("windowing")
        # Added in 3.1, likewise.
        for key in ("codec", "replay"):
            if not data[key]:
                data.pop(key)
        if data["teacher_input"] == "masked":
            data.pop("teacher_input")
        return data

    def same_extraction(self, other: StoreAttrs) -> bool:
        """True if both describe the same extraction in the same layout (what a resumed run
        must not change)."""
        return self.extraction() == other.extraction() and self.shard_chunks == other.shard_chunks

    def fingerprint(self) -> str:
        """sha256 of the defining attributes: the FASTA and teacher checksums, windows, masks."""
        text = json.dumps(self.extraction(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()


def is_store_attrs(data: object) -> bool:
    """True if a group's `had` attribute says the group is a store of ours."""
    return isinstance(data, dict) and data.get("format") == FORMAT_NAME


def _dataclass_from_json(cls: type, data: object, where: str) -> Any:
    """`cls(**data)` with one-line errors: missing required or unknown attributes are named
    (an attribute this version does not know means the store is not what its version says)."""
    if not isinstance(data, dict):
        raise StoreError(f"{where}: attribute block {cls.__name__} is not a mapping")
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(known))
    required = [
        name
        for name, f in known.items()
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    missing = [name for name in required if name not in data]
    if unknown or missing:
        problems = [f"unknown {', '.join(unknown)}"] if unknown else []
        problems += [f"missing {', '.join(missing)}"] if missing else []
        raise StoreError(
            f"{where}: {cls.__name__} attributes do not fit schema {SCHEMA_VERSION} "
            f"({'; '.join(problems)})"
        )
    return cls(**data)


ArraySpec = tuple[tuple[int, ...], np.dtype, tuple[int, ...]]
"""(shape, dtype, chunk shape) of one array."""


def array_specs(attrs: StoreAttrs) -> dict[str, ArraySpec]:
    """name -> (shape, dtype, chunk shape) of every array in a store with these attributes.

    The chunk shape is the inner chunk (what a reader decodes); `shard_shape` gives the shard.
    """
    n, c = attrs.n_records, attrs.chunk_records
    m, k = attrs.n_masked, attrs.prediction_top_k
    return {
        SEQ: ((n, attrs.window_bp), np.dtype("uint8"), (c, attrs.window_bp)),
        MASK: ((n, attrs.n_tokens), np.dtype("bool"), (c, attrs.n_tokens)),
        # One array (or two: values and scale) per stored layer, so training on one layer
        # reads only that layer's chunks.
        **{
            name: ((n, *shape), dtype, (c, *shape))
            for layer in attrs.teacher.layers
            for name, (dtype, shape) in feature_arrays(attrs, layer).items()
        },
        # The teacher's predictions at the masked groups (top K 6-mers, per-base marginals).
        **(
            {
                TOPK_KMER: ((n, m, k), np.dtype("int16"), (c, m, k)),
                TOPK_PROB: ((n, m, k), PREDICTION_DTYPE, (c, m, k)),
                BASE_PROB: ((n, m, attrs.k, 4), PREDICTION_DTYPE, (c, m, attrs.k, 4)),
            }
            if k
            else {}
        ),
        CONTIG: ((n,), np.dtype("int32"), (c,)),
        START: ((n,), np.dtype("int64"), (c,)),
        STRAND: ((n,), np.dtype("int8"), (c,)),
        **(
            {LOCUS: ((n,), np.dtype("int64"), (c,)), OFFSET: ((n,), np.dtype("int32"), (c,))}
            if attrs.is_replay
            else {}
        ),
        # One marker per shard, each in a file of its own, so writers of different shards never
        # share a file.
        attrs.done_array: ((attrs.n_shards,), np.dtype("bool"), (1,)),
    }


def index_arrays(attrs: StoreAttrs) -> tuple[str, ...]:
    """The arrays written whole at creation: the window index (and a replay's draws)."""
    return (*INDEX_ARRAYS, LOCUS, OFFSET) if attrs.is_replay else INDEX_ARRAYS


def record_bytes(attrs: StoreAttrs) -> int:
    """Uncompressed bytes of one record in the arrays written shard by shard (everything but the
    index arrays and the done markers): the unit of disk-space and throughput estimates."""
    return sum(
        int(np.prod(shape[1:])) * dtype.itemsize
        for name, (shape, dtype, _) in array_specs(attrs).items()
        if name not in (*index_arrays(attrs), attrs.done_array)
    )


def feature_arrays(attrs: StoreAttrs, layer: int) -> dict[str, tuple[np.dtype, tuple[int, ...]]]:
    """name -> (dtype, trailing shape) of the per-record arrays holding one layer's features:
    `teacher_layer_L` (the codec's values) and, for int8 codecs, `teacher_layer_L_scale`."""
    fields = codecs.field_specs(attrs.codec_name, attrs.hidden_size, attrs.codec.get("pca_dim"))
    return {
        feature_array(layer, key): (f.dtype, (attrs.feature_tokens, *f.shape))
        for key, f in fields.items()
    }


def feature_array(layer: int, key: str) -> str:
    """The array of layer `layer` holding a codec's per-record field `key` (`codecs.VALUES`:
    `teacher_layer_L` itself, as every schema wrote it; `scale`: `teacher_layer_L_scale`)."""
    base = teacher_array(layer)
    return base if key == codecs.VALUES else f"{base}_{key}"


def codec_parameter_array(layer: int, param: str) -> str:
    """`teacher_layer_L_<param>`: a store-level array of layer L's codec (rotation, mean, basis)."""
    return f"{teacher_array(layer)}_{param}"


def shard_shape(attrs: StoreAttrs, name: str, chunks: tuple[int, ...]) -> tuple[int, ...] | None:
    """The shard shape of array `name` (chunk shape `chunks`), None where it is not sharded:
    the done markers, and every array of a store whose shards are one chunk (stored as plain
    chunks, the layout of schema 2)."""
    if name == attrs.done_array or attrs.shard_chunks == 1:
        return None
    return (chunks[0] * attrs.shard_chunks, *chunks[1:])


DEFAULT_CHUNK_BYTES = 16 << 20
"""~16 MB of one layer's features per chunk: what a reader decodes at once (whole-chunk reads)."""
DEFAULT_SHARD_BYTES = 256 << 20
"""~256 MB of one layer's features per shard: hg38 (2.9M windows per strand) x NTv2-500M is
then ~3,300 files per array per strand, and a writer holds a few shards in memory."""


def feature_record_bytes(n_visible: int, hidden_size: int) -> int:
    return n_visible * hidden_size * TEACHER_DTYPE.itemsize


def default_chunk_records(
    n_visible: int,
    hidden_size: int,
    target_bytes: int = DEFAULT_CHUNK_BYTES,
    record_bytes: int | None = None,
) -> int:
    """Records per chunk so that one chunk of one layer is about `target_bytes` (whole-chunk
    reads); `record_bytes`: one record's stored features where a codec makes them smaller."""
    return max(1, target_bytes // (record_bytes or feature_record_bytes(n_visible, hidden_size)))


def default_shard_chunks(
    chunk_records: int,
    n_visible: int,
    hidden_size: int,
    n_records: int,
    target_bytes: int = DEFAULT_SHARD_BYTES,
) -> int:
    """Chunks per shard so that one shard of one layer is about `target_bytes` of float16
    features (at most the whole store: a small store is one shard). Counted at float16 whatever
    the codec: the writer holds a shard as float16 before encoding it, so this bounds memory."""
    chunk_bytes = chunk_records * feature_record_bytes(n_visible, hidden_size)
    n_chunks = -(-n_records // chunk_records)
    return max(1, min(n_chunks, round(target_bytes / chunk_bytes)))
