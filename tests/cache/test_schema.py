"""Schema evolution: stores and run configs carry a version; readers take what they understand."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import zarr

from had_cache import schema
from had_cache.reader import CacheReader
from had_cache.schema import StoreError
from had_common.versions import check_readable, parse_version
from tests.conftest import as_schema_2, extract_store


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, small_fasta: Path, tiny_teacher: Path) -> Path:
    out = tmp_path_factory.mktemp("schema") / "s.had.zarr"
    return extract_store(small_fasta, tiny_teacher, out, window_bp=120, max_windows=4)


@pytest.fixture(scope="module")
def unsharded(
    tmp_path_factory: pytest.TempPathFactory, small_fasta: Path, tiny_teacher: Path
) -> Path:
    """A 3.0 store of one chunk per shard: plain chunks, the layout of schema 2."""
    out = tmp_path_factory.mktemp("schema") / "one.had.zarr"
    return extract_store(
        small_fasta,
        tiny_teacher,
        out,
        window_bp=120,
        max_windows=8,
        chunk_records=2,
        shard_chunks=1,
    )


def _edited(store: Path, tmp_path: Path, edit) -> Path:  # noqa: ANN001 - a dict -> None callable
    """A copy of `store` whose `had` attributes went through `edit` (a hand-edited store)."""
    copy = tmp_path / "edited.zarr"
    shutil.copytree(store, copy)
    group = zarr.open_group(str(copy), mode="r+")
    attrs = dict(group.attrs[schema.ATTRS_KEY])
    edit(attrs)
    group.attrs[schema.ATTRS_KEY] = attrs
    return copy


def test_this_versions_store_reads(store: Path) -> None:
    attrs = CacheReader(store).attrs
    assert attrs.schema_version == schema.SCHEMA_VERSION == "3.1"
    assert attrs.checksum == schema.CHECKSUM


@pytest.mark.parametrize("newer", ["3.2", "4.0", 4])
def test_a_newer_store_is_refused_naming_both_versions(
    store: Path, tmp_path: Path, newer: object
) -> None:
    copy = _edited(store, tmp_path, lambda a: a.update(schema_version=newer))
    shown = newer if isinstance(newer, str) else f"{newer}.0"
    with pytest.raises(
        StoreError, match=rf"schema version {shown}, this had reads 2\.x, 3\.0 to 3\.1"
    ):
        CacheReader(copy)


@pytest.mark.parametrize("version", ["2.1", 2])
def test_a_schema_2_store_reads_but_is_not_resumed(
    unsharded: Path, tmp_path: Path, small_fasta: Path, tiny_teacher: Path, version: object
) -> None:
    """Schema 2 (every chunk its own file and marker; a bare `2` is 2.0) reads chunk by chunk
    exactly as the same records written as 3.0; extraction refuses to resume it, in one line."""
    from had_train.data import PretrainBatches

    old = as_schema_2(unsharded, tmp_path / "v2.zarr", version)
    reader, new = CacheReader(old), CacheReader(unsharded)
    assert reader.attrs.schema_version == ("2.1" if version == "2.1" else "2.0")
    assert reader.attrs.done_array == schema.CHUNK_DONE and reader.attrs.shard_chunks == 1
    assert reader.attrs.fingerprint() == new.attrs.fingerprint()
    for field in ("seq", "mask", "teacher"):
        np.testing.assert_array_equal(
            getattr(reader.read(slice(0, 8)), field), getattr(new.read(slice(0, 8)), field)
        )
    from had_cache import verify

    verify.check_integrity(old).check()
    assert len(PretrainBatches(old, batch_size=4).batch(0).record) == 4
    with pytest.raises(StoreError, match=r"written with schema 2\.\d; this had reads it but"):
        extract_store(
            small_fasta,
            tiny_teacher,
            old,
            window_bp=120,
            max_windows=8,
            chunk_records=2,
            shard_chunks=1,
        )


def test_an_older_minor_version_without_a_new_optional_attribute_reads(
    store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a later minor version adds (an optional attribute with a default, e.g. a codec)
    is simply absent from older stores: they read, the attribute takes its default."""
    monkeypatch.setattr(schema, "SCHEMA_VERSION", "3.3")
    copy = _edited(store, tmp_path, lambda a: a.pop("extra"))
    attrs = CacheReader(copy).attrs
    assert attrs.extra == {} and attrs.schema_version == "3.1"


