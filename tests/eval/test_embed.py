"""`had-train embed`: inputs (FASTA, FASTA + BED, CSV), outputs (.npy, .zarr, per-base),
padding invariance, and one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import zarr
from click.testing import CliRunner

from had_train.checkpoint import save_checkpoint
from had_train.cli import main as had_train
from had_train.embed import EmbedConfig, embed_sequences, embed_to_file, load_encoder
from had_train.model import HadStudentForPretraining
from tests.conftest import real_dna
from tests.helpers import one_torch_thread, tiny_config  # noqa: F401 (fixture)
from tests.test_cli import assert_one_line_error


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A pretraining run folder with one complete checkpoint of a tiny random student."""
    torch.manual_seed(0)
    model = HadStudentForPretraining(tiny_config())
    run = tmp_path_factory.mktemp("embed") / "run"
    save_checkpoint(run, 1, model, torch.optim.AdamW(model.parameters()), {}, keep=1)
    return run


@pytest.fixture(scope="module")
def fasta(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three records of different lengths (one with an N run)."""
    path = tmp_path_factory.mktemp("fa") / "three.fa"
    records = {"r1": real_dna(50), "r2": real_dna(130, 100_000), "r3": real_dna(77, 200_000)}
    records["r2"] = records["r2"][:40] + "NNNNN" + records["r2"][45:]
    path.write_text("".join(f">{name} some description\n{seq}\n" for name, seq in records.items()))
    return path


def _cfg(tmp_path: Path, out: str, **options: object) -> EmbedConfig:
    return EmbedConfig(out=tmp_path / out, progress=False, device="cpu", **options)


def test_embedding_does_not_depend_on_the_batch(run_dir: Path) -> None:
    """A sequence alone and batched with longer ones (padding) gets the same embedding."""
    model = load_encoder(run_dir / "step-0000001")
    short = real_dna(37)
    longer = [real_dna(90 + 13 * i, 50_000 * (i + 1)) for i in range(3)]
    alone = embed_sequences(model, [short])
    batched = embed_sequences(model, [longer[0], short, *longer[1:]], batch_size=4)
    assert alone.shape == (1, 32) and batched.shape == (4, 32)
    np.testing.assert_allclose(batched[1], alone[0], rtol=0, atol=1e-5)
    # batch size 1 for every row: the order put back is the input order
    np.testing.assert_allclose(
        embed_sequences(model, [longer[0], short, *longer[1:]], batch_size=1), batched, atol=1e-5
    )


def test_fasta_to_npy_with_names_and_provenance(run_dir: Path, fasta: Path, tmp_path: Path) -> None:
    attrs = embed_to_file(run_dir, _cfg(tmp_path, "e.npy", fasta=fasta, batch_size=2))
    pooled = np.load(tmp_path / "e.npy")
    side = json.loads((tmp_path / "e.npy.json").read_text())
    assert pooled.shape == (3, 32) and pooled.dtype == np.float32
    assert side["names"] == ["r1", "r2", "r3"] and side["lengths"] == [50, 130, 77]
    assert side["checkpoint"] == str(run_dir / "step-0000001") == attrs["checkpoint"]
    inputs = side["provenance"]["inputs"]
    assert len(inputs["fasta_sha256"]) == 64 and len(inputs["checkpoint_weights_sha256"]) == 64
    model = load_encoder(run_dir)
    expected = embed_sequences(model, [real_dna(50)])
    np.testing.assert_allclose(pooled[0], expected[0], atol=1e-5)


def test_bed_intervals_to_zarr_with_per_base(run_dir: Path, fasta: Path, tmp_path: Path) -> None:
    bed = tmp_path / "x.bed"
    bed.write_text("track name=x\nr2\t10\t70\tpeak1\n# comment\n\nr1\t0\t50\nr3\t5\t20\n")
    cfg = _cfg(tmp_path, "e.zarr", fasta=fasta, bed=bed, per_base=True, batch_size=2)
    embed_to_file(run_dir, cfg)
    group = zarr.open_group(str(tmp_path / "e.zarr"), mode="r")
    assert list(group["names"][:]) == ["r2:11-70", "r1:1-50", "r3:6-20"]
    assert group["lengths"][:].tolist() == [60, 50, 15]
    per_base, pooled = group["per_base"][:], group["pooled"][:]
    assert per_base.shape == (3, 60, 32) and per_base.dtype == np.float16
    assert not per_base[1, 50:].any() and not per_base[2, 15:].any()  # zero past each length
    assert per_base[2, :15].any(axis=-1).all()
    # the pooled embedding is the mean of the per-base features (up to float16 rounding)
    np.testing.assert_allclose(per_base[2, :15].astype(np.float32).mean(0), pooled[2], atol=5e-3)
    attrs = group.attrs["had-embeddings"]
    assert attrs["checkpoint"].endswith("step-0000001") and "bed_sha256" in json.dumps(attrs)
    assert group.attrs["had_array_group"] == {"complete": True}
    assert not (tmp_path / "e.zarr.partial").exists()


def test_per_base_blocks_of_chunks_match_one_block(
    run_dir: Path, fasta: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Writing per-base features in several blocks (bounded memory) gives the same arrays."""
    embed_to_file(run_dir, _cfg(tmp_path, "one.zarr", fasta=fasta, per_base=True))
    from had_train import embed

    monkeypatch.setattr(embed, "CHUNK_BYTES", 1)  # one row per chunk
    monkeypatch.setattr(embed, "BLOCK_BYTES", 1)  # one chunk per block
    embed_to_file(run_dir, _cfg(tmp_path, "many.zarr", fasta=fasta, per_base=True))
    one = zarr.open_group(str(tmp_path / "one.zarr"), mode="r")
    many = zarr.open_group(str(tmp_path / "many.zarr"), mode="r")
    assert many["per_base"].chunks[0] == 1
    # other batch mates: the same values up to float32 noise, seen through float16 rounding
    np.testing.assert_allclose(one["per_base"][:], many["per_base"][:], rtol=2e-3, atol=1e-4)
    np.testing.assert_allclose(one["pooled"][:], many["pooled"][:], atol=1e-6)


def test_csv_through_the_command(run_dir: Path, tmp_path: Path) -> None:
    rows = ["id,sequence,label", f"a,{real_dna(40)},x", f",{real_dna(61, 7_000)},y"]
    (tmp_path / "s.csv").write_text("\n".join(rows) + "\n")
    out = tmp_path / "s.zarr"
    result = CliRunner().invoke(
        had_train,
        ["embed", "--checkpoint", str(run_dir), "--csv", str(tmp_path / "s.csv")]
        + ["--out", str(out), "--device", "cpu", "--max-len", "50"],
    )
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert "embedded  2 sequences x 32" in result.output
    group = zarr.open_group(str(out), mode="r")
    assert list(group["names"][:]) == ["a", "row3"]
    assert group["lengths"][:].tolist() == [40, 50]  # cropped to --max-len
    assert "per_base" not in group and group["pooled"].shape == (2, 32)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--fasta", "FASTA", "--out", "e.npy", "--per-base"], "--per-base needs a .zarr --out"),
        (["--fasta", "FASTA", "--out", "e.h5"], "--out must end in .npy or .zarr"),
        (["--fasta", "FASTA", "--csv", "s.csv", "--out", "e.npy"], "not both or neither"),
        (["--bed", "x.bed", "--csv", "s.csv", "--out", "e.npy"], "--bed needs --fasta"),
        (["--fasta", "missing.fa", "--out", "e.npy"], "FASTA file not found"),
        (["--csv", "bad.csv", "--out", "e.npy"], "bad.csv, line 3: sequence contains '-'"),
        (["--csv", "nocol.csv", "--out", "e.npy"], "no 'sequence' column"),
        (["--fasta", "FASTA", "--bed", "bad.bed", "--out", "e.npy"], "bad.bed, line 2: contig"),
        (["--fasta", "FASTA", "--out", "EXISTS"], "already exists"),
        (["--checkpoint", "none", "--fasta", "FASTA", "--out", "e.npy"], "pretrained student"),
    ],
)
def test_user_mistakes_are_one_line_errors(
    args: list[str],
    message: str,
    run_dir: Path,
    fasta: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    Path("bad.csv").write_text(f"sequence\n{real_dna(30)}\nACGT-ACGT\n")
    Path("nocol.csv").write_text("seq\nACGT\n")
    Path("bad.bed").write_text("r1\t0\t10\nchrZ\t0\t10\n")
    Path("exists.npy").write_bytes(b"")
    args = [str(fasta) if a == "FASTA" else "exists.npy" if a == "EXISTS" else a for a in args]
    if "--checkpoint" not in args:
        args = ["--checkpoint", str(run_dir), *args]
    assert_one_line_error(CliRunner().invoke(had_train, ["embed", *args]), message)


def test_a_partial_output_is_replaced_only_if_it_is_ours(tmp_path: Path) -> None:
    """A killed run leaves `<out>.partial`; the next run replaces it, but nothing else."""
    from had_cache.schema import StoreError
    from had_cache.writer import ArrayGroupWriter

    spec = {"x": ((2,), np.int64, (2,))}
    killed = ArrayGroupWriter(tmp_path / "a.zarr", spec, {})  # never closed
    assert killed.partial.exists() and not (tmp_path / "a.zarr").exists()
    writer = ArrayGroupWriter(tmp_path / "a.zarr", spec, {"note": 1})
    writer.write("x", slice(None), np.array([3, 4]))
    assert writer.close() == tmp_path / "a.zarr"
    assert zarr.open_group(str(tmp_path / "a.zarr"), mode="r")["x"][:].tolist() == [3, 4]
    foreign = tmp_path / "b.zarr.partial"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep\n")
    with pytest.raises(StoreError, match="not a partial output of had"):
        ArrayGroupWriter(tmp_path / "b.zarr", spec, {})
    assert (foreign / "notes.txt").read_text() == "keep\n"
    with pytest.raises(StoreError, match="already exists"):
        ArrayGroupWriter(tmp_path / "a.zarr", spec, {})
