"""`--config run.toml` with command-line overrides, and held-out scores during the run."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from had_common.errors import ConfigError
from had_train.cli import main as had_train
from had_train.pretrain import config_from_options, read_config_file


def test_config_file_sets_options_and_the_command_line_overrides_it(tmp_path: Path) -> None:
    toml = tmp_path / "run.toml"
    toml.write_text('cache = "data/hg38.had.zarr"\nbatch-size = 64\nlr = 1\nsteps = 50\n')
    options = {"batch_size": 1024, "lr": 8e-3, "steps": 30}  # click: given and defaults
    cfg = config_from_options(None, None, False, {"steps"}, toml, **options)
    assert (cfg.cache, cfg.out, cfg.batch_size, cfg.lr, cfg.steps) == (
        "data/hg38.had.zarr",
        "runs/hg38",
        64,
        1.0,
        30,
    )
    (tmp_path / "bad.toml").write_text("batch_size = 64\nwarmup = 0.1\n")
    with pytest.raises(ConfigError, match="unknown option"):
        read_config_file(tmp_path / "bad.toml")
    (tmp_path / "typed.toml").write_text('steps = "many"\n')
    with pytest.raises(ConfigError, match="steps = 'many' is not a int"):
        read_config_file(tmp_path / "typed.toml")
    with pytest.raises(ConfigError, match="--cache"):
        config_from_options(None, None, False, set(), None, **options)


def test_val_every_scores_held_out_records_during_the_run(
    train_store: Path, tmp_path: Path
) -> None:
    """Through the command line, with the recipe in a file; the last val.csv row is what
    held_out.json reports at the end."""
    run = tmp_path / "run"
    toml = tmp_path / "run.toml"
    toml.write_text(
        f'cache = "{train_store}"\npreset = "tiny"\nbatch-size = 8\nsteps = 2\nholdout-chunks = 1\n'
    )
    result = CliRunner().invoke(
        had_train, ["pretrain", "--config", str(toml), "--out", str(run), "--val-every", "1"]
    )
    assert result.exit_code == 0, result.output
    with open(run / "val.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["step"] for r in rows] == ["1", "2"]
    final = json.loads((run / "held_out.json").read_text())
    for name in ("alignment_r2", "reconstruction_accuracy"):
        assert float(rows[-1][name]) == pytest.approx(final[name], rel=1e-5)
    saved = json.loads((run / "pretrain_config.json").read_text())
    assert (saved["batch_size"], saved["val_every"], saved["steps"]) == (8, 1, 2)
    no_holdout = CliRunner().invoke(
        had_train, ["pretrain", "--cache", str(train_store), "--val-every", "5"]
    )
    assert no_holdout.exit_code == 2 and "--holdout-chunks" in no_holdout.output
