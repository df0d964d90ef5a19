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
    cosine: dict[int, np.ndarray]  # per stored layer, per record: stored vs recomputed features
    max_abs: float  # largest absolute difference over all checked features

    @property
    def worst(self) -> tuple[int, int, float]:
        """(layer, record, cosine) of the least similar record over all layers."""
        layer = min(self.cosine, key=lambda k: self.cosine[k].min())
        i = int(self.cosine[layer].argmin())
        return layer, int(self.records[i]), float(self.cosine[layer][i])

    def lines(self) -> list[str]:
        head = ", ".join(map(str, self.records[:8])) + (" ..." if len(self.records) > 8 else "")
        return [
            f"records checked  {len(self.records)} ({head})",
            *(
                f"cosine layer {layer:<3} min {c.min():.6f}, mean {c.mean():.6f}"
                for layer, c in self.cosine.items()
            ),
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
    info = CacheReader(path).attrs.teacher
    readers = {layer: CacheReader(path, layer=layer) for layer in info.layers}
    attrs = readers[info.layers[0]].attrs
    dev = resolve_device(device)
    model = load_teacher(
        teacher or info.name_or_path, dev, resolve_dtype(dtype, dev), info.layers, info.revision
    )
    rng = np.random.default_rng(seed)
    records = np.sort(
        rng.choice(attrs.n_records, size=min(recompute, attrs.n_records), replace=False)
    )
    cosines: dict[int, list[np.ndarray]] = {layer: [] for layer in info.layers}
    max_abs = 0.0
    for lo in range(0, len(records), batch_size):
        ids = records[lo : lo + batch_size]
        blocks = {layer: reader.take(ids) for layer, reader in readers.items()}
        seq, mask = blocks[info.layers[0]].seq, blocks[info.layers[0]].mask
        inputs = masking.teacher_input(tokenize.kmer_ids(seq), mask, tokenize.MASK_ID)
        visible = torch.as_tensor(~mask, device=model.device)
        for layer, out in model.features(inputs).items():
            a = blocks[layer].teacher.astype(np.float32).reshape(len(ids), -1)
            b = out[visible].float().cpu().numpy().reshape(len(ids), -1)
            cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
            cosines[layer].append(cos)
            max_abs = max(max_abs, float(np.abs(a - b).max()))
    return VerifyReport(
        records=records,
        cosine={layer: np.concatenate(c) for layer, c in cosines.items()},
        max_abs=max_abs,
    )
