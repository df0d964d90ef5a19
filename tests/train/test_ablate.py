"""`had-train ablate`: equal-compute arms, every arm evaluated with every seed, one table."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from had_train.cli import main as had_train
from tests.conftest import extract_store, real_dna


def test_ablation_table_and_resume(small_fasta: Path, tiny_teacher: Path, tmp_path: Path) -> None:
    store = extract_store(
        small_fasta, tiny_teacher, tmp_path / "s.zarr", window_bp=120, chunk_records=16
    )
    dna = real_dna(60 * 60, offset=4_000_000)
    rows = ["sequence,label"] + [
        f"{dna[i * 60 : (i + 1) * 60]},{'b' if i % 2 else 'a'}" for i in range(60)
    ]
    (tmp_path / "task.csv").write_text("\n".join(rows) + "\n")
    out = tmp_path / "ablate"
    args = [
        "ablate",
        "--cache",
        str(store),
        "--task",
        str(tmp_path / "task.csv"),
        "--out",
        str(out),
    ]
    args += ["--preset", "tiny", "--steps", "2", "--batch-size", "8", "--seeds", "0,1"]
    args += ["--folds", "2", "--mode", "linear", "--save-every", "2"]
    first = CliRunner().invoke(had_train, args)
    assert first.exit_code == 0, first.output

    report = json.loads((out / "ablation.json").read_text())
    assert [r["arm"] for r in report["arms"]] == ["had", "mlm", "distill", "none"]
    assert len(report["per_seed"]) == 4 * 2 and all(r["folds"] == 2 for r in report["per_seed"])
    for arm in ("had", "mlm", "distill"):  # equal compute: one recipe, only the objective differs
        saved = json.loads((out / f"pretrain-{arm}" / "pretrain_config.json").read_text())
        assert saved["objective"] == arm and saved["steps"] == 2 and saved["seed"] == 0
    with open(out / "ablation.csv", newline="") as fh:
        table = list(csv.DictReader(fh))
    assert [r["arm"] for r in table] == ["had", "mlm", "distill", "none"]
    for row in table:  # each arm's mean ± sample std over its seeds' per-seed means
        seeds = [r for r in report["per_seed"] if r["arm"] == row["arm"]]
        for metric in ("mcc", "accuracy"):
            values = [r[metric] for r in seeds]
            assert float(row[f"{metric}_mean"]) == pytest.approx(np.mean(values))
            assert float(row[f"{metric}_std"]) == pytest.approx(np.std(values, ddof=1))
        # every arm, the random baseline too, is scored on the same held-out windows
        assert np.isfinite(float(row["held_out_alignment_cosine"]))
    held_out = json.loads((out / "pretrain-had" / "held_out.json").read_text())
    assert float(table[0]["held_out_alignment_cosine"]) == pytest.approx(
        held_out["alignment_cosine"]
    )
    assert "HAD (align + recon)" in (out / "ablation.md").read_text()
    assert (out / "ablation.png").stat().st_size > 1000

    stamp = (out / "pretrain-had" / "step-0000002" / "COMPLETE").stat().st_mtime
    again = CliRunner().invoke(had_train, args)
    assert again.exit_code == 0, again.output
    assert (out / "pretrain-had" / "step-0000002" / "COMPLETE").stat().st_mtime == stamp
    assert json.loads((out / "ablation.json").read_text())["arms"] == report["arms"]
