"""Fine-tune the student with a classification head on a labelled task and score it.

`mode="linear"` instead freezes the encoder, embeds every sequence once and fits a logistic
regression per split: the cheap probe of what pretraining put into the features (used by the
ablation on a CPU); `mode="finetune"` (default) trains encoder and head together.

`evaluate` reads top to bottom as split / train / score: `prepare` loads the task, makes the
stratified splits (one train/test split, or k folds) and encodes the sequences; `run_fold`
builds a fresh model for one split (from the pretrained encoder, or random weights for the
no-pretraining baseline), trains it with AdamW (linear warm-up, cosine decay) and scores the
held-out part; `results_record` gathers folds, summary and provenance. Everything that decides
the result is a pure function of the config: the splits and the model initialisation of the
seed, the batch order of (seed, fold, epoch). No DataLoader workers are involved, so the order
cannot depend on how many there are.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.model_selection import StratifiedKFold, StratifiedShuffleSplit
from tqdm.auto import tqdm

from had_cache import dna
from had_common.device import AUTO, resolve_device
from had_common.errors import ConfigError
from had_common.provenance import provenance
from had_train import losses
from had_train.checkpoint import (
    CheckpointError,
    check_encoder_loaded,
    resolve_model_dir,
    weights_sha256,
)
from had_train.eval.metrics import classification_metrics, summarize
from had_train.eval.report import plot_tsne, random_init_label
from had_train.eval.tasks import LabelledSet, default_pooling, load_task
from had_train.model import HadStudentConfig, HadStudentForSequenceClassification, parse_mixers
from had_train.model.configuration_had import ALLOWED_POOLINGS
from had_train.optim import optim_groups
from had_train.schedule import warmup_cosine

log = logging.getLogger(__name__)

RESULTS_FILE = "results.json"
TSNE_FILE = "tsne.png"
MIN_TSNE_POINTS = 4
HEAD_PREFIX = ("classifier.", "pooler.")
"""The fine-tuning head's parameters (the linear head and, with attention pooling, its
scorer): the only ones a pretraining checkpoint may lack."""
EVAL_MODES = ("finetune", "linear")


@dataclass
class EvalConfig:
    """Options of one evaluation; saved verbatim into results.json.

    `folds` = 0 means one stratified train/test split of `test_frac`; k >= 2 means stratified
    k-fold cross-validation. `preset` is used only without a checkpoint (random init); with a
    checkpoint the architecture comes from the checkpoint's own config. `max_len` crops longer
    sequences around their centre (tasks are usually centred on the feature they label).
    `mixers` replaces the preset's stack (random init only). `attention_window` overrides the
    architecture's (checkpoint's or preset's) attention window:
    the same weights attend within blocks of that many bases, at linear cost for long inputs.
    `baselines` scores, on the same splits, the checkpoint's architecture from random weights
    (fine-tuned alike) and two logistic regressions (k-mer frequencies; one-hot bases by
    position), so a student number is never printed alone.
    """

    task: str = "splice"
    folds: int = 0
    test_frac: float = 0.2
    epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_frac: float = 0.1
    grad_clip: float = 1.0
    seed: int = 0
    device: str = AUTO
    max_len: int | None = None
    preset: str = "paper"
    tsne: bool = True
    mode: str = EVAL_MODES[0]
    attention_window: int | None = None
    mixers: str | None = None
    pooling: str | None = None
    """None: the task's own (`tasks.default_pooling`: the centre base for splice, else mean)."""
    baselines: bool = True

    def __post_init__(self) -> None:
        if self.pooling is None:  # resolved once, so results.json records what ran
            object.__setattr__(self, "pooling", default_pooling(self.task))

    def validate(self) -> None:
        """Reject options that cannot work, before any data is read or model built."""
        if self.attention_window is not None and self.attention_window < 1:
            raise ConfigError(f"attention_window must be >= 1, got {self.attention_window}")
        if self.pooling not in ALLOWED_POOLINGS:
            raise ConfigError(
                f"pooling must be one of {', '.join(ALLOWED_POOLINGS)}, got {self.pooling!r}"
            )
        if self.folds < 0 or self.folds == 1:
            raise ConfigError(f"folds must be 0 (one split) or >= 2, got {self.folds}")
        if self.folds == 0 and not 0.0 < self.test_frac < 1.0:
            raise ConfigError(f"test_frac must be in (0, 1), got {self.test_frac}")
        if self.epochs < 1:
            raise ConfigError(f"epochs must be >= 1, got {self.epochs}")
        if self.mode not in EVAL_MODES:
            raise ConfigError(f"mode must be one of {', '.join(EVAL_MODES)}, got {self.mode!r}")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {self.batch_size}")
        if not self.lr > 0:
            raise ConfigError(f"lr must be > 0, got {self.lr}")
        if self.weight_decay < 0:
            raise ConfigError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if not 0.0 <= self.warmup_frac < 1.0:
            raise ConfigError(f"warmup_frac must be in [0, 1), got {self.warmup_frac}")
        if self.max_len is not None and self.max_len < 1:
            raise ConfigError(f"max_len must be >= 1 or unset, got {self.max_len}")

    def fold_seed(self, fold: int) -> int:
        """The seed of fold `fold`'s model initialisation."""
        return self.seed * 1000 + fold


