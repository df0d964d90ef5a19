"""Labelled DNA tasks: the built-in registry and the one CSV reader.

A task is a CSV with a `sequence` and a `label` column. Class ids come from the *sorted* class
names, so the same file gives the same ids on every machine, whatever the row order. The
per-example rule (`check_example`) and the names-to-ids rule (`labelled_set`) are shared with the
benchmark readers in `datasets.py`.
"""

from __future__ import annotations

import csv
import hashlib
import logging
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from had_cache import dna
from had_common.errors import HadError

log = logging.getLogger(__name__)

SEQUENCE_COLUMN = "sequence"
LABEL_COLUMN = "label"


class TaskError(HadError):
    """A labelled task (built-in name or CSV file) is missing or malformed."""


@dataclass(frozen=True)
class BuiltinTask:
    """A task that ships with the package, so `had-train eval` runs on a fresh machine."""

    filename: str
    description: str
    pooling: str = "mean"
    """How `had-train eval` pools per-base features for this task unless told (--pooling)."""


BUILTIN_TASKS: dict[str, BuiltinTask] = {
    "splice": BuiltinTask(
        filename="uci_splice.csv",
        description="UCI primate splice junctions: 3,190 x 60 nt, EI / IE / N (CC BY 4.0)",
        # Every sequence is centred on the junction it labels: mean pooling dilutes the GT/AG
        # signal 60-fold (0.77 vs 0.95 accuracy fine-tuned, docs/results.md).
        pooling="center",
    ),
    "oct4_mafk": BuiltinTask(
        filename="janggu_oct4_mafk.csv",
        description=(
            "human Oct4 vs Mafk ChIP-seq peaks (janggu 0.10.2): 7,997 x 200 nt, "
            "Mafk / Oct4 (GPL-3.0)"
        ),
    ),
}


def default_pooling(task: str) -> str:
    """The pooling a task is evaluated with unless --pooling says otherwise: its own for a
    built-in task, mean (the paper's head) for anything else."""
    builtin = BUILTIN_TASKS.get(task)
    return builtin.pooling if builtin is not None else "mean"


@dataclass(frozen=True)
class LabelledSet:
    """Sequences with integer labels; `class_names[i]` is the name of label `i`."""

    name: str
    source: str
    sequences: tuple[str, ...]
    labels: np.ndarray
    class_names: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.sequences)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def fingerprint(self) -> str:
        """sha256 of the (sequence, class name) pairs in order: the data, wherever the file is."""
        digest = hashlib.sha256()
        for seq, label in zip(self.sequences, self.labels, strict=True):
            digest.update(f"{seq}\t{self.class_names[label]}\n".encode())
        return digest.hexdigest()

    def class_counts(self) -> dict[str, int]:
        """Examples per class, in class-id order (for reports and split checks)."""
        counts = np.bincount(self.labels, minlength=self.num_classes)
        return {name: int(c) for name, c in zip(self.class_names, counts, strict=True)}


def builtin_task_path(name: str) -> Path:
    """Path of a built-in task's CSV inside the installed package."""
    asset = resources.files("had_train.eval").joinpath("assets", BUILTIN_TASKS[name].filename)
    return Path(str(asset))


def load_task(name_or_csv_path: str | Path) -> LabelledSet:
    """Load a built-in task by name, or any `sequence,label` CSV by path."""
    key = str(name_or_csv_path)
    if key in BUILTIN_TASKS:
        # A built-in file's `split` column records its source's split for `--tasks PATH`; the
        # built-in task pools the rows by design (registry.BUILTIN_SPECS), so no warning here.
        return read_csv(builtin_task_path(key), name=key, warn_split=False)
    path = Path(name_or_csv_path)
    if not path.is_file():
        builtin = ", ".join(sorted(BUILTIN_TASKS))
        what = "is a directory" if path.is_dir() else "does not exist"
        raise TaskError(
            f"task {key!r}: not a built-in task ({builtin}) and {path} {what}; "
            f"give a built-in name or a CSV file with columns "
            f"'{SEQUENCE_COLUMN}' and '{LABEL_COLUMN}'"
        )
    return read_csv(path, name=path.stem)


SPLIT_COLUMN = "split"
"""Optional CSV column naming each row's official split (`train` / `test`)."""


