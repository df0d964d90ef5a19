"""Benchmark data from disk, in the layouts the usual download tools leave.

`load_task_data(task, data_dir)` returns the official train (and test) split of a task:
- a built-in name (`splice`) or a CSV path: as `tasks.load_task`, except that a CSV with a
  `split` column (`train` / `test`) gives the official split it names;
- an NT task: `DATA_DIR/nucleotide_transformer_downstream_tasks[_revised]/` as
  `hf download ... --local-dir` leaves it (`<task>/train.parquet`, `<task>/test.parquet`, rows
  told apart by the `task` column; the commit in `.cache/huggingface/download/*.metadata`);
- a Genomic Benchmarks task: `DATA_DIR/<task>/` (or `DATA_DIR/Genomic_Benchmarks_<task>/`) either
  in the genomic-benchmarks package layout (`train/<class>/*.txt`, one sequence per file) or as
  its parquet mirror (`data/train-*.parquet`, `data/test-*.parquet`; columns `seq`, `label`).

Both splits share one class list (ids from the sorted union of names), and every sequence passes
the rule of `tasks.check_example`. `TaskData.source` records the layout, the files read with
their sha256 and the hub revision where the folder records one.
"""

from __future__ import annotations

import difflib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from had_common.checksums import file_sha256, files_sha256
from had_train.eval.registry import (
    NT_HUB,
    TASKS,
    HubDataset,
    TaskSpec,
    gb_mirror,
    resolve_task,
)
from had_train.eval.tasks import (
    BUILTIN_TASKS,
    LABEL_COLUMN,
    SEQUENCE_COLUMN,
    SPLIT_COLUMN,
    LabelledSet,
    TaskError,
    builtin_task_path,
    check_example,
    labelled_set,
    load_task,
    read_csv_rows,
    require_two_classes,
)

log = logging.getLogger(__name__)

SPLITS: tuple[str, ...] = ("train", "test")
TASK_COLUMN = "task"
GB_SEQUENCE_COLUMN = "seq"
HF_METADATA_DIR = Path(".cache") / "huggingface" / "download"
"""Where `hf download --local-dir` records, per file, the commit it came from (first line)."""


@dataclass(frozen=True)
class TaskData:
    """A task's official splits. `test` is None when the data has no official test split (the
    evaluation then splits `train` itself). `source` says where the data came from."""

    spec: TaskSpec | None
    train: LabelledSet
    test: LabelledSet | None
    source: dict[str, Any] = field(default_factory=dict)

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.train.class_names


@dataclass
class _Examples:
    """Sequences and class names of one split, gathered before ids are assigned."""

    sequences: list[str] = field(default_factory=list)
    names: list[str] = field(default_factory=list)


def load_task_data(task: str, data_dir: Path | None) -> TaskData:
    """The official splits of a built-in task, a CSV file or a registry task under `data_dir`."""
    key = str(task).strip()
    if key in BUILTIN_TASKS:
        return _builtin(key)
    path = Path(key)
    if path.suffix.lower() == ".csv" or path.is_file():
        return load_csv(path)
    spec = resolve_task(key)
    if spec.benchmark == "builtin":
        return _builtin(spec.name)
    if data_dir is None:
        raise TaskError(
            f"task {spec.key} is read from disk: give --data-dir DIR with {_expected(spec, Path('DIR'))}"
        )
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise TaskError(f"--data-dir {data_dir} is not a directory")
    if spec.benchmark in NT_HUB:
        return load_nt(spec, data_dir)
    return load_gb(spec, data_dir)


# ---- built-in and CSV ----------------------------------------------------------------------------


def _builtin(name: str) -> TaskData:
    path = builtin_task_path(name)
    data = load_task(name)
    source = {"layout": "builtin", "files": {path.name: file_sha256(path)}}
    return TaskData(spec=TASKS.get(name), train=data, test=None, source=source)


def load_csv(path: Path) -> TaskData:
    """A `sequence,label` CSV; with a `split` column (`train`/`test`) its official split."""
    if not path.is_file():
        load_task(path)  # raises the one-line "does not exist / is a directory" error
    rows = read_csv_rows(path)
    source = {"layout": "csv", "files": {str(path): file_sha256(path)}}
    if rows[0].split is None:  # today's task: the evaluation makes its stratified split
        data = labelled_set(
            path.stem, str(path), [r.sequence for r in rows], [r.label for r in rows]
        )
        require_two_classes(str(path), data.class_names, len(rows))
        return TaskData(spec=None, train=data, test=None, source=source)
    splits = {s: _Examples() for s in SPLITS}
    for row in rows:
        value = (row.split or "").lower()
        if value not in splits:
            raise TaskError(
                f"{path}, line {row.line}: '{SPLIT_COLUMN}' is {row.split!r}; expected "
                f"{' or '.join(SPLITS)} (or leave the column out for a stratified split)"
            )
        splits[value].sequences.append(row.sequence)
        splits[value].names.append(row.label)
    train, test = _labelled_splits(path.stem, str(path), splits)
    return TaskData(spec=None, train=train, test=test, source={**source, "split_column": True})


