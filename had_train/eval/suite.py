"""The benchmark runner: every selected task under its published protocol, baselines beside
every number, resumable.

For each task, `replicates` draws the protocol's splits (NT original: 10 seeds, each a 90/10
train/validation split of the official training set; GB: 5 seeds likewise; revised NT: 10
folds of the training set; every replicate is tested on the official test split). Each model is
then trained and scored on every replicate:

- `student`: the checkpoint fine-tuned (or probed, `mode="linear"`), early stopping on the
  validation split by the task's headline metric;
- `random-init`: the same architecture from random weights, same recipe: what pretraining adds;
- `teacher`: the teacher's mean-pooled features of the chosen layer, logistic regression;
- `teacher-ft`: the teacher itself fine-tuned with a head on those features, same recipe, when
  it is small enough for the device (`teacher_classifier.fits_for_finetuning`);
- `kmer`: k-mer (k = 3..6) frequencies, logistic regression: what composition alone gives;
- `onehot`: the base at each position, logistic regression (C by inner cross-validation):
  strong on short aligned tasks (splice sites), what needs no deep model at all.

Every (task, model, replicate) result is written as soon as it exists and reused by a rerun with
the same settings, so a killed run loses at most the run in flight. `report.py`-style views of
the whole suite (tables beside the published numbers, bar charts) are in `suite_report.py`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.model_selection import StratifiedKFold, StratifiedShuffleSplit
from tqdm.auto import tqdm

from had_cache.teacher import AUTO_DTYPE, load_teacher, resolve_dtype, teacher_parameter_count
from had_common.device import AUTO, resolve_device
from had_common.errors import ConfigError
from had_common.provenance import provenance
from had_train.checkpoint import resolve_model_dir, weights_sha256
from had_train.eval import baselines
from had_train.eval.datasets import TaskData, load_task_data
from had_train.eval.finetune import (
    EVAL_MODES,
    MIN_TSNE_POINTS,
    EvalConfig,
    _write_json_atomic,
    build_model,
    encode_padded,
    infer,
    linear_probe,
    make_batch,
    reverse_complement_padded,
    train_fold,
)
from had_train.eval.metrics import classification_metrics, summarize
from had_train.eval.registry import PROTOCOLS, Protocol, TaskSpec, select_tasks
from had_train.eval.report import plot_tsne_panels
from had_train.eval.tasks import LabelledSet
from had_train.eval.teacher_classifier import (
    TeacherClassifier,
    fits_for_finetuning,
    tokenize_padded,
)
from had_train.model import count_parameters

log = logging.getLogger(__name__)

STUDENT, RANDOM_INIT, TEACHER, TEACHER_FT = "student", "random-init", "teacher", "teacher-ft"
KMER, ONEHOT = "kmer", "onehot"
MODELS = (STUDENT, RANDOM_INIT, TEACHER, TEACHER_FT, KMER, ONEHOT)
"""Table order: ours first, then the baselines every student number is printed beside."""
FINETUNED = (STUDENT, RANDOM_INIT, TEACHER_FT)
CSV_PROTOCOL = "builtin"
"""Protocol of a task that is not in the registry (a user's CSV): as the built-in task's."""
DEFAULT_METRIC = "mcc"
DEFAULT_VAL_FRAC = 0.1
"""Validation share for early stopping where a protocol names none (the built-in task, CSVs)."""
SUITE_RESULTS = "results.json"
TSNE_TEST_POINTS = 2000
"""Test examples embedded for the before/after t-SNE (more only blur the scatter)."""


@dataclass
class SuiteConfig:
    """Options of a benchmark run; everything that shapes a number is in `fingerprint`.

    `replicates`, `max_epochs` and `patience` override the protocol's (None = published).
    `teacher` is the teacher whose features are probed (None: that baseline is not run);
    `teacher_finetune` fine-tunes it too (None: when it fits the device).
    """

    tasks: str = "all"
    data_dir: Path | None = None
    mode: str = EVAL_MODES[0]
    replicates: int | None = None
    max_epochs: int | None = None
    patience: int | None = None
    batch_size: int = EvalConfig.batch_size
    lr: float = EvalConfig.lr
    weight_decay: float = EvalConfig.weight_decay
    warmup_frac: float = EvalConfig.warmup_frac
    grad_clip: float = EvalConfig.grad_clip
    max_len: int | None = None
    test_frac: float = EvalConfig.test_frac
    rc_average: bool = False
    teacher: str | None = None
    teacher_layer: int = -1
    teacher_finetune: bool | None = None
    device: str = AUTO
    tsne: bool = True
    preset: str = EvalConfig.preset
    pooling: str | None = None
    """None: each task's own (TaskSpec.pooling: the centre base for splice, else mean)."""
    models: tuple[str, ...] | None = None
    """Score only these models (None: every one that applies), e.g. to share one random-init
    and baseline run between several checkpoints."""

    def validate(self) -> None:
        self.eval_config(seed=0, epochs=1).validate()
        unknown = sorted(set(self.models or ()) - set(MODELS))
        if unknown or (self.models is not None and not self.models):
            raise ConfigError(f"--models takes {', '.join(MODELS)}; got {', '.join(unknown)}")
        for name in ("replicates", "max_epochs", "patience"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be >= 1, got {value}")

    def eval_config(self, seed: int, epochs: int, task: TaskSpec | None = None) -> EvalConfig:
        """The per-run fine-tuning options (one replicate of one model of `task`)."""
        return EvalConfig(
            mode=self.mode,
            epochs=epochs,
            batch_size=self.batch_size,
            lr=self.lr,
            weight_decay=self.weight_decay,
            warmup_frac=self.warmup_frac,
            grad_clip=self.grad_clip,
            seed=seed,
            device=self.device,
            max_len=self.max_len,
            preset=self.preset,
            test_frac=self.test_frac,
            pooling=self.pooling or (task.pooling if task is not None else "mean"),
            tsne=False,
        )

    def fingerprint(self, extra: dict[str, Any]) -> str:
        """sha256 of what decides a run's numbers: a stored run is reused only on a match."""
        decisive = {
            k: v
            for k, v in asdict(self).items()
            if k not in {"tasks", "data_dir", "device", "tsne", "models", "pooling"}
        }
        blob = json.dumps({**decisive, **extra}, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


SINGLE_TASK_OPTIONS = ("task", "folds", "seed", "mixers", "attention_window")
"""`had-train eval` options of the single-task path that a --tasks run does not take."""


def suite_config_from_options(given: set[str], tsne: bool, **options: Any) -> SuiteConfig:
    """A SuiteConfig from `had-train eval` options; `given` = the options set on the command
    line (the protocol's epochs apply unless --epochs is given)."""
    clash = sorted(given & set(SINGLE_TASK_OPTIONS))
    if clash:
        raise ConfigError(
            f"--{clash[0].replace('_', '-')} applies to single-task runs (--task); --tasks runs "
            "use each task's protocol (see --list-tasks)"
        )
    return SuiteConfig(
        tasks=options["tasks"],
        data_dir=options["data_dir"],
        mode=options["mode"],
        replicates=options["replicates"],
        max_epochs=options["epochs"] if "epochs" in given else None,
        patience=options["patience"],
        batch_size=options["batch_size"],
        lr=options["lr"],
        max_len=options["max_len"],
        test_frac=options["test_frac"],
        rc_average=options["rc_average"],
        teacher=options["teacher"],
        teacher_layer=options["teacher_layer"],
        teacher_finetune=options["teacher_finetune"],
        device=options["device"],
        tsne=tsne,
        preset=options["preset"],
        pooling=options["pooling"],
        models=parse_models(options.get("models")),
    )


def parse_models(text: str | None) -> tuple[str, ...] | None:
    """`--models student,kmer` -> ("student", "kmer"); None = every model that applies."""
    if text is None:
        return None
    return tuple(m.strip() for m in text.split(",") if m.strip())


@dataclass(frozen=True)
class Replicate:
    """One split of a task: fit on `fit`, early-stop on `val`, score on `test` (row indices)."""

    index: int
    fit: np.ndarray
    val: np.ndarray
    test: np.ndarray


@dataclass(frozen=True)
class SuiteTask:
    """A task made ready: the data as one labelled set (train rows first), its protocol."""

    key: str
    spec: TaskSpec | None
    protocol: Protocol
    data: LabelledSet
    n_train: int
    has_official_test: bool
    source: dict[str, Any]

    @property
    def metric(self) -> str:
        return self.spec.metric if self.spec is not None else DEFAULT_METRIC

    @property
    def family(self) -> str:
        return self.spec.benchmark if self.spec is not None else "csv"


def combine(task: TaskData) -> tuple[LabelledSet, int]:
    """Train and test rows as one set (train first), so one encoding serves every split."""
    train, test = task.train, task.test
    if test is None:
        return train, len(train)
    if train.class_names != test.class_names:
        raise ConfigError(
            f"{train.name}: train and test class lists differ "
            f"({list(train.class_names)} vs {list(test.class_names)})"
        )
    data = LabelledSet(
        name=train.name,
        source=train.source,
        sequences=train.sequences + test.sequences,
        labels=np.concatenate([train.labels, test.labels]),
        class_names=train.class_names,
    )
    return data, len(train)


def make_replicates(
    labels: np.ndarray,
    n_train: int,
    has_official_test: bool,
    protocol: Protocol,
    n_replicates: int,
    test_frac: float,
) -> list[Replicate]:
    """The protocol's splits, a pure function of the labels and the replicate index.

    Without an official test split (a CSV without a `split` column, the built-in task) one
    stratified test part of `test_frac` is drawn once (seed 0) and shared by every replicate.
    """
    if has_official_test:
        train_idx = np.arange(n_train)
        test_idx = np.arange(n_train, labels.size)
    else:
        splitter = StratifiedShuffleSplit(n_splits=1, test_size=test_frac, random_state=0)
        tr, te = next(splitter.split(np.zeros(labels.size), labels))
        train_idx, test_idx = np.sort(tr), np.sort(te)
    train_labels = labels[train_idx]
    smallest = int(np.bincount(train_labels).min())
    dummy = np.zeros(train_idx.size)
    reps = []
    if protocol.kind == "kfold":
        folds = protocol.folds
        if smallest < folds:
            raise ConfigError(
                f"cannot make {folds} stratified folds: the smallest class has {smallest} "
                "training examples"
            )
        splitter_k = StratifiedKFold(n_splits=folds, shuffle=True, random_state=0)
        for r, (fit, val) in enumerate(splitter_k.split(dummy, train_labels)):
            if r >= n_replicates:
                break
            reps.append(Replicate(r, np.sort(train_idx[fit]), np.sort(train_idx[val]), test_idx))
        return reps
    if smallest < 2:
        raise ConfigError(
            f"cannot draw a stratified validation split: a class has {smallest} training example"
        )
    val_frac = protocol.val_frac or DEFAULT_VAL_FRAC
    for r in range(n_replicates):
        splitter = StratifiedShuffleSplit(n_splits=1, test_size=val_frac, random_state=r)
        fit, val = next(splitter.split(dummy, train_labels))
        reps.append(Replicate(r, np.sort(train_idx[fit]), np.sort(train_idx[val]), test_idx))
    return reps


def resolve_tasks(cfg: SuiteConfig) -> list[tuple[str, TaskSpec | None]]:
    """(name or path, registry spec) of each selected task: registry selectors and CSV paths."""
    chosen: list[tuple[str, TaskSpec | None]] = []
    names = []
    for item in (part.strip() for part in cfg.tasks.split(",")):
        if not item:
            continue
        if item.lower().endswith(".csv") or Path(item).is_file():
            chosen.append((item, None))
        else:
            names.append(item)
    if names:
        chosen += [(spec.key, spec) for spec in select_tasks(",".join(names))]
    if not chosen:
        raise ConfigError("--tasks selects no task; see `had-train eval --list-tasks`")
    return chosen


def prepare_task(name: str, spec: TaskSpec | None, cfg: SuiteConfig) -> SuiteTask:
    """Load one task from disk and pair it with its protocol."""
    task = load_task_data(name, cfg.data_dir)
    spec = spec or task.spec
    data, n_train = combine(task)
    protocol = PROTOCOLS[spec.benchmark if spec is not None else CSV_PROTOCOL]
    key = spec.key if spec is not None else Path(name).stem
    return SuiteTask(key, spec, protocol, data, n_train, task.test is not None, task.source)


def task_dir_name(key: str) -> str:
    """`nt/H3` -> `nt__H3`: one folder per task, flat under the run's output folder."""
    return key.replace("/", "__")


@dataclass
class TaskRunner:
    """Runs every model on every replicate of one task, writing each result as it comes."""

    task: SuiteTask
    cfg: SuiteConfig
    checkpoint: Path | None
    out_dir: Path
    device: torch.device
    progress: bool = True
    replicates: list[Replicate] = field(default_factory=list)
    codes: np.ndarray | None = None
    lengths: np.ndarray | None = None
    rc_codes: np.ndarray | None = None
    teacher_finetune: bool = False
    _tokens: tuple[np.ndarray, np.ndarray] | None = None
    _fingerprints: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        p = self.task.protocol
        n = self.cfg.replicates or (p.folds or 1 if p.kind == "kfold" else p.seeds)
        self.replicates = make_replicates(
            self.task.data.labels,
            self.task.n_train,
            self.task.has_official_test,
            p,
            n,
            self.cfg.test_frac,
        )
        self.codes, self.lengths = encode_padded(self.task.data.sequences, self.cfg.max_len)
        if self.cfg.rc_average:
            self.rc_codes = reverse_complement_padded(self.codes, self.lengths)

    # -- bookkeeping ------------------------------------------------------------------------
    @property
    def models(self) -> list[str]:
        """The models this run scores: no `random-init` when the student is itself random."""
        chosen = [STUDENT] + ([RANDOM_INIT] if self.checkpoint is not None else [])
        if self.cfg.teacher is not None:
            chosen.append(TEACHER)
            if self.teacher_finetune:
                chosen.append(TEACHER_FT)
        chosen += [KMER, ONEHOT]
        return [m for m in chosen if self.cfg.models is None or m in self.cfg.models]

    @property
    def max_epochs(self) -> int:
        """--epochs, else the protocol's, else the single-task default."""
        return self.cfg.max_epochs or self.task.protocol.max_epochs or EvalConfig.epochs

    @property
    def patience(self) -> int | None:
        """Early-stopping patience; None = run every epoch and test the best validation epoch."""
        return self.cfg.patience or self.task.protocol.early_stopping

    def fingerprint(self, model: str) -> str:
        """The settings key of `model`'s runs (computed once: it hashes the task's data and
        the checkpoint's weights)."""
        if model not in self._fingerprints:
            self._fingerprints[model] = self._fingerprint(model)
        return self._fingerprints[model]

    def _fingerprint(self, model: str) -> str:
        extra: dict[str, Any] = {
            "task_sha256": self.task.data.fingerprint(),
            "protocol": asdict(self.task.protocol),
            "model": model,
            "pooling": self.cfg.eval_config(0, 1, self.task.spec).pooling,
        }
        if model == STUDENT and self.checkpoint is not None:
            extra["checkpoint_weights_sha256"] = weights_sha256(self.checkpoint)
        if model in FINETUNED:
            extra["epochs"], extra["patience"] = self.max_epochs, self.patience
        if model in (TEACHER, TEACHER_FT):
            extra["teacher"] = (self.cfg.teacher, self.cfg.teacher_layer)
        return self.cfg.fingerprint(extra)

    def result_path(self, model: str, rep: Replicate) -> Path:
        return self.out_dir / task_dir_name(self.task.key) / model / f"replicate-{rep.index}.json"

    def stored(self, model: str, rep: Replicate) -> dict[str, Any] | None:
        """A finished run with the same settings, or None; a mismatch is an error, not a mix."""
        path = self.result_path(model, rep)
        if not path.is_file():
            return None
        record = json.loads(path.read_text())
        if record.get("fingerprint") != self.fingerprint(model):
            raise ConfigError(
                f"{path} was written with other settings (data, checkpoint or recipe); "
                "use another --out, or delete that folder to redo it"
            )
        return record

    def steps_per_run(self) -> int:
        """Optimizer steps of one fine-tuning run at the most (before early stopping)."""
        n_fit = self.replicates[0].fit.size
        return self.max_epochs * math.ceil(n_fit / self.cfg.batch_size)

    def pending_steps(self) -> int:
        if self.cfg.mode != "finetune":
            return 0
        return sum(
            self.steps_per_run()
            for model in self.models
            if model in FINETUNED
            for rep in self.replicates
            if not self.result_path(model, rep).is_file()
        )

    # -- the models -------------------------------------------------------------------------
    def run(self) -> dict[str, list[dict[str, Any]]]:
        """Every model on every replicate (stored runs reused): model -> replicate records."""
        results: dict[str, list[dict[str, Any]]] = {}
        total = self.pending_steps()
        desc = self.task.key
        with tqdm(
            total=total, desc=desc, unit="step", disable=not self.progress or not total
        ) as bar:
            for model in self.models:
                records = []
                frozen = None
                for rep in self.replicates:
                    record = self.stored(model, rep)
                    if record is None:
                        started = time.perf_counter()
                        if model in FINETUNED and self.cfg.mode == "finetune":
                            record = self.finetune(model, rep, bar)
                        else:
                            if frozen is None:
                                frozen = self.frozen_features(model)
                            record = self.probe(model, frozen, rep)
                        record.update(
                            model=model,
                            replicate=rep.index,
                            n_fit=int(rep.fit.size),
                            n_val=int(rep.val.size),
                            n_test=int(rep.test.size),
                            seconds=round(time.perf_counter() - started, 2),
                            fingerprint=self.fingerprint(model),
                        )
                        path = self.result_path(model, rep)
                        path.parent.mkdir(parents=True, exist_ok=True)
                        _write_json_atomic(path, record)
                    records.append(record)
                results[model] = records
        return results

    def score(self, rep: Replicate, preds: np.ndarray) -> dict[str, Any]:
        labels = self.task.data.labels[rep.test]
        return classification_metrics(labels, preds, self.task.data.num_classes)

    def inputs(self, model: str) -> tuple[np.ndarray, np.ndarray]:
        """(padded input matrix, lengths) the model reads: bases, or NT tokens for the teacher."""
        if model != TEACHER_FT:
            return self.codes, self.lengths
        if self._tokens is None:
            self._tokens = tokenize_padded(self.task.data.sequences, self.cfg.max_len)
        return self._tokens

    def classifier(self, model: str, seed: int, ecfg: EvalConfig) -> torch.nn.Module:
        if model == TEACHER_FT:
            assert self.cfg.teacher is not None
            teacher = load_teacher(
                self.cfg.teacher,
                self.device,
                torch.float32,  # trained: fp32 weights (autocast is not used here)
                (self.cfg.teacher_layer,),
            )
            torch.manual_seed(seed)  # the head's initial weights
            net = TeacherClassifier(teacher, self.task.data.num_classes, self.cfg.teacher_layer)
            return net.to(self.device)
        random_weights = model == RANDOM_INIT
        return build_model(
            self.checkpoint, self.task.data, ecfg, seed=seed, random_weights=random_weights
        ).to(self.device)

    def finetune(self, model: str, rep: Replicate, bar: tqdm) -> dict[str, Any]:
        """Fine-tune one replicate with early stopping; score the best epoch on the test split."""
        ecfg = self.cfg.eval_config(seed=rep.index, epochs=self.max_epochs, task=self.task.spec)
        net = self.classifier(model, seed=rep.index, ecfg=ecfg)
        codes, lengths = self.inputs(model)
        rc_codes = self.rc_codes if model != TEACHER_FT else None  # RC tokens differ in length
        tsne = self.cfg.tsne and model == STUDENT and rep.index == 0
        tsne_idx = rep.test[:TSNE_TEST_POINTS]
        before = None
        if tsne and tsne_idx.size >= MIN_TSNE_POINTS:
            _, before = infer(
                net, self.codes, self.lengths, tsne_idx, self.cfg.batch_size, self.device,
                predict=False, embed=True,
            )  # fmt: skip
        fit = train_fold(
            net, codes, lengths, self.task.data.labels, rep.fit, ecfg, rep.index,
            self.device, f"{self.task.key} {model} {rep.index}", progress=False,
            val_idx=rep.val, val_metric=self.task.metric, patience=self.patience, bar=bar,
        )  # fmt: skip
        preds, _ = infer(
            net, codes, lengths, rep.test, self.cfg.batch_size, self.device, rc_codes=rc_codes,
        )  # fmt: skip
        if before is not None:
            _, after = infer(
                net, self.codes, self.lengths, tsne_idx, self.cfg.batch_size, self.device,
                predict=False, embed=True,
            )  # fmt: skip
            self.draw_tsne(tsne_idx, before, after, count_parameters(net))
        return {
            **self.score(rep, preds),
            "n_parameters": count_parameters(net),
            "final_train_loss": fit.final_train_loss,
            "epochs_run": fit.epochs_run,
            "best_epoch": fit.best_epoch,
            "curve": fit.curve,
        }

    def frozen_features(self, model: str) -> tuple[np.ndarray, int] | None:
        """Features every replicate's probe reads: (matrix, model size), or None for k-mers."""
        everything = np.arange(len(self.task.data))
        if model in (KMER, ONEHOT):
            return None
        if model == TEACHER:
            return self.teacher_features()
        ecfg = self.cfg.eval_config(seed=0, epochs=1, task=self.task.spec)
        net = self.classifier(model, seed=0, ecfg=ecfg)
        _, feats = infer(
            net, self.codes, self.lengths, everything, self.cfg.batch_size, self.device,
            predict=False, embed=True,
        )  # fmt: skip
        return feats, count_parameters(net)

    def teacher_features(self) -> tuple[np.ndarray, int]:
        """The teacher's pooled features of every sequence and its encoder's size, computed
        once per task and kept beside the results (a rerun does not load the teacher)."""
        path = self.out_dir / task_dir_name(self.task.key) / TEACHER / "features.npy"
        key = self.fingerprint(TEACHER)
        meta_path = path.with_suffix(".json")
        if path.is_file() and meta_path.is_file():
            meta = json.loads(meta_path.read_text())
            if meta.get("key") == key:
                return np.load(path), meta["n_parameters"]
        assert self.cfg.teacher is not None
        teacher = load_teacher(
            self.cfg.teacher,
            self.device,
            resolve_dtype(AUTO_DTYPE, self.device),
            (self.cfg.teacher_layer,),
        )
        feats = baselines.teacher_embeddings(
            teacher,
            list(self.task.data.sequences),
            layer=self.cfg.teacher_layer,
            batch_size=self.cfg.batch_size,
            max_len=self.cfg.max_len,
            progress=self.progress,
        )
        n_parameters = count_parameters(teacher.model.base_model)
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, feats)
        meta = {"key": key, "teacher": self.cfg.teacher, "n_parameters": n_parameters}
        meta_path.write_text(json.dumps(meta) + "\n")
        return feats, n_parameters

    def probe(
        self, model: str, frozen: tuple[np.ndarray, int] | None, rep: Replicate
    ) -> dict[str, Any]:
        """Logistic regression on frozen features (or on k-mers / one-hot bases) of fit rows."""
        labels = self.task.data.labels
        if frozen is None:
            seqs = self.task.data.sequences
            fit = baselines.kmer_logreg if model == KMER else baselines.positional_onehot_logreg
            preds = fit(
                [seqs[i] for i in rep.fit], labels[rep.fit], [seqs[i] for i in rep.test],
                seed=rep.index,
            )  # fmt: skip
            return {**self.score(rep, preds), "n_parameters": None}
        feats, n_parameters = frozen
        train_loss, preds = linear_probe(feats, labels, rep.fit, rep.test, rep.index)
        return {
            **self.score(rep, preds),
            "final_train_loss": train_loss,
            "n_parameters": n_parameters or None,
        }

    def draw_tsne(
        self, idx: np.ndarray, before: np.ndarray, after: np.ndarray, n_parameters: int
    ) -> Path:
        start = self.checkpoint.parent.name if self.checkpoint else "random init"
        return plot_tsne_panels(
            [
                (f"before fine-tuning ({start})", before),
                ("after fine-tuning (replicate 0)", after),
            ],
            self.task.data.labels[idx],
            self.task.data.class_names,
            self.out_dir / task_dir_name(self.task.key) / "tsne.png",
            seed=0,
            suptitle=(
                f"{self.task.key}: t-SNE of {idx.size} test-set embeddings, "
                f"student ({n_parameters:,} parameters)"
            ),
        )


def seconds_per_step(
    checkpoint: Path | None, task: SuiteTask, cfg: SuiteConfig, device: torch.device
) -> float:
    """Time one fine-tuning step at the task's median length (2 timed after 1 warm-up)."""
    data = task.data
    median = int(np.median([len(s) for s in data.sequences]))
    width = min(median, cfg.max_len or median)
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 4, size=(cfg.batch_size, width)).astype(np.uint8)
    lengths = np.full(cfg.batch_size, width)
    ecfg = cfg.eval_config(seed=0, epochs=1, task=task.spec)
    net = build_model(checkpoint, data, ecfg, seed=0).to(device)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-6)
    idx = np.arange(cfg.batch_size)
    targets = torch.zeros(cfg.batch_size, dtype=torch.long, device=device)
    times = []
    for _ in range(3):
        started = time.perf_counter()
        ids, mask = make_batch(codes, lengths, idx, device)
        loss = net(input_ids=ids, attention_mask=mask, labels=targets).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - started)
    return float(np.mean(times[1:]))


