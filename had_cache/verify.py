"""Check a store against its teacher: recompute features of sampled records and compare.

A store that silently disagrees with its teacher (another checkpoint, another layer, dropout
left on, a writer bug) trains a student towards the wrong target; this is the check that
catches it before anyone spends GPU hours on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from had_cache import masking, tokenize
from had_cache.errors import ConfigError
from had_cache.reader import CacheReader
from had_cache.runtime import resolve_device
from had_cache.teacher import load_teacher, resolve_dtype


@dataclass(frozen=True)
class VerifyReport:
    records: np.ndarray  # the record ids checked
    cosine: np.ndarray  # per record, stored vs recomputed visible features (flattened)
    max_abs: float  # largest absolute difference over all checked features

    def lines(self) -> list[str]:
        return [
            f"records checked  {len(self.records)} ({', '.join(map(str, self.records[:8]))}"
            + (" ...)" if len(self.records) > 8 else ")"),
            f"cosine           min {self.cosine.min():.6f}, mean {self.cosine.mean():.6f}",
            f"max abs error    {self.max_abs:.4g}",
        ]


def verify_store(
    path: Path,
    recompute: int,
    seed: int = 0,
    device: str = "auto",
    dtype: str = "auto",
    teacher: str | None = None,
    batch_size: int = 8,
) -> VerifyReport:
    """Re-run the store's teacher (or `teacher`) on `recompute` random records and compare."""
    if recompute <= 0:
        raise ConfigError(f"--recompute must be positive, got {recompute}")
    reader = CacheReader(path)
    attrs = reader.attrs
    dev = resolve_device(device)
    model = load_teacher(
        teacher or attrs.teacher.name_or_path,
        dev,
        resolve_dtype(dtype, dev),
        attrs.teacher.layer,
        attrs.teacher.revision,
    )
    rng = np.random.default_rng(seed)
    records = np.sort(
        rng.choice(attrs.n_records, size=min(recompute, attrs.n_records), replace=False)
    )
    cosines, max_abs = [], 0.0
    for lo in range(0, len(records), batch_size):
        ids = records[lo : lo + batch_size]
        block = reader.take(ids)
        seq, mask, stored = block.seq, block.mask, block.teacher.astype(np.float32)
        inputs = masking.teacher_input(tokenize.kmer_ids(seq), mask, tokenize.MASK_ID)
        out = model.features(inputs)
        fresh = out[~torch.as_tensor(mask, device=out.device)].float().cpu().numpy()
        fresh = fresh.reshape(stored.shape)
        a, b = stored.reshape(len(ids), -1), fresh.reshape(len(ids), -1)
        cosines.append((a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)))
        max_abs = max(max_abs, float(np.abs(a - b).max()))
    return VerifyReport(records=records, cosine=np.concatenate(cosines), max_abs=max_abs)
