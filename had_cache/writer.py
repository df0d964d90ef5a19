"""Create a store from a window table and write it chunk by chunk, marking each chunk done last.

Every array is preallocated from the window table (never appended or resized), so chunk i of a
store is a fixed record range that one writer owns. A restart with the same parameters opens the
existing store and writes only the chunks whose `chunk_done` marker is unset; rank r of R takes a
disjoint, contiguous range of chunks (the seam for sharded extraction).

Crash safety, moment by moment (docs/reliability.md): the writer holds the store's lock file for
the whole run; creation happens under a `had.creating` marker (a kill leaves a folder the rerun
recognises as ours and recreates); zarr writes each chunk file and `zarr.json` through a
temporary file and a rename; a chunk counts only once its marker is set; `complete` is written
last. Every chunk carries a crc32c checksum and is written even when it equals the fill value,
so a reader can tell a missing or damaged chunk from data.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.codecs import Crc32cCodec, ZstdCodec

from had_cache import schema
from had_cache.reader import is_store, read_attrs
from had_cache.schema import StoreError
from had_cache.windows import WindowTable
from had_common.files import disk_full_guard
from had_common.lock import FileLock

WRITE_CONFIG = {"write_empty_chunks": True}
"""Every chunk of a written range exists on disk, so a missing chunk file is corruption."""
RESUME_ADVICE = "free space and rerun the same command: it resumes from the last chunk written"


def compressors(attrs: schema.StoreAttrs) -> list[object]:
    """The codec chain after serialisation: zarr's default zstd, then the checksum (if any)."""
    chain: list[object] = [ZstdCodec(level=0, checksum=False)]
    if attrs.checksum == schema.CHECKSUM:
        chain.append(Crc32cCodec())
    return chain


def _is_done(markers: zarr.Array, chunk: int) -> bool:
    try:
        return bool(markers[chunk])
    except Exception:  # zarr raises ValueError (checksum) or codec errors on a damaged file
        return False


def lock_store(path: Path, overwrite: bool = False) -> FileLock:
    """Take the lock of the store at `path` (creating its folder), refusing a store held by a
    live writer (named) and taking over a stale lock; the writer keeps it until `close`."""
    path = Path(path)
    if store_state(path) == "other":
        check_target(path, overwrite)  # raises, naming what is there
    try:
        with disk_full_guard(path, "locking the store", then=RESUME_ADVICE):
            path.mkdir(parents=True, exist_ok=True)
            return FileLock(path / schema.LOCK_FILE, "had-cache extract").acquire()
    except PermissionError as err:
        raise StoreError(f"--out {path}: cannot write there ({err.strerror})") from None


def store_state(path: Path) -> str:
    """`absent` (nothing, an empty folder, or only a lock left behind), `creating` (a creation
    that was interrupted: ours, recreated), `store`, or `other` (never touched)."""
    path = Path(path)
    if not path.exists():
        return "absent"
    if path.is_dir():
        names = [p.name for p in path.iterdir()]
        if all(n.startswith(schema.LOCK_FILE) for n in names):
            return "absent"
        if schema.CREATING_MARKER in names:
            return "creating"
        if _interrupted_before_markers(path, names):
            return "creating"
    return "store" if is_store(path) else "other"


def _interrupted_before_markers(path: Path, names: list[str]) -> bool:
    """A creation killed by an older had (before the creation marker): a Zarr group without
    attributes holding nothing but arrays of our schema's names (and lock files)."""
    if "zarr.json" not in names:
        return False
    try:
        meta = json.loads((path / "zarr.json").read_text())
    except (OSError, ValueError):
        return False
    if meta.get("node_type") != "group" or meta.get("attributes"):
        return False
    ours = {schema.SEQ, schema.MASK, schema.CHUNK_DONE, *schema.INDEX_ARRAYS}
    return all(
        n == "zarr.json"
        or n.startswith(schema.LOCK_FILE)
        or ((path / n).is_dir() and (n in ours or n.startswith(schema.TEACHER_PREFIX)))
        for n in names
    )


