"""Fine-tuning evaluation: metrics, splits, batches, schedule, checkpoints, and one tiny run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from had_cache import dna
from had_common.errors import ConfigError, HadError
from had_train.checkpoint import save_checkpoint
from had_train.eval import EvalConfig, evaluate, format_table, load_task
from had_train.eval.finetune import (
    CheckpointError,
    build_model,
    encode_padded,
    epoch_order,
    infer,
    make_batch,
    make_splits,
    train_fold,
)
from had_train.eval.metrics import classification_metrics, summarize
from had_train.model import (
    HadStudentConfig,
    HadStudentForPretraining,
    HadStudentForSequenceClassification,
)
from had_train.schedule import warmup_cosine
from tests.helpers import one_torch_thread  # noqa: F401 (fixture)

N_SMALL = 200


@pytest.fixture(scope="module")
def small_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A stratified-enough random 200-row subset of the built-in splice set."""
    data = load_task("splice")
    idx = np.sort(np.random.default_rng(0).choice(len(data), N_SMALL, replace=False))
    path = tmp_path_factory.mktemp("task") / "splice200.csv"
    rows = "".join(f"{data.sequences[i]},{data.class_names[data.labels[i]]}\n" for i in idx)
    path.write_text("sequence,label\n" + rows)
    return path


# --- metrics -------------------------------------------------------------------------------


def test_metrics_on_known_inputs() -> None:
    m = classification_metrics(np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1]), num_classes=2)
    assert m["accuracy"] == pytest.approx(0.75)
    assert m["mcc"] == pytest.approx(2 / np.sqrt(12))  # (TP·TN − FP·FN) / √(3·2·2·1)
    assert m["macro_f1"] == pytest.approx((2 / 3 + 0.8) / 2)
    assert m["n_pred_classes"] == 2 and not m["collapsed"]

    perfect = classification_metrics(np.arange(3), np.arange(3), num_classes=3)
    assert (perfect["accuracy"], perfect["mcc"], perfect["macro_f1"]) == (1.0, 1.0, 1.0)


def test_metrics_flag_a_collapse_and_count_unpredicted_classes() -> None:
    m = classification_metrics(np.array([0, 1, 2]), np.zeros(3, dtype=int), num_classes=3)
    assert m["collapsed"] and m["n_pred_classes"] == 1
    assert m["mcc"] == 0.0
    assert m["accuracy"] == pytest.approx(1 / 3)
    assert m["macro_f1"] == pytest.approx(0.5 / 3)  # class 0: P 1/3, R 1 -> F1 0.5; others 0


def test_summary_mean_and_sample_std() -> None:
    one = summarize([{"accuracy": 0.5, "mcc": 0.1, "macro_f1": 0.4}])
    assert one["accuracy"] == {"mean": 0.5, "std": None}
    two = summarize([{"accuracy": a, "mcc": 0.0, "macro_f1": 0.0} for a in (0.4, 0.6)])
    assert two["accuracy"]["mean"] == pytest.approx(0.5)
    assert two["accuracy"]["std"] == pytest.approx(np.std([0.4, 0.6], ddof=1))


# --- splits, batches, order, schedule ------------------------------------------------------


def test_splits_are_stratified_deterministic_and_cover_the_set() -> None:
    labels = np.repeat([0, 1, 2], [50, 30, 20])
    single = make_splits(labels, EvalConfig(seed=3))
    assert len(single) == 1
    train, test = single[0]
    assert np.bincount(labels[test]).tolist() == [10, 6, 4]
    assert np.intersect1d(train, test).size == 0 and train.size + test.size == labels.size
    again = make_splits(labels, EvalConfig(seed=3))[0]
    assert all(np.array_equal(a, b) for a, b in zip(single[0], again, strict=True))
    assert not np.array_equal(make_splits(labels, EvalConfig(seed=4))[0][1], test)

    folds = make_splits(labels, EvalConfig(folds=5, seed=3))
    tests = np.concatenate([te for _, te in folds])
    assert np.array_equal(np.sort(tests), np.arange(labels.size))
    assert all(np.bincount(labels[te]).tolist() == [10, 6, 4] for _, te in folds)


