"""The non-deep baselines of the built-in splice task, 5-fold: what a fine-tuned student must reach.

    .venv/bin/python recipes/splice_baselines.py          # ~1 min on 2 CPU cores

Prints, per model, mean ± std accuracy and MCC over the 5 stratified folds (seed 0; the folds
`had-train eval --task splice --folds 5` uses), for positional one-hot and k-mer logistic
regressions at several inverse regularisation strengths C, and with C chosen by 3-fold
cross-validation inside each training part (`C None`, the positional one-hot's default in
`had_train.eval.baselines`; the k-mer one uses C = 1).
"""

from __future__ import annotations

import numpy as np
from threadpoolctl import threadpool_limits

from had_train.eval.baselines import kmer_logreg, positional_onehot_logreg
from had_train.eval.finetune import EvalConfig, make_splits
from had_train.eval.metrics import classification_metrics, summarize
from had_train.eval.tasks import load_task

CS = (0.03, 0.1, 0.3, 1.0, None)  # None: chosen by inner 3-fold CV (the library default)


def main() -> None:
    data = load_task("splice")
    splits = make_splits(data.labels, EvalConfig(folds=5, seed=0))
    seqs = data.sequences
    print(f"splice: {len(data)} sequences, 5 stratified folds (seed 0)")
    print(f"{'model':<32} {'C':>5}  {'accuracy':>17}  {'MCC':>17}")
    for name, fit in (
        ("positional one-hot LR", positional_onehot_logreg),
        ("k-mer (3-6) LR", kmer_logreg),
    ):
        for c in CS:
            folds = []
            for train, test in splits:
                with threadpool_limits(limits=1):
                    preds = fit(
                        [seqs[i] for i in train], data.labels[train], [seqs[i] for i in test],
                        seed=0, C=c,
                    )  # fmt: skip
                folds.append(classification_metrics(data.labels[test], preds, data.num_classes))
            s = summarize(folds)
            acc, mcc = s["accuracy"], s["mcc"]
            print(
                f"{name:<32} {c or 'CV':>5}  {acc['mean']:.4f} ± {acc['std']:.4f}  "
                f"{mcc['mean']:.4f} ± {mcc['std']:.4f}"
            )
    majority = np.bincount(data.labels).max() / len(data)
    print(f"{'majority class':<32} {'':>5}  {majority:.4f}")


if __name__ == "__main__":
    main()