def make_splits(labels: np.ndarray, cfg: EvalConfig) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stratified (train, test) index pairs, sorted, a pure function of (labels, cfg.seed)."""
    counts = np.bincount(labels)
    smallest = int(counts.min())
    num_classes = counts.size
    if cfg.folds == 0:
        n_test = math.ceil(cfg.test_frac * labels.size)
        if smallest < 2 or n_test < num_classes or labels.size - n_test < num_classes:
            raise ConfigError(
                f"cannot make a stratified {1 - cfg.test_frac:.0%}/{cfg.test_frac:.0%} split of "
                f"{labels.size} examples in {num_classes} classes (smallest class has {smallest}): "
                "every class needs a member on both sides; use more data or change test_frac"
            )
        splitter: Any = StratifiedShuffleSplit(
            n_splits=1, test_size=cfg.test_frac, random_state=cfg.seed
        )
    else:
        if smallest < cfg.folds:
            raise ConfigError(
                f"cannot make {cfg.folds} stratified folds: the smallest class has only "
                f"{smallest} examples; use fewer folds"
            )
        splitter = StratifiedKFold(n_splits=cfg.folds, shuffle=True, random_state=cfg.seed)
    dummy = np.zeros((labels.size, 1))
    return [(np.sort(tr), np.sort(te)) for tr, te in splitter.split(dummy, labels)]


def encode_padded(sequences: tuple[str, ...], max_len: int | None) -> tuple[np.ndarray, np.ndarray]:
    """All sequences as one [N, L_max] uint8 matrix padded with `dna.PAD`, plus their lengths."""
    encoded = []
    for seq in sequences:
        codes = dna.encode(seq)
        if max_len is not None and codes.size > max_len:
            start = (codes.size - max_len) // 2
            codes = codes[start : start + max_len]
        encoded.append(codes)
    lengths = np.array([c.size for c in encoded], dtype=np.int64)
    matrix = np.full((len(encoded), int(lengths.max())), dna.PAD, dtype=np.uint8)
    for row, codes in zip(matrix, encoded, strict=True):
        row[: codes.size] = codes
    return matrix, lengths


def make_batch(
    codes: np.ndarray, lengths: np.ndarray, idx: np.ndarray, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """input_ids and attention_mask for rows `idx`, trimmed to the longest of them."""
    width = int(lengths[idx].max())
    input_ids = torch.from_numpy(codes[idx, :width].astype(np.int64))
    attention_mask = (torch.arange(width)[None, :] < torch.from_numpy(lengths[idx])[:, None]).long()
    return input_ids.to(device), attention_mask.to(device)


def epoch_order(n: int, seed: int, fold: int, epoch: int) -> np.ndarray:
    """The training order of one epoch: a pure function of (seed, fold, epoch)."""
    return np.random.default_rng([seed, fold, epoch]).permutation(n)


def build_model(
    model_dir: Path | None,
    data: LabelledSet,
    cfg: EvalConfig,
    seed: int,
    random_weights: bool = False,
) -> HadStudentForSequenceClassification:
    """A fresh classifier: the checkpoint's encoder and a new head, or all random (baseline).

    `random_weights` keeps the checkpoint's architecture but not its weights: the
    no-pretraining baseline of exactly the model that was pretrained.
    """
    labels = {
        "num_labels": data.num_classes,
        "id2label": dict(enumerate(data.class_names)),
        "label2id": {name: i for i, name in enumerate(data.class_names)},
        "classifier_pooling": cfg.pooling,
    }
    if cfg.attention_window is not None:
        labels["attention_window"] = cfg.attention_window
    torch.manual_seed(seed)  # the head's (and, for the baseline, the encoder's) initial weights
    if model_dir is None:
        stack = {} if cfg.mixers is None else {"mixers": parse_mixers(cfg.mixers)}
        try:
            config = HadStudentConfig.from_preset(cfg.preset, **stack, **labels)
        except ValueError as err:  # an unknown preset or mixer name
            raise ConfigError(str(err)) from err
        return HadStudentForSequenceClassification(config)
    if cfg.mixers is not None:
        raise ConfigError(
            f"--mixers applies to --checkpoint none; {model_dir} has its own architecture"
        )
    if random_weights:
        try:
            config = HadStudentConfig.from_pretrained(model_dir, **labels)
        except OSError as err:
            raise CheckpointError(f"{model_dir}: cannot read the student's config: {err}") from err
        return HadStudentForSequenceClassification(config)
    try:
        model, info = HadStudentForSequenceClassification.from_pretrained(
            model_dir, output_loading_info=True, **labels
        )
    except (OSError, RuntimeError) as err:  # unreadable files; weights that do not fit the config
        raise CheckpointError(f"{model_dir}: cannot load the student from it: {err}") from err
    check_encoder_loaded(model_dir, info, new=HEAD_PREFIX)
    return model


@dataclass
class FitResult:
    """What one fine-tuning run did: its loss, how many epochs ran, and the validation curve."""

    final_train_loss: float
    epochs_run: int
    best_epoch: int | None = None  # 1-based; None without a validation split
    curve: list[dict[str, float]] = field(default_factory=list)


def train_fold(
    model: HadStudentForSequenceClassification,
    codes: np.ndarray,
    lengths: np.ndarray,
    labels: np.ndarray,
    train_idx: np.ndarray,
    cfg: EvalConfig,
    fold: int,
    device: torch.device,
    desc: str,
    progress: bool = True,
    val_idx: np.ndarray | None = None,
    val_metric: str = "mcc",
    patience: int | None = None,
    bar: tqdm | None = None,
) -> FitResult:
    """Fine-tune `model` in place on `train_idx`.

    With `val_idx`, the model is scored on it (`val_metric`) after every epoch, the best
    epoch's weights are restored at the end, and training stops once `patience` epochs have
    passed without improvement (the published protocols' early stopping). `bar` lets a caller
    count every run of a task on one progress bar.
    """
    steps_per_epoch = math.ceil(train_idx.size / cfg.batch_size)
    total_steps = steps_per_epoch * cfg.epochs
    warmup_steps = max(1, round(cfg.warmup_frac * total_steps)) if cfg.warmup_frac > 0 else 0
    optimizer = torch.optim.AdamW(optim_groups(model, cfg.weight_decay), lr=cfg.lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: warmup_cosine(step, total_steps, warmup_steps)
    )
    targets = torch.from_numpy(labels)
    result = FitResult(final_train_loss=float("nan"), epochs_run=0)
    best_score, best_state = -math.inf, None
    own_bar = bar is None
    if own_bar:
        bar = tqdm(total=total_steps, desc=desc, unit="step", disable=not progress)
    try:
        for epoch in range(cfg.epochs):
            model.train()
            order = train_idx[epoch_order(train_idx.size, cfg.seed, fold, epoch)]
            loss_sum, seen = 0.0, 0
            for start in range(0, order.size, cfg.batch_size):
                idx = order[start : start + cfg.batch_size]
                input_ids, attention_mask = make_batch(codes, lengths, idx, device)
                out = model(
                    input_ids=input_ids,
                    attention_mask=attention_mask,
                    labels=targets[idx].to(device),
                )
                losses.check_finite(
                    out.loss,
                    f"in {desc} at epoch {epoch + 1}",
                    "lower --lr or check the checkpoint",
                )
                optimizer.zero_grad(set_to_none=True)
                out.loss.backward()
                if cfg.grad_clip > 0:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                optimizer.step()
                scheduler.step()
                loss_sum += out.loss.item() * idx.size
                seen += idx.size
                bar.update(1)
                bar.set_postfix(epoch=epoch + 1, loss=f"{loss_sum / seen:.4f}", refresh=False)
            result.final_train_loss = loss_sum / seen
            result.epochs_run = epoch + 1
            point = {"epoch": epoch + 1, "train_loss": result.final_train_loss}
            if val_idx is not None:
                preds, _ = infer(model, codes, lengths, val_idx, cfg.batch_size, device)
                num_classes = int(labels.max()) + 1
                score = classification_metrics(labels[val_idx], preds, num_classes)[val_metric]
                point[f"val_{val_metric}"] = float(score)
                if score > best_score:
                    best_score, result.best_epoch = score, epoch + 1
                    best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            result.curve.append(point)
            stale = result.epochs_run - (result.best_epoch or result.epochs_run)
            if patience is not None and val_idx is not None and stale >= patience:
                bar.update((cfg.epochs - result.epochs_run) * steps_per_epoch)  # steps not run
                break
    finally:
        if own_bar:
            bar.close()
    if best_state is not None:
        model.load_state_dict(best_state)
    return result


def reverse_complement_padded(codes: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Each row's valid part reverse-complemented in place of itself; padding stays at the end."""
    out = np.full_like(codes, dna.PAD)
    for row, n in enumerate(lengths):
        out[row, :n] = dna.reverse_complement(codes[row, :n])
    return out


@torch.no_grad()
def infer(
    model: HadStudentForSequenceClassification,
    codes: np.ndarray,
    lengths: np.ndarray,
    idx: np.ndarray,
    batch_size: int,
    device: torch.device,
    predict: bool = True,
    embed: bool = False,
    rc_codes: np.ndarray | None = None,
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(predicted class ids, pooled embeddings) of rows `idx` in eval mode (no dropout); each
    is None unless asked for. One encoder pass per batch serves both.

    With `rc_codes` (the rows reverse-complemented, `reverse_complement_padded`), predictions
    average the class probabilities of each sequence and its reverse complement (test-time
    RC averaging; embeddings stay those of the forward strand).
    """
    model.eval()
    preds, feats = [], []
    for start in range(0, idx.size, batch_size):
        batch = idx[start : start + batch_size]
        input_ids, attention_mask = make_batch(codes, lengths, batch, device)
        pooled = model.embed(input_ids, attention_mask)
        if predict:
            probs = model.classifier(pooled).float().softmax(dim=-1)
            if rc_codes is not None:
                rc_ids, _ = make_batch(rc_codes, lengths, batch, device)
                rc_logits = model.classifier(model.embed(rc_ids, attention_mask))
                probs = (probs + rc_logits.float().softmax(dim=-1)) / 2
            preds.append(probs.argmax(dim=-1).cpu().numpy())
        if embed:
            feats.append(pooled.float().cpu().numpy())
    return (
        np.concatenate(preds) if predict else None,
        np.concatenate(feats) if embed else None,
    )


def linear_probe(
    features: np.ndarray, labels: np.ndarray, train_idx: np.ndarray, test_idx: np.ndarray, seed: int
) -> tuple[float, np.ndarray]:
    """Logistic regression on standardised frozen features: (train log-loss, test predictions)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import log_loss
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, random_state=seed))
    probe.fit(features[train_idx], labels[train_idx])
    loss = log_loss(labels[train_idx], probe.predict_proba(features[train_idx]))
    return float(loss), probe.predict(features[test_idx])


