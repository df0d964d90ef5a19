"""The benchmark runner: protocol splits, early stopping, RC averaging, resume, the table."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from had_cache import dna
from had_common.errors import ConfigError
from had_train.checkpoint import save_checkpoint
from had_train.eval import suite_report
from had_train.eval.finetune import (
    EvalConfig,
    encode_padded,
    infer,
    reverse_complement_padded,
    train_fold,
)
from had_train.eval.metrics import classification_metrics
from had_train.eval.registry import Protocol
from had_train.eval.suite import SuiteConfig, make_replicates, run_suite
from had_train.model import (
    HadStudentConfig,
    HadStudentForPretraining,
    HadStudentForSequenceClassification,
)
from tests.helpers import one_torch_thread  # noqa: F401 (fixture)

HOLDOUT = Protocol(kind="holdout", seeds=3, val_frac=0.2)
KFOLD = Protocol(kind="kfold", seeds=1, folds=4)


def gc_rows(n: int, length: int, seed: int) -> list[tuple[str, str]]:
    """Sequences whose class is their GC content: learnable by every model in a few steps."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        gc = 0.75 if i % 2 else 0.25
        p = [(1 - gc) / 2, gc / 2, gc / 2, (1 - gc) / 2]
        rows.append(("".join(rng.choice(list("ACGT"), size=length, p=p)), "gc" if i % 2 else "at"))
    return rows


@pytest.fixture(scope="module")
def split_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CSV task with an official train/test split in a `split` column."""
    path = tmp_path_factory.mktemp("task") / "gc.csv"
    train, test = gc_rows(80, 48, seed=0), gc_rows(24, 48, seed=1)
    lines = ["sequence,label,split"]
    lines += [f"{s},{y},train" for s, y in train] + [f"{s},{y},test" for s, y in test]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A pretraining run folder holding one checkpoint of the tiny student."""
    run = tmp_path_factory.mktemp("run")
    torch.manual_seed(0)
    model = HadStudentForPretraining(HadStudentConfig.from_preset("tiny"))
    save_checkpoint(run, 1, model, torch.optim.AdamW(model.parameters()), {}, keep=1)
    return run


# --- splits --------------------------------------------------------------------------------


def test_holdout_replicates_split_the_training_set_and_share_the_official_test() -> None:
    labels = np.array([0, 1] * 30 + [0, 1] * 10)
    reps = make_replicates(labels, 60, True, HOLDOUT, 3, test_frac=0.2)
    assert [r.index for r in reps] == [0, 1, 2]
    for rep in reps:
        assert np.array_equal(rep.test, np.arange(60, 80))
        assert np.intersect1d(rep.fit, rep.val).size == 0
        assert np.array_equal(np.sort(np.concatenate([rep.fit, rep.val])), np.arange(60))
        assert rep.val.size == 12 and np.bincount(labels[rep.val]).tolist() == [6, 6]
    assert not np.array_equal(reps[0].val, reps[1].val)  # each replicate its own split
    again = make_replicates(labels, 60, True, HOLDOUT, 3, test_frac=0.2)
    assert all(np.array_equal(a.val, b.val) for a, b in zip(reps, again, strict=True))


def test_kfold_replicates_validate_on_each_training_example_once() -> None:
    labels = np.array([0, 1, 1, 0] * 10)
    reps = make_replicates(labels, 32, True, KFOLD, 4, test_frac=0.2)
    assert len(reps) == 4
    assert np.array_equal(np.sort(np.concatenate([r.val for r in reps])), np.arange(32))
    assert all(np.array_equal(r.test, np.arange(32, 40)) for r in reps)


def test_without_an_official_test_one_stratified_test_part_is_shared() -> None:
    labels = np.array([0, 1, 2] * 20)
    reps = make_replicates(labels, 60, False, HOLDOUT, 2, test_frac=0.25)
    assert np.array_equal(reps[0].test, reps[1].test) and reps[0].test.size == 15
    for rep in reps:
        assert np.intersect1d(rep.test, np.concatenate([rep.fit, rep.val])).size == 0
        assert rep.fit.size + rep.val.size + rep.test.size == 60