@pytest.mark.parametrize(
    ("cfg", "match"),
    [
        (EvalConfig(folds=1), "folds must be 0"),
        (EvalConfig(test_frac=1.0), "test_frac"),
        (EvalConfig(epochs=0), "epochs"),
        (EvalConfig(attention_window=0), "attention_window"),
        (EvalConfig(max_len=0), "max_len"),
        (EvalConfig(device="tpu:7"), "device"),
        (EvalConfig(preset="huge", task="splice"), "unknown preset 'huge'"),
    ],
)
def test_bad_options_are_config_errors(cfg: EvalConfig, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        evaluate(None, cfg, Path("unused"))


def test_too_few_examples_per_class_is_a_config_error() -> None:
    labels = np.array([0, 0, 0, 0, 1, 1, 1])
    with pytest.raises(ConfigError, match="smallest class has only 3"):
        make_splits(labels, EvalConfig(folds=4))
    with pytest.raises(ConfigError, match="every class needs a member on both sides"):
        make_splits(np.array([0, 0, 0, 1]), EvalConfig())


def test_batches_pad_with_pad_code_and_left_aligned_mask() -> None:
    codes, lengths = encode_padded(("ACGTN", "GA", "TTTTTTTT"), max_len=6)
    assert lengths.tolist() == [5, 2, 6]
    assert dna.decode(codes[2]) == "TTTTTT"  # centre crop
    ids, mask = make_batch(codes, lengths, np.array([1, 0]), torch.device("cpu"))
    assert ids.dtype == torch.long and ids.shape == (2, 5)
    assert ids[0].tolist() == [dna.G, dna.A, dna.PAD, dna.PAD, dna.PAD]
    assert mask.tolist() == [[1, 1, 0, 0, 0], [1, 1, 1, 1, 1]]
    centre = encode_padded(("AACCGGTT",), max_len=4)[0]
    assert dna.decode(centre[0]) == "CCGG"


def test_epoch_order_is_a_pure_function_of_seed_fold_epoch() -> None:
    a = epoch_order(100, seed=1, fold=0, epoch=2)
    assert np.array_equal(a, epoch_order(100, seed=1, fold=0, epoch=2))
    assert np.array_equal(np.sort(a), np.arange(100))
    assert not np.array_equal(a, epoch_order(100, seed=1, fold=0, epoch=3))
    assert not np.array_equal(a, epoch_order(100, seed=2, fold=0, epoch=2))


def test_lr_warms_up_then_decays_to_zero() -> None:
    factors = [warmup_cosine(s, total_steps=100, warmup_steps=10) for s in range(100)]
    assert factors[0] == pytest.approx(0.1) and factors[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(factors[9:], factors[10:], strict=False))
    assert warmup_cosine(100, 100, 10) == pytest.approx(0.0)
    assert warmup_cosine(0, 5, 0) == pytest.approx(1.0)


# --- models and checkpoints ----------------------------------------------------------------


def test_training_is_deterministic(small_csv: Path) -> None:
    data = load_task(small_csv)
    cfg = EvalConfig(preset="tiny", epochs=1, batch_size=16, seed=5)
    codes, lengths = encode_padded(data.sequences, None)
    idx = np.arange(32)
    states = []
    for _ in range(2):
        model = build_model(None, data, cfg, seed=cfg.seed)
        train_fold(model, codes, lengths, data.labels, idx, cfg, 0, torch.device("cpu"), "t", False)
        states.append(model.state_dict())
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])