def _clear(path: Path) -> None:
    """Delete everything in a store folder of ours but the lock we hold."""
    for child in Path(path).iterdir():
        if child.name.startswith(schema.LOCK_FILE):
            continue
        if child.is_dir():
            shutil.rmtree(child)
        else:
            child.unlink()


class StoreWriter:
    """Writes the chunks of one store; `open_or_create` is the only way to get one. Use it as a
    context manager (or call `close`) to release the store's lock."""

    def __init__(
        self, group: zarr.Group, attrs: schema.StoreAttrs, path: Path, lock: FileLock
    ) -> None:
        self.group = group
        self.attrs = attrs
        self.path = path
        self.lock = lock

    @classmethod
    def open_or_create(
        cls,
        path: Path,
        attrs: schema.StoreAttrs,
        table: WindowTable,
        overwrite: bool = False,
        lock: FileLock | None = None,
    ) -> StoreWriter:
        """Resume a store of the same extraction, or create it; refuse to clobber a different one.

        `overwrite` replaces only a store of ours: any other file or folder at `path` (a
        mistyped `--out ~/project`, say) is refused untouched. A second writer is refused
        (the lock names the first); a lock left by a killed writer is taken over.
        """
        path = Path(path)
        lock = lock or lock_store(path, overwrite)
        try:
            state = store_state(path)  # again, now that no one else writes it
            if state == "store" and not overwrite:
                existing = read_attrs(path)
                if not existing.same_extraction(attrs):
                    raise StoreError(
                        f"{path} already holds a different extraction (other FASTA, teacher or "
                        "options); pass --overwrite to replace it or choose another --out"
                    )
                group = zarr.open_group(str(path), mode="r+")
                return cls(group, existing, path, lock)
            if state != "absent":
                _clear(path)  # an interrupted creation, or --overwrite of a store of ours
            with disk_full_guard(
                path, "creating the store", then="free space and rerun the same command"
            ):
                return cls._create(path, attrs, table, lock)
        except BaseException:
            lock.release()
            raise

    @classmethod
    def _create(
        cls, path: Path, attrs: schema.StoreAttrs, table: WindowTable, lock: FileLock
    ) -> StoreWriter:
        marker = path / schema.CREATING_MARKER
        marker.touch()
        group = zarr.open_group(str(path), mode="a")
        chain = compressors(attrs)
        for name, (shape, dtype, chunks) in schema.array_specs(attrs).items():
            group.create_array(
                name, shape=shape, dtype=dtype, chunks=chunks, fill_value=0, compressors=chain
            )
        # The window index is known up front; writing it now makes a partial store inspectable.
        group[schema.CONTIG].with_config(WRITE_CONFIG)[:] = table.contig
        group[schema.START].with_config(WRITE_CONFIG)[:] = table.start
        group[schema.STRAND].with_config(WRITE_CONFIG)[:] = table.strand
        group.attrs[schema.ATTRS_KEY] = attrs.to_json()
        marker.unlink()
        return cls(group, attrs, path, lock)

    def __enter__(self) -> StoreWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.lock.release()

    def pending_chunks(self, rank: int = 0, world_size: int = 1) -> list[int]:
        """Chunks not yet done in this rank's contiguous share of the store."""
        n = self.attrs.n_chunks
        lo, hi = rank * n // world_size, (rank + 1) * n // world_size
        markers = self.group[schema.CHUNK_DONE]
        try:
            done = markers[lo:hi]
        except Exception:  # a damaged marker (checksum): that chunk is simply not done
            done = np.array([_is_done(markers, c) for c in range(lo, hi)], dtype=bool)
        return [lo + i for i in np.flatnonzero(~done)]

    def chunk_bytes(self, chunk: int) -> int:
        """Uncompressed payload of one chunk (an upper bound on what it takes on disk)."""
        rows = self.attrs.chunk_slice(chunk)
        n = rows.stop - rows.start
        per_record = sum(
            int(np.prod(shape[1:])) * dtype.itemsize
            for name, (shape, dtype, _) in schema.array_specs(self.attrs).items()
            if name not in (*schema.INDEX_ARRAYS, schema.CHUNK_DONE)
        )
        return n * per_record

    def write_chunk(
        self,
        chunk: int,
        seq: np.ndarray,
        mask: np.ndarray,
        teacher: dict[int, np.ndarray],
        predictions: dict[str, np.ndarray] | None = None,
    ) -> int:
        """Write one chunk's records (features per stored layer, and the teacher's predictions
        by array name where the store keeps them), then its done marker.

        Returns the payload bytes. A full disk is a one-line DiskFullError naming the space the
        chunks still to write need.
        """
        rows = self.attrs.chunk_slice(chunk)
        expected = rows.stop - rows.start
        if sorted(teacher) != sorted(self.attrs.teacher.layers):
            raise ValueError(f"chunk {chunk} needs layers {self.attrs.teacher.layers}")
        if not len(seq) == len(mask) == expected or any(
            len(f) != expected for f in teacher.values()
        ):
            raise ValueError(f"chunk {chunk} needs {expected} records, got {len(seq)}")
        wanted = schema.PREDICTION_ARRAYS if self.attrs.has_predictions else ()
        if sorted(predictions or {}) != sorted(wanted):
            raise ValueError(f"chunk {chunk} needs the prediction arrays {list(wanted)}")

        def needed() -> int:
            return sum(self.chunk_bytes(c) for c in self.pending_chunks())

        with disk_full_guard(self.path, f"writing chunk {chunk}", needed, then=RESUME_ADVICE):
            g = self.group
            g[schema.SEQ].with_config(WRITE_CONFIG)[rows] = seq
            g[schema.MASK].with_config(WRITE_CONFIG)[rows] = mask
            size = seq.nbytes + mask.nbytes
            for layer, feats in teacher.items():
                g[schema.teacher_array(layer)].with_config(WRITE_CONFIG)[rows] = feats.astype(
                    schema.TEACHER_DTYPE, copy=False
                )
                size += feats.size * schema.TEACHER_DTYPE.itemsize
            for name, values in (predictions or {}).items():
                array = g[name]
                array.with_config(WRITE_CONFIG)[rows] = values.astype(array.dtype, copy=False)
                size += values.size * array.dtype.itemsize
            g[schema.CHUNK_DONE][chunk] = True
        self.lock.refresh()
        return size

    def finalize(self) -> bool:
        """Mark the store complete if every chunk is done (the last write of an extraction)."""
        if not bool(np.all(self.group[schema.CHUNK_DONE][:])):
            return False
        attrs = self.attrs.to_json() | {"complete": True}
        with disk_full_guard(self.path, "marking the store complete", then=RESUME_ADVICE):
            self.group.attrs[schema.ATTRS_KEY] = attrs
        self.attrs = schema.StoreAttrs.from_json(attrs, str(self.path))
        return True