# --- early stopping and RC averaging ---------------------------------------------------------


def test_early_stopping_restores_the_best_validation_epoch() -> None:
    rows = gc_rows(64, 32, seed=3)
    codes, lengths = encode_padded(tuple(s for s, _ in rows), None)
    labels = np.array([int(y == "gc") for _, y in rows])
    torch.manual_seed(0)
    config = HadStudentConfig.from_preset("tiny", num_labels=2)
    model = HadStudentForSequenceClassification(config)
    cfg = EvalConfig(epochs=6, batch_size=16, lr=3e-3)
    fit_idx, val_idx = np.arange(48), np.arange(48, 64)
    cpu = torch.device("cpu")
    result = train_fold(
        model, codes, lengths, labels, fit_idx, cfg, 0, cpu, "t", False,
        val_idx=val_idx, val_metric="accuracy", patience=1,
    )  # fmt: skip
    scores = [p["val_accuracy"] for p in result.curve]
    assert len(scores) == result.epochs_run
    assert result.best_epoch == 1 + int(np.argmax(scores))
    # stopped at the first epoch that did not improve on the best, or ran them all
    assert result.epochs_run == cfg.epochs or result.epochs_run == result.best_epoch + 1
    preds, _ = infer(model, codes, lengths, val_idx, 16, cpu)
    restored = classification_metrics(labels[val_idx], preds, 2)["accuracy"]
    assert restored == pytest.approx(max(scores))


def test_rc_averaged_predictions_are_the_same_for_a_sequence_and_its_reverse_complement() -> None:
    rows = gc_rows(12, 30, seed=5)
    seqs = tuple(s[: 20 + i] for i, (s, _) in enumerate(rows))  # ragged: padding in play
    codes, lengths = encode_padded(seqs, None)
    rc = reverse_complement_padded(codes, lengths)
    assert dna.decode(rc[0, : lengths[0]]) == dna.decode(dna.reverse_complement(codes[0, :20]))
    torch.manual_seed(1)
    model = HadStudentForSequenceClassification(HadStudentConfig.from_preset("tiny", num_labels=3))
    idx, cpu = np.arange(len(seqs)), torch.device("cpu")
    forward, _ = infer(model, codes, lengths, idx, 5, cpu, rc_codes=rc)
    backward, _ = infer(model, rc, lengths, idx, 5, cpu, rc_codes=codes)
    assert np.array_equal(forward, backward)


# --- the whole run -------------------------------------------------------------------------


def test_suite_runs_every_model_on_the_same_splits_resumes_and_writes_the_table(
    split_csv: Path, tiny_run: Path, tmp_path: Path
) -> None:
    out = tmp_path / "bench"
    cfg = SuiteConfig(tasks=str(split_csv), replicates=2, max_epochs=2, batch_size=16, lr=3e-3)
    lines: list[str] = []
    record = run_suite(tiny_run, cfg, out, progress=False, echo=lines.append)
    assert lines and lines[0].startswith("plan: 1 task(s), 8 runs")

    task = record["tasks"]["gc"]
    assert task["official_test_split"] and task["n_train"] == 80 and task["n_test"] == 24
    assert list(task["models"]) == ["student", "random-init", "kmer", "onehot"]
    for model, entry in task["models"].items():
        reps = entry["replicates"]
        assert [r["replicate"] for r in reps] == [0, 1]
        assert all(r["n_test"] == 24 and r["n_fit"] + r["n_val"] == 80 for r in reps), model
    kmer = task["models"]["kmer"]["summary"]["accuracy"]["mean"]
    assert kmer > 0.9  # GC content is a 1-mer statistic: k-mer counts see it
    student = task["models"]["student"]["replicates"][0]
    assert student["epochs_run"] <= 2 and len(student["curve"]) == student["epochs_run"]
    assert (out / "gc" / "tsne.png").read_bytes()[:4] == b"\x89PNG"

    table = (out / "results.md").read_text()
    for column in ("student (ours)", "random init", "k-mer LR"):
        assert column in table
    saved = json.loads((out / "results.json").read_text())
    assert saved["tasks"]["gc"]["models"].keys() == task["models"].keys()
    assert saved["provenance"]["inputs"]["checkpoint_weights_sha256"]

    # A rerun reuses every stored run (no training: the same numbers, the same files).
    stamp = (out / "gc" / "student" / "replicate-1.json").stat().st_mtime_ns
    again = run_suite(tiny_run, cfg, out, progress=False, echo=lines.append)
    assert again["tasks"]["gc"]["models"] == task["models"]
    assert (out / "gc" / "student" / "replicate-1.json").stat().st_mtime_ns == stamp
    assert "at most 0 s" in lines[-1]

    # Other settings never mix with stored runs.
    with pytest.raises(ConfigError, match="written with other settings"):
        run_suite(tiny_run, SuiteConfig(**{**vars(cfg), "lr": 1e-3}), out, progress=False)

    # --models picks models without changing what decides their numbers: the stored runs serve.
    only = run_suite(tiny_run, SuiteConfig(**{**vars(cfg), "models": ("student",)}), out, False)
    assert list(only["tasks"]["gc"]["models"]) == ["student"]
    assert only["tasks"]["gc"]["models"]["student"] == task["models"]["student"]
    with pytest.raises(ConfigError, match="--models takes"):
        SuiteConfig(models=("students",)).validate()


