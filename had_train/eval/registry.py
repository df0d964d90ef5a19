"""The benchmark task registry: every published task with its metric, classes, length, sizes and
the protocol its published baselines used, so `had-train eval --tasks ...` runs them as published.

Families (`TaskSpec.benchmark`):
- `nt`: the 18 original Nucleotide Transformer tasks (Dalla-Torre et al. 2023 preprint), scored
  as Caduceus (Schiff et al. 2024, Table 2) reports them: MCC for histone marks and enhancers,
  binary F1 for promoters and splice acceptors/donors, accuracy for `splice_sites_all`.
- `nt-revised`: the 18 tasks of the revised benchmark (Dalla-Torre et al., Nature Methods 2024),
  MCC everywhere.
- `gb`: the 8 Genomic Benchmarks tasks (Grešová et al. 2023), top-1 accuracy.
- `builtin`: the demo tasks that ship with the package (`splice`, UCI primate splice junctions;
  `oct4_mafk`, human Oct4 vs Mafk ChIP-seq peaks from the janggu package).
MCC is reported for every task beside the headline metric.

Where a number could not be checked against a primary source, the field is None (or the
comment says where the number comes from); nothing here is filled in from memory.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Literal

from had_train.eval.tasks import BUILTIN_TASKS, TaskError

Metric = Literal["mcc", "f1", "accuracy"]
BENCHMARKS: tuple[str, ...] = ("nt", "nt-revised", "gb", "builtin")
REPORTED_ALWAYS: Metric = "mcc"
"""Reported for every task beside its headline metric."""


@dataclass(frozen=True)
class Protocol:
    """How a family's published baselines were trained and scored.

    kind:
    - `holdout`: `seeds` runs; each draws a `val_frac` validation split from the official training
      set (seeded by the run), trains up to `max_epochs`, keeps the epoch that scores best on the
      validation split, and is scored once on the official test split.
    - `kfold`: `folds`-fold cross-validation, one run per fold.
    - `stratified`: no official split; the evaluation's own stratified split or folds.
    `early_stopping` is a patience in epochs; None means no early termination (all `max_epochs`
    are run and the best validation epoch is the one tested). None in `max_epochs` means the
    source does not say; the evaluation's own setting is used.
    """

    kind: Literal["holdout", "kfold", "stratified"]
    seeds: int
    val_frac: float | None = None
    folds: int | None = None
    max_epochs: int | None = None
    early_stopping: int | None = None
    source: str = ""

    def describe(self) -> str:
        """One short line for the task table."""
        if self.kind == "holdout":
            val = self.val_frac or 0.0
            text = f"{self.seeds} seeds x {1 - val:.0%}/{val:.0%} train/val, official test"
        elif self.kind == "kfold":
            text = f"{self.folds}-fold CV"
        else:
            text = "stratified split (no official test)"
        if self.max_epochs is not None:
            text += f", {self.max_epochs} epochs"
        return text


PROTOCOLS: dict[str, Protocol] = {
    # Caduceus slurm_scripts/run_nucleotide_transformer.sh: seeds 1..10, trainer.max_epochs=20;
    # src/dataloaders/genomics.py: a seeded random 0.9/0.1 train/validation split of the official
    # training set; the official test split is scored at the end. No patience is published.
    "nt": Protocol(
        kind="holdout",
        seeds=10,
        val_frac=0.1,
        max_epochs=20,
        source="Caduceus (arXiv 2403.03234) as run by its repository: 10 seeds, 20 epochs",
    ),
    # Caduceus slurm_scripts/run_genomics_benchmark.sh: seeds 1..5, trainer.max_epochs=10, the same
    # 0.9/0.1 split of the official training set.
    "gb": Protocol(
        kind="holdout",
        seeds=5,
        val_frac=0.1,
        max_epochs=10,
        source="Caduceus (arXiv 2403.03234) as run by its repository: 5 seeds, 10 epochs",
    ),
    # Nature Methods 2024, Fig. 2a: "mean MCC ± 2 × s.d. from the tenfold cross-validation
    # procedure (n = 10 for each point)". Not verified: which examples the folds are drawn from
    # (training set only, or training + test) and the number of epochs/steps. Our reading
    # (suite.make_replicates): ten folds of the official training set, fold k validates and the
    # official test split scores every fold, so no published test example is ever trained on.
    "nt-revised": Protocol(
        kind="kfold",
        seeds=1,
        folds=10,
        source="Dalla-Torre et al., Nature Methods 2024 (Fig. 2: tenfold cross-validation)",
    ),
    "builtin": Protocol(kind="stratified", seeds=1, source="had: no official split"),
}


@dataclass(frozen=True)
class HubDataset:
    """A Hugging Face dataset repository and the folder `hf download --local-dir` makes of it.
    `revision` is the pinned commit (a 7-character prefix: the full sha was not visible in the
    sources we could read); a folder whose download metadata names another commit is logged."""

    repo_id: str
    folder: str
    revision: str | None


NT_HUB: dict[str, HubDataset] = {
    # Hub "Files and versions" of main: HEAD 96d86d5 "Delete nucleotide_transformer_downstream_tasks.py",
    # after e8674d5 "Convert dataset to Parquet format with 'task' column" (each task folder holds
    # train.parquet / test.parquet beside the older .fna files).
    "nt": HubDataset(
        "InstaDeepAI/nucleotide_transformer_downstream_tasks",
        "nucleotide_transformer_downstream_tasks",
        "96d86d5",
    ),
    # main: HEAD 851f994 "Update README.md", after b9b9e41 "Add 'task' column to all Parquet files".
    "nt-revised": HubDataset(
        "InstaDeepAI/nucleotide_transformer_downstream_tasks_revised",
        "nucleotide_transformer_downstream_tasks_revised",
        "851f994",
    ),
}

GB_SOURCE = "https://github.com/ML-Bioinfo-CEITEC/genomic_benchmarks"
GB_MIRROR_PREFIX = "katarinagresova/Genomic_Benchmarks_"
"""Script-free parquet mirrors (data/train-*.parquet, data/test-*.parquet; columns seq, label).
Not pinned: we found no commit of each mirror's main we could vouch for."""


