"""Labelled DNA tasks: the built-in registry and the one CSV reader.

A task is a CSV with a `sequence` and a `label` column. Class ids come from the *sorted* class
names, so the same file gives the same ids on every machine, whatever the row order.
"""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from had_cache import dna
from had_common.errors import HadError

SEQUENCE_COLUMN = "sequence"
LABEL_COLUMN = "label"


class TaskError(HadError):
    """A labelled task (built-in name or CSV file) is missing or malformed."""


@dataclass(frozen=True)
class BuiltinTask:
    """A task that ships with the package, so `had-train eval` runs on a fresh machine."""

    filename: str
    description: str


BUILTIN_TASKS: dict[str, BuiltinTask] = {
    "splice": BuiltinTask(
        filename="uci_splice.csv",
        description="UCI primate splice junctions: 3,190 x 60 nt, EI / IE / N (CC BY 4.0)",
    ),
}


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
        return read_csv(builtin_task_path(key), name=key)
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


def read_csv(path: Path, name: str) -> LabelledSet:
    """Read and validate a `sequence,label` CSV (extra columns are ignored)."""
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
            sequences: list[str] = []
            names: list[str] = []
            for row in reader:
                line = reader.line_num
                seq = (row.get(SEQUENCE_COLUMN) or "").strip()
                label = (row.get(LABEL_COLUMN) or "").strip()
                if not seq and not label:
                    continue  # blank line
                if not seq:
                    raise TaskError(f"{path}, line {line}: empty '{SEQUENCE_COLUMN}'")
                if not label:
                    raise TaskError(f"{path}, line {line}: empty '{LABEL_COLUMN}'")
                invalid = dna.letter_classes(seq) == dna.INVALID
                if invalid.any():
                    bad = seq[int(invalid.argmax())]
                    raise TaskError(
                        f"{path}, line {line}: sequence contains {bad!r}; expected A, C, G, T, "
                        "N or an IUPAC ambiguity code (those and N are read as N)"
                    )
                sequences.append(seq)
                names.append(label)
    except UnicodeDecodeError as err:
        raise TaskError(f"{path}: not a UTF-8 text CSV ({err.reason} at byte {err.start})") from err
    except csv.Error as err:
        raise TaskError(f"{path}: malformed CSV ({err})") from err

    if not sequences:
        raise TaskError(f"{path}: no rows; a task needs labelled sequences")
    class_names = tuple(sorted(set(names)))
    if len(class_names) < 2:
        raise TaskError(
            f"{path}: only one class ({class_names[0]!r}) in {len(names)} rows; "
            "classification needs at least 2"
        )
    class_id = {c: i for i, c in enumerate(class_names)}
    labels = np.array([class_id[c] for c in names], dtype=np.int64)
    return LabelledSet(
        name=name,
        source=str(path),
        sequences=tuple(sequences),
        labels=labels,
        class_names=class_names,
    )
