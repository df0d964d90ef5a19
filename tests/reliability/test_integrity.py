"""Every corruption is caught: checksums, missing chunks, non-finite values, NaN cosines."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pytest
import zarr
from click.testing import CliRunner

from had_cache import extract as extract_mod
from had_cache import schema, verify
from had_cache.cli import main as had_cache
from had_cache.reader import CacheReader
from had_cache.schema import StoreError
from tests.conftest import as_schema_2
from tests.reliability.conftest import extract as _extract

FEATURES = schema.teacher_array(2)  # the tiny teacher's last layer


@pytest.fixture
def store(sound_store: Path) -> Path:
    return sound_store


@pytest.fixture
def copy(store: Path, tmp_path: Path) -> Path:
    out = tmp_path / "copy.had.zarr"
    shutil.copytree(store, out)
    return out


def _shard_file(store: Path, name: str, shard: int) -> Path:
    """The file of shard `shard` of array `name` (each of its 2 chunks is in it)."""
    ndim = zarr.open_array(str(store / name), mode="r").ndim
    return store / name / "c" / str(shard) / Path(*["0"] * (ndim - 1))


def _verify(store: Path, *args: str) -> object:
    return CliRunner().invoke(had_cache, ["verify", str(store), *args])


def test_a_sound_store_verifies_without_the_teacher(store: Path) -> None:
    # A shard equal to the fill value is written too (write_empty_chunks on every write).
    assert not zarr.open_array(str(store / schema.CONTIG), mode="r")[:4].any()
    assert _shard_file(store, schema.CONTIG, 0).is_file()
    result = _verify(store)
    assert result.exit_code == 0, result.output
    assert "crc32c checksums verified on" in result.output
    assert "ok: every chunk is present, intact and finite" in result.output


def test_overwritten_bytes_in_a_feature_chunk_are_caught_by_verify_and_the_reader(
    copy: Path,
) -> None:
    path = _shard_file(copy, FEATURES, 1)
    raw = bytearray(path.read_bytes())
    raw[20:84] = b"\xff" * 64  # 64 bytes overwritten in shard 1's first chunk (chunk 2)
    path.write_bytes(bytes(raw))
    result = _verify(copy)
    assert result.exit_code == 2
    assert f"chunk 2 of array {FEATURES} fails its crc32c checksum" in result.output
    assert result.output.count("\n") == 2  # the integrity line and one error line
    with pytest.raises(StoreError, match=f"chunk 2 of array {FEATURES} fails its crc32c checksum"):
        CacheReader(copy).read_chunk(2)
    CacheReader(copy).read_chunk(3)  # the shard's other chunk still reads, and other shards
    CacheReader(copy).read_chunk(0)


def test_a_damaged_shard_index_is_caught(copy: Path) -> None:
    """The shard index (where each chunk lies in the file) carries its own crc32c."""
    path = _shard_file(copy, FEATURES, 0)
    raw = bytearray(path.read_bytes())
    raw[-10] ^= 0xFF  # inside the index at the end of the shard file
    path.write_bytes(bytes(raw))
    result = _verify(copy)
    assert (
        result.exit_code == 2 and f"chunk 0 of array {FEATURES} fails its crc32c" in result.output
    )


def test_a_deleted_chunk_file_is_missing_not_zeros(copy: Path, tmp_path: Path) -> None:
    from had_train.data import PretrainBatches

    _shard_file(copy, FEATURES, 0).unlink()
    result = _verify(copy, "--recompute", "2")
    assert result.exit_code == 2 and f"chunk 0 of array {FEATURES} is missing" in result.output
    with pytest.raises(StoreError, match=f"chunk 0 of array {FEATURES} is missing"):
        PretrainBatches(copy, batch_size=8).batch(0)
    inspect = CliRunner().invoke(had_cache, ["inspect", str(copy)])
    assert "DAMAGED" in inspect.output and "chunk 0" in inspect.output


def test_repair_marks_damaged_chunks_and_the_rerun_rewrites_them(
    copy: Path, store: Path, small_fasta: Path, tiny_teacher: Path
) -> None:
    _shard_file(copy, FEATURES, 1).unlink()
    _shard_file(copy, schema.SEQ, 0).write_bytes(b"garbage")
    _shard_file(copy, schema.SHARD_DONE, 1).write_bytes(b"garbage")  # a damaged done marker
    assert f"chunk 1 of array {schema.SHARD_DONE} fails" in _verify(copy).output
    result = _verify(copy, "--repair")
    assert result.exit_code == 0, result.output
    assert "2 shard(s) holding damaged chunks marked for re-extraction (0, 1)" in result.output
    with pytest.raises(StoreError, match="incomplete"):
        CacheReader(copy)
    _extract(small_fasta, tiny_teacher, copy)
    assert _verify(copy).exit_code == 0
    fresh, before = CacheReader(copy).read(slice(0, 8)), CacheReader(store).read(slice(0, 8))
    np.testing.assert_array_equal(fresh.teacher, before.teacher)
    np.testing.assert_array_equal(fresh.seq, before.seq)


def test_a_store_without_checksums_still_reads_and_nan_is_caught(
    small_fasta: Path, tiny_teacher: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A schema 2.0 store (no checksum codec) reads; verify says so and still finds NaN."""
    plain = extract_mod.store_attrs

    def without_checksums(*args: object, **kw: object) -> schema.StoreAttrs:
        return dataclasses.replace(plain(*args, **kw), checksum=None)

    monkeypatch.setattr(extract_mod, "store_attrs", without_checksums)
    new = _extract(
        small_fasta, tiny_teacher, tmp_path / "new.had.zarr", chunk_records=4, shard_chunks=1
    )
    out = as_schema_2(new, tmp_path / "old.had.zarr", "2.0")
    group = zarr.open_group(str(out), mode="r+")
    attrs = dict(group.attrs[schema.ATTRS_KEY])
    for key in ("checksum", "skipped_ambiguous_windows"):
        attrs.pop(key)
    group.attrs[schema.ATTRS_KEY] = attrs
    assert CacheReader(out).read(slice(0, 8)).teacher.shape[0] == 8
    assert "no checksums in this store (schema 2.0)" in _verify(out).output

    group[FEATURES][5, 3, :7] = np.nan  # no checksum to fail: the values themselves are wrong
    result = _verify(out)
    assert result.exit_code == 2
    assert f"chunk 1 of array {FEATURES} holds 7 non-finite values" in result.output
    with pytest.raises(StoreError, match="non-finite"):
        CacheReader(out).read_chunk(1)


def test_a_nan_cosine_fails_recompute() -> None:
    report = verify.VerifyReport(
        records=np.array([3, 9]), cosine={2: np.array([0.999, np.nan])}, max_abs=1.0
    )
    with pytest.raises(StoreError, match="record 9 has a NaN cosine"):
        report.check(0.99)
    verify.VerifyReport(np.array([3]), {2: np.array([0.999])}, 0.0).check(0.99)