def gb_mirror(task: str) -> str:
    """The hub id of a Genomic Benchmarks task's parquet mirror."""
    return f"{GB_MIRROR_PREFIX}{task}"


@dataclass(frozen=True)
class TaskSpec:
    """One benchmark task as published.

    `classes` are the class names as they appear in the data, sorted (class ids are their
    positions). NT parquet files store integer labels, so NT classes are "0", "1"(, "2").
    `seq_len` is the published sequence length; for tasks whose lengths vary
    (`variable_length`) it is the published median. `n_train` / `n_test` are the official split
    sizes, None where we could not verify them.
    """

    name: str
    benchmark: str
    metric: Metric
    classes: tuple[str, ...]
    seq_len: int
    n_train: int | None
    n_test: int | None
    source: str
    description: str
    variable_length: bool = False
    pooling: str = "mean"
    """The head's pooling unless --pooling is given (the paper's mean, or a built-in's own)."""

    @property
    def key(self) -> str:
        """`benchmark/name`; a built-in task's key is its name."""
        return self.name if self.benchmark == "builtin" else f"{self.benchmark}/{self.name}"

    @property
    def protocol(self) -> Protocol:
        return PROTOCOLS[self.benchmark]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def metrics(self) -> tuple[Metric, ...]:
        """The headline metric first, then MCC (reported everywhere)."""
        return (self.metric,) if self.metric == REPORTED_ALWAYS else (self.metric, REPORTED_ALWAYS)


BINARY = ("0", "1")
TERNARY = ("0", "1", "2")

# ---- original NT (18) --------------------------------------------------------------------------
# Lengths, class counts, metrics and training sizes: Caduceus configs/dataset/nucleotide_transformer.yaml
# (train_len = the official training split), which agrees with HyenaDNA's copy. Test sizes: only
# where the dataset card states them (enhancers: 100 strong + 100 weak + 200 non-enhancers = 400;
# splice_sites_all: 30,000 in all, so 3,000 beside 27,000 for training); the others are not verified.
_NT_HISTONE_TRAIN = {
    "H3": 13468,
    "H3K14ac": 29743,
    "H3K36me3": 31392,
    "H3K4me1": 28509,
    "H3K4me2": 27614,
    "H3K4me3": 33119,
    "H3K79me3": 25953,
    "H3K9ac": 25003,
    "H4": 13140,
    "H4ac": 30685,
}
_NT_SOURCE = NT_HUB["nt"].repo_id


