"""Batches from a teacher in memory: the paper's recipe, the reference every cache is judged by.

`had-train pretrain --online-teacher TEACHER --fasta FASTA` trains through the same loop as a
store run, on batches of the same form (`data.Batch`: bases, group mask, visible features), so
the losses, the trainer and the held-out scoring are shared. What differs is only where the
features come from: every step draws a fresh group mask for every window and runs the teacher on
the masked windows.

The options describe the extraction this run is the live version of (`had-cache extract` with
the same FASTA, teacher, window, contig, strand and mask options and the default mask seed and
chunking). Its window table, chunking and attributes are that store's, so:

- the windows of each step are the store run's (`data.RecordOrder`, the same seed): an online
  run and a run on that store visit the same windows in the same order, and differ only in the
  masks (fresh per draw here, one per record there) and in the features' precision;
- `--holdout-chunks K` holds out the same windows, scored with the store's masks (the mask
  rule of record i, default seed) and features computed once, so held-out figures compare
  directly with the store run's;
- the run folder's store.json holds those attributes (a resumed run is checked against them).

The mask of draw j (= step x batch size + position in the step) is `masking.group_mask(seed, j)`
with the run's --seed: a pure function of the step, so resuming needs nothing but the step. The
teacher is loaded, then gated (`had_cache.gate`) exactly as extraction gates it, before the
first step; it runs on the training device, in bfloat16 on GPUs.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from tqdm.auto import tqdm

from had_cache import dna, gate, masking, windows
from had_cache import teacher as teacher_mod
from had_cache.extract import ExtractConfig, store_attrs
from had_common import distributed
from had_common.checksums import file_sha256
from had_common.errors import ConfigError
from had_train.data import Batch, RecordOrder, draw_masks

if TYPE_CHECKING:
    from had_train.pretrain import PretrainConfig

HELD_OUT_FEATURES_DTYPE = torch.float16
"""Held-out targets are kept in memory as a store keeps them (float16), computed once."""


def extraction_config(cfg: PretrainConfig) -> ExtractConfig:
    """The extraction an --online-teacher run stands in for (its windows, masks and gate)."""
    layers = teacher_layers(cfg.teacher_layer)
    return ExtractConfig(
        fasta=windows.fasta_path(cfg.fasta),
        out=Path(cfg.out),
        teacher=cfg.online_teacher,
        window_bp=cfg.window_bp,
        mask_ratio=cfg.mask_ratio,
        layers=layers,
        device=cfg.device,
        max_windows=cfg.max_windows,
        chunk_records=cfg.chunk_records,
        contigs=cfg.contigs,
        strands=cfg.strands,
        progress=distributed.is_main(),
    )


def teacher_layers(layer: int | None) -> tuple[int, ...]:
    """--teacher-layer for an online teacher: the extraction's default layer when not given."""
    return teacher_mod.DEFAULT_LAYERS if layer is None else (layer,)