def unmark_chunks(path: Path, chunks: list[int]) -> list[int]:
    """Clear the done markers of `chunks` (damaged ones) and the `complete` attribute, under the
    store's lock, so that rerunning the same extraction rewrites exactly those chunks."""
    path = Path(path)
    if not chunks:
        return []
    with FileLock(path / schema.LOCK_FILE, "had-cache verify --repair"):
        attrs = read_attrs(path)
        group = zarr.open_group(str(path), mode="r+")
        for chunk in chunks:
            group[schema.CHUNK_DONE][chunk] = False
        group.attrs[schema.ATTRS_KEY] = attrs.to_json() | {"complete": False}
    return list(chunks)


def check_target(path: Path, overwrite: bool) -> None:
    """Refuse an `--out` that can be neither resumed nor replaced, before any work is done:
    an existing path that is not a had-cache store (with `overwrite`: not deletable), or one
    whose nearest existing parent is not a writable folder."""
    path = Path(path)
    _check_parent(path)
    if store_state(path) != "other":
        return
    if overwrite:
        remove_store(path)  # raises: it is not ours
    what = "a file" if path.is_file() else "a folder that is not a had-cache store"
    raise StoreError(
        f"--out {path} is {what}; extraction resumes or (--overwrite) replaces only a "
        "had-cache store: choose another --out"
    )


