"""Unmasked-teacher drift: how far the teacher's features of visible tokens move when it also
sees the masked groups.

HAD's teacher reads the masked input, so its visible features cannot leak the masked bases
(design.md section 1). A store made from one unmasked pass per window (masks drawn at training
time, as data2vec and HuBERT do) gives unlimited masks from one teacher pass, but its targets are
T(x) instead of T(x_masked). Before anyone trains on such targets, this measures the change of
objective as a share of what the student is asked to learn:

    D = E ||T(x_masked)_v - T(x)_v||^2 / E ||T(x)_v - mean||^2

over the visible tokens v of windows drawn uniformly from the genome (`mean`: the mean of T(x)_v
over all of them). D = 0: masking changes nothing; D = 1: the shift is as large as the features'
own spread (D = 2 for two independent draws). The estimate is a ratio of sums over windows, so
its 95% interval comes from the delta method with the window as the unit (tokens of one window
are not independent): se^2 = Var_w(a_w - D b_w) / (n mean_w(b_w)^2), where a_w and b_w are window
w's sums of the numerator and denominator terms.

`measure_drift` takes a loaded teacher, so the unmasked-mode extraction (issue 21) can call it
with the teacher it already holds and keep `DriftReport.to_json()` in the store's attributes;
`DriftReport.summary()` is the line `pretrain` prints for such a store.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from had_cache import dna, masking, tokenize, windows
from had_cache import teacher as teacher_mod
from had_cache.extract import ExtractConfig
from had_common import device as device_rule
from had_common.errors import ConfigError
from had_common.stats import ratio_interval

DEFAULT_WINDOWS = ExtractConfig.drift_windows
"""Windows drawn by default (as a full-teacher extraction measures it): enough for an interval
of a few percent of D on real DNA."""
CONFIDENCE = 0.95

FeatureFn = Callable[[np.ndarray], torch.Tensor]
"""6-mer ids [B, T] (masked groups as `<mask>` or not) -> features [B, T, D] of one layer."""


@dataclass(frozen=True)
class DriftReport:
    """D, its 95% interval and what it was measured on (stored in unmasked-mode stores)."""

    drift: float
    ci_low: float
    ci_high: float
    windows: int
    visible_tokens: int
    mean_sq_shift: float  # E ||T(x_masked)_v - T(x)_v||^2 per visible token
    variance: float  # E ||T(x)_v - mean||^2 per visible token
    teacher: str = ""
    layer: int | None = None
    window_bp: int | None = None
    mask_ratio: float | None = None
    seed: int | None = None
    confidence: float = CONFIDENCE

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DriftReport:
        return cls(**data)

    def summary(self) -> str:
        """One line: the figure, its interval and what it was measured on."""
        where = f"teacher {self.teacher} layer {self.layer}, " if self.teacher else ""
        return (
            f"unmasked-teacher drift D = {self.drift:.4f} ({self.confidence:.0%} CI "
            f"{self.ci_low:.4f}-{self.ci_high:.4f}) over {self.windows:,} windows "
            f"({self.visible_tokens:,} visible tokens; {where}mask ratio {self.mask_ratio}): "
            f"E||T(x_masked)_v - T(x)_v||^2 is {self.drift:.1%} of the visible features' variance"
        )


@torch.inference_mode()
def measure_drift(
    features: FeatureFn,
    seq: np.ndarray,
    mask: np.ndarray,
    batch_size: int = ExtractConfig.batch_size,
    progress: bool = False,
) -> DriftReport:
    """D over N-free windows `seq` [n, 6T] with group masks `mask` [n, T] (see the module
    docstring). `features` is the teacher's one layer (e.g. `teacher_features(teacher, layer)`)."""
    seq, mask = np.asarray(seq), np.asarray(mask, dtype=bool)
    if len(seq) < 2:
        raise ConfigError(f"drift needs at least 2 windows, got {len(seq)}")
    ids = tokenize.kmer_ids(seq)
    shift = np.empty(len(seq))  # a_w: sum over visible tokens of ||T(x_m) - T(x)||^2
    sq_norm = np.empty(len(seq))  # sum of ||T(x)||^2
    counts = mask.shape[1] - mask.sum(axis=1)
    sums = None  # [n, D]: sum of T(x) over the window's visible tokens
    for lo in tqdm(
        range(0, len(seq), batch_size), desc="drift", unit="batch", disable=not progress
    ):
        hi = min(lo + batch_size, len(seq))
        visible = torch.as_tensor(~mask[lo:hi])
        masked_ids = masking.teacher_input(ids[lo:hi], mask[lo:hi], tokenize.MASK_ID)
        t_masked = features(masked_ids).double().cpu() * visible[..., None]
        t_full = features(ids[lo:hi]).double().cpu() * visible[..., None]
        if sums is None:
            sums = np.empty((len(seq), t_full.shape[-1]))
        shift[lo:hi] = ((t_masked - t_full) ** 2).sum(dim=(1, 2)).numpy()
        sq_norm[lo:hi] = (t_full**2).sum(dim=(1, 2)).numpy()
        sums[lo:hi] = t_full.sum(dim=1).numpy()
    mean = sums.sum(axis=0) / counts.sum()
    spread = sq_norm - 2 * sums @ mean + counts * (mean @ mean)  # b_w: sum of ||T(x) - mean||^2
    drift, low, high = ratio_interval(shift, spread)
    return DriftReport(
        drift=drift,
        ci_low=low,
        ci_high=high,
        windows=len(seq),
        visible_tokens=int(counts.sum()),
        mean_sq_shift=float(shift.sum() / counts.sum()),
        variance=float(spread.sum() / counts.sum()),
    )


