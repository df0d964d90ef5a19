"""Feature codecs: how teacher features [..., D] are stored, and how they come back.

At float16 a 1,020-bp record of a 1,024-wide teacher is 144 x 1,024 x 2 B = 295 kB, so the paper's
10.2M-draw stream replayed is about 3 TB (design.md section 6). Three codecs trade bytes for a
measured error:

- `fp16`: the reference; decoding is exact (the stored float16 values, widened).
- `int8`: a fixed orthogonal rotation (a Hadamard matrix with seeded random signs when D is a
  power of two, else a seeded random orthogonal matrix), then one float32 scale per row (token)
  and int8 values. Transformer features have a few outlier dimensions; without the rotation a
  row's scale is set by its outliers and every other dimension is quantised coarsely. The
  rotation spreads each outlier over all D coordinates, so the row's maximum is a few standard
  deviations of the whole row and int8's error is about 0.3% of the row's norm whatever the
  outliers. Optional stochastic rounding (seeded) makes the stored value an unbiased estimate of
  the rotated feature, so the expected MSE gradient equals the exact one.
- `pca-int8`: a mean and an orthonormal basis of R directions fitted on a sample of features,
  then the same rotation (of the R coordinates, which PCA leaves with very unequal variances) and
  int8. The truncation is a bias (it deletes a subspace): its size is the explained variance,
  measured on the fitting sample and recorded with the codec.

Every codec maps row vectors x [..., D] to y = (x - mean) @ M (M [D, R] with orthonormal columns;
mean 0 and R = D without PCA) and back as x_hat = mean + y_hat @ M.T. Encoding is numpy (it runs
where features are written); decoding takes torch tensors on any device, so a trainer sends the
int8 values and scales to the device and decodes there (half the bytes of float16 across the
bus, a quarter at R = D/4).

Where the alignment loss runs: on the decoded features, in the teacher's space. For an
orthogonal rotation the MSE is the same in both spaces (||a - M y||^2 = ||M.T a - y||^2), so
nothing is gained by moving. For PCA the decoded loss is the projected loss plus the squared norm
of the student's output outside the basis, a term the linear alignment head alone can drive to
zero, so the gradient reaching the encoder is that of the projected loss; decoding keeps the
student's head, checkpoint, held-out metrics and the loss's scale (a mean over D dimensions, so
--align-weight means the same for every codec) identical to the fp16 run it is compared with.
The price is one [n, R] x [R, D] matmul per micro-batch on the device: 2RD FLOPs per visible
token (0.5 MFLOP at R = 256, D = 1,024; 2.1 MFLOP for int8 at D = 1,024), against roughly
6 x 1.1M x 6 = 40 MFLOP of the student's step per teacher token (docs/architecture.md).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from had_common.errors import HadError

CODEC_NAMES = ("fp16", "int8", "pca-int8")
ROTATIONS = ("auto", "hadamard", "random", "none")
"""`auto`: Hadamard (with seeded signs) when the rotated width is a power of two, else a seeded
random orthogonal matrix. `none` is per-row int8 without rotation, for measurements only."""
DEFAULT_ROTATION = "auto"
DEFAULT_SEED = 0
INT8_MAX = 127
"""Symmetric int8 range [-127, 127]: the scale maps a row's largest |value| to 127."""
VALUES, SCALE = "values", "scale"
"""Per-record arrays a codec stores: the coded values [..., R] and (int8 codecs) one scale per row."""
MEAN, BASIS, ROTATION = "mean", "basis", "rotation"
"""Store-level parameter arrays: PCA mean [D] and basis [D, R]; the rotation [R, R]."""
PCA_MIN_SAMPLE_FACTOR = 2
"""A PCA fit needs at least this many sample rows per basis direction."""


class CodecError(HadError):
    """Codec options that do not fit the features, or codec parameters that do not fit each other."""


@dataclass(frozen=True)
class Field:
    """One per-record array of a codec: dtype and shape after the [..., tokens] axes."""

    dtype: np.dtype
    shape: tuple[int, ...]

    @property
    def bytes_per_row(self) -> int:
        return self.dtype.itemsize * math.prod(self.shape)


def field_specs(name: str, hidden_size: int, pca_dim: int | None = None) -> dict[str, Field]:
    """The per-record arrays codec `name` stores for a teacher of width `hidden_size`: known
    from the options alone, before any PCA is fitted (what a store preallocates and what
    `had-cache plan` counts)."""
    if name not in CODECS:
        raise CodecError(f"--codec must be one of {', '.join(CODEC_NAMES)}, got {name!r}")
    if name == "fp16":
        return {VALUES: Field(np.dtype(np.float16), (hidden_size,))}
    width = hidden_size if name == "int8" else pca_dim
    if width is None:
        raise CodecError("--codec pca-int8 needs --pca-dim R")
    _check_pca_dim(width, hidden_size)
    return {VALUES: Field(np.dtype(np.int8), (width,)), SCALE: Field(np.dtype(np.float32), ())}


