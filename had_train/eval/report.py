"""Human-readable views of an evaluation: a plain text table and a t-SNE figure."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from had_train.eval.metrics import METRIC_LABELS, METRICS

MAX_TSNE_POINTS = 5000
SINGLE_THREAD_TSNE_POINTS = 2000


def random_init_label(preset: str, mixers: str | None) -> str:
    """How a randomly initialised model is named in logs and tables."""
    return f"random init ({preset} preset{f', mixers {mixers}' if mixers else ''})"


def format_mean_std(mean: float, std: float | None) -> str:
    """`0.1234 ± 0.0056`, or the mean alone when there is no spread (one value)."""
    return f"{mean:.4f}" if std is None else f"{mean:.4f} ± {std:.4f}"


def _mean_std(summary: dict[str, float | None]) -> str:
    return format_mean_std(summary["mean"], summary["std"])


def format_table(results: dict[str, Any]) -> str:
    """Accuracy, MCC and macro-F1 per fold and as mean ± std, as an aligned text table.

    Takes the dictionary returned by `evaluate` (or read back from results.json).
    """
    folds = results["folds"]
    multi = len(folds) > 1
    header = ["metric"] + (
        [f"fold {f['fold'] + 1}" for f in folds] + ["mean ± std"] if multi else ["value"]
    )
    rows = [header]
    for name in (n for n in METRICS if n in results["summary"]):
        row = [METRIC_LABELS[name]]
        if multi:
            row += [f"{f[name]:.4f}" for f in folds]
        row.append(_mean_std(results["summary"][name]))
        rows.append(row)

    lines = aligned_table(rows)

    n_train = "/".join(str(n) for n in sorted({f["n_train"] for f in folds}))
    n_test = "/".join(str(n) for n in sorted({f["n_test"] for f in folds}))
    config = results["config"]
    init = results["checkpoint"] or random_init_label(config["preset"], config.get("mixers"))
    intro = [
        f"task {results['task']}: {len(results['class_names'])} classes "
        f"({', '.join(results['class_names'])}), {results['split']}, "
        f"n_train {n_train}, n_test {n_test}",
        f"model: {init}",
    ]
    collapsed = [str(f["fold"] + 1) for f in folds if f.get("collapsed")]
    notes = (
        [
            f"note: predictions collapsed to a single class in fold(s) {', '.join(collapsed)} "
            "(MCC 0, accuracy = that class's share)"
        ]
        if collapsed
        else []
    )
    return "\n".join(intro + [""] + lines + notes + baseline_lines(results))


def baseline_lines(results: dict[str, Any]) -> list[str]:
    """The baselines scored on the same split(s), one row each (mean ± std over folds)."""
    from had_train.eval.finetune import BASELINE_LABELS

    found = results.get("baselines") or {}
    if not found:
        return []
    names = [n for n in METRICS if n in next(iter(found.values()))["summary"]]
    rows = [["baseline (same splits)"] + [METRIC_LABELS[n] for n in names]]
    for key, entry in found.items():
        rows.append(
            [BASELINE_LABELS.get(key, key)] + [_mean_std(entry["summary"][n]) for n in names]
        )
    return [""] + aligned_table(rows)


def aligned_table(rows: list[list[str]]) -> list[str]:
    """Text table lines: the first row a header underlined with dashes, the first column
    left-aligned and the others right-aligned (numbers), columns two spaces apart."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(
            cell.ljust(w) if i == 0 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(r, widths, strict=True))
        ).rstrip()
        for r in rows
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return lines


def plot_tsne(
    embeddings: np.ndarray,
    labels: np.ndarray,
    class_names: Sequence[str],
    path: Path,
    seed: int,
    title: str | None = None,
    max_points: int = MAX_TSNE_POINTS,
) -> Path:
    """Scatter a 2-D t-SNE of `embeddings` coloured by class and save it as a PNG."""
    return plot_tsne_panels(
        [(title, embeddings)], labels, class_names, path, seed, max_points=max_points
    )


def _tsne_points(embeddings: np.ndarray, seed: int) -> np.ndarray:
    from sklearn.manifold import TSNE

    n = embeddings.shape[0]
    tsne = TSNE(n_components=2, perplexity=min(30.0, (n - 1) / 3), init="pca", random_state=seed)
    # On small sets OpenMP's synchronisation costs more than its threads save, badly so on a
    # busy machine (2 shared cores: 638 points 43 s -> 11 s, 40 points 5.5 s -> 0.7 s).
    threads = 1 if n <= SINGLE_THREAD_TSNE_POINTS else None
    with threadpool_limits(limits=threads):
        return tsne.fit_transform(embeddings)


def plot_tsne_panels(
    panels: Sequence[tuple[str | None, np.ndarray]],
    labels: np.ndarray,
    class_names: Sequence[str],
    path: Path,
    seed: int,
    suptitle: str | None = None,
    max_points: int = MAX_TSNE_POINTS,
) -> Path:
    """One PNG with a t-SNE scatter per (title, embeddings) panel, all of the same points
    coloured by class (e.g. the test set before and after fine-tuning, side by side).

    The perplexity is capped for small sets (t-SNE needs it below the number of points), so the
    figure is drawn for a test set of any size >= 4. Sets above `max_points` are subsampled
    (a pure function of `seed`, the same points in every panel): more points only blur the
    scatter and cost minutes.
    """
    # A bare Figure renders PNGs through the Agg canvas without pyplot, so drawing never
    # touches (or needs) the user's display backend or global pyplot state.
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    labels = np.asarray(labels)
    arrays = [np.asarray(emb, dtype=np.float32) for _, emb in panels]
    for emb in arrays:
        if emb.ndim != 2 or emb.shape[0] != labels.shape[0]:
            raise ValueError(f"embeddings {emb.shape} and labels {labels.shape} do not match")
    total = labels.shape[0]
    if total < 4:
        raise ValueError(f"t-SNE needs at least 4 points, got {total}")
    if total > max_points:
        keep = np.sort(np.random.default_rng(seed).choice(total, max_points, replace=False))
        arrays, labels = [emb[keep] for emb in arrays], labels[keep]
    n = labels.shape[0]

    fig = Figure(figsize=(6.4 * len(arrays), 5.6), dpi=120)
    axes = np.atleast_1d(fig.subplots(1, len(arrays)))
    cmap = colormaps["tab10" if len(class_names) <= 10 else "tab20"]
    shown = f"{n} of {total}" if n < total else f"{n}"
    for ax, (title, _), emb in zip(axes, panels, arrays, strict=True):
        points = _tsne_points(emb, seed)
        for cls, name in enumerate(class_names):
            sel = labels == cls
            ax.scatter(
                points[sel, 0],
                points[sel, 1],
                s=8,
                alpha=0.7,
                color=cmap(cls % cmap.N),
                label=f"{name} ({int(sel.sum())})",
            )
        ax.legend(title="label", markerscale=2, loc="best", fontsize=8)
        ax.set_title(title or f"t-SNE of {shown} embeddings", fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    if suptitle:
        fig.suptitle(suptitle, fontsize=11)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return path
