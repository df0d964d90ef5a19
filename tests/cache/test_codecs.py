"""Feature codecs: exact fp16, int8 whose rotation tames outlier dimensions, unbiased stochastic
rounding, PCA on low-rank features, the byte budget, and parameters that survive JSON."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from had_cache import codecs
from had_cache.codecs import CodecError, Fp16Codec, Int8Codec, PcaInt8Codec

D = 1024
VISIBLE = 144  # 170 tokens of a 1,020-bp window, 26 masked


def outlier_features(rows: int = 256, width: int = D, seed: int = 0) -> np.ndarray:
    """Gaussian features with three outlier dimensions 60-100x the others' scale in every row
    (the 'massive activations' of transformer features), as float32."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((rows, width))
    x[:, [3, width // 3, width - 5]] += np.array([60.0, -80.0, 100.0]) * (
        1 + 0.1 * rng.standard_normal((rows, 1))
    )
    return x.astype(np.float32)


def test_fp16_decodes_exactly() -> None:
    x = np.random.default_rng(1).standard_normal((3, 7, 16)).astype(np.float16)
    codec = Fp16Codec(16)
    stored = codec.encode(x)
    assert stored[codecs.VALUES].dtype == np.float16
    decoded = codec.decode_numpy(stored)
    assert decoded.dtype == np.float32 and np.array_equal(decoded, x.astype(np.float32))
    assert np.array_equal(codec.round_trip(x.astype(np.float32)), x.astype(np.float32))


def test_rotation_brings_int8_under_one_percent_where_plain_int8_is_not() -> None:
    x = outlier_features()
    plain = codecs.relative_error(x, Int8Codec(D, rotation="none").round_trip(x))
    assert plain > 3e-2  # the outliers set each row's scale
    for rotation in ("hadamard", "random"):
        rotated = codecs.relative_error(x, Int8Codec(D, rotation=rotation).round_trip(x))
        assert rotated <= 1e-2, (rotation, rotated)


def test_stochastic_rounding_is_unbiased() -> None:
    """The mean of K stochastic round trips converges on the features: each decoded coordinate's
    error is a unit-norm combination of independent rounding errors of variance at most s^2 / 4
    (s: the row's scale), so the mean of K draws has a standard deviation at most s / (2 sqrt K);
    every coordinate must lie within 5 of those. Nearest rounding, biased, must not."""
    rows, width, draws = 8, 64, 4000
    x = outlier_features(rows, width, seed=2)
    stacked = np.tile(x, (draws, 1))
    stochastic = Int8Codec(width, rotation="random", stochastic=True, seed=3)
    stored = stochastic.encode(stacked, np.random.Generator(np.random.PCG64(7)))
    mean = stochastic.decode_numpy(stored).reshape(draws, rows, width).mean(axis=0)
    scale = stored[codecs.SCALE][:rows]  # the same in every draw: it depends on x alone
    bound = 5 * scale[:, None] / (2 * np.sqrt(draws))
    assert (np.abs(mean - x) <= bound).all()
    nearest = Int8Codec(width, rotation="random", seed=3).round_trip(x)
    assert (np.abs(nearest - x) > bound).any()  # the bound is tight enough to catch a bias


def _low_rank(rows: int, variances: np.ndarray, width: int, seed: int) -> np.ndarray:
    """Features spanning len(variances) orthonormal directions with those variances, plus a mean."""
    rng = np.random.default_rng(seed)
    directions, _ = np.linalg.qr(rng.standard_normal((width, len(variances))))
    z = rng.standard_normal((rows, len(variances))) * np.sqrt(variances)
    return (z @ directions.T + 5.0).astype(np.float32)


def test_pca_explained_variance_on_low_rank_features() -> None:
    variances = np.arange(8, 0, -1, dtype=float)  # 8, 7, ..., 1
    data = _low_rank(4000, variances, 64, seed=4)
    fit, held_out = data[:2000], data[2000:]
    full = PcaInt8Codec.fit(fit, 8)
    assert full.explained_variance > 1 - 1e-9  # rank 8: eight directions hold everything
    assert codecs.explained_variance(held_out, full.round_trip(held_out)) > 0.999
    assert np.allclose(full.basis.T @ full.basis, np.eye(8), atol=1e-5)
    half = PcaInt8Codec.fit(fit, 4)
    expected = variances[:4].sum() / variances.sum()  # 26 / 36
    assert half.explained_variance == pytest.approx(expected, abs=0.03)
    measured = codecs.explained_variance(held_out, half.round_trip(held_out))
    assert measured == pytest.approx(expected, abs=0.03)


def test_pca_int8_fits_the_byte_budget() -> None:
    """R = 256 of a 1,024-wide teacher: at most 40 kB per 1,020-bp record (issue 21's target),
    and every codec's count is what its arrays really hold."""
    sample = np.random.default_rng(5).standard_normal((600, D)).astype(np.float32)
    pca = PcaInt8Codec.fit(sample, 256)
    assert pca.bytes_per_record(VISIBLE) <= 40_000
    for codec in (Fp16Codec(D), Int8Codec(D), pca):
        stored = codec.encode(sample[:VISIBLE])
        assert sum(a.nbytes for a in stored.values()) == codec.bytes_per_record(VISIBLE)
    assert Fp16Codec(D).bytes_per_record(VISIBLE) == VISIBLE * D * 2


@pytest.mark.parametrize("name", codecs.CODEC_NAMES)
def test_json_round_trip(name: str) -> None:
    x = outlier_features(64, 32, seed=6)
    codec = codecs.make_codec(
        name, 32, pca_dim=8 if name == "pca-int8" else None, sample=x, stochastic=name == "int8"
    )
    meta = json.loads(json.dumps(codec.to_json()))
    arrays = {k: v.copy() for k, v in codec.parameter_arrays().items()}
    again = codecs.codec_from_json(meta, arrays)
    assert again.to_json() == codec.to_json()
    rng = np.random.Generator(np.random.PCG64(1))
    stored = codec.encode(x, rng)
    assert np.array_equal(again.decode_numpy(stored), codec.decode_numpy(stored))
    if arrays:
        with pytest.raises(CodecError, match="parameter arrays"):
            codecs.codec_from_json(meta, {})


def test_decode_takes_torch_tensors_where_they_are() -> None:
    """What a trainer does: int8 values and scales go to the device, features come back there."""
    x = outlier_features(10, 64, seed=8)
    codec = codecs.make_codec("pca-int8", 64, pca_dim=16, sample=outlier_features(200, 64))
    stored = codec.encode(x)
    tensors = {k: torch.from_numpy(v) for k, v in stored.items()}
    out = codec.decode(tensors)
    assert out.dtype == torch.float32 and out.device == tensors[codecs.VALUES].device
    assert np.allclose(out.numpy(), codec.decode_numpy(stored))


def test_rotations_are_orthogonal_and_fixed_by_their_seed() -> None:
    for kind in ("hadamard", "random"):
        m = codecs.make_rotation(kind, 64, seed=1)
        assert np.allclose(m @ m.T, np.eye(64), atol=1e-5)
        assert np.array_equal(m, codecs.make_rotation(kind, 64, seed=1))
        assert not np.array_equal(m, codecs.make_rotation(kind, 64, seed=2))
    assert Int8Codec(192).rotation_kind == "random"  # the demo teacher's width
    assert Int8Codec(1024).rotation_kind == "hadamard"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "int4"}, "--codec must be one of"),
        ({"name": "int8", "pca_dim": 8}, "--pca-dim applies"),
        ({"name": "pca-int8"}, "needs --pca-dim"),
        ({"name": "pca-int8", "pca_dim": 40}, "--pca-dim must be in 1..32"),
        ({"name": "pca-int8", "pca_dim": 30}, "at least 60 sample rows"),
        ({"name": "int8", "rotation": "hadamard", "hidden_size": 24}, "power-of-two"),
    ],
)
def test_bad_options_are_codec_errors(kwargs: dict, message: str) -> None:
    options = {"hidden_size": 32, "sample": outlier_features(50, 32)} | kwargs
    with pytest.raises(CodecError, match=message):
        codecs.make_codec(**options)
