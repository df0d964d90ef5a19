"""Create a store from a window table and write it chunk by chunk, marking each chunk done last.

Every array is preallocated from the window table (never appended or resized), so chunk i of a
store is a fixed record range that one writer owns. A restart with the same parameters opens the
existing store and writes only the chunks whose `chunk_done` marker is unset; rank r of R takes a
disjoint, contiguous range of chunks (the seam for sharded extraction).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from had_cache import schema
from had_cache.reader import is_store, read_attrs
from had_cache.schema import StoreError
from had_cache.windows import WindowTable


class StoreWriter:
    """Writes the chunks of one store; `open_or_create` is the only way to get one."""

    def __init__(self, group: zarr.Group, attrs: schema.StoreAttrs, path: Path) -> None:
        self.group = group
        self.attrs = attrs
        self.path = path

    @classmethod
    def open_or_create(
        cls, path: Path, attrs: schema.StoreAttrs, table: WindowTable, overwrite: bool = False
    ) -> StoreWriter:
        """Resume a store of the same extraction, or create it; refuse to clobber a different one.

        `overwrite` replaces only a store of ours: any other file or folder at `path` (a
        mistyped `--out ~/project`, say) is refused untouched.
        """
        path = Path(path)
        if not _is_absent(path) and overwrite:
            remove_store(path)
        if not _is_absent(path):
            existing = read_attrs(path)
            if not existing.same_extraction(attrs):
                raise StoreError(
                    f"{path} already holds a different extraction (other FASTA, teacher or "
                    "options); pass --overwrite to replace it or choose another --out"
                )
            return cls(zarr.open_group(str(path), mode="r+"), existing, path)
        return cls._create(path, attrs, table)

    @classmethod
    def _create(cls, path: Path, attrs: schema.StoreAttrs, table: WindowTable) -> StoreWriter:
        group = zarr.open_group(str(path), mode="w-")
        for name, (shape, dtype, chunks) in schema.array_specs(attrs).items():
            group.create_array(name, shape=shape, dtype=dtype, chunks=chunks, fill_value=0)
        # The window index is known up front; writing it now makes a partial store inspectable.
        group[schema.CONTIG][:] = table.contig
        group[schema.START][:] = table.start
        group[schema.STRAND][:] = table.strand
        group.attrs[schema.ATTRS_KEY] = attrs.to_json()
        return cls(group, attrs, path)

    def pending_chunks(self, rank: int = 0, world_size: int = 1) -> list[int]:
        """Chunks not yet done in this rank's contiguous share of the store."""
        n = self.attrs.n_chunks
        lo, hi = rank * n // world_size, (rank + 1) * n // world_size
        done = self.group[schema.CHUNK_DONE][lo:hi]
        return [lo + i for i in np.flatnonzero(~done)]

    def write_chunk(
        self, chunk: int, seq: np.ndarray, mask: np.ndarray, teacher: dict[int, np.ndarray]
    ) -> int:
        """Write one chunk's records (features per stored layer), then its done marker.

        Returns the payload bytes.
        """
        rows = self.attrs.chunk_slice(chunk)
        expected = rows.stop - rows.start
        if sorted(teacher) != sorted(self.attrs.teacher.layers):
            raise ValueError(f"chunk {chunk} needs layers {self.attrs.teacher.layers}")
        if not len(seq) == len(mask) == expected or any(
            len(f) != expected for f in teacher.values()
        ):
            raise ValueError(f"chunk {chunk} needs {expected} records, got {len(seq)}")
        self.group[schema.SEQ][rows] = seq
        self.group[schema.MASK][rows] = mask
        size = seq.nbytes + mask.nbytes
        for layer, feats in teacher.items():
            self.group[schema.teacher_array(layer)][rows] = feats.astype(
                schema.TEACHER_DTYPE, copy=False
            )
            size += feats.size * schema.TEACHER_DTYPE.itemsize
        self.group[schema.CHUNK_DONE][chunk] = True
        return size

    def finalize(self) -> bool:
        """Mark the store complete if every chunk is done (the last write of an extraction)."""
        if not bool(np.all(self.group[schema.CHUNK_DONE][:])):
            return False
        attrs = self.attrs.to_json() | {"complete": True}
        self.group.attrs[schema.ATTRS_KEY] = attrs
        self.attrs = schema.StoreAttrs.from_json(attrs, str(self.path))
        return True


def _is_absent(path: Path) -> bool:
    """Nothing there, or an empty folder (made by the user for the store): free to create."""
    return not path.exists() or (path.is_dir() and not any(path.iterdir()))


def check_target(path: Path, overwrite: bool) -> None:
    """Refuse an `--out` that can be neither resumed nor replaced, before any work is done:
    an existing path that is not a had-cache store (with `overwrite`: not deletable)."""
    path = Path(path)
    if _is_absent(path) or is_store(path):
        return
    if overwrite:
        remove_store(path)  # raises: it is not ours
    read_attrs(path)  # raises, naming what is there instead of a store


def remove_store(path: Path) -> None:
    """Delete the store at `path`, refusing anything that is not a had-cache store."""
    path = Path(path)
    if not is_store(path):
        what = "a file" if path.is_file() else "a folder that is not a had-cache store"
        raise StoreError(
            f"--overwrite refuses to delete {path}: it is {what}; "
            "--overwrite replaces only a store written by had-cache; choose another --out"
        )
    shutil.rmtree(path)


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
