"""Extraction writes a store whose every array round-trips, and resumes without redoing work."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import zarr

from had_cache import dna, masking, schema, tokenize, windows
from had_cache.reader import CacheReader
from had_cache.schema import StoreError
from had_cache.teacher import TeacherError, load_teacher
from had_cache.windows import FastaError
from had_common.errors import ConfigError
from tests.conftest import extract_store


def _extract(fasta: Path, teacher: Path, out: Path, **kw: object) -> None:
    extract_store(
        fasta, teacher, out, **({"chunk_records": 4, "shard_chunks": 2, "batch_size": 3} | kw)
    )


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, small_fasta: Path, tiny_teacher: Path) -> Path:
    out = tmp_path_factory.mktemp("store") / "small.had.zarr"
    _extract(small_fasta, tiny_teacher, out, seed=5, window_bp=600)
    return out


def test_store_round_trip(store: Path, small_fasta: Path, tiny_teacher: Path) -> None:
    reader = CacheReader(store)
    a = reader.attrs
    # chrA: 6000 bp -> 10 windows; chrB: 3000 bp -> 5 windows, one of which holds the N run.
    assert (a.n_records, a.skipped_n_windows) == (14, 1)
    assert (a.window_bp, a.n_tokens, a.n_masked, a.hidden_size) == (600, 100, 15, 32)
    # -1 is stored as its non-negative hidden_states index: 2 layers -> index 2.
    assert a.teacher.layers == [2] and a.teacher.token_dropout is False
    contigs, contig, start, strand = reader.locations()
    assert contigs == ["chrA", "chrB"] and (strand == 1).all()
    assert start[contig == 1].tolist() == [0, 1200, 1800, 2400]  # 600-1200 holds the N run

    records = reader.read(slice(0, a.n_records))
    fasta = windows.open_fasta(small_fasta)
    for r in range(a.n_records):
        name = contigs[contig[r]]
        expected = dna.encode(fasta[name][int(start[r]) : int(start[r]) + 600])
        assert np.array_equal(records.seq[r], expected)
        assert np.array_equal(records.mask[r], masking.group_mask(5, r, 100, 0.15))

    # Visible teacher features line up with the visible groups, in token order.
    teacher = load_teacher(str(tiny_teacher), torch.device("cpu"), torch.float32)
    ids = masking.teacher_input(
        tokenize.kmer_ids(records.seq[:3]), records.mask[:3], tokenize.MASK_ID
    )
    full = teacher.features(ids)[2].numpy()
    for r in range(3):
        visible = full[r][~records.mask[r]]
        np.testing.assert_allclose(
            records.teacher[r].astype(np.float32), visible, atol=2e-3, rtol=2e-3
        )


def test_rerun_resumes_only_missing_shards(
    store: Path, small_fasta: Path, tiny_teacher: Path, tmp_path: Path
) -> None:
    copy = tmp_path / "copy.zarr"
    shutil.copytree(store, copy)
    before = CacheReader(copy).read(slice(0, 14))
    shard_0 = (copy / schema.SEQ / "c" / "0" / "0").stat().st_mtime_ns
    group = zarr.open_group(str(copy), mode="r+")
    group[schema.SHARD_DONE][1] = False  # as if killed while writing shard 1 ...
    group[schema.teacher_array(2)][8:14] = 0  # ... which left garbage behind
    attrs = dict(group.attrs[schema.ATTRS_KEY]) | {"complete": False}
    group.attrs[schema.ATTRS_KEY] = attrs
    with pytest.raises(StoreError, match="incomplete"):
        CacheReader(copy)
    _extract(small_fasta, tiny_teacher, copy, seed=5, window_bp=600)
    after = CacheReader(copy).read(slice(0, 14))
    np.testing.assert_array_equal(after.teacher, before.teacher)
    assert (copy / schema.SEQ / "c" / "0" / "0").stat().st_mtime_ns == shard_0  # not rewritten


def test_rerun_with_other_options_refuses_to_clobber(
    store: Path, small_fasta: Path, tiny_teacher: Path
) -> None:
    with pytest.raises(StoreError, match="different extraction"):
        _extract(small_fasta, tiny_teacher, store, seed=6, window_bp=600)


def test_reverse_complement_windows_are_their_own_records(
    small_fasta: Path, tiny_teacher: Path, tmp_path: Path
) -> None:
    out = tmp_path / "rc.zarr"
    _extract(small_fasta, tiny_teacher, out, window_bp=600, strands="both", max_windows=6)
    reader = CacheReader(out)
    _, contig, start, strand = reader.locations()
    seq = reader.read(slice(0, len(reader))).seq
    fwd = np.flatnonzero(strand == 1)
    for i in fwd:
        j = np.flatnonzero((strand == -1) & (start == start[i]) & (contig == contig[i]))
        if len(j):
            assert np.array_equal(seq[j[0]], dna.reverse_complement(seq[i]))


def test_gzip_and_bgzip_fasta(
    small_fasta: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from Bio import bgzf

    monkeypatch.setenv("HAD_CACHE_DIR", str(tmp_path / "cache"))
    plain = tmp_path / "plain.fa.gz"
    with open(small_fasta, "rb") as src, gzip.open(plain, "wb") as dst:
        dst.write(src.read())
    bgz = tmp_path / "bgzip.fa.gz"
    with open(small_fasta, "rb") as src, bgzf.BgzfWriter(str(bgz), "wb") as dst:
        dst.write(src.read())
    expected = windows.open_fasta(small_fasta)["chrA"][100:700]
    assert windows.open_fasta(plain)["chrA"][100:700] == expected
    assert list((tmp_path / "cache" / "fasta").glob("plain.fa.*.fa"))
    assert windows.open_fasta(bgz)["chrA"][100:700] == expected


def test_bad_inputs_are_one_line_errors(tmp_path: Path, small_fasta: Path) -> None:
    with pytest.raises(FastaError, match="not found"):
        windows.open_fasta(tmp_path / "missing.fa")
    with pytest.raises(TeacherError, match="no such folder"):
        load_teacher("./no-such-teacher", torch.device("cpu"), torch.float32)
    with pytest.raises(StoreError, match="not found"):
        CacheReader(tmp_path / "nope.zarr")


def test_windows_longer_than_the_teacher_reads_are_refused(
    tmp_path: Path, small_fasta: Path, tiny_teacher: Path
) -> None:
    """NTv2 reads 2,048 tokens with <cls>: 2,047 6-mers fit, 2,048 do not."""
    with pytest.raises(ConfigError, match="2049 teacher tokens.*maximum of 2048"):
        _extract(small_fasta, tiny_teacher, tmp_path / "long.zarr", window_bp=6 * 2048)


def test_verify_recomputes_features_and_catches_another_teacher(
    store: Path, tmp_path: Path
) -> None:
    from click.testing import CliRunner

    from had_cache.cli import main as had_cache
    from tests.conftest import make_tiny_teacher

    good = CliRunner().invoke(had_cache, ["verify", str(store), "--recompute", "5"])
    assert good.exit_code == 0, good.output
    assert "the store matches its teacher" in good.output

    other = make_tiny_teacher(tmp_path / "other", seed=1)
    bad = CliRunner().invoke(
        had_cache, ["verify", str(store), "--recompute", "5", "--teacher", str(other)]
    )
    assert bad.exit_code == 2
    assert "does not match" in bad.output


def test_token_dropout_is_recorded_and_changes_masked_input_features(
    small_fasta: Path, tmp_path: Path
) -> None:
    """ESM's token_dropout rescales embeddings by the share of <mask>; our inputs are masked."""
    from tests.conftest import make_tiny_teacher

    feats = {}
    for on in (False, True):
        teacher = make_tiny_teacher(tmp_path / f"t{on}", token_dropout=on)
        out = tmp_path / f"s{on}.zarr"
        _extract(small_fasta, teacher, out, window_bp=120, max_windows=4)
        reader = CacheReader(out)
        assert reader.attrs.teacher.token_dropout is on
        feats[on] = reader.read(slice(0, 4)).teacher.astype(np.float32)
    assert not np.allclose(feats[False], feats[True], atol=1e-3)


