"""Pretraining batches from a store: the only module of `had_train` that opens one.

The order of records is a pure function of (seed, epoch): chunks are permuted, taken in groups
of `shuffle_chunks`, and records are permuted within each group. Batch b of the run is therefore
known from b alone, so resuming needs no sampler state beyond the step counter, and the order
does not depend on how many processes read the store: loader workers take whole steps in turn
(worker w builds steps w, w + n, ...; the DataLoader hands them out in step order), and rank r of
R takes the r-th contiguous block of every global batch (whose ids are sorted, so the block is
a contiguous run of the store). Chunks are read whole and kept only while the current group
needs them.

Batches stay in the store's compact form (uint8 bases; features in the store codec's arrays:
float16, or int8 values and a scale per token) until they reach the device, where `Batch.to`
decodes them (`had_cache.codecs`: the loss runs on decoded features, in the teacher's space), so
the trainer never sees the codec. On CUDA the loader pins its batches and `prefetch` copies the
next one on a side stream while the current one trains.

Unmasked-teacher stores (`teacher_input` = `full`) hold every token's features; the loader draws
each step's group masks (`draw_masks`: the online teacher's rule, a pure function of (seed,
step) and the position in the step, so resuming is exact) and `Batch.to` keeps the visible
tokens' features on the device. Held-out records keep the store's masks (the extraction's rule).
"""

from __future__ import annotations

import dataclasses
import itertools
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from had_cache import codecs, masking
from had_cache.reader import CacheReader, Records
from had_cache.schema import StoreAttrs
from had_common.errors import ConfigError


@dataclass(frozen=True)
class Batch:
    """One training batch: as read on the CPU (the store's codec arrays), or on the device for
    the model (`.to(device)`: bases int64, features decoded to float32 [B, T - M, D])."""

    record: torch.Tensor  # int64 [B] record ids (for error messages)
    seq: torch.Tensor  # uint8 [B, W] unmasked base codes (int64 after .to)
    group_mask: torch.Tensor  # bool [B, T]
    teacher: torch.Tensor  # codec values [B, T - M or T, D or R]; float32 [B, T - M, D] after .to
    soft: torch.Tensor | None = None  # float16 [B, M, 6, 4] teacher's base marginals, if stored
    scale: torch.Tensor | None = None  # float32 [B, T - M or T]: int8 codecs' row scales
    codec: codecs.FeatureCodec | None = None  # how `teacher` (and `scale`) decode; None: float

    def _map(self, fn: object) -> Batch:
        soft = None if self.soft is None else fn(self.soft)
        scale = None if self.scale is None else fn(self.scale)
        core = (fn(t) for t in (self.record, self.seq, self.group_mask, self.teacher))
        return Batch(*core, soft, scale, self.codec)

    def tensors(self) -> tuple[torch.Tensor, ...]:
        """The batch's data tensors (record ids aside)."""
        data = (self.seq, self.group_mask, self.teacher)
        return (*data, *(t for t in (self.soft, self.scale) if t is not None))

    def to(self, device: torch.device | str) -> Batch:
        """On `device`, in the model's dtypes (copied asynchronously from pinned memory), the
        features decoded there; of a full-teacher record only the visible tokens' (under
        `group_mask`). Record ids stay on the CPU: they only name records in messages, and
        reading them back from a GPU would wait for it."""
        seq, mask, values = (
            t.to(device, non_blocking=True) for t in (self.seq, self.group_mask, self.teacher)
        )
        scale = None if self.scale is None else self.scale.to(device, non_blocking=True)
        if values.shape[1] == mask.shape[1] and values.shape[1] != 0:  # every token stored
            b, t = mask.shape
            keep = ~mask
            visible = int(keep[0].sum()) if b else 0
            values = values[keep].reshape(b, visible, values.shape[-1])
            scale = None if scale is None else scale[keep].reshape(b, visible)
        if self.codec is None:
            teacher = values.float()
        else:
            arrays = {codecs.VALUES: values} | ({codecs.SCALE: scale} if scale is not None else {})
            teacher = self.codec.decode(arrays)
        soft = None if self.soft is None else self.soft.to(device, non_blocking=True).float()
        return Batch(self.record, seq.long(), mask, teacher, soft)

    def pin_memory(self) -> Batch:
        """Page-locked copies (DataLoader calls this with pin_memory=True)."""
        return self._map(lambda t: t.pin_memory())

    def rows(self, lo: int, hi: int) -> Batch:
        """Records lo..hi of the batch (a micro-batch for gradient accumulation)."""
        return self._map(lambda t: t[lo:hi])


