"""Published per-task numbers to print beside ours, with their sources.

`assets/published_results.csv` is a copy of the project's table of published results (one row per
benchmark, task, metric and model, each with the paper and table it comes from). The benchmark
names there (`nucleotide_transformer`, `genomic_benchmarks`) map onto the registry's families
(`nt`, `gb`); the published NT numbers are for the original 18 tasks (Caduceus Table 2), so the
revised benchmark has none.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path

PUBLISHED_FILE = "published_results.csv"
BENCHMARK_FAMILY = {"nucleotide_transformer": "nt", "genomic_benchmarks": "gb"}
MEAN_ROW = "MEAN_OF_8"
"""A row that holds a benchmark's mean over its tasks (HAD publishes only its GB mean)."""

PARAMETERS: dict[str, tuple[str, str]] = {
    "NTv2-500M": ("≈500M", "model name; 496,246,236 counted by had_cache.ntv2 from its config"),
    "DNABERT-2": ("117M", "DNABERT-2 (Zhou et al., ICLR 2024)"),
    "HAD": ("≈1.1M", "HAD (arXiv 2505.20836)"),
}
"""Parameter counts we could check, with where from; other models' sizes are not recorded here
(the papers report several sizes per model family, and the copies we have do not say which)."""


@dataclass(frozen=True)
class PublishedScore:
    model: str
    value: float
    metric: str
    source: str


def published_path() -> Path:
    return Path(str(resources.files("had_train.eval").joinpath("assets", PUBLISHED_FILE)))


@cache
def _rows() -> tuple[dict[str, str], ...]:
    with published_path().open(newline="") as handle:
        return tuple(csv.DictReader(handle))


def published_scores(family: str, task: str) -> list[PublishedScore]:
    """Published numbers for one task of a registry family (`nt`, `gb`), in file order."""
    return [
        PublishedScore(row["model"], float(row["value"]), row["metric"], row["source"])
        for row in _rows()
        if BENCHMARK_FAMILY.get(row["benchmark"]) == family and row["task"] == task
    ]


def published_means(family: str) -> list[PublishedScore]:
    """Benchmark means that are published only as a mean (HAD's Genomic Benchmarks average)."""
    return published_scores(family, MEAN_ROW)


def published_models(family: str) -> list[str]:
    """Models with per-task numbers for `family`, in the order the file lists them."""
    seen: dict[str, None] = {}
    for row in _rows():
        if BENCHMARK_FAMILY.get(row["benchmark"]) == family and row["task"] != MEAN_ROW:
            seen.setdefault(row["model"], None)
    return list(seen)


def sources(family: str) -> list[str]:
    """The distinct sources of a family's published numbers (for the table's footnote)."""
    return sorted(
        {row["source"] for row in _rows() if BENCHMARK_FAMILY.get(row["benchmark"]) == family}
    )