@dataclass
class _ParquetFiles:
    """Rows of the parquet files of one task gathered by split, with each file's sha256 and the
    hub revision it came from (where `hf download` recorded one), keyed by its relative path."""

    splits: dict[str, _Examples] = field(default_factory=lambda: {s: _Examples() for s in SPLITS})
    checksums: dict[str, str] = field(default_factory=dict)
    revisions: dict[str, str] = field(default_factory=dict)

    def add(self, root: Path, path: Path, sequences: list[str], names: list[str]) -> None:
        split = self.splits[_split_of(path) or "train"]
        split.sequences += sequences
        split.names += names
        rel = path.relative_to(root).as_posix()
        self.checksums[rel] = file_sha256(path)
        if (revision := hub_revision(root, path)) is not None:
            self.revisions[rel] = revision


def _labelled_splits(
    name: str, where: str, splits: dict[str, _Examples]
) -> tuple[LabelledSet, LabelledSet]:
    """Train and test sets with one class list: ids from the sorted union of their names."""
    for split in SPLITS:
        if not splits[split].sequences:
            raise TaskError(
                f"{where}: no '{split}' rows; an official split needs both train and test"
            )
    classes = tuple(sorted({*splits["train"].names, *splits["test"].names}))
    require_two_classes(where, classes, sum(len(s.names) for s in splits.values()))
    train, test = (
        labelled_set(f"{name}:{s}", where, splits[s].sequences, splits[s].names, classes)
        for s in SPLITS
    )
    return train, test


# ---- the messages that say what is expected and how to fetch it ----------------------------------


def fetch_command(spec: TaskSpec, data_dir: Path) -> str:
    """The command that puts a task's data where `load_task_data` looks for it."""
    if spec.benchmark in NT_HUB:
        hub = NT_HUB[spec.benchmark]
        return f"hf download {hub.repo_id} --repo-type dataset --local-dir {data_dir / hub.folder}"
    return (
        f'python -c "from genomic_benchmarks.loc2seq import download_dataset; '
        f"download_dataset('{spec.name}', version=0, dest_path='{data_dir}')\" "
        f"(or: hf download {gb_mirror(spec.name)} --repo-type dataset "
        f"--local-dir {data_dir / spec.name})"
    )


def _expected(spec: TaskSpec, data_dir: Path) -> str:
    if spec.benchmark in NT_HUB:
        folder = data_dir / NT_HUB[spec.benchmark].folder
        layout = f"{folder}/{spec.name}/{{train,test}}.parquet"
    else:
        layout = (
            f"{data_dir / spec.name}/{{train,test}}/<class>/*.txt "
            f"or {data_dir / spec.name}/data/{{train,test}}-*.parquet"
        )
    return f"{layout}; fetch it with: {fetch_command(spec, data_dir)}"


def _missing(spec: TaskSpec, data_dir: Path, what: str, wanted: str | None = None) -> TaskError:
    """One line: what is wrong, a near-miss folder if there is one, the layout and the fetch command."""
    hint = ""
    if wanted is not None and data_dir.is_dir():
        folders = [p.name for p in data_dir.iterdir() if p.is_dir()]
        near = difflib.get_close_matches(wanted, folders, n=1, cutoff=0.6)
        near = near or [f for f in folders if f.casefold() == wanted.casefold()]
        other = {h.folder: b for b, h in NT_HUB.items() if b != spec.benchmark}
        if near and near[0] in other:
            hint = f" (found {data_dir / near[0]}: that is {other[near[0]]}, not {spec.benchmark})"
        elif near:
            hint = f" (found {data_dir / near[0]}: misnamed?)"
    return TaskError(f"task {spec.key}: {what}{hint}; expected {_expected(spec, data_dir)}")


# ---- parquet and hub metadata --------------------------------------------------------------------