def epoch_order(
    attrs: StoreAttrs, seed: int, epoch: int, shuffle_chunks: int, holdout_chunks: int = 0
) -> np.ndarray:
    """Record ids of one epoch in training order (a pure function of its arguments).

    The last `holdout_chunks` chunks are never trained on (held-out records for evaluation).
    """
    rng = np.random.Generator(np.random.PCG64([seed, epoch]))
    chunks = rng.permutation(attrs.n_chunks - holdout_chunks)
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


class RecordOrder:
    """Which records each step trains on: a pure function of (seed, step) and the store's
    shape, shared by the store's batches and the online teacher's (which thereby visit the
    same windows in the same order as a run on the store its options would extract)."""

    def __init__(
        self,
        attrs: StoreAttrs,
        batch_size: int,
        seed: int = 0,
        shuffle_chunks: int = 8,
        holdout_chunks: int = 0,
    ) -> None:
        if not 0 <= holdout_chunks < attrs.n_chunks:
            raise ConfigError(
                f"--holdout-chunks must be in 0..{attrs.n_chunks - 1} for a store of "
                f"{attrs.n_chunks} chunks, got {holdout_chunks}"
            )
        self.attrs, self.holdout_chunks = attrs, holdout_chunks
        n_train = min(attrs.n_records, (attrs.n_chunks - holdout_chunks) * attrs.chunk_records)
        self.held_out = np.arange(n_train, attrs.n_records)
        self.n_train = n_train
        if batch_size > n_train:
            raise ConfigError(
                f"--batch-size {batch_size} is larger than the store's {n_train} training "
                "records; extract more windows or lower --batch-size"
            )
        self.batch_size = batch_size
        self.seed = seed
        self.shuffle_chunks = max(1, shuffle_chunks)
        self.batches_per_epoch = n_train // batch_size
        self._order_epoch = -1
        self._order = np.empty(0, dtype=np.int64)

    def record_ids(self, step: int) -> np.ndarray:
        """Record ids of the batch used at `step` (0-based), in increasing order: which records
        a step trains on is the shuffle's choice, their order within the step is not (the loss
        is a mean over the batch), and sorted ids give each rank and micro-batch a contiguous
        run of the store, so it reads about 1 / (ranks x micro-batches) of the step's chunks."""
        epoch, b = divmod(step, self.batches_per_epoch)
        if epoch != self._order_epoch:
            self._order = epoch_order(
                self.attrs, self.seed, epoch, self.shuffle_chunks, self.holdout_chunks
            )
            self._order_epoch = epoch
        return np.sort(self._order[b * self.batch_size : (b + 1) * self.batch_size])

    def usage(self, steps: int) -> np.ndarray:
        """How many times each training record (ids 0..n_train - 1) is used by steps
        0..steps - 1: what a run's usage.json summarises (a replay store's records are
        meant to be used about once each)."""
        counts = np.zeros(self.n_train, dtype=np.int64)
        full, rest = divmod(steps, self.batches_per_epoch)
        for epoch in range(full + (1 if rest else 0)):
            order = epoch_order(
                self.attrs, self.seed, epoch, self.shuffle_chunks, self.holdout_chunks
            )
            take = self.batches_per_epoch if epoch < full else rest
            np.add.at(counts, order[: take * self.batch_size], 1)
        return counts

    def sample_chunks(self, limit: int) -> list[int]:
        """Whole training chunks, spread evenly over the training region, holding at least
        `limit` records where there are so many (never a held-out chunk): the fitting data of
        DNA-only baselines."""
        n_chunks = self.attrs.n_chunks - self.holdout_chunks
        take = max(1, min(n_chunks, -(-limit // self.attrs.chunk_records)))
        return [int(c) for c in np.unique(np.linspace(0, n_chunks - 1, take).round().astype(int))]


def draw_masks(attrs: StoreAttrs, seed: int, step: int, batch_size: int) -> np.ndarray:
    """bool [batch, T]: the fresh group masks of the draws of `step` (draw j = step x batch
    size + position in the step, its mask `masking.group_mask(seed, j)`): the masks of an
    --online-teacher run and of a run on an unmasked-teacher store."""
    draws = np.arange(step * batch_size, (step + 1) * batch_size)
    return masking.group_masks(seed, draws, attrs.n_tokens, attrs.mask_ratio)


def store_fingerprint(store: Path | str) -> str:
    """The store's identity for provenance records (sha256 of its defining attributes)."""
    return CacheReader(store).attrs.fingerprint()


class PretrainBatches:
    """Batches of step `start_step` onwards, forever (epochs roll over)."""

    def __init__(
        self,
        store: Path | str,
        batch_size: int,
        seed: int = 0,
        shuffle_chunks: int = 8,
        teacher_layer: int | None = None,
        holdout_chunks: int = 0,
    ) -> None:
        self.reader = CacheReader(store, layer=teacher_layer)
        self.attrs = self.reader.attrs
        self.order = RecordOrder(self.attrs, batch_size, seed, shuffle_chunks, holdout_chunks)
        self.batch_size, self.seed = batch_size, seed
        self.shuffle_chunks, self.holdout_chunks = self.order.shuffle_chunks, holdout_chunks
        self.held_out = self.order.held_out
        self.batches_per_epoch = self.order.batches_per_epoch
        self._chunks: OrderedDict[int, Records] = OrderedDict()

    @property
    def layer(self) -> int:
        """The teacher layer (hidden_states index) whose features the batches hold."""
        return self.reader.layer

    def describe(self) -> str:
        """Where the batches come from, for the run's first line."""
        a = self.attrs
        what = f"store {a.n_records:,} records"
        if a.codec_name != "fp16":
            what += f" ({a.codec_name} features, decoded on the device)"
        if a.is_replay:
            what += f", replay draws of {a.replay['loci']:,} windows"
        if a.full_teacher:
            what += ", unmasked teacher (masks drawn per step)"
        return what

    def record_ids(self, step: int) -> np.ndarray:
        """Record ids of the batch used at `step` (`RecordOrder.record_ids`)."""
        return self.order.record_ids(step)

    def _chunk(self, chunk: int) -> Records:
        if chunk not in self._chunks:
            self._chunks[chunk] = self.reader.read_chunk(chunk)
            while len(self._chunks) > 2 * self.shuffle_chunks:
                self._chunks.popitem(last=False)
        self._chunks.move_to_end(chunk)
        return self._chunks[chunk]

    def batch(self, step: int, rank: int = 0, world_size: int = 1) -> Batch:
        """Batch of `step`, or rank `rank`'s block of it (ranks together hold the global batch)."""
        ids = self.record_ids(step)
        if self.batch_size % world_size:
            raise ConfigError(
                f"--batch-size {self.batch_size} is not divisible by {world_size} ranks"
            )
        per_rank = self.batch_size // world_size
        mine = slice(rank * per_rank, (rank + 1) * per_rank)
        if not self.attrs.full_teacher:
            return self.records(ids[mine])
        return self.records(
            ids[mine], draw_masks(self.attrs, self.seed, step, self.batch_size)[mine]
        )

    def training_windows(self, limit: int) -> tuple[np.ndarray, np.ndarray]:
        """(seq, mask) of up to `limit` training records (whole chunks spread evenly over the
        training region, never a held-out one): the fitting data of DNA-only baselines."""
        chunks = self.order.sample_chunks(limit)
        parts = [self.reader.read_windows(self.attrs.chunk_slice(c)) for c in chunks]
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    def held_out_windows(self) -> tuple[np.ndarray, np.ndarray]:
        """(seq, mask) of the held-out records."""
        if not len(self.held_out):
            raise ConfigError("no held-out records: pass --holdout-chunks K")
        return self.reader.read_windows(slice(int(self.held_out[0]), int(self.held_out[-1]) + 1))

    def provenance_inputs(self) -> dict[str, str]:
        """What names the training data in a run's provenance."""
        return {"store_fingerprint": self.attrs.fingerprint()}

    def device_batches(
        self, start_step: int, workers: int, rank: int, world_size: int, device: torch.device
    ) -> Iterator[Batch]:
        """This rank's batches from `start_step` on, on `device` (`iterate` + `prefetch`)."""
        pinned = device.type == "cuda"
        return prefetch(self.iterate(start_step, workers, rank, world_size, pinned), device)

    def records(self, ids: np.ndarray, mask: np.ndarray | None = None) -> Batch:
        """A batch of the given record ids (training steps, or held-out records), with the
        store's masks or (full-teacher stores) `mask`."""
        block = self.reader.take(ids, read_chunk=self._chunk)
        return Batch(
            record=torch.from_numpy(block.index.copy()),
            seq=torch.from_numpy(block.seq),
            group_mask=torch.from_numpy(block.mask if mask is None else mask),
            teacher=torch.from_numpy(block.teacher),
            soft=None if block.base_prob is None else torch.from_numpy(block.base_prob),
            scale=None if block.scale is None else torch.from_numpy(block.scale),
            codec=self.reader.codec,
        )

    def iterate(
        self,
        start_step: int,
        workers: int = 0,
        rank: int = 0,
        world_size: int = 1,
        pin_memory: bool = False,
    ) -> Iterator[Batch]:
        """Batches from `start_step` on, built in this process or by `workers` loader processes
        (each with its own lazily opened store), in page-locked memory with `pin_memory`."""
        if workers <= 0:
            batches = (self.batch(s, rank, world_size) for s in itertools.count(start_step))
            return (b.pin_memory() for b in batches) if pin_memory else batches
        steps = _Steps(self, start_step, rank, world_size)
        loader = torch.utils.data.DataLoader(
            steps,
            batch_size=None,
            num_workers=workers,
            in_order=True,
            persistent_workers=True,
            pin_memory=pin_memory,
            prefetch_factor=2,
        )
        codec = self.reader.codec
        # Batches cross from the workers without their codec (its rotation and basis would be
        # pickled with every step); this process's codec, its device copies made once, decodes.
        return (dataclasses.replace(b, codec=codec) for b in loader)


def prefetch(batches: Iterator[Batch], device: torch.device) -> Iterator[Batch]:
    """`batches` moved to `device`, the next one copied while the current one is used: on CUDA
    on a side stream (from pinned memory), elsewhere simply in turn."""
    if device.type != "cuda":
        yield from (b.to(device) for b in batches)
        return
    stream = torch.cuda.Stream(device)
    ahead = None
    for batch in batches:
        with torch.cuda.stream(stream):
            moved = batch.to(device)
        if ahead is not None:
            yield ahead
        torch.cuda.current_stream(device).wait_stream(stream)
        for t in moved.tensors():
            t.record_stream(torch.cuda.current_stream(device))
        ahead = moved
    if ahead is not None:
        yield ahead


class _Steps(torch.utils.data.IterableDataset):
    """Loader-worker side of `PretrainBatches.iterate`: worker w of n builds steps w, w + n, ..."""

    def __init__(self, batches: PretrainBatches, start: int, rank: int, world_size: int) -> None:
        self.batches, self.start, self.rank, self.world_size = batches, start, rank, world_size

    def __iter__(self) -> Iterator[Batch]:
        info = torch.utils.data.get_worker_info()
        worker, n = (info.id, info.num_workers) if info else (0, 1)
        for step in itertools.count(self.start + worker, n):
            yield dataclasses.replace(
                self.batches.batch(step, self.rank, self.world_size), codec=None
            )
