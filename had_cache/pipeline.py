"""Keep the teacher busy: inputs prepared ahead of it, shards written behind it.

A thread pool reads windows from the FASTA, draws their group masks and builds the teacher's
masked token ids for batches ahead of the one the teacher runs (`Prefetcher`; one pyfaidx handle
per thread, the `.fai` built before they start). A writer thread takes whole shards from a
bounded queue and writes them (`BackgroundWriter`), so compression and I/O overlap the next
shard's forward passes; the bound caps host memory at a few shards. The teacher's step, on the
main thread, is the only thing on the critical path.

Errors: an exception in a prefetch thread is raised in the main thread when its batch is taken;
one in the writer thread is raised in the main thread at the next hand-over or at `close` (the
same exception object, so a HadError still prints as one line). A crash loses at most the
shards in flight: none of them has its done marker, so the rerun writes them again.
"""

from __future__ import annotations

import queue
import threading
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from had_cache import masking, predictions, schema, tokenize, windows
from had_cache.teacher import teacher_input
from had_cache.writer import StoreWriter


@dataclass(frozen=True)
class Batch:
    """The inputs of one teacher forward pass: records [lo, hi) of the store."""

    lo: int
    hi: int
    seq: np.ndarray  # uint8 [B, W]
    mask: np.ndarray  # bool [B, T]
    token_ids: np.ndarray  # int64 [B, T], masked groups -> <mask> (unmasked: a full-teacher store)


class Prefetcher:
    """Builds `Batch`es in a thread pool, `depth` batches ahead of the consumer, in order."""

    def __init__(
        self, fasta: Path, table: windows.WindowTable, attrs: schema.StoreAttrs, workers: int
    ) -> None:
        self.fasta, self.table, self.attrs = fasta, table, attrs
        self.workers = workers
        self._local = threading.local()

    def _handle(self) -> object:
        """This thread's own pyfaidx handle (a handle's file position is not thread-safe)."""
        handle = getattr(self._local, "fasta", None)
        if handle is None:
            handle = self._local.fasta = windows.open_fasta(self.fasta)
        return handle

    def build(self, lo: int, hi: int) -> Batch:
        a = self.attrs
        seq = windows.read_windows(self._handle(), self.table, range(lo, hi), a.window_bp)
        mask = masking.group_masks(a.mask_seed, np.arange(lo, hi), a.n_tokens, a.mask_ratio)
        ids = tokenize.kmer_ids(seq) if a.full_teacher else teacher_input(seq, mask)
        return Batch(lo, hi, seq, mask, ids)

    def batches(self, spans: list[tuple[int, int]], depth: int) -> Iterator[Batch]:
        """The batches of `spans` ((lo, hi) record ranges) in order, `depth` in flight. With
        no workers they are built on the caller's thread (the reference path)."""
        if self.workers <= 0:
            for lo, hi in spans:
                yield self.build(lo, hi)
            return
        with ThreadPoolExecutor(self.workers, thread_name_prefix="had-prefetch") as pool:
            pending: deque[Future[Batch]] = deque()
            todo = iter(spans)
            try:
                for lo, hi in todo:
                    pending.append(pool.submit(self.build, lo, hi))
                    if len(pending) >= depth:
                        break
                while pending:
                    batch = pending.popleft().result()  # a worker's error is raised here
                    nxt = next(todo, None)
                    if nxt is not None:
                        pending.append(pool.submit(self.build, *nxt))
                    yield batch
            finally:
                for future in pending:
                    future.cancel()


Shard = tuple[int, np.ndarray, np.ndarray, dict[int, np.ndarray], dict[str, np.ndarray] | None]
"""(shard index, seq, mask, float16 features per layer, predictions by array name or None): one
whole shard, ready to encode (the store's codec, in the writer thread) and write."""


class ShardBuffer:
    """One shard's records as the teacher produces them, batch by batch."""

    def __init__(self, attrs: schema.StoreAttrs, shard: int) -> None:
        self.index = shard
        self.rows = attrs.shard_slice(shard)
        n = self.rows.stop - self.rows.start
        self.seq = np.empty((n, attrs.window_bp), np.uint8)
        self.mask = np.empty((n, attrs.n_tokens), bool)
        shape = (n, attrs.feature_tokens, attrs.hidden_size)
        self.feats = {
            layer: np.empty(shape, schema.TEACHER_DTYPE) for layer in attrs.teacher.layers
        }
        self.preds: dict[str, np.ndarray] | None = None
        if attrs.has_predictions:
            specs = schema.array_specs(attrs)
            self.preds = {
                name: np.empty((n, *specs[name][0][1:]), specs[name][1])
                for name in schema.PREDICTION_ARRAYS
            }
        self.filled = 0

    def holds(self, batch: Batch) -> bool:
        return self.rows.start <= batch.lo < self.rows.stop

    def add(
        self,
        batch: Batch,
        feats: dict[int, np.ndarray],
        preds: predictions.MaskedPredictions | None = None,
    ) -> bool:
        """Put a batch's records in place; True once the shard is full."""
        lo, hi = batch.lo - self.rows.start, batch.hi - self.rows.start
        self.seq[lo:hi], self.mask[lo:hi] = batch.seq, batch.mask
        for layer, values in feats.items():
            self.feats[layer][lo:hi] = values
        if self.preds is not None:
            assert preds is not None, "a store of predictions needs them for every batch"
            self.preds[schema.TOPK_KMER][lo:hi] = preds.topk_kmer
            self.preds[schema.TOPK_PROB][lo:hi] = preds.topk_prob
            self.preds[schema.BASE_PROB][lo:hi] = preds.base_prob
        self.filled += hi - lo
        return self.filled == len(self.seq)

    def shard(self) -> Shard:
        return self.index, self.seq, self.mask, self.feats, self.preds


class BackgroundWriter:
    """`StoreWriter.write_shard` in a thread of its own, behind a queue of at most `depth`
    shards. Use as a context manager: leaving the block writes what is queued and stops the
    thread; the writer's first error is raised in the caller's thread."""

    def __init__(self, writer: StoreWriter, depth: int) -> None:
        self.writer = writer
        self.queue: queue.Queue[Shard | None] = queue.Queue(maxsize=max(1, depth))
        self.error: BaseException | None = None
        self._raised = False
        self.written: list[int] = []
        self.thread = threading.Thread(target=self._run, name="had-writer", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while True:
            item = self.queue.get()
            if item is None:
                return
            if self.error is None:  # after a failure, drain without writing
                try:
                    self.writer.write_shard(*item)
                    self.written.append(item[0])
                except BaseException as err:  # re-raised in the main thread
                    self.error = err

    def check(self) -> None:
        """Raise the writer thread's error, if it had one, in the calling thread (once)."""
        if self.error is not None and not self._raised:
            self._raised = True
            raise self.error

    def put(self, shard: Shard) -> None:
        """Queue a whole shard; blocks while `depth` shards wait (the bound on memory)."""
        self.check()
        while True:
            try:
                self.queue.put(shard, timeout=0.2)
                return
            except queue.Full:
                self.check()

    def close(self) -> None:
        """Write what is queued, stop the thread, raise its error if any."""
        if self.thread.is_alive():
            self.queue.put(None)
            self.thread.join()
        self.check()

    def __enter__(self) -> BackgroundWriter:
        return self

    def __exit__(self, kind: type[BaseException] | None, *exc: object) -> None:
        if kind is None:
            self.close()
            return
        # The caller failed: let the queued (whole) shards be written, keep the caller's error.
        if self.thread.is_alive():
            self.queue.put(None)
            self.thread.join()