def _write_json_atomic(path: Path, payload: dict[str, Any]) -> None:
    """Write to a temp file and rename, so a reader never sees half a results file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2) + "\n")
    os.replace(tmp, path)


@dataclass(frozen=True)
class Prepared:
    """A task made ready for evaluation: data, splits, encoded sequences, checkpoint."""

    data: LabelledSet
    splits: list[tuple[np.ndarray, np.ndarray]]
    codes: np.ndarray
    lengths: np.ndarray
    checkpoint: Path | None
    device: torch.device


def prepare(model_dir: Path | None, cfg: EvalConfig) -> Prepared:
    """Validate, load the task, resolve the checkpoint, split and encode (the *split* step)."""
    cfg.validate()
    device = resolve_device(cfg.device)
    data = load_task(cfg.task)
    checkpoint = resolve_model_dir(Path(model_dir)) if model_dir is not None else None
    splits = make_splits(data.labels, cfg)
    codes, lengths = encode_padded(data.sequences, cfg.max_len)
    return Prepared(data, splits, codes, lengths, checkpoint, device)


def run_fold(
    p: Prepared,
    cfg: EvalConfig,
    fold: int,
    frozen: np.ndarray | None,
    want_tsne: bool,
    progress: bool = True,
) -> tuple[dict[str, Any], HadStudentForSequenceClassification | None, np.ndarray | None]:
    """Train on fold `fold`'s training part and score its test part (the *train* and *score*
    steps): (fold record, the fine-tuned model or None in linear mode, test embeddings if
    `want_tsne`). With `frozen` features (linear mode) no model is trained."""
    started = time.perf_counter()
    train_idx, test_idx = p.splits[fold]
    desc = f"{p.data.name} fold {fold + 1}/{len(p.splits)}"
    model = None
    if frozen is not None:
        train_loss, preds = linear_probe(frozen, p.data.labels, train_idx, test_idx, cfg.seed)
        embeddings = frozen[test_idx] if want_tsne else None
    else:
        model = build_model(p.checkpoint, p.data, cfg, seed=cfg.fold_seed(fold)).to(p.device)
        train_loss = train_fold(
            model, p.codes, p.lengths, p.data.labels, train_idx, cfg, fold, p.device, desc, progress
        ).final_train_loss
        preds, embeddings = infer(
            model, p.codes, p.lengths, test_idx, cfg.batch_size, p.device, embed=want_tsne
        )
    metrics = classification_metrics(p.data.labels[test_idx], preds, p.data.num_classes)
    if metrics["collapsed"]:
        log.warning(
            "%s: predictions collapsed: every test example is predicted %r (MCC 0)",
            desc,
            p.data.class_names[int(preds[0])],
        )
    record = {
        "fold": fold,
        "n_train": int(train_idx.size),
        "n_test": int(test_idx.size),
        **metrics,
        "final_train_loss": train_loss,
        "seconds": round(time.perf_counter() - started, 2),
    }
    return record, model, embeddings


def evaluate(
    model_dir: Path | None, cfg: EvalConfig, out_dir: Path, progress: bool = True
) -> dict[str, Any]:
    """Fine-tune and score on every split of `cfg.task`; write results.json (and tsne.png).

    `model_dir` is a pretraining run or step folder, or None for the random-init baseline.
    Returns the same dictionary that is written to `out_dir/results.json`.
    """
    p = prepare(model_dir, cfg)
    out_dir = Path(out_dir)
    init = (
        f"checkpoint {p.checkpoint}" if p.checkpoint else random_init_label(cfg.preset, cfg.mixers)
    )
    log.info(
        "eval %s: %d examples, %d split(s), %s, device %s",
        p.data.name,
        len(p.data),
        len(p.splits),
        init,
        p.device,
    )
    frozen = None
    model_info: dict[str, Any] = {}
    if cfg.mode == "linear":  # one frozen encoder, every sequence embedded once
        encoder = build_model(p.checkpoint, p.data, cfg, seed=cfg.fold_seed(0)).to(p.device)
        model_info = describe_model(encoder)
        everything = np.arange(len(p.data))
        _, frozen = infer(
            encoder, p.codes, p.lengths, everything, cfg.batch_size, p.device,
            predict=False, embed=True,
        )  # fmt: skip
        del encoder
    folds: list[dict[str, Any]] = []
    tsne_path: Path | None = None
    for fold in range(len(p.splits)):
        n_test = p.splits[fold][1].size
        want_tsne = cfg.tsne and fold == 0 and n_test >= MIN_TSNE_POINTS
        if cfg.tsne and fold == 0 and not want_tsne:
            log.warning("%s: %d test examples are too few for a t-SNE plot", p.data.name, n_test)
        record, model, embeddings = run_fold(p, cfg, fold, frozen, want_tsne, progress)
        folds.append(record)
        if not model_info and model is not None:
            model_info = describe_model(model)
        if embeddings is not None:
            tsne_path = draw_tsne(p, cfg, embeddings, model_info["n_parameters"], out_dir)
        del model  # free the fold's model before the next one is built
    results = results_record(p, cfg, folds, model_info, tsne_path)
    if cfg.baselines:
        results["baselines"] = score_baselines(p, cfg, progress)
    out_dir.mkdir(parents=True, exist_ok=True)
    _write_json_atomic(out_dir / RESULTS_FILE, results)
    return results


BASELINE_LABELS = {
    "random-init": "same student, random init",
    "kmer": "k-mer (3-6) logistic regression",
    "onehot": "positional one-hot logistic regression",
}


def score_baselines(p: Prepared, cfg: EvalConfig, progress: bool = True) -> dict[str, Any]:
    """The baselines on the splits the student was scored on: {name: {folds, summary}}.

    `random-init` runs only when the student came from a checkpoint (otherwise the student is
    that baseline); in linear mode it is probed, like the student.
    """
    from had_train.eval import baselines

    out: dict[str, Any] = {}
    if p.checkpoint is not None:
        frozen = None
        if cfg.mode == "linear":
            encoder = build_model(p.checkpoint, p.data, cfg, cfg.fold_seed(0), True).to(p.device)
            _, frozen = infer(
                encoder, p.codes, p.lengths, np.arange(len(p.data)), cfg.batch_size, p.device,
                predict=False, embed=True,
            )  # fmt: skip
        folds = []
        for fold, (train_idx, test_idx) in enumerate(p.splits):
            if frozen is not None:
                _, preds = linear_probe(frozen, p.data.labels, train_idx, test_idx, cfg.seed)
            else:
                seed = cfg.fold_seed(fold)
                model = build_model(p.checkpoint, p.data, cfg, seed, random_weights=True)
                model.to(p.device)
                desc = f"{p.data.name} random init {fold + 1}/{len(p.splits)}"
                train_fold(
                    model, p.codes, p.lengths, p.data.labels, train_idx, cfg, fold, p.device,
                    desc, progress,
                )  # fmt: skip
                preds, _ = infer(model, p.codes, p.lengths, test_idx, cfg.batch_size, p.device)
            folds.append(
                {
                    "fold": fold,
                    **classification_metrics(p.data.labels[test_idx], preds, p.data.num_classes),
                }
            )
        out["random-init"] = folds
    seqs = p.data.sequences
    for name, fit in (
        ("kmer", baselines.kmer_logreg),
        ("onehot", baselines.positional_onehot_logreg),
    ):
        folds = []
        for fold, (train_idx, test_idx) in enumerate(p.splits):
            preds = fit(
                [seqs[i] for i in train_idx], p.data.labels[train_idx],
                [seqs[i] for i in test_idx], seed=cfg.seed,
            )  # fmt: skip
            metrics = classification_metrics(p.data.labels[test_idx], preds, p.data.num_classes)
            folds.append({"fold": fold, **metrics})
        out[name] = folds
    return {name: {"folds": folds, "summary": summarize(folds)} for name, folds in out.items()}


def describe_model(model: HadStudentForSequenceClassification) -> dict[str, Any]:
    """Size and architecture of the evaluated model, for results.json."""
    return {
        "n_parameters": sum(param.numel() for param in model.parameters()),
        "config": model.config.to_dict(),
    }


def draw_tsne(
    p: Prepared, cfg: EvalConfig, embeddings: np.ndarray, n_parameters: int, out_dir: Path
) -> Path:
    """tsne.png of the first split's test-set embeddings, coloured by class."""
    test_idx = p.splits[0][1]
    start = f"{p.checkpoint.parent.name}/{p.checkpoint.name}" if p.checkpoint else "random init"
    title = (
        f"{p.data.name}: t-SNE of {test_idx.size} test-set embeddings\n"
        f"after fine-tuning from {start} ({n_parameters:,} parameters)"
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    return plot_tsne(
        embeddings,
        p.data.labels[test_idx],
        p.data.class_names,
        out_dir / TSNE_FILE,
        seed=cfg.seed,
        title=title,
    )


def results_record(
    p: Prepared,
    cfg: EvalConfig,
    folds: list[dict[str, Any]],
    model_info: dict[str, Any],
    tsne_path: Path | None,
) -> dict[str, Any]:
    """results.json: the task, the splits, every fold, the summary and the provenance."""
    return {
        "task": p.data.name,
        "source": p.data.source,
        "class_names": list(p.data.class_names),
        "class_counts": p.data.class_counts(),
        "n_examples": len(p.data),
        "split": (
            f"stratified {cfg.folds}-fold"
            if cfg.folds
            else f"stratified single split, test_frac {cfg.test_frac}"
        ),
        "checkpoint": str(p.checkpoint) if p.checkpoint else None,
        "init": "pretrained" if p.checkpoint else "random",
        "device": str(p.device),
        "config": asdict(cfg),
        "model": model_info,
        "folds": folds,
        "summary": summarize(folds),
        "tsne": tsne_path.name if tsne_path else None,
        "provenance": provenance(
            seeds={"seed": cfg.seed, "fold_seeds": [cfg.fold_seed(f) for f in range(len(folds))]},
            inputs={
                "task_sha256": p.data.fingerprint(),
                "checkpoint_weights_sha256": weights_sha256(p.checkpoint) if p.checkpoint else None,
            },
        ),
    }