def test_pretrained_encoder_loads_and_a_broken_one_is_refused(
    small_csv: Path, tmp_path: Path
) -> None:
    data = load_task(small_csv)
    torch.manual_seed(0)
    pretrained = HadStudentForPretraining(HadStudentConfig.from_preset("tiny"))
    pretrained.save_pretrained(tmp_path)
    model = build_model(tmp_path, data, EvalConfig(), seed=0)
    assert model.config.num_labels == 3 and model.config.id2label[0] == "EI"
    encoder = pretrained.had.state_dict()
    assert all(torch.equal(v, model.had.state_dict()[k]) for k, v in encoder.items())
    assert model.config.attention_window is None
    windowed = build_model(tmp_path, data, EvalConfig(attention_window=16), seed=0)
    assert windowed.config.attention_window == 16
    assert windowed.had.layers[-1].mixer.window == 16
    with pytest.raises(ConfigError, match="--mixers applies to --checkpoint none"):
        build_model(tmp_path, data, EvalConfig(mixers="gdn"), seed=0)
    baseline = build_model(None, data, EvalConfig(preset="tiny", mixers="mamba,gdn"), seed=0)
    assert baseline.config.mixers == ["mamba", "gdn"]

    weights = load_file(tmp_path / "model.safetensors")
    del weights["had.norm.weight"]
    save_file(weights, tmp_path / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match="had.norm.weight"):
        build_model(tmp_path, data, EvalConfig(), seed=0)


@pytest.mark.parametrize("mixers", [["gdn"], ["attention"], ["mamba"], ["gdn", "attention"]])
def test_predict_and_embed_are_padding_invariant_for_every_mixer(mixers: list[str]) -> None:
    """Variable-length sequences batched with padding get the logits and embeddings they get
    alone (fp32, 1e-5), for each mixer, whose reverse pass runs over the valid part only."""
    config = HadStudentConfig.from_preset("tiny", mixers=mixers, chunk_size=8, num_labels=3)
    torch.manual_seed(0)
    model = HadStudentForSequenceClassification(config).eval()
    seqs = ("ACGTTGCA" * 5, "GATTACA", "CCGTANNGTACGTAGGA")
    codes, lengths = encode_padded(seqs, None)
    cpu = torch.device("cpu")
    everything = np.arange(len(seqs))
    preds, emb = infer(model, codes, lengths, everything, 3, cpu, embed=True)
    input_ids, attention_mask = make_batch(codes, lengths, everything, cpu)
    with torch.no_grad():
        logits = model(input_ids=input_ids, attention_mask=attention_mask).logits
        for row, seq in enumerate(seqs):
            alone = torch.as_tensor(dna.encode(seq), dtype=torch.long)[None]
            torch.testing.assert_close(
                model(input_ids=alone).logits[0], logits[row], rtol=1e-5, atol=1e-5
            )
            torch.testing.assert_close(
                model.embed(alone)[0], torch.from_numpy(emb[row]), rtol=1e-5, atol=1e-5
            )
    assert preds.tolist() == logits.argmax(-1).tolist()


# --- end to end ----------------------------------------------------------------------------


