"""Pretraining batches from a store: the only module of `had_train` that opens one.

The order of records is a pure function of (seed, epoch): chunks are permuted, taken in groups
of `shuffle_chunks`, and records are permuted within each group. Batch b of the run is therefore
known from b alone, so resuming needs no sampler state beyond the step counter, and the order
does not depend on how many processes read the store. Chunks are read whole and kept only while
the current group needs them.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from had_cache.errors import ConfigError
from had_cache.reader import CacheReader, Records
from had_cache.schema import StoreAttrs


@dataclass(frozen=True)
class Batch:
    """One training batch on the CPU, ready for `.to(device)`."""

    record: torch.Tensor  # int64 [B] record ids (for error messages)
    seq: torch.Tensor  # int64 [B, W] unmasked base codes
    group_mask: torch.Tensor  # bool [B, T]
    teacher: torch.Tensor  # float32 [B, T - M, D]

    def _map(self, fn: object) -> Batch:
        return Batch(*(fn(t) for t in (self.record, self.seq, self.group_mask, self.teacher)))

    def to(self, device: torch.device) -> Batch:
        return self._map(lambda t: t.to(device, non_blocking=True))

    def rows(self, lo: int, hi: int) -> Batch:
        """Records lo..hi of the batch (a micro-batch for gradient accumulation)."""
        return self._map(lambda t: t[lo:hi])


def epoch_order(attrs: StoreAttrs, seed: int, epoch: int, shuffle_chunks: int) -> np.ndarray:
    """Record ids of one epoch in training order (a pure function of its arguments)."""
    rng = np.random.Generator(np.random.PCG64([seed, epoch]))
    chunks = rng.permutation(attrs.n_chunks)
    parts = []
    for lo in range(0, len(chunks), shuffle_chunks):
        group = np.concatenate(
            [
                np.arange(attrs.n_records)[attrs.chunk_slice(int(c))]
                for c in chunks[lo : lo + shuffle_chunks]
            ]
        )
        parts.append(rng.permutation(group))
    return np.concatenate(parts)


class PretrainBatches:
    """Batches of step `start_step` onwards, forever (epochs roll over)."""

    def __init__(
        self,
        store: Path | str,
        batch_size: int,
        seed: int = 0,
        shuffle_chunks: int = 8,
        teacher_layer: int | None = None,
    ) -> None:
        self.reader = CacheReader(store, layer=teacher_layer)
        self.attrs = self.reader.attrs
        if batch_size > self.attrs.n_records:
            raise ConfigError(
                f"--batch-size {batch_size} is larger than the store's {self.attrs.n_records} "
                "records; extract more windows or lower --batch-size"
            )
        self.batch_size = batch_size
        self.seed = seed
        self.shuffle_chunks = max(1, shuffle_chunks)
        self.batches_per_epoch = self.attrs.n_records // batch_size
        self._order_epoch = -1
        self._order = np.empty(0, dtype=np.int64)
        self._chunks: OrderedDict[int, Records] = OrderedDict()

    def record_ids(self, step: int) -> np.ndarray:
        """Record ids of the batch used at `step` (0-based)."""
        epoch, b = divmod(step, self.batches_per_epoch)
        if epoch != self._order_epoch:
            self._order = epoch_order(self.attrs, self.seed, epoch, self.shuffle_chunks)
            self._order_epoch = epoch
        return self._order[b * self.batch_size : (b + 1) * self.batch_size]

    def _chunk(self, chunk: int) -> Records:
        if chunk not in self._chunks:
            self._chunks[chunk] = self.reader.read_chunk(chunk)
            while len(self._chunks) > 2 * self.shuffle_chunks:
                self._chunks.popitem(last=False)
        self._chunks.move_to_end(chunk)
        return self._chunks[chunk]

    def batch(self, step: int) -> Batch:
        ids = self.record_ids(step)
        chunk_of = ids // self.attrs.chunk_records
        seq = np.empty((len(ids), self.attrs.window_bp), dtype=np.uint8)
        mask = np.empty((len(ids), self.attrs.n_tokens), dtype=bool)
        teacher = np.empty(
            (len(ids), self.attrs.n_visible, self.attrs.hidden_size), dtype=np.float16
        )
        for chunk in np.unique(chunk_of):
            rows = np.flatnonzero(chunk_of == chunk)
            records = self._chunk(int(chunk))
            local = ids[rows] - int(records.index[0])
            seq[rows], mask[rows], teacher[rows] = (
                records.seq[local],
                records.mask[local],
                records.teacher[local],
            )
        return Batch(
            record=torch.from_numpy(ids.copy()),
            seq=torch.from_numpy(seq).long(),
            group_mask=torch.from_numpy(mask),
            teacher=torch.from_numpy(teacher).float(),
        )

    def iterate(self, start_step: int) -> Iterator[Batch]:
        step = start_step
        while True:
            yield self.batch(step)
            step += 1