def decide_teacher_finetune(cfg: SuiteConfig, device: torch.device) -> bool:
    """Whether the teacher is fine-tuned as well as probed: as asked, or (None) when its
    encoder fits the device (`fits_for_finetuning`); the size comes from its config alone."""
    if cfg.teacher is None or cfg.mode != "finetune" or cfg.teacher_finetune is False:
        return False
    if cfg.teacher_finetune:
        return True
    n_parameters = teacher_parameter_count(cfg.teacher)
    fits = fits_for_finetuning(n_parameters, device)
    if not fits:
        log.warning(
            "teacher %s (%s parameters) is too large to fine-tune on %s: probed only "
            "(--teacher-finetune forces it)",
            cfg.teacher,
            f"{n_parameters:,}",
            device,
        )
    return fits


def format_duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def run_suite(
    checkpoint: Path | None,
    cfg: SuiteConfig,
    out_dir: Path,
    progress: bool = True,
    echo: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run every selected task; write `results.json` (+ tables, charts) under `out_dir`."""
    from had_train.eval import suite_report

    cfg.validate()
    device = resolve_device(cfg.device)
    model_dir = resolve_model_dir(Path(checkpoint)) if checkpoint is not None else None
    out_dir = Path(out_dir)
    selected = resolve_tasks(cfg)
    tasks = [prepare_task(name, spec, cfg) for name, spec in selected]
    finetune_teacher = decide_teacher_finetune(cfg, device)
    runners = [
        TaskRunner(t, cfg, model_dir, out_dir, device, progress, teacher_finetune=finetune_teacher)
        for t in tasks
    ]

    # The plan, before anything long starts: what runs, and about how long it takes.
    total = 0.0
    for runner in runners:
        steps = runner.pending_steps()
        if steps:
            per_step = seconds_per_step(model_dir, runner.task, cfg, device)
            total += steps * per_step * (1 + (runner.task.protocol.val_frac or 0.1))
    n_runs = sum(len(r.models) * len(r.replicates) for r in runners)
    echo(
        f"plan: {len(runners)} task(s), {n_runs} runs ({', '.join(runners[0].models)} "
        f"x replicates); fine-tuning at most {format_duration(total)} on {device} "
        "(timed on the student's step; early stopping usually ends sooner)"
        + ("" if cfg.teacher else "; no --teacher: the teacher baseline is not run")
    )

    out_dir.mkdir(parents=True, exist_ok=True)
    record: dict[str, Any] = {
        "checkpoint": str(model_dir) if model_dir else None,
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(cfg).items()},
        "device": str(device),
        "tasks": {},
    }
    for runner in runners:
        by_model = runner.run()
        t = runner.task
        record["tasks"][t.key] = {
            "family": t.family,
            "metric": t.metric,
            "spec": asdict(t.spec) if t.spec is not None else None,
            "protocol": asdict(t.protocol),
            "class_names": list(t.data.class_names),
            "class_counts": t.data.class_counts(),
            "n_train": t.n_train,
            "n_test": len(t.data) - t.n_train if t.has_official_test else None,
            "official_test_split": t.has_official_test,
            "data": t.source,
            "models": {
                model: {"replicates": reps, "summary": summarize(reps)}
                for model, reps in by_model.items()
            },
        }
        _write_json_atomic(out_dir / SUITE_RESULTS, record)
    record["provenance"] = provenance(
        seeds={"replicates": "replicate r: split seed r, model init seed r"},
        inputs={
            "checkpoint_weights_sha256": weights_sha256(model_dir) if model_dir else None,
            "tasks_sha256": {r.task.key: r.task.data.fingerprint() for r in runners},
        },
    )
    _write_json_atomic(out_dir / SUITE_RESULTS, record)
    suite_report.write_reports(record, out_dir)
    return record
