"""The one way to read a store: validated attributes and whole-chunk reads.

Reading record by record through zarr costs milliseconds each, so readers take whole chunks
(megabytes) and shuffle in memory. Every chunk is checked as it is read: a chunk file that is
missing (zarr would serve fill values), fails its crc32c checksum (schema 2.1) or holds
non-finite features is refused in one line naming the array and chunk, never trained on. A reader opens the group lazily in each process, so a
DataLoader worker never inherits an open store across fork.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import zarr

from had_cache import schema
from had_cache.schema import StoreError


@dataclass(frozen=True)
class Records:
    """A block of records, as stored (teacher features keep schema.TEACHER_DTYPE)."""

    index: np.ndarray  # int64 [n], record ids
    seq: np.ndarray  # uint8 [n, W]
    mask: np.ndarray  # bool [n, T]
    teacher: np.ndarray  # schema.TEACHER_DTYPE [n, T - M, D], features of the reader's layer
    base_prob: np.ndarray | None = (
        None  # float16 [n, M, 6, 4]: the teacher's soft targets, if stored
    )


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


def open_group(path: Path, mode: str = "r") -> zarr.Group:
    """The Zarr group at `path`, or a StoreError saying what is there instead."""
    path = Path(path)
    if not path.exists():
        raise StoreError(f"store not found: {path}")
    if not path.is_dir():
        raise StoreError(f"{path} is a file, not a Zarr store (a folder)")
    try:
        return zarr.open_group(str(path), mode=mode)
    except (FileNotFoundError, zarr.errors.GroupNotFoundError, ValueError) as err:
        raise StoreError(f"{path} is not a Zarr store") from err


def read_attrs(path: Path) -> schema.StoreAttrs:
    """The validated attributes of the store at `path` (complete or not)."""
    raw = dict(open_group(path).attrs).get(schema.ATTRS_KEY, {})
    return schema.StoreAttrs.from_json(raw, str(path))


def is_store(path: Path) -> bool:
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
        self, path: Path | str, require_complete: bool = True, layer: int | None = None
    ) -> None:
        self.path = Path(path)
        group = open_group(self.path)
        raw = dict(group.attrs).get(schema.ATTRS_KEY, {})
        self.attrs = schema.StoreAttrs.from_json(raw, str(self.path))
        if require_complete and not self.attrs.complete:
            done = int(np.sum(group[schema.CHUNK_DONE][:]))
            raise StoreError(
                f"{self.path} is incomplete ({done}/{self.attrs.n_chunks} chunks written); "
                "rerun the same `had-cache extract` command to finish it"
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

    @property
    def group(self) -> zarr.Group:
        if self._group is None or self._pid != os.getpid():
            self._group = zarr.open_group(str(self.path), mode="r")
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
        """True if the file of chunk `chunk` (along the record axis) of array `name` exists."""
        array = self.group[name]
        coords = (chunk,) + (0,) * (array.ndim - 1)
        key = array.metadata.chunk_key_encoding.encode_chunk_key(coords)
        return (self.path / name / key).is_file()

    def must_exist(self, name: str) -> bool:
        """Whether every done chunk of `name` must have a file: always for records' data; for
        the index arrays only where every chunk is written (2.1), as 2.0 skipped chunks equal
        to the fill value."""
        return name not in schema.INDEX_ARRAYS or self.attrs.checksum is not None

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
            teacher=self._read_rows(schema.teacher_array(self.layer), rows),
            base_prob=(
                self._read_rows(schema.BASE_PROB, rows) if self.attrs.has_predictions else None
            ),
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
        teacher = np.empty((len(records), a.n_visible, a.hidden_size), dtype=schema.TEACHER_DTYPE)
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
        return Records(index=records, seq=seq, mask=mask, teacher=teacher, base_prob=base_prob)

    def read_chunk(self, chunk: int) -> Records:
        return self.read(self.attrs.chunk_slice(chunk))

    def read_windows(self, rows: slice) -> tuple[np.ndarray, np.ndarray]:
        """(seq, mask) of the records in `rows`, without their teacher features (a few bytes
        per base instead of ~300 kB per record): what models of the DNA alone need."""
        g = self.group
        return g[schema.SEQ][rows], g[schema.MASK][rows]

    def locations(self) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
        """(contig names, contig index, start, strand) of every record."""
        g = self.group
        return self.attrs.contigs, g[schema.CONTIG][:], g[schema.START][:], g[schema.STRAND][:]
