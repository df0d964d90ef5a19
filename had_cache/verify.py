"""Check a store against its teacher: recompute features of sampled records and compare.

A store that silently disagrees with its teacher (another checkpoint, another layer, dropout
left on, a writer bug) trains a student towards the wrong target; this is the check that
catches it before anyone spends GPU hours on it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from had_cache.gate import GateReport
from had_cache.reader import CacheReader
from had_cache.schema import StoreError
from had_cache.teacher import AUTO_DTYPE, load_teacher, resolve_dtype
from had_common.device import AUTO, resolve_device
from had_common.errors import ConfigError

DEFAULT_RECOMPUTE = 16
DEFAULT_MIN_COSINE = 0.99
"""float16 storage and bf16 GPU kernels keep the same teacher above ~0.999; another checkpoint,
layer or mask rule falls far below."""


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

    def check(self, min_cosine: float) -> None:
        """StoreError if any checked record is less similar than `min_cosine`."""
        layer, worst, cosine = self.worst
        if cosine < min_cosine:
            raise StoreError(
                f"record {worst} has cosine {cosine:.4f} < {min_cosine} at teacher layer "
                f"{layer}: the store does not match its teacher (other weights, layer or masking?)"
            )


def verify_store(
    path: Path,
    recompute: int = DEFAULT_RECOMPUTE,
    seed: int = 0,
    device: str = AUTO,
    dtype: str = AUTO_DTYPE,
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
        first = blocks[info.layers[0]]
        for layer, out in model.visible_features(first.seq, first.mask).items():
            a = blocks[layer].teacher.astype(np.float32).reshape(len(ids), -1)
            b = out.float().cpu().numpy().reshape(len(ids), -1)
            cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
            cosines[layer].append(cos)
            max_abs = max(max_abs, float(np.abs(a - b).max()))
    return VerifyReport(
        records=records,
        cosine={layer: np.concatenate(c) for layer, c in cosines.items()},
        max_abs=max_abs,
    )


def describe_store(path: Path, as_json: bool = False) -> list[str]:
    """`had-cache inspect`: a summary of a (possibly incomplete) store, or its attributes."""
    a = CacheReader(path, require_complete=False).attrs
    if as_json:
        return [json.dumps(a.to_json(), indent=2)]
    return [
        f"store      {path} ({'complete' if a.complete else 'INCOMPLETE'})",
        f"teacher    {a.teacher.name_or_path} "
        f"layer{'s' if len(a.teacher.layers) > 1 else ''} "
        f"{', '.join(map(str, a.teacher.layers))} of 0..{a.teacher.num_layers} "
        f"(hidden {a.hidden_size})",
        f"records    {a.n_records:,} windows of {a.window_bp} bp "
        f"({a.n_tokens} tokens, {a.n_masked} masked), strands {a.strands}",
        f"fasta      {a.fasta.path}",
        "gate       "
        + (GateReport(**a.teacher_gate).summary() if a.teacher_gate else "not recorded"),
        f"chunks     {a.n_chunks} x {a.chunk_records} records",
        f"schema     {a.schema_version}",
    ]
