"""Views of a benchmark run: our numbers beside the published ones, as tables and bar charts.

Rows are tasks, grouped by benchmark family; columns are our models (the student and its
baselines, mean ± std over the protocol's replicates of the task's headline metric) and then the
published models. Each family ends with the mean over its tasks, for every column that has a
number on all of them, and a parameter-count row. The same rows are written as CSV (long format:
one row per task and model) and JSON.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np

from had_train.eval import published
from had_train.eval.metrics import METRIC_LABELS
from had_train.eval.report import format_mean_std

MODEL_LABELS = {
    "student": "student (ours)",
    "random-init": "random init",
    "teacher": "teacher probe",
    "teacher-ft": "teacher fine-tuned",
    "kmer": "k-mer LR",
    "onehot": "one-hot LR",
}
FAMILY_TITLES = {
    "nt": "Nucleotide Transformer benchmark (original 18 tasks)",
    "nt-revised": "Nucleotide Transformer benchmark, revised",
    "gb": "Genomic Benchmarks",
    "builtin": "Built-in tasks",
    "csv": "User tasks (CSV)",
}
TABLE_MD, TABLE_CSV, TABLE_JSON = "results.md", "results.csv", "results_table.json"


def _ours(task: dict[str, Any], model: str) -> tuple[float, float | None, int] | None:
    entry = task["models"].get(model)
    if not entry:
        return None
    summary = entry["summary"].get(task["metric"])
    if summary is None:
        return None
    return summary["mean"], summary["std"], len(entry["replicates"])


def table_rows(record: dict[str, Any]) -> list[dict[str, Any]]:
    """Long format: one row per (task, model), ours and published, with the headline metric."""
    rows = []
    for key, task in record["tasks"].items():
        name = key.split("/", 1)[-1]
        for model in task["models"]:
            ours = _ours(task, model)
            if ours is None:
                continue
            mean, std, n = ours
            mcc = task["models"][model]["summary"].get("mcc", {})
            rows.append(
                {
                    "family": task["family"],
                    "task": key,
                    "metric": task["metric"],
                    "model": model_label(record, model),
                    "kind": "ours",
                    "mean": mean,
                    "std": std,
                    "replicates": n,
                    "mcc_mean": mcc.get("mean"),
                    "mcc_std": mcc.get("std"),
                    "source": "this run",
                }
            )
        for score in published.published_scores(task["family"], name):
            rows.append(
                {
                    "family": task["family"],
                    "task": key,
                    "metric": score.metric,
                    "model": score.model,
                    "kind": "published",
                    "mean": score.value,
                    "std": None,
                    "replicates": None,
                    "mcc_mean": None,
                    "mcc_std": None,
                    "source": score.source,
                }
            )
    return rows


def _cell(mean: float | None, std: float | None = None) -> str:
    return "–" if mean is None else format_mean_std(mean, std)


def model_label(record: dict[str, Any], model: str) -> str:
    """A column's name; the student of a run without a checkpoint is itself the random init."""
    if model == "student" and not record.get("checkpoint"):
        return "student (random init)"
    return MODEL_LABELS.get(model, model)


def family_table(record: dict[str, Any], family: str) -> list[str]:
    """Markdown lines of one family's table."""
    tasks = {k: t for k, t in record["tasks"].items() if t["family"] == family}
    ours_models = list(dict.fromkeys(m for t in tasks.values() for m in t["models"]))
    pub_models = published.published_models(family)
    header = ["task", "metric"] + [model_label(record, m) for m in ours_models] + pub_models
    lines = [
        f"### {FAMILY_TITLES.get(family, family)}",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join(["---"] * 2 + ["---:"] * (len(header) - 2)) + "|",
    ]
    columns: dict[str, list[float | None]] = {m: [] for m in ours_models + pub_models}
    for key, task in tasks.items():
        name = key.split("/", 1)[-1]
        cells = [name, METRIC_LABELS.get(task["metric"], task["metric"])]
        for model in ours_models:
            ours = _ours(task, model)
            cells.append(_cell(ours[0], ours[1]) if ours else "–")
            columns[model].append(ours[0] if ours else None)
        pub = {s.model: s.value for s in published.published_scores(family, name)}
        for model in pub_models:
            cells.append(_cell(pub.get(model)))
            columns[model].append(pub.get(model))
        lines.append("| " + " | ".join(cells) + " |")
    if len(tasks) > 1:
        means = []
        for model in ours_models + pub_models:
            values = columns[model]
            complete = values and all(v is not None for v in values)
            means.append(f"**{np.mean(values):.4f}**" if complete else "–")
        lines.append(f"| **mean of {len(tasks)}** | | " + " | ".join(means) + " |")
    params = []
    for model in ours_models:
        sizes = {
            r.get("n_parameters")
            for t in tasks.values()
            for r in t["models"].get(model, {}).get("replicates", [])
        } - {None}
        params.append(f"{max(sizes):,}" if sizes else "–")
    params += [published.PARAMETERS.get(m, ("n/r", ""))[0] for m in pub_models]
    lines.append("| parameters | | " + " | ".join(params) + " |")
    notes = []
    for mean in published.published_means(family):
        notes.append(f"{mean.model} publishes only its mean: {mean.value:.3f} ({mean.source}).")
    srcs = published.sources(family)
    if srcs:
        notes.append("Published numbers: " + "; ".join(srcs) + ".")
    if pub_models:
        notes.append(
            "n/r: parameter count not recorded here (papers report several sizes per family)."
        )
    return lines + ([""] + notes if notes else [])