def _check_parent(path: Path) -> None:
    for parent in Path(path).absolute().parents:
        if parent.exists():
            if not parent.is_dir():
                raise StoreError(f"--out {path}: {parent} is a file, not a folder")
            if not _writable(parent) and not path.exists():
                raise StoreError(f"--out {path}: cannot create it, {parent} is not writable")
            return


def _writable(folder: Path) -> bool:
    return os.access(folder, os.W_OK | os.X_OK)


def remove_store(path: Path) -> None:
    """Delete the store at `path`, refusing anything that is not a had-cache store."""
    path = Path(path)
    if store_state(path) not in ("store", "creating"):
        what = "a file" if path.is_file() else "a folder that is not a had-cache store"
        raise StoreError(
            f"--overwrite refuses to delete {path}: it is {what}; "
            "--overwrite replaces only a store written by had-cache; choose another --out"
        )
    with FileLock(path / schema.LOCK_FILE, "had-cache extract"):
        _clear(path)


ARRAY_GROUP_KEY = "had_array_group"
"""Attribute naming a plain array group written by `ArrayGroupWriter` (not a had-cache store)."""
ArraySpec = tuple[tuple[int, ...], Any, tuple[int, ...]]
"""(shape, dtype, chunks) of one array of a group."""


class ArrayGroupWriter:
    """A plain Zarr group of named arrays, for outputs that are not stores (`had-train embed`).

    The group is built under `<path>.partial`, filled block by block with `write`, and renamed
    to `path` by `close`, which sets the attributes last: a path that exists holds a whole
    group, and a killed run leaves only the `.partial` folder, which the next run replaces.
    Here so that zarr stays behind the reader and writer (tests/test_layering.py).
    """

    def __init__(self, path: Path, arrays: dict[str, ArraySpec], attrs: dict[str, Any]) -> None:
        self.path = Path(path)
        if self.path.exists():
            raise StoreError(f"{self.path} already exists; choose another --out or delete it")
        self.partial = self.path.with_name(self.path.name + ".partial")
        if self.partial.exists():
            remove_partial_group(self.partial)
        self.group = zarr.open_group(str(self.partial), mode="w-")
        self.group.attrs[ARRAY_GROUP_KEY] = {"complete": False}
        for name, (shape, dtype, chunks) in arrays.items():
            self.group.create_array(name, shape=shape, dtype=dtype, chunks=chunks, fill_value=0)
        self.attrs = attrs

    def write(self, name: str, rows: slice, values: np.ndarray) -> None:
        """Write `values` into rows `rows` of array `name` (whole chunks are cheapest)."""
        self.group[name][rows] = values

    def close(self) -> Path:
        """Set the attributes (with `complete`) and move the group into place."""
        self.group.attrs.update(self.attrs | {ARRAY_GROUP_KEY: {"complete": True}})
        os.replace(self.partial, self.path)
        return self.path


def remove_partial_group(path: Path) -> None:
    """Delete a `.partial` group left by a killed `ArrayGroupWriter`, and nothing else."""
    try:
        group = zarr.open_group(str(path), mode="r")
        ours = ARRAY_GROUP_KEY in dict(group.attrs)
    except (FileNotFoundError, zarr.errors.GroupNotFoundError, ValueError):
        ours = False
    if not ours:
        raise StoreError(
            f"{path} exists and is not a partial output of had; move it away or choose another --out"
        )
    shutil.rmtree(path)