def _nt(name: str, metric: Metric, classes: tuple[str, ...], seq_len: int, n_train, n_test, what):
    return TaskSpec(name, "nt", metric, classes, seq_len, n_train, n_test, _NT_SOURCE, what)


NT_TASKS: tuple[TaskSpec, ...] = (
    *(
        _nt(mark, "mcc", BINARY, 500, n, None, f"{mark} histone mark occupancy")
        for mark, n in _NT_HISTONE_TRAIN.items()
    ),
    _nt("enhancers", "mcc", BINARY, 200, 14968, 400, "enhancer vs non-enhancer (human)"),
    _nt("enhancers_types", "mcc", TERNARY, 200, 14968, 400, "strong / weak / non-enhancer"),
    _nt("promoter_all", "f1", BINARY, 300, 53276, None, "promoter vs non-promoter"),
    # promoter_no_tata training size: 47,767 in Caduceus's config entry, 47,759 in its own comment
    # table and in HyenaDNA's config; left unset.
    _nt("promoter_no_tata", "f1", BINARY, 300, None, None, "non-TATA promoters"),
    _nt("promoter_tata", "f1", BINARY, 300, 5517, None, "TATA promoters"),
    _nt("splice_sites_acceptors", "f1", BINARY, 600, 19961, None, "splice acceptor vs not"),
    _nt("splice_sites_donors", "f1", BINARY, 600, 19775, None, "splice donor vs not"),
    _nt("splice_sites_all", "accuracy", TERNARY, 400, 27000, 3000, "donor / acceptor / neither"),
)

# ---- revised NT (18) ---------------------------------------------------------------------------
# Names, lengths and class counts: the revised dataset card (histone marks: 1 kb windows from ENCODE
# K562 peaks; enhancers: 400 bp) and task tables of repositories that load it (promoters 300,
# enhancers 400, splice sites 600, histone marks 1,000; enhancers_types and splice_sites_all have 3
# classes). Split sizes were not verified.
_REVISED_SOURCE = NT_HUB["nt-revised"].repo_id
_REVISED_HISTONE = (
    "H2AFZ",
    "H3K27ac",
    "H3K27me3",
    "H3K36me3",
    "H3K4me1",
    "H3K4me2",
    "H3K4me3",
    "H3K9ac",
    "H3K9me3",
    "H4K20me1",
)


def _rev(name: str, classes: tuple[str, ...], seq_len: int, what: str) -> TaskSpec:
    return TaskSpec(name, "nt-revised", "mcc", classes, seq_len, None, None, _REVISED_SOURCE, what)


NT_REVISED_TASKS: tuple[TaskSpec, ...] = (
    *(_rev(m, BINARY, 1000, f"{m} ChIP-seq peak vs not (ENCODE, K562)") for m in _REVISED_HISTONE),
    _rev("enhancers", BINARY, 400, "enhancer vs not (ENCODE SCREEN)"),
    _rev("enhancers_types", TERNARY, 400, "tissue-specific / tissue-invariant / non-enhancer"),
    _rev("promoter_all", BINARY, 300, "promoter vs non-promoter"),
    _rev("promoter_no_tata", BINARY, 300, "non-TATA promoters"),
    _rev("promoter_tata", BINARY, 300, "TATA promoters"),
    _rev("splice_sites_acceptors", BINARY, 600, "splice acceptor vs not (human)"),
    _rev("splice_sites_donors", BINARY, 600, "splice donor vs not (human)"),
    _rev("splice_sites_all", TERNARY, 600, "donor / acceptor / neither (human)"),
)