@dataclass(frozen=True)
class CsvRow:
    """One validated data row of a task CSV; `split` is None when the file has no split column."""

    line: int
    sequence: str
    label: str
    split: str | None


def check_example(sequence: str, label: str, where: str) -> None:
    """The per-example rule of every task reader: a non-empty label and a sequence of A, C,
    G, T, N or IUPAC ambiguity codes, any case (all but A/C/G/T are read as N later); any other
    character is refused rather than silently read as N. `where` names the row in errors."""
    if not sequence:
        raise TaskError(f"{where}: empty '{SEQUENCE_COLUMN}'")
    if not label:
        raise TaskError(f"{where}: empty '{LABEL_COLUMN}'")
    invalid = dna.letter_classes(sequence) == dna.INVALID
    if invalid.any():
        bad = sequence[int(invalid.argmax())]
        raise TaskError(
            f"{where}: sequence contains {bad!r}; expected A, C, G, T, "
            "N or an IUPAC ambiguity code (those and N are read as N)"
        )


def labelled_set(
    name: str,
    source: str,
    sequences: list[str],
    names: list[str],
    class_names: tuple[str, ...] | None = None,
) -> LabelledSet:
    """Sequences with class names -> integer labels. Ids come from `class_names` (default: the
    sorted names present), so splits read separately can share one class list."""
    if class_names is None:
        class_names = tuple(sorted(set(names)))
    class_id = {c: i for i, c in enumerate(class_names)}
    labels = np.array([class_id[c] for c in names], dtype=np.int64)
    return LabelledSet(
        name=name,
        source=source,
        sequences=tuple(sequences),
        labels=labels,
        class_names=class_names,
    )


def read_csv_rows(path: Path) -> list[CsvRow]:
    """The validated data rows of a `sequence,label[,split]` CSV (blank lines skipped, extra
    columns ignored); split values are returned as written, stripped."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            header = [h.strip() for h in (reader.fieldnames or [])]
            missing = [c for c in (SEQUENCE_COLUMN, LABEL_COLUMN) if c not in header]
            if missing:
                raise TaskError(
                    f"{path}: missing column(s) {', '.join(repr(c) for c in missing)}; "
                    f"found header {header}; expected '{SEQUENCE_COLUMN}' and '{LABEL_COLUMN}'"
                )
            reader.fieldnames = header
            has_split = SPLIT_COLUMN in header
            rows: list[CsvRow] = []
            for row in reader:
                line = reader.line_num
                seq = (row.get(SEQUENCE_COLUMN) or "").strip()
                label = (row.get(LABEL_COLUMN) or "").strip()
                if not seq and not label:
                    continue  # blank line
                check_example(seq, label, f"{path}, line {line}")
                split = (row.get(SPLIT_COLUMN) or "").strip() if has_split else None
                rows.append(CsvRow(line=line, sequence=seq, label=label, split=split))
    except UnicodeDecodeError as err:
        raise TaskError(f"{path}: not a UTF-8 text CSV ({err.reason} at byte {err.start})") from err
    except csv.Error as err:
        raise TaskError(f"{path}: malformed CSV ({err})") from err
    if not rows:
        raise TaskError(f"{path}: no rows; a task needs labelled sequences")
    return rows


def require_two_classes(where: str, class_names: tuple[str, ...], n_rows: int) -> None:
    """Classification needs at least two classes."""
    if len(class_names) < 2:
        raise TaskError(
            f"{where}: only one class ({class_names[0]!r}) in {n_rows} rows; "
            "classification needs at least 2"
        )


def read_csv(path: Path, name: str, warn_split: bool = True) -> LabelledSet:
    """Read and validate a `sequence,label` CSV (extra columns are ignored: the single-task
    evaluation makes its own splits, and says so when the file has a `split` column, unless
    `warn_split` is False)."""
    rows = read_csv_rows(path)
    if warn_split and any(r.split for r in rows):
        log.warning(
            "%s has a '%s' column; `--task` makes its own stratified splits and ignores it; "
            "`had-train eval --tasks %s` uses it",
            path,
            SPLIT_COLUMN,
            path,
        )
    data = labelled_set(
        name, str(path), [r.sequence for r in rows], [r.label for r in rows], class_names=None
    )
    require_two_classes(str(path), data.class_names, len(rows))
    return data
