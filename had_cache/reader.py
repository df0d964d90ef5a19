"""The one way to read a store: validated attributes and whole-chunk reads.

Reading record by record through zarr costs milliseconds each, so readers take whole chunks
(megabytes) and shuffle in memory. Every chunk is checked as it is read: a chunk file that is
missing (zarr would serve fill values), fails its crc32c checksum (schema 2.1) or holds
non-finite features is refused in one line naming the array and chunk, never trained on. A
reader opens the group lazily in each process, so a DataLoader worker never inherits an open
store across fork.

A store is a local folder, any fsspec URL (`s3://bucket/hg38.had.zarr`, `gs://...`,
`file:///...`, `memory://...`) or a zarr `Store` object (`zarr.storage.MemoryStore`); `Location`
gives the reader and the writer one interface to all three. Since schema 3.0 the arrays are
sharded: a chunk is read through its shard's index (a range read of the shard file), and a
shard file that is missing is damage (every chunk of a written shard is in it).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.abc.store import Store
from zarr.core.buffer import default_buffer_prototype
from zarr.core.sync import sync
from zarr.storage import LocalStore
from zarr.storage._common import make_store_path

from had_cache import codecs, schema
from had_cache.schema import StoreError

StoreLike = Path | str | Store
"""What `--out` / `--cache` may name: a folder, an fsspec URL, or a zarr Store object."""


def is_url(target: object) -> bool:
    """True for `scheme://...` (fsspec URLs); a plain path is a local folder."""
    return isinstance(target, str) and "://" in target


class Location:
    """Where a store lives, and the few key operations the writer and reader need beyond zarr's
    arrays (markers, lock objects, presence of a shard file, clearing, size).

    A local folder keeps the file-system rules (hard-link locks, pid liveness, rename-into-place
    writes); a URL or Store object is reached only through zarr's store classes.
    """

    def __init__(self, target: StoreLike | Location) -> None:
        if isinstance(target, Location):
            target = target.target
        self.target = target
        self.local: Path | None = (
            Path(target) if isinstance(target, Path | str) and not is_url(target) else None
        )
        self._store: Store | None = target if isinstance(target, Store) else None
        self._pid = os.getpid()

    def __str__(self) -> str:
        if self.local is not None:
            return str(self.local)
        if isinstance(self.target, str):
            return self.target
        return f"<{type(self.target).__name__}>"

    def __fspath__(self) -> str:  # so that `Path(location)` works for local folders
        if self.local is None:
            raise TypeError(f"{self} is not a local path")
        return str(self.local)

    @property
    def store(self) -> Store:
        """The zarr store (opened anew in a forked process, for fsspec's sake)."""
        if isinstance(self.target, Store):
            return self.target
        if self._store is None or self._pid != os.getpid():
            if self.local is not None:
                self._store = LocalStore(self.local)
            else:
                options = {"auto_mkdir": True} if str(self.target).startswith("file:") else None
                path = sync(make_store_path(self.target, mode="a", storage_options=options))
                self._store = path.store
            self._pid = os.getpid()
        return self._store

    def exists(self, key: str) -> bool:
        if self.local is not None:
            return (self.local / key).is_file()
        return bool(sync(self.store.exists(key)))

    def get(self, key: str) -> bytes | None:
        buf = sync(self.store.get(key, prototype=default_buffer_prototype()))
        return None if buf is None else buf.to_bytes()

    def set(self, key: str, value: bytes, exclusive: bool = False) -> None:
        buf = default_buffer_prototype().buffer.from_bytes(value)
        if exclusive:
            sync(self.store.set_if_not_exists(key, buf))
        else:
            sync(self.store.set(key, buf))

    def delete(self, key: str) -> None:
        sync(self.store.delete(key))

    def list_keys(self) -> list[str]:
        """Every key in the store (for stores that are not folders)."""

        store = self.store  # opened here: `sync` cannot be nested inside the coroutine

        async def collect() -> list[str]:
            return [k async for k in store.list_prefix("")]

        return sync(collect())

    def top_names(self) -> list[str]:
        """Names at the store's top level (files and folders for a local folder)."""
        if self.local is not None:
            return [p.name for p in self.local.iterdir()] if self.local.is_dir() else []
        return sorted({k.split("/", 1)[0] for k in self.list_keys()})

    def nbytes(self) -> int:
        """Bytes the store takes (every file or object)."""
        if self.local is not None:
            return sum(p.stat().st_size for p in self.local.rglob("*") if p.is_file())
        return int(sync(self.store.getsize_prefix("")))

    def open_group(self, mode: str = "r") -> zarr.Group:
        if self.local is not None:
            return zarr.open_group(str(self.local), mode=mode)
        return zarr.open_group(store=self.store, mode=mode)

    def __repr__(self) -> str:
        return f"Location({self})"

    def __eq__(self, other: Any) -> bool:
        return isinstance(other, Location) and str(self) == str(other)

    def __hash__(self) -> int:
        return hash(str(self))


@dataclass(frozen=True)
class Records:
    """A block of records, as stored: teacher features in the store codec's arrays (float16
    values for fp16; int8 values and a float32 scale per token for the int8 codecs), decoded
    by `CacheReader.codec` where they are used (on the training device)."""

    index: np.ndarray  # int64 [n], record ids
    seq: np.ndarray  # uint8 [n, W]
    mask: np.ndarray  # bool [n, T]
    teacher: np.ndarray  # [n, T - M (all T for a full-teacher store), D or R], the codec's values
    base_prob: np.ndarray | None = (
        None  # float16 [n, M, 6, 4]: the teacher's soft targets, if stored
    )
    scale: np.ndarray | None = None  # float32 [n, T - M or T]: the int8 codecs' row scales


def load_codecs(group: zarr.Group, attrs: schema.StoreAttrs) -> dict[int, codecs.FeatureCodec]:
    """The codec of each stored layer, as the store records it (attributes and parameter
    arrays); fp16 for stores before schema 3.1."""
    return {layer: load_codec(group, attrs, layer) for layer in attrs.teacher.layers}


def load_codec(group: zarr.Group, attrs: schema.StoreAttrs, layer: int) -> codecs.FeatureCodec:
    """Layer `layer`'s codec (see `load_codecs`)."""
    if attrs.codec_name == "fp16":
        return codecs.Fp16Codec(attrs.hidden_size)
    fit = attrs.codec_fit.get(str(layer))
    if fit is None:
        raise StoreError(
            f"the store's codec {attrs.codec_name} has no parameters for layer {layer}"
        )
    params = {
        name: np.asarray(group[schema.codec_parameter_array(layer, name)][...])
        for name in (codecs.ROTATION, codecs.MEAN, codecs.BASIS)
        if schema.codec_parameter_array(layer, name) in group
    }
    return codecs.codec_from_json(fit["codec"], params)


class ChunkError(StoreError):
    """One chunk of one array is missing or damaged (its file, checksum or values)."""

    def __init__(self, path: Path, name: str, chunk: int, what: str) -> None:
        self.name, self.chunk, self.what = name, chunk, what
        super().__init__(
            f"{path}: chunk {chunk} of array {name} {what}; the store is damaged. "
            f"`had-cache verify {path} --repair` marks damaged chunks for re-extraction, then "
            "rerun the same `had-cache extract` command"
        )


def chunk_problem(path: Path, name: str, chunk: int, what: str) -> ChunkError:
    """The one wording of a damaged chunk, with the way out."""
    return ChunkError(path, name, chunk, what)


def open_group(path: StoreLike | Location, mode: str = "r") -> zarr.Group:
    """The Zarr group at `path`, or a StoreError saying what is there instead."""
    where = Location(path)
    if where.local is not None:
        if not where.local.exists():
            raise StoreError(f"store not found: {where}")
        if not where.local.is_dir():
            raise StoreError(f"{where} is a file, not a Zarr store (a folder)")
    try:
        return where.open_group(mode)
    except (FileNotFoundError, zarr.errors.GroupNotFoundError, ValueError) as err:
        what = "not a Zarr store" if where.local is not None else "not a Zarr store (or not found)"
        raise StoreError(f"{where} is {what}") from err


def read_attrs(path: StoreLike | Location) -> schema.StoreAttrs:
    """The validated attributes of the store at `path` (complete or not)."""
    raw = dict(open_group(path).attrs).get(schema.ATTRS_KEY, {})
    return schema.StoreAttrs.from_json(raw, str(Location(path)))


def is_store(path: StoreLike | Location) -> bool:
    """True only for a folder whose attributes say it is a had-cache store, of any version:
    the one test a path must pass before anything may delete it."""
    try:
        group = open_group(path)
    except StoreError:
        return False
    return schema.is_store_attrs(dict(group.attrs).get(schema.ATTRS_KEY))


class CacheReader:
    """Read-only access to a complete store, serving the features of one stored teacher layer.

    `layer` is a hidden_states index (negative counts from the end); None means the deepest
    stored layer.
    """

    def __init__(
        self, path: StoreLike | Location, require_complete: bool = True, layer: int | None = None
    ) -> None:
        self.location = Location(path)
        self.path = self.location.local or self.location
        group = open_group(self.location)
        raw = dict(group.attrs).get(schema.ATTRS_KEY, {})
        self.attrs = schema.StoreAttrs.from_json(raw, str(self.location))
        if require_complete and not self.attrs.complete:
            done = int(np.sum(group[self.attrs.done_array][:]))
            raise StoreError(
                f"{self.path} is incomplete ({done}/{self.attrs.n_shards} shards written); "
                "rerun the same `had-cache extract` command (every rank of it) to finish it, "
                "or `had-cache finalize` if every rank has finished"
            )
        info = self.attrs.teacher
        self.layer = info.default_layer if layer is None else info.resolve_layer(layer)
        if self.layer not in info.layers:
            raise StoreError(
                f"{self.path} holds teacher layers {', '.join(map(str, info.layers))}, "
                f"not layer {layer}; re-extract with --layers to add it"
            )
        self._group: zarr.Group | None = None
        self._pid = -1
        self._codec: codecs.FeatureCodec | None = None
        self.values_array = schema.teacher_array(self.layer)
        self.scale_array = next(
            (n for n in schema.feature_arrays(self.attrs, self.layer) if n != self.values_array),
            None,
        )

    @property
    def codec(self) -> codecs.FeatureCodec:
        """How this layer's stored arrays decode into features (`FeatureCodec.decode`)."""
        if self._codec is None:
            self._codec = load_codec(self.group, self.attrs, self.layer)
        return self._codec

    @property
    def group(self) -> zarr.Group:
        if self._group is None or self._pid != os.getpid():
            self._group = self.location.open_group("r")
            self._pid = os.getpid()
        return self._group

    def __len__(self) -> int:
        return self.attrs.n_records

    def layout(self, name: str) -> tuple[tuple[int, ...], np.dtype, tuple[int, ...]] | None:
        """(shape, dtype, chunk shape) of array `name` as stored, None if it is missing."""
        try:
            array = self.group[name]
        except (KeyError, zarr.errors.NodeNotFoundError):
            return None
        return tuple(array.shape), np.dtype(array.dtype), tuple(array.chunks)

    def has_checksums(self, name: str) -> bool:
        """True if array `name` carries the crc32c codec (schema 2.1 stores)."""
        return any(type(c).__name__ == "Crc32cCodec" for c in self.group[name].compressors)

    def chunk_present(self, name: str, chunk: int) -> bool:
        """True if the file holding chunk `chunk` (along the record axis) of array `name`
        exists: its shard's file in a sharded array (a written shard holds every chunk, and its
        index carries a checksum, so a chunk cannot go missing inside it unnoticed)."""
        array = self.group[name]
        shard = chunk * array.chunks[0] // (array.shards or array.chunks)[0]
        coords = (shard,) + (0,) * (array.ndim - 1)
        key = array.metadata.chunk_key_encoding.encode_chunk_key(coords)
        return self.location.exists(f"{name}/{key}")

    def must_exist(self, name: str) -> bool:
        """Whether every done chunk of `name` must have a file: always for records' data; for
        the index arrays only where every chunk is written (2.1), as 2.0 skipped chunks equal
        to the fill value."""
        return name not in schema.index_arrays(self.attrs) or self.attrs.checksum is not None

    def read_array_chunk(self, name: str, chunk: int, check_present: bool = True) -> np.ndarray:
        """One chunk of array `name`, refused (StoreError naming it) if missing or damaged."""
        if check_present and self.must_exist(name) and not self.chunk_present(name, chunk):
            raise chunk_problem(self.path, name, chunk, "is missing (its file was deleted)")
        array = self.group[name]
        lo = chunk * array.chunks[0]
        rows = slice(lo, min(lo + array.chunks[0], array.shape[0]))
        try:
            data = array[rows]
        except Exception as err:  # zarr's codecs raise ValueError, RuntimeError, ... on damage
            what = (
                "fails its crc32c checksum (its bytes changed after writing)"
                if "checksum" in str(err)
                else f"cannot be decoded ({type(err).__name__}: {err})"
            )
            raise chunk_problem(self.path, name, chunk, what) from None
        if data.dtype.kind == "f" and not np.isfinite(data).all():
            bad = int((~np.isfinite(data)).sum())
            raise chunk_problem(self.path, name, chunk, f"holds {bad} non-finite values")
        return data

    def _read_rows(self, name: str, rows: slice) -> np.ndarray:
        c = self.attrs.chunk_records
        first, last = rows.start // c, (rows.stop - 1) // c
        parts = [self.read_array_chunk(name, chunk) for chunk in range(first, last + 1)]
        data = parts[0] if len(parts) == 1 else np.concatenate(parts)
        return data[rows.start - first * c : rows.stop - first * c]

    def read(self, rows: slice) -> Records:
        """Records in `rows` (a contiguous range; chunk-aligned ranges are fastest), each chunk
        checked for presence, checksum and finite features."""
        if rows.stop <= rows.start:
            raise ValueError(f"empty record range {rows}")
        return Records(
            index=np.arange(rows.start, rows.stop, dtype=np.int64),
            seq=self._read_rows(schema.SEQ, rows),
            mask=self._read_rows(schema.MASK, rows),
            teacher=self._read_rows(self.values_array, rows),
            base_prob=(
                self._read_rows(schema.BASE_PROB, rows) if self.attrs.has_predictions else None
            ),
            scale=None if self.scale_array is None else self._read_rows(self.scale_array, rows),
        )

    def take(
        self, records: np.ndarray, read_chunk: Callable[[int], Records] | None = None
    ) -> Records:
        """Arbitrary records, in the given order, reading each chunk they touch once.

        `read_chunk` (default: `self.read_chunk`) lets a caller serve chunks from its own cache.
        """
        read_chunk = read_chunk or self.read_chunk
        records = np.asarray(records, dtype=np.int64)
        a = self.attrs
        seq = np.empty((len(records), a.window_bp), dtype=np.uint8)
        mask = np.empty((len(records), a.n_tokens), dtype=bool)
        arrays = schema.feature_arrays(a, self.layer)
        dtype, shape = arrays[self.values_array]
        teacher = np.empty((len(records), *shape), dtype=dtype)
        scale = (
            None
            if self.scale_array is None
            else np.empty((len(records), *arrays[self.scale_array][1]), np.float32)
        )
        base_prob = (
            np.empty((len(records), a.n_masked, a.k, 4), dtype=schema.PREDICTION_DTYPE)
            if a.has_predictions
            else None
        )
        chunk_of = records // a.chunk_records
        for chunk in np.unique(chunk_of):
            rows = np.flatnonzero(chunk_of == chunk)
            block = read_chunk(int(chunk))
            local = records[rows] - int(block.index[0])
            seq[rows], mask[rows], teacher[rows] = (
                block.seq[local],
                block.mask[local],
                block.teacher[local],
            )
            if base_prob is not None:
                base_prob[rows] = block.base_prob[local]
            if scale is not None:
                scale[rows] = block.scale[local]
        return Records(records, seq, mask, teacher, base_prob, scale)

    def read_chunk(self, chunk: int) -> Records:
        return self.read(self.attrs.chunk_slice(chunk))

    def read_windows(self, rows: slice) -> tuple[np.ndarray, np.ndarray]:
        """(seq, mask) of the records in `rows`, without their teacher features (a few bytes
        per base instead of ~300 kB per record): what models of the DNA alone need."""
        g = self.group
        return g[schema.SEQ][rows], g[schema.MASK][rows]

    def draws(self) -> tuple[np.ndarray, np.ndarray] | None:
        """(locus, offset) of every record of a replay store; None for a tiling."""
        if not self.attrs.is_replay:
            return None
        return self.group[schema.LOCUS][:], self.group[schema.OFFSET][:]

    def locations(self) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
        """(contig names, contig index, start, strand) of every record."""
        g = self.group
        return self.attrs.contigs, g[schema.CONTIG][:], g[schema.START][:], g[schema.STRAND][:]