class FeatureCodec(ABC):
    """Encode float features [..., D] into the arrays a store holds; decode them back."""

    name: ClassVar[str]

    def __init__(self, hidden_size: int) -> None:
        if hidden_size <= 0:
            raise CodecError(f"teacher width must be positive, got {hidden_size}")
        self.hidden_size = hidden_size
        self._on_device: dict[torch.device, dict[str, torch.Tensor]] = {}

    @abstractmethod
    def fields(self) -> dict[str, Field]:
        """The per-record arrays (name -> dtype and trailing shape) the writer preallocates."""

    @abstractmethod
    def encode(
        self, features: np.ndarray, rng: np.random.Generator | None = None
    ) -> dict[str, np.ndarray]:
        """Features [..., D] (any float dtype) -> the arrays of `fields()`, shaped [..., *shape].

        `rng` drives stochastic rounding where the codec uses it; a writer passes one derived
        from (codec seed, first record) so a rerun writes the same bytes."""

    @abstractmethod
    def decode(self, arrays: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Stored arrays (torch tensors, on any device) -> float32 features [..., D] there."""

    @abstractmethod
    def to_json(self) -> dict[str, Any]:
        """The codec's name and scalar parameters (store attributes)."""

    def parameter_arrays(self) -> dict[str, np.ndarray]:
        """Store-level arrays the codec needs to decode (PCA mean and basis, rotation)."""
        return {}

    def bytes_per_record(self, n_visible: int) -> int:
        """Bytes of one record's features (n_visible tokens), parameter arrays not counted."""
        return n_visible * sum(f.bytes_per_row for f in self.fields().values())

    def parameter_bytes(self) -> int:
        """Bytes of the parameter arrays (stored once per store)."""
        return sum(a.nbytes for a in self.parameter_arrays().values())

    def decode_numpy(self, arrays: Mapping[str, np.ndarray]) -> np.ndarray:
        """`decode` on the CPU for numpy arrays (measurements, tests)."""
        return self.decode({k: torch.from_numpy(np.asarray(v)) for k, v in arrays.items()}).numpy()

    def round_trip(
        self, features: np.ndarray, rng: np.random.Generator | None = None
    ) -> np.ndarray:
        """Encode then decode: what a trainer reads back for `features` (float32)."""
        return self.decode_numpy(self.encode(features, rng))

    def _check_width(self, features: np.ndarray) -> np.ndarray:
        features = np.asarray(features)
        if features.shape[-1:] != (self.hidden_size,):
            raise CodecError(
                f"{self.name} codec of width {self.hidden_size} got features of shape "
                f"{features.shape}"
            )
        return features

    def _params(self, device: torch.device) -> dict[str, torch.Tensor]:
        """The decoding parameters as float32 tensors on `device`, copied there once."""
        if device not in self._on_device:
            self._on_device[device] = {
                k: torch.from_numpy(v).to(device) for k, v in self._decode_params().items()
            }
        return self._on_device[device]

    def _decode_params(self) -> dict[str, np.ndarray]:
        return {}


class Fp16Codec(FeatureCodec):
    """float16 values, decoded exactly (the reference every other codec is measured against)."""

    name = "fp16"

    def fields(self) -> dict[str, Field]:
        return field_specs(self.name, self.hidden_size)

    def encode(
        self, features: np.ndarray, rng: np.random.Generator | None = None
    ) -> dict[str, np.ndarray]:
        return {VALUES: self._check_width(features).astype(np.float16)}

    def decode(self, arrays: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return arrays[VALUES].float()

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "hidden_size": self.hidden_size}


def hadamard(n: int) -> np.ndarray:
    """The n x n Sylvester Hadamard matrix divided by sqrt(n) (orthogonal); n a power of two."""
    if n <= 0 or n & (n - 1):
        raise CodecError(f"a Hadamard rotation needs a power-of-two width, got {n}")
    h = np.ones((1, 1))
    while h.shape[0] < n:
        h = np.block([[h, h], [h, -h]])
    return h / math.sqrt(n)


def make_rotation(kind: str, n: int, seed: int) -> np.ndarray:
    """An n x n orthogonal matrix (float32), a pure function of (kind, n, seed), for row vectors
    (y = x @ rotation). Stored with the codec, so decoding never depends on how numpy or LAPACK
    regenerate it."""
    kind = _resolve_rotation(kind, n)
    rng = np.random.Generator(np.random.PCG64([seed, n]))
    if kind == "none":
        return np.eye(n, dtype=np.float32)
    if kind == "hadamard":
        # Random signs first, so no feature direction lines up with a Hadamard row by chance.
        signs = rng.choice(np.array([-1.0, 1.0]), size=n)
        return (signs[:, None] * hadamard(n)).astype(np.float32)
    q, r = np.linalg.qr(rng.standard_normal((n, n)))
    return (q * np.sign(np.diag(r))).astype(np.float32)  # Haar-distributed


def quantize_rows(
    y: np.ndarray, stochastic: bool = False, rng: np.random.Generator | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(int8 values, float32 scale per row) with y ~ values * scale: each row's largest |value|
    maps to 127. Nearest rounding, or stochastic rounding (floor(y / s + u), u ~ U[0, 1)), whose
    expectation is y / s exactly (`rng` required)."""
    y = np.asarray(y, dtype=np.float32)
    amax = np.abs(y).max(axis=-1)
    scale = np.where(amax > 0, amax / INT8_MAX, 1.0).astype(np.float32)
    unit = y / scale[..., None]
    noise = rng.random(unit.shape, dtype=np.float32) if stochastic else None
    q = np.rint(unit) if noise is None else np.floor(unit + noise)
    return np.clip(q, -INT8_MAX, INT8_MAX).astype(np.int8), scale


class Int8Codec(FeatureCodec):
    """Rotation, then per-row int8 (see the module docstring)."""

    name = "int8"

    def __init__(
        self,
        hidden_size: int,
        rotation: str = DEFAULT_ROTATION,
        seed: int = DEFAULT_SEED,
        stochastic: bool = False,
        rotation_matrix: np.ndarray | None = None,
    ) -> None:
        super().__init__(hidden_size)
        self.seed, self.stochastic = seed, stochastic
        self.rotation_kind = _resolve_rotation(rotation, self.coded_width)
        if rotation_matrix is None:
            rotation_matrix = make_rotation(self.rotation_kind, self.coded_width, seed)
        self.rotation = _checked_matrix(rotation_matrix, (self.coded_width,) * 2, ROTATION)

    @property
    def coded_width(self) -> int:
        """R: values stored per token."""
        return self.hidden_size

    def fields(self) -> dict[str, Field]:
        return field_specs(self.name, self.hidden_size, self.coded_width)

    def _project(self, features: np.ndarray) -> np.ndarray:
        return features @ self.rotation

    def encode(
        self, features: np.ndarray, rng: np.random.Generator | None = None
    ) -> dict[str, np.ndarray]:
        x = self._check_width(features).astype(np.float32)
        if self.stochastic and rng is None:
            rng = np.random.Generator(np.random.PCG64([self.seed]))
        q, scale = quantize_rows(self._project(x), self.stochastic, rng)
        return {VALUES: q, SCALE: scale}

    def _decode_params(self) -> dict[str, np.ndarray]:
        return {"back": np.ascontiguousarray(self.rotation.T)}

    def decode(self, arrays: Mapping[str, torch.Tensor]) -> torch.Tensor:
        values = arrays[VALUES]
        params = self._params(values.device)
        y = values.float() * arrays[SCALE].float().unsqueeze(-1)
        out = y @ params["back"]
        return out + params["mean"] if "mean" in params else out

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "hidden_size": self.hidden_size,
            "rotation": self.rotation_kind,
            "seed": self.seed,
            "stochastic_rounding": self.stochastic,
        }

    def parameter_arrays(self) -> dict[str, np.ndarray]:
        return {ROTATION: self.rotation}


class PcaInt8Codec(Int8Codec):
    """Mean and R-direction basis fitted on a sample, then rotation and per-row int8."""

    name = "pca-int8"

    def __init__(
        self,
        hidden_size: int,
        pca_dim: int,
        mean: np.ndarray,
        basis: np.ndarray,
        explained_variance: float,
        fit_rows: int,
        rotation: str = DEFAULT_ROTATION,
        seed: int = DEFAULT_SEED,
        stochastic: bool = False,
        rotation_matrix: np.ndarray | None = None,
    ) -> None:
        _check_pca_dim(pca_dim, hidden_size)
        self.pca_dim = pca_dim
        self.mean = _checked_matrix(mean, (hidden_size,), MEAN)
        self.basis = _checked_matrix(basis, (hidden_size, pca_dim), BASIS)
        self.explained_variance, self.fit_rows = float(explained_variance), int(fit_rows)
        super().__init__(hidden_size, rotation, seed, stochastic, rotation_matrix)

    @classmethod
    def fit(
        cls,
        sample: np.ndarray,
        pca_dim: int,
        rotation: str = DEFAULT_ROTATION,
        seed: int = DEFAULT_SEED,
        stochastic: bool = False,
    ) -> PcaInt8Codec:
        """Fit mean and basis on `sample` [..., D] (rows = tokens of a sample of windows)."""
        rows = np.asarray(sample).reshape(-1, np.asarray(sample).shape[-1])
        _check_pca_dim(pca_dim, rows.shape[1])
        if len(rows) < PCA_MIN_SAMPLE_FACTOR * pca_dim:
            raise CodecError(
                f"a PCA of {pca_dim} directions needs at least "
                f"{PCA_MIN_SAMPLE_FACTOR * pca_dim} sample rows, got {len(rows)}"
            )
        mean, basis, explained = fit_pca(rows, pca_dim)
        return cls(
            rows.shape[1], pca_dim, mean, basis, explained, len(rows), rotation, seed, stochastic
        )

    @property
    def coded_width(self) -> int:
        return self.pca_dim

    def _project(self, features: np.ndarray) -> np.ndarray:
        return ((features - self.mean) @ self.basis) @ self.rotation

    def _decode_params(self) -> dict[str, np.ndarray]:
        back = (self.basis.astype(np.float64) @ self.rotation.astype(np.float64)).T
        return {"back": back.astype(np.float32), "mean": self.mean}

    def to_json(self) -> dict[str, Any]:
        return super().to_json() | {
            "pca_dim": self.pca_dim,
            "explained_variance": self.explained_variance,
            "fit_rows": self.fit_rows,
        }

    def parameter_arrays(self) -> dict[str, np.ndarray]:
        return {MEAN: self.mean, BASIS: self.basis, ROTATION: self.rotation}


def fit_pca(rows: np.ndarray, dim: int) -> tuple[np.ndarray, np.ndarray, float]:
    """(mean [D], basis [D, dim] with orthonormal columns, share of the sample's variance the
    basis keeps), from the covariance in float64. Each direction's sign is fixed (its largest
    |entry| positive), so a fit is a pure function of the sample."""
    x = np.asarray(rows, dtype=np.float64)
    mean = x.mean(axis=0)
    centred = x - mean
    cov = centred.T @ centred / len(x)
    eigval, eigvec = np.linalg.eigh(cov)
    order = np.argsort(eigval)[::-1][:dim]
    basis = eigvec[:, order]
    pivot = np.abs(basis).argmax(axis=0)
    basis *= np.sign(basis[pivot, np.arange(dim)])
    total = float(np.trace(cov))
    explained = float(eigval[order].sum() / total) if total > 0 else 1.0
    return mean.astype(np.float32), basis.astype(np.float32), explained


CODECS: dict[str, type[FeatureCodec]] = {c.name: c for c in (Fp16Codec, Int8Codec, PcaInt8Codec)}


def make_codec(
    name: str,
    hidden_size: int,
    pca_dim: int | None = None,
    sample: np.ndarray | None = None,
    rotation: str = DEFAULT_ROTATION,
    seed: int = DEFAULT_SEED,
    stochastic: bool = False,
) -> FeatureCodec:
    """The codec `--codec NAME` names; `pca-int8` is fitted on `sample` [..., D] (rows of
    features) with `pca_dim` directions."""
    if name not in CODECS:
        raise CodecError(f"--codec must be one of {', '.join(CODEC_NAMES)}, got {name!r}")
    if name != "pca-int8" and pca_dim is not None:
        raise CodecError(f"--pca-dim applies to --codec pca-int8, not {name}")
    if name == "fp16":
        return Fp16Codec(hidden_size)
    if name == "int8":
        return Int8Codec(hidden_size, rotation, seed, stochastic)
    if pca_dim is None or sample is None:
        raise CodecError("--codec pca-int8 needs --pca-dim R and a sample of features to fit")
    codec = PcaInt8Codec.fit(sample, pca_dim, rotation, seed, stochastic)
    if codec.hidden_size != hidden_size:
        raise CodecError(f"the PCA sample is {codec.hidden_size} wide, the teacher {hidden_size}")
    return codec


def codec_from_json(
    data: Mapping[str, Any], arrays: Mapping[str, np.ndarray] | None = None
) -> FeatureCodec:
    """The codec `to_json()` and `parameter_arrays()` describe (as a store holds them)."""
    arrays = dict(arrays or {})
    try:
        name, width = data["name"], int(data["hidden_size"])
        if name == "fp16":
            return Fp16Codec(width)
        if name not in CODECS:
            raise CodecError(
                f"unknown codec {name!r} (this version reads {', '.join(CODEC_NAMES)})"
            )
        common = {
            "rotation": data["rotation"],
            "seed": int(data["seed"]),
            "stochastic": bool(data["stochastic_rounding"]),
        }
        needed = [ROTATION] + ([MEAN, BASIS] if name == "pca-int8" else [])
        missing = [k for k in needed if k not in arrays]
        if missing:
            raise CodecError(f"the {name} codec needs its parameter arrays {', '.join(missing)}")
        if name == "int8":
            return Int8Codec(width, rotation_matrix=arrays[ROTATION], **common)
        return PcaInt8Codec(
            width,
            int(data["pca_dim"]),
            arrays[MEAN],
            arrays[BASIS],
            float(data["explained_variance"]),
            int(data["fit_rows"]),
            rotation_matrix=arrays[ROTATION],
            **common,
        )
    except KeyError as err:
        raise CodecError(f"codec attributes lack {err.args[0]!r}: {dict(data)}") from None


def relative_error(features: np.ndarray, decoded: np.ndarray) -> float:
    """||decoded - features|| / ||features|| over all rows (Frobenius norms, float64)."""
    x = np.asarray(features, dtype=np.float64)
    err = np.asarray(decoded, dtype=np.float64) - x
    return float(np.sqrt((err**2).sum() / max((x**2).sum(), 1e-300)))


def explained_variance(features: np.ndarray, decoded: np.ndarray) -> float:
    """1 - ||decoded - features||^2 / ||features - their mean||^2 (R^2 over all rows): the
    share of the features' variance the decoded features keep; the score an alignment that
    reproduced the decoded targets exactly would reach against the true ones."""
    x = np.asarray(features, dtype=np.float64).reshape(-1, np.asarray(features).shape[-1])
    err = np.asarray(decoded, dtype=np.float64).reshape(x.shape) - x
    total = ((x - x.mean(axis=0)) ** 2).sum()
    return float(1.0 - (err**2).sum() / total) if total > 0 else 1.0


@dataclass(frozen=True)
class CodecReport:
    """What a codec costs on given features: the figures a store records beside the codec."""

    codec: str
    relative_error: float
    explained_variance: float
    bytes_per_record: int
    fp16_bytes_per_record: int
    parameter_bytes: int
    rows: int

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def summary(self) -> str:
        return (
            f"{self.codec}: relative error {self.relative_error:.2e}, explained variance "
            f"{self.explained_variance:.4f}, {self.bytes_per_record:,} B per record "
            f"({self.fp16_bytes_per_record / self.bytes_per_record:.1f}x smaller than fp16), "
            f"measured on {self.rows:,} feature rows"
        )


def measure(codec: FeatureCodec, features: np.ndarray, n_visible: int) -> CodecReport:
    """Round-trip `features` [..., D] (held out from any PCA fit, ideally) through `codec`."""
    decoded = codec.round_trip(features)
    return CodecReport(
        codec=codec.name,
        relative_error=relative_error(features, decoded),
        explained_variance=explained_variance(features, decoded),
        bytes_per_record=codec.bytes_per_record(n_visible),
        fp16_bytes_per_record=Fp16Codec(codec.hidden_size).bytes_per_record(n_visible),
        parameter_bytes=codec.parameter_bytes(),
        rows=int(np.prod(np.asarray(features).shape[:-1])),
    )


def _resolve_rotation(kind: str, n: int) -> str:
    if kind not in ROTATIONS:
        raise CodecError(f"--rotation must be one of {', '.join(ROTATIONS)}, got {kind!r}")
    if kind == "auto":
        return "hadamard" if n & (n - 1) == 0 else "random"
    if kind == "hadamard" and n & (n - 1):
        raise CodecError(
            f"--rotation hadamard needs a power-of-two width, not {n}; use random or auto"
        )
    return kind


def _check_pca_dim(pca_dim: int, hidden_size: int) -> None:
    if not 0 < pca_dim <= hidden_size:
        raise CodecError(
            f"--pca-dim must be in 1..{hidden_size} (the teacher width), got {pca_dim}"
        )


def _checked_matrix(array: np.ndarray, shape: tuple[int, ...], name: str) -> np.ndarray:
    array = np.asarray(array, dtype=np.float32)
    if array.shape != shape:
        raise CodecError(f"codec parameter {name} has shape {array.shape}, expected {shape}")
    return array
