"""Pretraining learns, checkpoints atomically, and resumes bit for bit."""

from __future__ import annotations

import csv
import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from had_common.errors import ConfigError
from had_train import checkpoint
from had_train.context_model import ContextCounts
from had_train.data import PretrainBatches, epoch_order
from had_train.model import HadStudentForPretraining
from had_train.pretrain import (
    CONTEXT_FIT_RECORDS,
    PretrainConfig,
    RunError,
    build_model,
    lr_at,
    paired_difference,
    pretrain,
    read_held_out_windows,
)
from tests.conftest import extract_store
from tests.helpers import tiny_pretrain_config


def _extract(fasta: Path, teacher: Path, out: Path, **kw: object) -> Path:
    """A store of 120-bp windows (20 teacher tokens) from the tiny teacher."""
    return extract_store(fasta, teacher, out, window_bp=120, **kw)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, small_fasta: Path, tiny_teacher: Path) -> Path:
    return _extract(
        small_fasta, tiny_teacher, tmp_path_factory.mktemp("pt") / "s.zarr", chunk_records=16
    )


def _losses(run: Path) -> list[float]:
    with open(run / "losses.csv", newline="") as fh:
        return [float(r["loss"]) for r in csv.DictReader(fh)]


def test_loss_decreases(small_fasta: Path, tiny_teacher: Path, tmp_path: Path) -> None:
    """On a store of one batch, both losses must fall within a few steps."""
    one_batch = _extract(small_fasta, tiny_teacher, tmp_path / "one.zarr", max_windows=8)
    run = tmp_path / "run"
    pretrain(tiny_pretrain_config(one_batch, run, steps=15, save_every=15, lr=1e-2), progress=False)
    with open(run / "losses.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 15
    first, last = rows[0], rows[-1]
    assert float(last["align"]) < 0.97 * float(first["align"])
    assert float(last["recon"]) < float(first["recon"])


def test_objectives_and_held_out_chunks(store: Path, tmp_path: Path) -> None:
    """distill trains only the alignment, mlm only reconstruction; held-out records are never
    trained on and are scored at the end."""
    data = PretrainBatches(store, batch_size=8, seed=0, shuffle_chunks=1, holdout_chunks=1)
    trained = np.concatenate([data.record_ids(s) for s in range(40)])
    assert len(data.held_out) and not np.isin(data.held_out, trained).any()

    init = build_model(
        tiny_pretrain_config(store, tmp_path), hidden_size=data.attrs.hidden_size
    ).state_dict()
    for objective, frozen, moved in (
        ("mlm", "align_head.", "decoder."),
        ("distill", "decoder.", "align_head."),
    ):
        run = tmp_path / objective
        cfg = tiny_pretrain_config(
            store, run, steps=4, save_every=4, holdout_chunks=1, objective=objective
        )
        final = pretrain(cfg, progress=False)
        weights = HadStudentForPretraining.from_pretrained(final).state_dict()
        for name, value in weights.items():
            if name.startswith(frozen):  # the dropped objective's head gets no gradient
                assert torch.equal(value, init[name]), (objective, name)
        assert any(not torch.equal(v, init[n]) for n, v in weights.items() if n.startswith(moved))
        report = json.loads((run / "held_out.json").read_text())
        assert report["records"] == len(data.held_out) and report["teacher_layer"] == 2
        context = report.pop("context_baseline")  # the DNA-only floor, fitted on training records
        seq, mask = data.training_windows(CONTEXT_FIT_RECORDS)
        assert context["fit_records"] == seq.shape[0] == data.attrs.n_records - len(data.held_out)
        held = ContextCounts(context["best_k"]).fit(seq, mask).accuracy(*data.held_out_windows())
        assert context["best_accuracy"] == pytest.approx(held[0])
        assert context["best_accuracy"] == max(context["accuracy_by_k"].values())
        lead = report.pop("versus_context")  # paired over the same held-out bases
        assert lead["windows"] == len(data.held_out) and lead["bases"] == held[1]
        assert lead["difference"] == pytest.approx(
            report["reconstruction_accuracy"] - context["best_accuracy"]
        )
        assert lead["ci95"][0] < lead["difference"] < lead["ci95"][1]
        assert report == pytest.approx(
            _held_out_by_hand(HadStudentForPretraining.from_pretrained(final), data), rel=1e-5
        )
        windows = read_held_out_windows(run)  # the same figure, window by window
        assert windows["record"].tolist() == data.held_out.tolist()
        assert windows["correct"].sum() / windows["scored"].sum() == pytest.approx(
            report["reconstruction_accuracy"]
        )
    accuracy = {
        o: json.loads((tmp_path / o / "held_out.json").read_text())["reconstruction_accuracy"]
        for o in ("mlm", "distill")
    }
    paired = paired_difference(tmp_path / "mlm", tmp_path / "distill")
    assert paired["difference"] == pytest.approx(accuracy["mlm"] - accuracy["distill"])
    assert paired["ci95"][0] <= paired["difference"] <= paired["ci95"][1]
    with pytest.raises(ConfigError, match="holdout-chunks"):
        PretrainBatches(store, batch_size=8, holdout_chunks=data.attrs.n_chunks)


def _held_out_by_hand(model: HadStudentForPretraining, data: PretrainBatches) -> dict:
    """held_out.json's figures recomputed from scratch on all held-out records at once, in
    float64, with the textbook formulas (cosine per token; R² = 1 - SSE / SST)."""
    batch = data.records(data.held_out).to("cpu")  # the model's dtypes
    with torch.no_grad():
        out = model.eval()(batch.seq, batch.group_mask)
    a, t = out.aligned.double().reshape(-1, data.attrs.hidden_size), batch.teacher.double()
    t = t.reshape(-1, data.attrs.hidden_size)
    cosine = (a * t).sum(-1) / (a.norm(dim=-1) * t.norm(dim=-1))
    sse, sst = ((a - t) ** 2).sum(), ((t - t.mean(0)) ** 2).sum()
    targets = model.reconstruction_targets(batch.seq, batch.group_mask)
    valid = targets != -100
    hits = (out.recon_logits.argmax(-1) == targets)[valid].double()
    return {
        "records": len(data.held_out),
        "first_record": int(data.held_out[0]),
        "teacher_layer": data.reader.layer,
        "alignment_cosine": float(cosine.mean()),
        "alignment_mse": float(((a - t) ** 2).mean()),
        "alignment_r2": float(1 - sse / sst),
        "reconstruction_accuracy": float(hits.mean()),
    }


def test_mixers_replace_the_presets_stack(store: Path, tmp_path: Path) -> None:
    """--mixers builds, trains and saves the stack it names, for architecture ablations."""
    final = pretrain(
        tiny_pretrain_config(store, tmp_path / "run", steps=2, mixers="mamba, attention")
    )
    model = HadStudentForPretraining.from_pretrained(final)
    assert model.config.mixers == ["mamba", "attention"]
    assert type(model.had.layers[0].mixer.layer).__name__ == "Mamba"


def test_bf16_precision_autocasts_the_forward_and_keeps_fp32_weights(
    store: Path, tmp_path: Path
) -> None:
    """--precision bf16: same data and init as fp32 (which is deterministic), so weights that
    differ after training show the autocast at work; losses agree within bf16 rounding and
    the saved weights stay float32."""
    runs = {p: tmp_path / p for p in ("fp32", "bf16")}
    for precision, run in runs.items():
        pretrain(tiny_pretrain_config(store, run, steps=3, precision=precision), progress=False)
    weights = {
        p: HadStudentForPretraining.from_pretrained(checkpoint.latest_checkpoint(run))
        for p, run in runs.items()
    }
    fp32, bf16 = (dict(weights[p].named_parameters()) for p in runs)
    assert {p.dtype for p in bf16.values()} == {torch.float32}
    assert any(not torch.equal(fp32[name], value) for name, value in bf16.items())
    for a, b in zip(_losses(runs["fp32"]), _losses(runs["bf16"]), strict=True):
        assert abs(a - b) <= 0.05 * a
    with pytest.raises(ConfigError, match="--precision"):
        pretrain(tiny_pretrain_config(store, tmp_path / "bad", precision="fp8"), progress=False)


def test_resume_continues_from_the_saved_step(store: Path, tmp_path: Path) -> None:
    straight, split = tmp_path / "straight", tmp_path / "split"
    pretrain(tiny_pretrain_config(store, straight, steps=4), progress=False)
    pretrain(tiny_pretrain_config(store, split, steps=2), progress=False)
    pretrain(tiny_pretrain_config(store, split, steps=4), resume=True, progress=False)
    a = HadStudentForPretraining.from_pretrained(checkpoint.latest_checkpoint(straight))
    b = HadStudentForPretraining.from_pretrained(checkpoint.latest_checkpoint(split))
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(pa, pb), name
    assert [r for r in _losses(split)] == _losses(straight)
    assert checkpoint.load_trainer_state(checkpoint.latest_checkpoint(split))["step"] == 4


def test_existing_run_needs_resume(store: Path, tmp_path: Path) -> None:
    pretrain(tiny_pretrain_config(store, tmp_path / "r", steps=2), progress=False)
    with pytest.raises(RunError, match="--resume"):
        pretrain(tiny_pretrain_config(store, tmp_path / "r", steps=2), progress=False)


def test_checkpoint_without_marker_does_not_count(store: Path, tmp_path: Path) -> None:
    run = tmp_path / "r"
    pretrain(tiny_pretrain_config(store, run, steps=2), progress=False)
    torn = checkpoint.step_dir(run, 4)
    torn.mkdir()
    (torn / "config.json").write_text("{}")  # a kill before the marker was written
    assert checkpoint.latest_checkpoint(run) == checkpoint.step_dir(run, 2)


def test_data_order_is_a_pure_function_of_seed_and_epoch(store: Path) -> None:
    data = PretrainBatches(store, batch_size=4, seed=1, shuffle_chunks=2)
    attrs = data.attrs
    order = epoch_order(attrs, 1, 0, 2)
    assert sorted(order.tolist()) == list(range(attrs.n_records))
    assert np.array_equal(order, epoch_order(attrs, 1, 0, 2))
    assert not np.array_equal(order, epoch_order(attrs, 1, 1, 2))
    fresh = PretrainBatches(store, batch_size=4, seed=1, shuffle_chunks=2)
    late = fresh.batch(5)  # a resumed reader jumps straight to step 5
    for step in range(6):
        early = data.batch(step)
    assert torch.equal(early.seq, late.seq) and torch.equal(early.teacher, late.teacher)


def test_batches_are_the_same_for_0_1_2_loader_workers_and_1_2_ranks(store: Path) -> None:
    """Steps run across an epoch boundary (the store holds 3 batches of 8)."""
    data = PretrainBatches(store, batch_size=8, seed=3, shuffle_chunks=1)
    steps = 7
    want = [data.batch(s) for s in range(2, 2 + steps)]
    for workers in (0, 1, 2):
        got = list(itertools.islice(data.iterate(2, workers=workers), steps))
        for w, g in zip(want, got, strict=True):
            assert torch.equal(w.record, g.record) and torch.equal(w.teacher, g.teacher)
    for s, w in zip(range(2, 2 + steps), want, strict=True):
        halves = [data.batch(s, rank, 2) for rank in (0, 1)]
        assert torch.equal(torch.cat([h.record for h in halves]), w.record)
        assert torch.equal(torch.cat([h.seq for h in halves]), w.seq)
    ranked = next(data.iterate(2, workers=2, rank=1, world_size=2))
    assert torch.equal(ranked.record, want[0].record[4:])


def test_learning_rate_schedule() -> None:
    cfg = PretrainConfig(cache="", out="", steps=100, lr=1.0, warmup_frac=0.1, min_lr_ratio=0.1)
    assert lr_at(0, cfg) == pytest.approx(0.1)
    assert lr_at(9, cfg) == pytest.approx(1.0)
    assert lr_at(99, cfg) == pytest.approx(0.1, abs=1e-3)
    assert all(lr_at(s, cfg) >= lr_at(s + 1, cfg) for s in range(10, 99))


def test_resume_keeps_the_runs_options_and_takes_only_resumable_overrides(tmp_path: Path) -> None:
    """`--resume --steps 20` extends a run; `--resume --lr 1e-2` would silently change it."""
    from had_train.pretrain import CONFIG_FILE, config_from_options

    run = tmp_path / "run"
    run.mkdir()
    saved = PretrainConfig(cache="old.zarr", out=str(run), lr=3e-3, steps=10, seed=4)
    (run / CONFIG_FILE).write_text(json.dumps(saved.to_json()))
    options = {"steps": 20, "lr": 8e-3, "seed": 0}  # what click passes: given and defaults
    cfg = config_from_options(Path("new.zarr"), run, True, {"steps"}, **options)
    assert (cfg.steps, cfg.lr, cfg.seed, cfg.cache) == (20, 3e-3, 4, "new.zarr")
    with pytest.raises(ConfigError, match=r"--lr 0.01 \(run has 0.003\)"):
        config_from_options(Path("new.zarr"), run, True, {"lr"}, **(options | {"lr": 1e-2}))
    fresh = config_from_options(Path("data/hg38.had.zarr"), None, False, set(), **options)
    assert fresh.out == "runs/hg38" and fresh.lr == 8e-3
    alone = config_from_options(None, run, True, set(), **options)  # `--resume --out RUN`
    assert (alone.cache, alone.steps, alone.lr) == ("old.zarr", 10, 3e-3)
    with pytest.raises(ConfigError, match="--cache STORE"):
        config_from_options(None, run, False, set(), **options)


def test_had_soft_trains_on_the_teachers_predictions(
    small_fasta: Path, tiny_teacher: Path, store: Path, tmp_path: Path
) -> None:
    """had-soft needs a store with predictions (one line otherwise), trains its decoder on them
    and reports the teacher's own masked-base accuracy beside the student's."""
    with pytest.raises(ConfigError, match="--predictions"):
        pretrain(tiny_pretrain_config(store, tmp_path / "no", steps=2, objective="had-soft"))
    soft_store = _extract(
        small_fasta, tiny_teacher, tmp_path / "p.zarr", chunk_records=16, predictions=4
    )
    run = tmp_path / "soft"
    cfg = tiny_pretrain_config(
        soft_store, run, steps=4, save_every=4, holdout_chunks=1, objective="had-soft"
    )
    pretrain(cfg, progress=False)
    rows = list(csv.DictReader((run / "losses.csv").open()))
    # Soft targets of a random teacher are near uniform: the loss sits near ln 4, not the
    # hard loss of a student that could learn the bases.
    assert all(abs(float(r["recon"]) - np.log(4)) < 0.1 for r in rows)
    report = json.loads((run / "held_out.json").read_text())
    data = PretrainBatches(soft_store, batch_size=8, holdout_chunks=1)
    batch = data.records(data.held_out)
    truth = batch.seq.reshape(len(batch.seq), -1, 6)[batch.group_mask]  # [n * M, 6]
    guess = batch.soft.float().reshape(-1, 6, 4).argmax(-1)
    assert report["teacher_base_accuracy"] == pytest.approx(
        float((guess == truth.long()).float().mean())
    )