def test_the_table_puts_published_numbers_and_family_means_beside_ours() -> None:
    def task(mean: float) -> dict:
        summary = {"mcc": {"mean": mean, "std": 0.01}, "accuracy": {"mean": 0.9, "std": 0.0}}
        reps = [{"n_parameters": 1234}]
        return {
            "family": "nt",
            "metric": "mcc",
            "models": {
                "student": {"summary": summary, "replicates": reps},
                "kmer": {"summary": summary, "replicates": [{"n_parameters": None}]},
            },
        }

    record = {
        "checkpoint": "runs/x/step-1",
        "config": {"mode": "finetune"},
        "device": "cpu",
        "tasks": {"nt/H3": task(0.5), "nt/H4": task(0.7)},
    }
    md = suite_report.markdown(record)
    assert "| H3 | MCC | 0.5000 ± 0.0100 |" in md
    assert "NTv2-500M" in md and "Caduceus (arXiv 2403.03234)" in md
    assert "| **mean of 2** | | **0.6000** | **0.6000** |" in md
    assert "| parameters | | 1,234 | – |" in md
    assert "### Overall" not in md  # one family: its mean is the overall one
    record["tasks"]["gb/human_nontata_promoters"] = {**task(0.9), "family": "gb"}
    overall = suite_report.markdown(record)
    assert "### Genomic Benchmarks" in overall and "| student (ours) | 3 | 0.7000 |" in overall
    del record["tasks"]["gb/human_nontata_promoters"]
    rows = suite_report.table_rows(record)
    published = [r for r in rows if r["kind"] == "published" and r["task"] == "nt/H3"]
    assert {r["model"] for r in published} >= {"NTv2-500M", "HyenaDNA"}
    assert all(r["source"] for r in published)


@pytest.mark.parametrize("pooling", ["mean", "center", "attention"])
def test_every_pooling_is_padding_invariant(pooling: str) -> None:
    torch.manual_seed(2)
    config = HadStudentConfig.from_preset("tiny", num_labels=2, classifier_pooling=pooling)
    model = HadStudentForSequenceClassification(config).eval()
    seqs = tuple(s[:n] for (s, _), n in zip(gc_rows(3, 40, seed=7), (17, 40, 25), strict=True))
    codes, lengths = encode_padded(seqs, None)
    _, batched = infer(model, codes, lengths, np.arange(3), 3, torch.device("cpu"), False, True)
    for row, seq in enumerate(seqs):
        alone_codes, alone_len = encode_padded((seq,), None)
        _, alone = infer(
            model, alone_codes, alone_len, np.arange(1), 1, torch.device("cpu"), False, True
        )
        assert np.allclose(alone[0], batched[row], atol=1e-5), (pooling, row)
    if pooling == "center":  # the middle base's features: the head sees position (n - 1) // 2
        ids = torch.from_numpy(codes.astype(np.int64))
        mask = torch.from_numpy(np.arange(codes.shape[1])[None] < lengths[:, None]).long()
        with torch.no_grad():
            hidden = model.had(ids, mask).last_hidden_state
        assert torch.allclose(torch.from_numpy(batched[0]), hidden[0, 8], atol=1e-6)