def test_a_3_0_store_reads_as_fp16_of_one_record_per_window(store: Path, tmp_path: Path) -> None:
    """Schema 3.1's attributes (codec, replay, teacher input, drift) are absent from a 3.0
    store: it reads as float16 features of a masked teacher, one record per window, and its
    fingerprint is the one 3.0 recorded (a 3.1 fp16 store of the same options has it too)."""
    added = ("codec", "codec_fit", "replay", "teacher_input", "drift")
    old = _edited(store, tmp_path, lambda a: [a.pop(k) for k in added] and None)
    group = zarr.open_group(str(old), mode="r+")
    group.attrs[schema.ATTRS_KEY] = dict(group.attrs[schema.ATTRS_KEY]) | {"schema_version": "3.0"}
    reader, new = CacheReader(old), CacheReader(store)
    a = reader.attrs
    assert (a.codec_name, a.is_replay, a.full_teacher, a.drift) == ("fp16", False, False, None)
    assert a.fingerprint() == new.attrs.fingerprint()
    np.testing.assert_array_equal(reader.read(slice(0, 4)).teacher, new.read(slice(0, 4)).teacher)
    assert reader.read(slice(0, 4)).teacher.dtype == np.float16


def test_unknown_or_missing_attributes_are_one_line_errors(store: Path, tmp_path: Path) -> None:
    unknown = _edited(store, tmp_path, lambda a: a.update(sparkle={"int8": True}))
    with pytest.raises(StoreError, match="unknown sparkle"):
        CacheReader(unknown)
    shutil.rmtree(unknown)
    bad_codec = _edited(store, tmp_path, lambda a: a.update(codec={"name": "int4"}))
    with pytest.raises(StoreError, match="unknown codec 'int4'"):
        CacheReader(bad_codec)
    shutil.rmtree(bad_codec)
    missing = _edited(store, tmp_path, lambda a: a.pop("window_bp"))
    with pytest.raises(StoreError, match="missing window_bp"):
        CacheReader(missing)


def test_version_rule() -> None:
    assert parse_version("2.1") == (2, 1) and parse_version(2) == (2, 0)
    assert parse_version("x") is None and parse_version(True) is None
    assert check_readable("1.0", "1.2", "run config", "here", StoreError) == (1, 0)
    with pytest.raises(StoreError, match="no readable run config version"):
        check_readable("two", "1.2", "run config", "here", StoreError)


def test_run_configs_carry_a_version(tmp_path: Path) -> None:
    from had_train.pretrain import CONFIG_VERSION, PretrainConfig, RunError, load_run_config

    cfg = PretrainConfig(cache="s.zarr", out=str(tmp_path), steps=7)
    saved = cfg.to_json()
    assert saved["config_version"] == CONFIG_VERSION
    path = tmp_path / "pretrain_config.json"
    path.write_text(json.dumps(saved))
    assert load_run_config(tmp_path) == cfg
    legacy = {k: v for k, v in saved.items() if k not in ("config_version", "precision")}
    path.write_text(json.dumps(legacy))  # written before versions and before --precision
    assert load_run_config(tmp_path) == cfg
    path.write_text(json.dumps(saved | {"config_version": "1.9"}))
    with pytest.raises(
        RunError, match=f"run config version 1.9, this had reads 1.0 to {CONFIG_VERSION}"
    ):
        load_run_config(tmp_path)