def teacher_features(teacher: teacher_mod.Teacher, layer: int) -> FeatureFn:
    """The loaded teacher's features of stored layer `layer` (a non-negative index)."""
    return lambda ids: teacher.features(ids)[layer]


@dataclass(frozen=True)
class DriftConfig:
    """Options of `had-cache drift`; window, mask and teacher defaults are extraction's."""

    fasta: Path
    teacher: str = ExtractConfig.teacher
    windows: int = DEFAULT_WINDOWS
    seed: int = 0
    window_bp: int = ExtractConfig.window_bp
    mask_ratio: float = ExtractConfig.mask_ratio
    layer: int = teacher_mod.DEFAULT_LAYERS[0]
    contigs: str = ExtractConfig.contigs
    strands: str = ExtractConfig.strands
    batch_size: int = ExtractConfig.batch_size
    device: str = ExtractConfig.device
    dtype: str = ExtractConfig.dtype
    progress: bool = True


def sample_windows(cfg: DriftConfig) -> tuple[np.ndarray, np.ndarray]:
    """(seq [n, W], mask [n, T]): `cfg.windows` windows drawn uniformly without replacement from
    the extraction's window table of the FASTA, and their group masks, both from `cfg.seed`."""
    if cfg.windows < 2:
        raise ConfigError(f"--windows must be at least 2, got {cfg.windows}")
    if cfg.batch_size <= 0:
        raise ConfigError(f"--batch-size must be positive, got {cfg.batch_size}")
    if not 0.0 < cfg.mask_ratio < 1.0:
        raise ConfigError(f"--mask-ratio must be between 0 and 1, got {cfg.mask_ratio}")
    n_tokens = dna.groups_per_window(cfg.window_bp)
    fasta = windows.open_fasta(cfg.fasta)
    table = windows.plan_windows(
        fasta, cfg.window_bp, cfg.contigs, cfg.strands, progress=cfg.progress
    )
    if len(table) < cfg.windows:
        raise ConfigError(
            f"--windows {cfg.windows}: the FASTA has only {len(table):,} N-free windows of "
            f"{cfg.window_bp} bp; pass --windows {len(table)} or fewer"
        )
    rng = np.random.Generator(np.random.PCG64([cfg.seed]))
    chosen = np.sort(rng.choice(len(table), size=cfg.windows, replace=False))
    seq = windows.read_windows(fasta, table, chosen, cfg.window_bp)
    mask = masking.group_masks(cfg.seed, np.arange(cfg.windows), n_tokens, cfg.mask_ratio)
    return seq, mask


def drift(cfg: DriftConfig) -> DriftReport:
    """`had-cache drift`: sample windows, load the teacher, measure D."""
    seq, mask = sample_windows(cfg)
    device = device_rule.resolve_device(cfg.device)
    dtype = teacher_mod.resolve_dtype(cfg.dtype, device)
    teacher = teacher_mod.load_teacher(cfg.teacher, device, dtype, (cfg.layer,))
    if dna.groups_per_window(cfg.window_bp) + 1 > teacher.max_tokens:
        raise ConfigError(
            f"--window-bp {cfg.window_bp} is longer than the teacher reads "
            f"({teacher.max_tokens} tokens with <cls>)"
        )
    (layer,) = teacher.info.layers
    report = measure_drift(
        teacher_features(teacher, layer), seq, mask, cfg.batch_size, cfg.progress
    )
    return DriftReport(
        **{
            **report.to_json(),
            "teacher": teacher.info.name_or_path,
            "layer": layer,
            "window_bp": cfg.window_bp,
            "mask_ratio": cfg.mask_ratio,
            "seed": cfg.seed,
        }
    )
