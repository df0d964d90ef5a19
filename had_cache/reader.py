"""The one way to read a store: validated attributes and whole-chunk reads.

Reading record by record through zarr costs milliseconds each, so readers take whole chunks
(megabytes) and shuffle in memory. A reader opens the group lazily in each process, so a
DataLoader worker never inherits an open store across fork.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import zarr

from had_cache import schema
from had_cache.errors import StoreError


@dataclass(frozen=True)
class Records:
    """A block of consecutive records, as stored (teacher features stay float16)."""

    index: np.ndarray  # int64 [n], record ids
    seq: np.ndarray  # uint8 [n, W]
    mask: np.ndarray  # bool [n, T]
    teacher: np.ndarray  # float16 [n, T - M, D], features of the reader's layer


class CacheReader:
    """Read-only access to a complete store, serving the features of one stored teacher layer.

    `layer` is a hidden_states index (negative counts from the end); None means the deepest
    stored layer.
    """

    def __init__(
        self, path: Path | str, require_complete: bool = True, layer: int | None = None
    ) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise StoreError(f"store not found: {self.path}")
        try:
            group = zarr.open_group(str(self.path), mode="r")
        except (FileNotFoundError, zarr.errors.GroupNotFoundError) as err:
            raise StoreError(f"{self.path} is not a Zarr store") from err
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

    def read(self, rows: slice) -> Records:
        """Records in `rows` (a contiguous range; chunk-aligned ranges are fastest)."""
        g = self.group
        return Records(
            index=np.arange(rows.start, rows.stop, dtype=np.int64),
            seq=g[schema.SEQ][rows],
            mask=g[schema.MASK][rows],
            teacher=g[schema.teacher_array(self.layer)][rows],
        )

    def take(self, records: np.ndarray) -> Records:
        """Arbitrary records, in the given order, reading each chunk they touch once."""
        records = np.asarray(records, dtype=np.int64)
        parts = {}
        for chunk in np.unique(records // self.attrs.chunk_records):
            parts[int(chunk)] = self.read_chunk(int(chunk))
        rows = [
            (parts[int(r // self.attrs.chunk_records)], int(r % self.attrs.chunk_records))
            for r in records
        ]
        return Records(
            index=records,
            seq=np.stack([p.seq[i] for p, i in rows]),
            mask=np.stack([p.mask[i] for p, i in rows]),
            teacher=np.stack([p.teacher[i] for p, i in rows]),
        )

    def read_chunk(self, chunk: int) -> Records:
        return self.read(self.attrs.chunk_slice(chunk))

    def locations(self) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
        """(contig names, contig index, start, strand) of every record."""
        g = self.group
        return self.attrs.contigs, g[schema.CONTIG][:], g[schema.START][:], g[schema.STRAND][:]