def test_the_teacher_baseline_probes_its_features_once_per_task(
    split_csv: Path, tiny_teacher: Path, tmp_path: Path
) -> None:
    cfg = SuiteConfig(
        tasks=str(split_csv), replicates=2, batch_size=16, teacher=str(tiny_teacher), mode="linear"
    )
    record = run_suite(None, cfg, tmp_path / "b", progress=False, echo=lambda _: None)
    models = record["tasks"]["gc"]["models"]
    assert list(models) == [
        "student",
        "teacher",
        "kmer",
        "onehot",
    ]  # no checkpoint: student = random init
    teacher = models["teacher"]["replicates"]
    assert [r["replicate"] for r in teacher] == [0, 1] and teacher[0]["n_parameters"] > 0
    feats = np.load(tmp_path / "b" / "gc" / "teacher" / "features.npy")
    assert feats.shape[0] == 104  # every train and test sequence, embedded once
    assert "teacher probe" in (tmp_path / "b" / "results.md").read_text()
    assert "student (random init)" in (tmp_path / "b" / "results.md").read_text()


def test_a_small_teacher_is_fine_tuned_too_through_the_students_loop(
    split_csv: Path, tiny_teacher: Path, tmp_path: Path
) -> None:
    cfg = SuiteConfig(
        tasks=str(split_csv),
        replicates=1,
        max_epochs=1,
        batch_size=16,
        teacher=str(tiny_teacher),
        preset="tiny",
    )
    record = run_suite(None, cfg, tmp_path / "b", progress=False, echo=lambda _: None)
    models = record["tasks"]["gc"]["models"]
    assert list(models) == ["student", "teacher", "teacher-ft", "kmer", "onehot"]
    (run,) = models["teacher-ft"]["replicates"]
    assert run["epochs_run"] == 1 and run["n_test"] == 24
    assert 0 < run["n_parameters"] != models["student"]["replicates"][0]["n_parameters"]
    assert "teacher-ft" not in run_suite(  # forced off
        None, SuiteConfig(**{**vars(cfg), "teacher_finetune": False}), tmp_path / "c",
        progress=False, echo=lambda _: None,
    )["tasks"]["gc"]["models"]  # fmt: skip


def test_the_teacher_classifier_reads_tokens_and_ignores_padding(tiny_teacher: Path) -> None:
    from had_cache.teacher import load_teacher
    from had_train.eval.teacher_classifier import TeacherClassifier, tokenize_padded

    teacher = load_teacher(str(tiny_teacher), torch.device("cpu"), torch.float32, (-1,))
    torch.manual_seed(0)
    net = TeacherClassifier(teacher, num_labels=2).eval()
    seqs = (
        "ACGTACGTACGTAAC",
        "ACGTNACGTACGTACGTACGGGTACCA",
    )  # <cls>, 6-mers, N and leftovers as single letters
    tokens, lengths = tokenize_padded(seqs)
    assert lengths.tolist() == [1 + 2 + 3, 1 + 4 + 1 + 3 + 4] and tokens[0, 0] == tokens[1, 0]
    _, both = infer(net, tokens, lengths, np.arange(2), 2, torch.device("cpu"), False, True)
    _, alone = infer(
        net, tokens[:1], lengths[:1], np.arange(1), 1, torch.device("cpu"), False, True
    )
    assert np.allclose(both[0], alone[0], atol=1e-5)
    assert all(p.requires_grad for p in net.parameters())  # trained end to end