class OnlineBatches:
    """The store-batch interface of `data.PretrainBatches`, with the teacher computing features."""

    def __init__(
        self,
        extraction: ExtractConfig,
        batch_size: int,
        seed: int = 0,
        shuffle_chunks: int = 8,
        holdout_chunks: int = 0,
        device: torch.device | None = None,
    ) -> None:
        device = device or torch.device("cpu")
        n_tokens = dna.groups_per_window(extraction.window_bp)
        if not 0.0 < extraction.mask_ratio < 1.0:
            raise ConfigError(f"--mask-ratio must be between 0 and 1, got {extraction.mask_ratio}")
        n_masked = masking.n_masked(n_tokens, extraction.mask_ratio)
        self.fasta = windows.open_fasta(extraction.fasta)
        self.table = windows.plan_windows(
            self.fasta,
            extraction.window_bp,
            extraction.contigs,
            extraction.strands,
            extraction.max_windows,
            extraction.progress,
        )
        dtype = teacher_mod.resolve_dtype(extraction.dtype, device)
        self.teacher = teacher_mod.load_teacher(
            extraction.teacher,
            device,
            dtype,
            extraction.layers,
            extraction.revision,
            extraction.trust_remote_code,
        )
        if n_tokens + 1 > self.teacher.max_tokens:
            raise ConfigError(
                f"--window-bp {extraction.window_bp} needs {n_tokens + 1} teacher tokens with "
                f"<cls>, more than the teacher's maximum of {self.teacher.max_tokens}"
            )
        report = gate.check_teacher(self.teacher, extraction.min_teacher_accuracy)
        if extraction.progress:
            tqdm.write(f"teacher gate: {report.summary()}")
        self.attrs = store_attrs(
            extraction,
            self.table,
            self.teacher.info,
            report,
            n_tokens,
            n_masked,
            file_sha256(Path(extraction.fasta)),
        )
        (self.layer,) = self.teacher.info.layers
        self.extraction = extraction
        self.order = RecordOrder(self.attrs, batch_size, seed, shuffle_chunks, holdout_chunks)
        self.batch_size, self.seed = batch_size, seed
        self.held_out = self.order.held_out
        self._held_out_features: dict[bytes, torch.Tensor] = {}

    def describe(self) -> str:
        """Where the batches come from, for the run's first line."""
        return (
            f"online teacher {self.teacher.info.name_or_path} ({self.teacher.info.dtype}) over "
            f"{self.attrs.n_records:,} windows of {Path(self.extraction.fasta).name}, a fresh "
            "mask per draw"
        )

    def provenance_inputs(self) -> dict[str, str]:
        """What names the training data: the store these options would extract, and the
        teacher's weights."""
        return {
            "online_source_fingerprint": self.attrs.fingerprint(),
            "teacher_weights_sha256": str(self.teacher.info.weights_sha256),
        }

    def record_ids(self, step: int) -> np.ndarray:
        """The windows of `step`: those of a run on the equivalent store (`RecordOrder`)."""
        return self.order.record_ids(step)

    def draw_masks(self, step: int) -> np.ndarray:
        """bool [batch, T]: fresh group masks of the draws of `step` (`data.draw_masks`)."""
        return draw_masks(self.attrs, self.seed, step, self.batch_size)

    def _windows(self, ids: np.ndarray) -> np.ndarray:
        return windows.read_windows(self.fasta, self.table, ids, self.attrs.window_bp)

    def _features(self, seq: np.ndarray, mask: np.ndarray) -> torch.Tensor:
        """The teacher's float32 features [B, T - M, D] of the visible tokens, on its device,
        in passes of extraction's --batch-size windows."""
        size = self.extraction.batch_size
        parts = [
            self.teacher.visible_features(seq[lo : lo + size], mask[lo : lo + size])[self.layer]
            for lo in range(0, len(seq), size)
        ]
        # Inference-mode outputs cannot be saved for backward; torch.cat, outside inference
        # mode, makes an ordinary tensor, which the alignment loss may keep.
        return torch.cat(parts).float()

    def batch(self, step: int, rank: int = 0, world_size: int = 1) -> Batch:
        """Rank `rank`'s block of step `step`: its windows, fresh masks, features computed now."""
        if self.batch_size % world_size:
            raise ConfigError(
                f"--batch-size {self.batch_size} is not divisible by {world_size} ranks"
            )
        per_rank = self.batch_size // world_size
        mine = slice(rank * per_rank, (rank + 1) * per_rank)
        ids, mask = self.record_ids(step)[mine], self.draw_masks(step)[mine]
        seq = self._windows(ids)
        return Batch(
            record=torch.from_numpy(ids),
            seq=torch.from_numpy(seq),
            group_mask=torch.from_numpy(mask),
            teacher=self._features(seq, mask),
        )

    def device_batches(
        self, start_step: int, workers: int, rank: int, world_size: int, device: torch.device
    ) -> Iterator[Batch]:
        """This rank's batches from `start_step` on, on `device` (features are made there),
        built in this process: `workers` is always 0 here (`pretrain.validate_source`)."""
        for step in itertools.count(start_step):
            yield self.batch(step, rank, world_size).to(device)

    def store_masks(self, ids: np.ndarray) -> np.ndarray:
        """The group masks the equivalent store holds for records `ids`."""
        a = self.attrs
        return masking.group_masks(a.mask_seed, ids, a.n_tokens, a.mask_ratio)

    def records(self, ids: np.ndarray) -> Batch:
        """Records `ids` as the equivalent store holds them (its masks; features in float16,
        computed once per set of ids): the held-out records."""
        ids = np.asarray(ids, dtype=np.int64)
        seq, mask = self._windows(ids), self.store_masks(ids)
        key = ids.tobytes()
        if key not in self._held_out_features:
            feats = self._features(seq, mask).to("cpu", HELD_OUT_FEATURES_DTYPE)
            self._held_out_features[key] = feats
        return Batch(
            record=torch.from_numpy(ids),
            seq=torch.from_numpy(seq),
            group_mask=torch.from_numpy(mask),
            teacher=self._held_out_features[key],
        )

    def training_windows(self, limit: int) -> tuple[np.ndarray, np.ndarray]:
        """(seq, store masks) of the training records `PretrainBatches.training_windows` picks."""
        rows = np.concatenate(
            [
                np.arange(self.attrs.n_records)[self.attrs.chunk_slice(c)]
                for c in self.order.sample_chunks(limit)
            ]
        )
        return self._windows(rows), self.store_masks(rows)

    def held_out_windows(self) -> tuple[np.ndarray, np.ndarray]:
        """(seq, store masks) of the held-out records."""
        if not len(self.held_out):
            raise ConfigError("no held-out records: pass --holdout-chunks K")
        return self._windows(self.held_out), self.store_masks(self.held_out)