# ---- Genomic Benchmarks (8) --------------------------------------------------------------------
# Class names: each dataset's metadata.yaml in the genomic_benchmarks repository (folder names of
# the downloaded layout); human_nontata_promoters also from the package README's `info` output.
# Lengths: the median published per task (Caduceus's table of the suite: dummy_mouse_enhancers_ensembl
# 2381 (s.d. 984.4), human_enhancers_ensembl 269 (122.6), human_ensembl_regulatory 401 (184.3),
# human_ocr_ensembl 315 (108.1); the others have one length). Split sizes: the parquet mirrors'
# dataset cards (num_examples), the package README (human_nontata_promoters) or the mirror viewer;
# None where only totals are known.
_GB: tuple[tuple[str, tuple[str, ...], int, int | None, int | None, bool, str], ...] = (
    # 1,210 in all (Caduceus's table); 968 training examples (mirror card) -> 242 for testing.
    (
        "dummy_mouse_enhancers_ensembl",
        ("negative", "positive"),
        2381,
        968,
        242,
        True,
        "mouse enhancers (Ensembl) vs random genomic regions",
    ),
    # Mirror viewer: 75k / 25k of 100,000.
    (
        "demo_coding_vs_intergenomic_seqs",
        ("coding_seqs", "intergenomic_seqs"),
        200,
        75000,
        25000,
        False,
        "coding (transcript) vs intergenomic sequences (human)",
    ),
    ("demo_human_or_worm", ("human", "worm"), 200, 75000, 25000, False, "human vs C. elegans"),
    # 27,791 in all; the viewer shows about 20.8k / 6.95k: exact split sizes not verified.
    (
        "human_enhancers_cohn",
        ("negative", "positive"),
        500,
        None,
        None,
        False,
        "human enhancers (Cohn et al.) vs negatives",
    ),
    # 154,842 in all; split sizes not verified. Class names not verified either (no metadata.yaml
    # of this dataset was readable); negative/positive as in the suite's other binary tasks.
    (
        "human_enhancers_ensembl",
        ("negative", "positive"),
        269,
        None,
        None,
        True,
        "human enhancers (Ensembl) vs random genomic regions",
    ),
    (
        "human_ensembl_regulatory",
        ("enhancer", "ocr", "promoter"),
        401,
        231348,
        57713,
        True,
        "Ensembl regulatory build: enhancer / open chromatin / promoter",
    ),
    (
        "human_nontata_promoters",
        ("negative", "positive"),
        251,
        27097,
        9034,
        False,
        "human non-TATA promoters vs negatives",
    ),
    # 174,756 in all; split sizes not verified.
    (
        "human_ocr_ensembl",
        ("negative", "positive"),
        315,
        None,
        None,
        True,
        "open chromatin regions (Ensembl) vs random genomic regions",
    ),
)

GB_TASKS: tuple[TaskSpec, ...] = tuple(
    TaskSpec(
        name=name,
        benchmark="gb",
        metric="accuracy",
        classes=classes,
        seq_len=seq_len,
        n_train=n_train,
        n_test=n_test,
        source=f"{GB_SOURCE} (mirror: {gb_mirror(name)})",
        description=what,
        variable_length=variable,
    )
    for name, classes, seq_len, n_train, n_test, variable, what in _GB
)

BUILTIN_SPECS: tuple[TaskSpec, ...] = (
    # No official split: all 3,190 rows are given as training data; the evaluation splits them.
    TaskSpec(
        name="splice",
        benchmark="builtin",
        metric="accuracy",
        classes=("EI", "IE", "N"),
        seq_len=60,
        n_train=3190,
        n_test=None,
        source="UCI Molecular Biology (Splice-junction Gene Sequences), CC BY 4.0",
        description=BUILTIN_TASKS["splice"].description,
        pooling=BUILTIN_TASKS["splice"].pooling,
    ),
    # The source ships a 7,797 / 200 train/test split (the CSV's `split` column keeps it, and
    # `--tasks had_train/eval/assets/janggu_oct4_mafk.csv` uses it); the built-in task pools all
    # 7,997 rows like `splice`, so the evaluation draws its own stratified split (a 200-row
    # official test set is too small to compare models on). Balanced classes: accuracy.
    TaskSpec(
        name="oct4_mafk",
        benchmark="builtin",
        metric="accuracy",
        classes=("Mafk", "Oct4"),
        seq_len=200,
        n_train=7997,
        n_test=None,
        source="janggu 0.10.2 (PyPI) resources/sample*.fa: Oct4 vs Mafk ChIP-seq peaks, GPL-3.0",
        description=BUILTIN_TASKS["oct4_mafk"].description,
        pooling=BUILTIN_TASKS["oct4_mafk"].pooling,
    ),
)