def _read_parquet(path: Path, columns: list[str]) -> dict[str, list[Any]]:
    """The named columns of a parquet file (those present), as Python lists."""
    import pyarrow.parquet as pq  # imported here: only the parquet layouts need it

    try:
        present = set(pq.read_schema(path).names)
        table = pq.read_table(path, columns=[c for c in columns if c in present])
    except Exception as err:  # pyarrow raises several types for unreadable files
        raise TaskError(f"{path}: not a readable parquet file ({err})") from err
    return {name: table.column(name).to_pylist() for name in table.column_names}


def _split_of(path: Path) -> str | None:
    """`train` / `test` from a file name (train.parquet, train-00000-of-00001-*.parquet) or from a
    parent folder named so."""
    for part in (path.stem, path.parent.name):
        for split in SPLITS:
            if part == split or part.startswith(f"{split}-"):
                return split
    return None


def hub_revision(root: Path, path: Path) -> str | None:
    """The commit `hf download --local-dir root` recorded for `path` (None if not recorded)."""
    meta = root / HF_METADATA_DIR / f"{path.relative_to(root).as_posix()}.metadata"
    if not meta.is_file():
        return None
    lines = meta.read_text(encoding="utf-8", errors="replace").splitlines()
    return (lines[0].strip() or None) if lines else None


def _check_revision(spec: TaskSpec, hub: HubDataset, revisions: set[str]) -> None:
    if not revisions:
        log.info("%s: no hf download metadata found; revision unknown", spec.key)
        return
    if hub.revision and not all(r.startswith(hub.revision) for r in revisions):
        log.warning(
            "%s: files come from revision %s of %s, not the pinned %s; published numbers may "
            "not be comparable",
            spec.key,
            ", ".join(sorted(revisions)),
            hub.repo_id,
            hub.revision,
        )


def _labelled_rows(
    path: Path, seq_column: str, data: dict[str, list[Any]], task: str | None
) -> tuple[list[str], list[str]]:
    """Validated (sequences, class names) of a parquet table; with `task`, only its rows."""
    for column in (seq_column, LABEL_COLUMN):
        if column not in data:
            raise TaskError(
                f"{path}: no '{column}' column; found {sorted(data)}; "
                f"expected '{seq_column}' and '{LABEL_COLUMN}'"
            )
    sequences: list[str] = []
    names: list[str] = []
    tasks = data.get(TASK_COLUMN)
    for i, (seq, label) in enumerate(zip(data[seq_column], data[LABEL_COLUMN], strict=True)):
        if task is not None and tasks is not None and tasks[i] != task:
            continue
        seq_text = "" if seq is None else str(seq).strip()
        label_text = "" if label is None else str(label).strip()
        check_example(seq_text, label_text, f"{path}, row {i}")
        sequences.append(seq_text)
        names.append(label_text)
    return sequences, names


# ---- NT: an hf download folder of parquet files --------------------------------------------------


def _nt_root(spec: TaskSpec, data_dir: Path) -> Path:
    hub = NT_HUB[spec.benchmark]
    for root in (data_dir / hub.folder, data_dir):
        if root.name == hub.folder and root.is_dir():
            return root
    raise _missing(spec, data_dir, f"no folder {data_dir / hub.folder}", wanted=hub.folder)


def load_nt(spec: TaskSpec, data_dir: Path) -> TaskData:
    """An NT task from its `hf download` folder: rows of `spec.name` by the `task` column (or by
    the task's folder), train/test from the file names, the revision from the download metadata."""
    hub = NT_HUB[spec.benchmark]
    root = _nt_root(spec, data_dir)
    task_dir = root / spec.name
    files = sorted(task_dir.glob("*.parquet")) if task_dir.is_dir() else []
    in_task_folder = bool(files)
    if not files:  # a layout with all tasks in shared files, told apart by the task column
        others = {s.name for s in TASKS.values() if s.benchmark == spec.benchmark}
        skip = {*others, HF_METADATA_DIR.parts[0]}
        files = sorted(
            p for p in root.rglob("*.parquet") if p.relative_to(root).parts[0] not in skip
        )
    files = [p for p in files if _split_of(p) is not None]
    if not files:
        raise _missing(spec, data_dir, f"no train/test parquet files for {spec.name} in {root}")
    read = _ParquetFiles()
    for path in files:
        data = _read_parquet(path, [SEQUENCE_COLUMN, LABEL_COLUMN, TASK_COLUMN])
        if TASK_COLUMN not in data and not in_task_folder:
            raise TaskError(
                f"{path}: no '{TASK_COLUMN}' column to tell {spec.name}'s rows from other tasks'"
            )
        select = spec.name
        if in_task_folder and spec.name not in set(data.get(TASK_COLUMN) or [spec.name]):
            # The task's own folder, but its task column spells the name otherwise: take the rows.
            log.warning(
                "%s: task column of %s never says %r; taking all rows", spec.key, path, spec.name
            )
            select = None
        sequences, names = _labelled_rows(path, SEQUENCE_COLUMN, data, select)
        if sequences:
            read.add(root, path, sequences, names)
    if not any(s.sequences for s in read.splits.values()):
        raise _missing(spec, data_dir, f"no rows with {TASK_COLUMN} = {spec.name!r} under {root}")
    _check_revision(spec, hub, set(read.revisions.values()))
    train, test = _labelled_splits(spec.key, str(root), read.splits)
    source = {
        "layout": "hf-parquet",
        "repo_id": hub.repo_id,
        "root": str(root),
        "revision": _one_revision(read.revisions),
        "pinned_revision": hub.revision,
        "files": read.checksums,
    }
    return TaskData(spec=spec, train=train, test=test, source=source)


