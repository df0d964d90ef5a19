"""Stores written with a feature codec: recorded, read back, decoded on the device, resumed."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import zarr

from had_cache import codecs, extract, schema, verify
from had_cache.reader import CacheReader
from had_common.errors import ConfigError
from had_train.data import PretrainBatches
from tests.conftest import extract_store

OPTIONS = {"window_bp": 120, "chunk_records": 4, "shard_chunks": 2, "batch_size": 5}
CODECS = {"fp16": {}, "int8": {"stochastic_rounding": True}, "pca-int8": {"pca_dim": 16}}


@pytest.fixture(scope="module")
def stores(
    tmp_path_factory: pytest.TempPathFactory, small_fasta: Path, tiny_teacher: Path
) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("codecs")
    return {
        name: extract_store(
            small_fasta, tiny_teacher, root / f"{name}.zarr", codec=name, **OPTIONS, **extra
        )
        for name, extra in CODECS.items()
    }


def _decoded(store: Path, rows: slice) -> np.ndarray:
    """Features of `rows` as the trainer sees them (a batch moved to the device)."""
    batches = PretrainBatches(store, batch_size=4)
    return batches.records(np.arange(rows.start, rows.stop)).to("cpu").teacher.numpy()


def test_fp16_is_the_reference_and_decodes_exactly(stores: dict[str, Path]) -> None:
    reader = CacheReader(stores["fp16"])
    assert reader.attrs.codec == {} and reader.attrs.codec_name == "fp16"
    stored = reader.read(slice(0, 8)).teacher
    assert stored.dtype == np.float16 and reader.scale_array is None
    np.testing.assert_array_equal(_decoded(stores["fp16"], slice(0, 8)), stored.astype(np.float32))
    fit = reader.attrs.codec_fit[str(reader.layer)]
    assert fit["codec"]["name"] == "fp16" and 0 < fit["report"]["relative_error"] < 1e-3


@pytest.mark.parametrize("name", ["int8", "pca-int8"])
def test_compressed_stores_record_their_codec_and_decode_close_to_fp16(
    stores: dict[str, Path], name: str
) -> None:
    reader = CacheReader(stores[name])
    a = reader.attrs
    assert a.codec["name"] == name and a.schema_version == schema.SCHEMA_VERSION
    fit = a.codec_fit[str(reader.layer)]
    report = codecs.CodecReport(**fit["report"])
    rows = a.n_records
    reference = CacheReader(stores["fp16"]).read(slice(0, rows)).teacher.astype(np.float32)
    decoded = _decoded(stores[name], slice(0, rows))
    error = codecs.relative_error(reference, decoded)
    # The figure the store records (on held-out sample windows) is the error training sees.
    assert error == pytest.approx(report.relative_error, rel=0.5, abs=2e-3)
    if name == "int8":
        assert error < 2e-2 and report.bytes_per_record * 2 > report.fp16_bytes_per_record
        assert set(codecs.CODEC_NAMES) >= {fit["codec"]["name"]}
        assert fit["codec"]["stochastic_rounding"] is True
    else:
        assert fit["codec"]["pca_dim"] == 16 and 0 < report.explained_variance < 1
        assert reader.read(slice(0, 1)).teacher.shape[-1] == 16
        for param in (codecs.MEAN, codecs.BASIS, codecs.ROTATION):
            assert schema.codec_parameter_array(reader.layer, param) in reader.group
    verify.check_integrity(stores[name]).check()
    text = "\n".join(verify.describe_store(stores[name]))
    assert f"{report.bytes_per_record:,} B of features per record" in text
    assert "round-trip relative error" in text and "explained variance" in text


def test_a_resumed_stochastic_int8_store_writes_the_same_bytes(
    stores: dict[str, Path], small_fasta: Path, tiny_teacher: Path, tmp_path: Path
) -> None:
    """Stochastic rounding draws from (codec seed, layer, first record of the shard): a shard
    rewritten after a crash holds the same bytes, and the codec is read back, not refitted."""
    copy = tmp_path / "copy.zarr"
    shutil.copytree(stores["int8"], copy)
    group = zarr.open_group(str(copy), mode="r+")
    values = schema.teacher_array(CacheReader(copy).layer)
    before = group[values][:]
    group[schema.SHARD_DONE][0] = False
    group[values][0:8] = 0
    group.attrs[schema.ATTRS_KEY] = dict(group.attrs[schema.ATTRS_KEY]) | {"complete": False}
    extract_store(
        small_fasta, tiny_teacher, copy, codec="int8", stochastic_rounding=True, **OPTIONS
    )
    np.testing.assert_array_equal(zarr.open_group(str(copy))[values][:], before)


def test_sharded_ranks_fit_the_codec_once(
    small_fasta: Path, tiny_teacher: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rank that creates the store fits the PCA (under the setup lock); the other rank
    reads that fit from the store, whichever starts first, and the result is the fit a single
    process makes."""
    calls: list[int] = []
    real = extract.prepare_store

    def counting(*args: object) -> object:
        calls.append(1)
        return real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(extract, "prepare_store", counting)
    out = tmp_path / "ranks.zarr"
    for shard in ("1/2", "0/2"):
        extract_store(
            small_fasta, tiny_teacher, out, codec="pca-int8", pca_dim=16, shard=shard, **OPTIONS
        )
    assert len(calls) == 1
    single = extract_store(
        small_fasta, tiny_teacher, tmp_path / "one.zarr", codec="pca-int8", pca_dim=16, **OPTIONS
    )
    a, b = CacheReader(out), CacheReader(single)
    assert a.attrs.complete and a.attrs.codec_fit == b.attrs.codec_fit
    np.testing.assert_array_equal(a.read(slice(0, 14)).teacher, b.read(slice(0, 14)).teacher)


def test_the_trainer_gets_decoded_features(stores: dict[str, Path]) -> None:
    batches = PretrainBatches(stores["pca-int8"], batch_size=4)
    raw = batches.batch(0)
    assert raw.teacher.dtype == torch.int8 and raw.scale is not None
    moved = raw.to("cpu")
    a = batches.attrs
    assert moved.teacher.dtype == torch.float32
    assert tuple(moved.teacher.shape) == (4, a.n_visible, a.hidden_size)
    assert moved.scale is None and moved.codec is None
    # From loader processes the batches arrive without the codec and are decoded by this
    # process's own (whose device copies are made once): the same features.
    import itertools

    here = [b.to("cpu").teacher for b in itertools.islice(batches.iterate(0), 2)]
    there = list(itertools.islice(batches.iterate(0, workers=1), 2))
    assert all(b.codec is batches.reader.codec for b in there)
    for a, b in zip(here, there, strict=True):
        assert torch.equal(a, b.to("cpu").teacher)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"codec": "pca-int8"}, "needs --pca-dim"),
        ({"codec": "int8", "pca_dim": 8}, "applies to --codec pca-int8"),
        ({"stochastic_rounding": True}, "applies to --codec int8 or pca-int8"),
        ({"codec": "pca-int8", "pca_dim": 999}, r"--pca-dim must be in 1\.\.32"),
    ],
)
def test_codec_option_mistakes_are_one_line(
    options: dict, message: str, small_fasta: Path, tiny_teacher: Path, tmp_path: Path
) -> None:
    with pytest.raises((ConfigError, codecs.CodecError), match=message):
        extract_store(small_fasta, tiny_teacher, tmp_path / "x.zarr", **OPTIONS, **options)