TASKS: dict[str, TaskSpec] = {
    spec.key: spec for spec in (*NT_TASKS, *NT_REVISED_TASKS, *GB_TASKS, *BUILTIN_SPECS)
}
FAMILY_SELECTORS: tuple[str, ...] = ("all", "nt", "nt-revised", "gb")
"""Selectors that name a whole family; "all" is every benchmark task (the built-in demo aside)."""


def _family(selector: str) -> list[TaskSpec]:
    if selector == "all":
        return [s for s in TASKS.values() if s.benchmark != "builtin"]
    return [s for s in TASKS.values() if s.benchmark == selector]


def resolve_task(name: str) -> TaskSpec:
    """One task by key (`nt/H3`) or by bare name when only one family has it."""
    item = name.strip()
    if item in TASKS:
        return TASKS[item]
    matches = [s for s in TASKS.values() if s.name == item]
    if not matches:  # forgive case: "h3k4me3" -> H3K4me3
        folded = item.casefold()
        matches = [s for s in TASKS.values() if folded in (s.name.casefold(), s.key.casefold())]
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        keys = ", ".join(s.key for s in matches)
        raise TaskError(f"task {item!r} is in several benchmarks ({keys}); give one of these keys")
    candidates = sorted({*TASKS, *(s.name for s in TASKS.values()), *FAMILY_SELECTORS})
    close = difflib.get_close_matches(item, candidates, n=4, cutoff=0.6)
    hint = f"; closest: {', '.join(close)}" if close else ""
    raise TaskError(
        f"unknown task {item!r}{hint}; `had-train eval --list-tasks` lists them "
        f"(selectors: {', '.join(FAMILY_SELECTORS)})"
    )


def select_tasks(selector: str) -> list[TaskSpec]:
    """Tasks named by "all", a family ("nt", "nt-revised", "gb"), or a comma-separated list of
    families, keys and bare names (a bare name must be in one family only); in order, once each."""
    items = [part.strip() for part in selector.split(",")]
    if not any(items):
        raise TaskError(
            f"no task given in {selector!r}; use {', '.join(FAMILY_SELECTORS)} or task names"
        )
    chosen: dict[str, TaskSpec] = {}
    for item in items:
        if not item:
            continue
        specs = _family(item) if item in FAMILY_SELECTORS else [resolve_task(item)]
        for spec in specs:
            chosen.setdefault(spec.key, spec)
    return list(chosen.values())


def _count(n: int | None) -> str:
    return "?" if n is None else f"{n:,}"


def format_task_list() -> str:
    """The registry as an aligned text table (for `had-train eval --list-tasks`)."""
    header = ("task", "metric", "classes", "length", "train/test", "protocol")
    rows = [header]
    for spec in TASKS.values():
        metric = spec.metric if spec.metric == "mcc" else f"{spec.metric} (+mcc)"
        length = f"~{spec.seq_len}" if spec.variable_length else str(spec.seq_len)
        official_test = spec.protocol.kind != "stratified"
        sizes = f"{_count(spec.n_train)}/{_count(spec.n_test) if official_test else '-'}"
        rows.append(
            (spec.key, metric, "/".join(spec.classes), length, sizes, spec.protocol.describe())
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    counts = {b: sum(s.benchmark == b for s in TASKS.values()) for b in BENCHMARKS}
    lines += [
        "",
        f"{counts['nt']} nt, {counts['nt-revised']} nt-revised, {counts['gb']} gb, "
        f"{counts['builtin']} built-in. ~N: median of varying lengths; ?: not verified; "
        "-: no official test split.",
        "Select with --tasks all | nt | nt-revised | gb | KEY,NAME,... "
        "(a bare name must be in one benchmark only).",
    ]
    return "\n".join(lines)