def _one_revision(revisions: dict[str, str]) -> str | dict[str, str] | None:
    """The commit all files came from; per file when they differ; None when unrecorded."""
    distinct = set(revisions.values())
    if not distinct:
        return None
    return distinct.pop() if len(distinct) == 1 else revisions


# ---- Genomic Benchmarks: the package's folder layout or the parquet mirror ------------------------


def _gb_root(spec: TaskSpec, data_dir: Path) -> Path:
    for root in (data_dir / spec.name, data_dir / f"Genomic_Benchmarks_{spec.name}"):
        if root.is_dir():
            return root
    raise _missing(spec, data_dir, f"no folder {data_dir / spec.name}", wanted=spec.name)


def load_gb(spec: TaskSpec, data_dir: Path) -> TaskData:
    """A Genomic Benchmarks task in the package's folder layout or as its parquet mirror."""
    root = _gb_root(spec, data_dir)
    if all((root / split).is_dir() for split in SPLITS):
        return _gb_folders(spec, root)
    files = sorted(p for p in root.rglob("*.parquet") if _split_of(p) is not None)
    files = [p for p in files if HF_METADATA_DIR.parts[0] not in p.parts]
    if files:
        return _gb_parquet(spec, root, files)
    raise _missing(spec, data_dir, f"{root} holds neither train/ and test/ nor parquet files")


def _gb_folders(spec: TaskSpec, root: Path) -> TaskData:
    """`train/<class>/*.txt` and `test/<class>/*.txt`: one sequence per file, classes by folder."""
    splits = {s: _Examples() for s in SPLITS}
    files: dict[str, dict[str, Any]] = {}
    for split in SPLITS:
        for class_dir in sorted(p for p in (root / split).iterdir() if p.is_dir()):
            paths = sorted(class_dir.glob("*.txt"))
            for path in paths:
                seq = path.read_text(encoding="utf-8", errors="replace").strip()
                check_example(seq, class_dir.name, str(path))
                splits[split].sequences.append(seq)
                splits[split].names.append(class_dir.name)
            files[f"{split}/{class_dir.name}"] = {
                "count": len(paths),
                "sha256": files_sha256(paths),
            }
    train, test = _labelled_splits(spec.key, str(root), splits)
    if train.class_names != spec.classes:
        log.warning(
            "%s: classes %s in %s differ from the registry's %s",
            spec.key,
            "/".join(train.class_names),
            root,
            "/".join(spec.classes),
        )
    source = {"layout": "genomic-benchmarks", "root": str(root), "files": files}
    return TaskData(spec=spec, train=train, test=test, source=source)


def _gb_parquet(spec: TaskSpec, root: Path, files: list[Path]) -> TaskData:
    """The mirror's `data/{train,test}-*.parquet` (columns `seq`, integer `label`). Labels stay the
    stored integers: the mirror does not document which class folder each id stands for."""
    read = _ParquetFiles()
    for path in files:
        data = _read_parquet(path, [GB_SEQUENCE_COLUMN, LABEL_COLUMN])
        read.add(root, path, *_labelled_rows(path, GB_SEQUENCE_COLUMN, data, task=None))
    train, test = _labelled_splits(spec.key, str(root), read.splits)
    source = {
        "layout": "gb-parquet-mirror",
        "repo_id": gb_mirror(spec.name),
        "root": str(root),
        "revision": _one_revision(read.revisions),
        "labels": "integer ids as stored in the mirror",
        "files": read.checksums,
    }
    return TaskData(spec=spec, train=train, test=test, source=source)