def markdown(record: dict[str, Any]) -> str:
    """The whole run as markdown: one table per family, then how it was run."""
    families = list(dict.fromkeys(t["family"] for t in record["tasks"].values()))
    parts = [
        "# Benchmark results",
        "",
        f"checkpoint: `{record['checkpoint'] or 'none (random init)'}`; mode "
        f"{record['config']['mode']}; device {record['device']}. Ours: mean ± std over the "
        "protocol's replicates of the task's headline metric, every model on the same splits.",
        "",
    ]
    for family in families:
        parts += family_table(record, family) + [""]
    if len(families) > 1:
        parts += overall_table(record) + [""]
    return "\n".join(parts)


def overall_table(record: dict[str, Any]) -> list[str]:
    """Each of our models' mean headline metric over every task it ran (all families)."""
    lines = [
        "### Overall",
        "",
        "| model | tasks | mean of the headline metrics |",
        "|---|---:|---:|",
    ]
    models = list(dict.fromkeys(m for t in record["tasks"].values() for m in t["models"]))
    for model in models:
        values = [o[0] for t in record["tasks"].values() if (o := _ours(t, model)) is not None]
        lines.append(f"| {model_label(record, model)} | {len(values)} | {np.mean(values):.4f} |")
    return lines


def bar_chart(record: dict[str, Any], family: str, path: Path) -> Path:
    """Grouped bars per task: our models (with std) beside the published ones."""
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    tasks = {k: t for k, t in record["tasks"].items() if t["family"] == family}
    ours_models = list(dict.fromkeys(m for t in tasks.values() for m in t["models"]))
    pub_models = published.published_models(family)
    models = [(m, "ours") for m in ours_models] + [(m, "pub") for m in pub_models]
    width = 0.8 / max(1, len(models))
    fig = Figure(figsize=(max(6.0, 0.9 * len(tasks) * max(1, len(models)) * 0.35 + 3), 4.8))
    ax = fig.subplots()
    cmap = colormaps["tab20"]
    x = np.arange(len(tasks))
    for j, (model, kind) in enumerate(models):
        means, stds = [], []
        for key, task in tasks.items():
            if kind == "ours":
                ours = _ours(task, model)
                means.append(ours[0] if ours else np.nan)
                stds.append((ours[1] or 0.0) if ours else 0.0)
            else:
                pub = {
                    s.model: s.value
                    for s in published.published_scores(family, key.split("/", 1)[-1])
                }
                means.append(pub.get(model, np.nan))
                stds.append(0.0)
        label = model_label(record, model) if kind == "ours" else f"{model} (published)"
        ax.bar(
            x + (j - (len(models) - 1) / 2) * width,
            means,
            width,
            yerr=stds if kind == "ours" else None,
            label=label,
            color=cmap(j % cmap.N),
            hatch="" if kind == "ours" else "//",
            edgecolor="white" if kind == "ours" else "grey",
        )
    ax.set_xticks(x, [k.split("/", 1)[-1] for k in tasks], rotation=45, ha="right", fontsize=8)
    ax.set_ylabel("headline metric (see table)")
    ax.set_title(FAMILY_TITLES.get(family, family), fontsize=10)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return path


def write_reports(record: dict[str, Any], out_dir: Path) -> list[Path]:
    """results.md, results.csv, results_table.json and one bar chart per family."""
    out_dir = Path(out_dir)
    rows = table_rows(record)
    written = [out_dir / TABLE_MD, out_dir / TABLE_CSV, out_dir / TABLE_JSON]
    written[0].write_text(markdown(record) + "\n")
    with written[1].open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]) if rows else ["task"])
        writer.writeheader()
        writer.writerows(rows)
    written[2].write_text(json.dumps(rows, indent=2) + "\n")
    for family in dict.fromkeys(t["family"] for t in record["tasks"].values()):
        written.append(bar_chart(record, family, out_dir / f"bars-{family}.png"))
    return written