def test_evaluate_end_to_end_writes_results_and_tsne(small_csv: Path, tmp_path: Path) -> None:
    out = tmp_path / "eval"
    cfg = EvalConfig(task=str(small_csv), preset="tiny", epochs=1, batch_size=64, seed=0)
    results = evaluate(None, cfg, out, progress=False)

    saved = json.loads((out / "results.json").read_text())
    assert saved == json.loads(json.dumps(results))
    assert saved["class_names"] == ["EI", "IE", "N"]
    assert saved["checkpoint"] is None and saved["init"] == "random"
    assert saved["config"]["preset"] == "tiny"
    (fold,) = saved["folds"]
    assert fold["n_train"] + fold["n_test"] == N_SMALL and fold["n_test"] == 40
    assert 0.0 <= fold["accuracy"] <= 1.0 and 0.0 <= fold["macro_f1"] <= 1.0
    assert -1.0 <= fold["mcc"] <= 1.0
    correct = fold["accuracy"] * fold["n_test"]  # a count of test examples: a whole number
    assert correct == pytest.approx(round(correct))
    for name in ("accuracy", "mcc", "macro_f1"):
        assert saved["summary"][name]["mean"] == pytest.approx(fold[name])

    assert (out / "tsne.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = format_table(results)
    assert all(word in table for word in ("accuracy", "MCC", "macro-F1", "splice200"))
    # never a student number alone: the logistic-regression baselines on the same split
    assert set(saved["baselines"]) == {"kmer", "onehot"}  # the student is the random init
    for entry in saved["baselines"].values():
        assert entry["folds"][0]["fold"] == 0 and 0.0 <= entry["summary"]["mcc"]["mean"] <= 1.0
    assert "k-mer (3-6) logistic regression" in table and "positional one-hot" in table


def test_evaluate_from_a_pretraining_run_folder(small_csv: Path, tmp_path: Path) -> None:
    torch.manual_seed(0)
    pretrained = HadStudentForPretraining(HadStudentConfig.from_preset("tiny"))
    optimizer = torch.optim.AdamW(pretrained.parameters())
    step = save_checkpoint(tmp_path / "run", 3, pretrained, optimizer, {}, keep=1)
    cfg = EvalConfig(task=str(small_csv), epochs=1, batch_size=64, tsne=False)
    results = evaluate(tmp_path / "run", cfg, tmp_path / "eval", progress=False)
    assert results["checkpoint"] == str(step) and results["init"] == "pretrained"
    assert results["model"]["config"]["d_model"] == 32  # from the checkpoint, not cfg.preset
    # the no-pretraining baseline of the same architecture, fine-tuned on the same split
    assert list(results["baselines"]) == ["random-init", "kmer", "onehot"]
    assert "same student, random init" in format_table(results)
    assert results["tsne"] is None and not (tmp_path / "eval" / "tsne.png").exists()
    with pytest.raises(HadError, match="no complete checkpoint"):
        evaluate(tmp_path / "eval", cfg, tmp_path / "eval2", progress=False)
    assert not (tmp_path / "eval2").exists()


def test_linear_probe_reads_base_composition_from_frozen_features(tmp_path: Path) -> None:
    """A frozen random encoder's pooled features carry GC content; the probe must find it."""
    rng = np.random.default_rng(0)
    rows = ["sequence,label"]
    for i in range(120):
        gc = 0.75 if i % 2 else 0.25
        p = [(1 - gc) / 2, gc / 2, gc / 2, (1 - gc) / 2]
        rows.append(
            "".join(rng.choice(list("ACGT"), size=60, p=p)) + ("," + "gc" if i % 2 else ",at")
        )
    (tmp_path / "gc.csv").write_text("\n".join(rows) + "\n")
    cfg = EvalConfig(
        task=str(tmp_path / "gc.csv"), preset="tiny", folds=3, mode="linear", tsne=False
    )
    results = evaluate(None, cfg, tmp_path / "out", progress=False)
    assert results["config"]["mode"] == "linear" and len(results["folds"]) == 3
    assert results["summary"]["accuracy"]["mean"] > 0.9


def test_each_task_brings_its_own_pooling_unless_told() -> None:
    """The built-in splice task is centred on its junction: its head reads the centre base;
    other tasks (and CSVs) get the paper's mean pooling; --pooling always wins."""
    from had_train.eval.registry import TASKS
    from had_train.eval.suite import SuiteConfig

    assert EvalConfig(task="splice").pooling == "center"
    assert EvalConfig(task="oct4_mafk").pooling == "mean"
    assert EvalConfig(task="my_task.csv").pooling == "mean"
    assert EvalConfig(task="splice", pooling="attention").pooling == "attention"
    suite = SuiteConfig()
    assert suite.eval_config(0, 1, TASKS["splice"]).pooling == "center"
    assert suite.eval_config(0, 1, TASKS["nt/H3K4me3"]).pooling == "mean"
    told = SuiteConfig(pooling="mean")
    assert told.eval_config(0, 1, TASKS["splice"]).pooling == "mean"