def test_several_layers_one_array_each_and_readers_pick_one(
    small_fasta: Path, tiny_teacher: Path, tmp_path: Path
) -> None:
    from click.testing import CliRunner

    from had_cache.cli import main as had_cache
    from had_train.data import PretrainBatches

    out = tmp_path / "layers.zarr"
    _extract(small_fasta, tiny_teacher, out, window_bp=120, max_windows=6, layers=(0, -1))
    group = zarr.open_group(str(out), mode="r")
    assert {schema.teacher_array(0), schema.teacher_array(2)} <= set(group.array_keys())
    deepest, embeddings = CacheReader(out), CacheReader(out, layer=0)
    assert (deepest.layer, embeddings.layer, CacheReader(out, layer=-1).layer) == (2, 0, 2)

    records = embeddings.read(slice(0, 6))
    teacher = load_teacher(str(tiny_teacher), torch.device("cpu"), torch.float32, layers=(0,))
    ids = masking.teacher_input(tokenize.kmer_ids(records.seq), records.mask, tokenize.MASK_ID)
    visible = teacher.features(ids)[0].numpy()[~records.mask].reshape(records.teacher.shape)
    np.testing.assert_allclose(records.teacher.astype(np.float32), visible, atol=2e-3, rtol=2e-3)
    assert not np.allclose(records.teacher, deepest.read(slice(0, 6)).teacher, atol=1e-2)

    with pytest.raises(StoreError, match="holds teacher layers 0, 2, not layer 1"):
        CacheReader(out, layer=1)
    batch = PretrainBatches(out, batch_size=2, teacher_layer=0).batch(0)
    row = int(batch.record[0])
    np.testing.assert_array_equal(batch.teacher[0].numpy(), records.teacher[row].astype(np.float32))

    both = CliRunner().invoke(
        had_cache, ["extract", "--fasta", str(small_fasta), "--layer", "0", "--layers", "0,1"]
    )
    assert both.exit_code == 2 and "not both" in both.output
