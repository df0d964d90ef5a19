"""Task metrics, in one place: accuracy, MCC, F1 and macro-F1 (what the benchmarks report).

`f1` is the F1 of the positive class (class id 1, the sorted name "1" of NT's 0/1 labels) for
binary tasks, as the NT Benchmark's promoter and splice-site tasks report it; for more than two
classes it equals macro-F1.

Every report and results file takes its metric names from `METRICS`, so a fourth metric is
added here and nowhere else.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

METRICS: tuple[str, ...] = ("accuracy", "mcc", "f1", "macro_f1")
METRIC_LABELS: dict[str, str] = {
    "accuracy": "accuracy",
    "mcc": "MCC",
    "f1": "F1",
    "macro_f1": "macro-F1",
}


def classification_metrics(
    y_true: np.ndarray, y_pred: np.ndarray, num_classes: int
) -> dict[str, float | int | bool]:
    """Accuracy, MCC and macro-F1, plus how many classes were predicted.

    Macro-F1 averages over all `num_classes` classes, so a class never predicted counts as
    F1 = 0 rather than being dropped. `collapsed` is True when every prediction is the same
    class: MCC is then 0 and accuracy is just that class's share, which a reader should know.
    """
    y_true = np.asarray(y_true)
    y_pred = np.asarray(y_pred)
    if y_true.shape != y_pred.shape or y_true.ndim != 1 or y_true.size == 0:
        raise ValueError(
            f"need two equal, non-empty 1-D arrays; got {y_true.shape} and {y_pred.shape}"
        )
    n_pred_classes = int(np.unique(y_pred).size)
    with warnings.catch_warnings():
        # sklearn warns on a constant prediction; `collapsed` reports it instead.
        warnings.simplefilter("ignore", RuntimeWarning)
        mcc = float(matthews_corrcoef(y_true, y_pred))
    macro_f1 = float(
        f1_score(y_true, y_pred, labels=np.arange(num_classes), average="macro", zero_division=0)
    )
    if num_classes == 2:
        f1 = float(f1_score(y_true, y_pred, labels=[0, 1], pos_label=1, zero_division=0))
    else:
        f1 = macro_f1
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "mcc": mcc,
        "f1": f1,
        "macro_f1": macro_f1,
        "n_pred_classes": n_pred_classes,
        "collapsed": n_pred_classes == 1,
    }


def summarize(per_fold: list[dict[str, float | int | bool]]) -> dict[str, dict[str, float | None]]:
    """Mean and sample standard deviation of each metric over folds (std None for one fold).

    Metrics missing from a fold record (results written before the metric existed) are left out.
    """
    summary: dict[str, dict[str, float | None]] = {}
    for name in METRICS:
        if not all(name in fold for fold in per_fold):
            continue
        values = np.array([float(fold[name]) for fold in per_fold])
        std = float(values.std(ddof=1)) if values.size > 1 else None
        summary[name] = {"mean": float(values.mean()), "std": std}
    return summary
