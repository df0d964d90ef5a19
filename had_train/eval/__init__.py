"""Stage three: fine-tune the student on labelled DNA tasks, score it, and draw its embeddings.

`evaluate(model_dir, EvalConfig(...), out_dir)` is the entry point; `had-train eval` calls it.
"""

from had_train.eval.finetune import EvalConfig, evaluate
from had_train.eval.metrics import METRICS, classification_metrics
from had_train.eval.report import format_table, plot_tsne
from had_train.eval.tasks import BUILTIN_TASKS, LabelledSet, TaskError, load_task

__all__ = [
    "BUILTIN_TASKS",
    "METRICS",
    "EvalConfig",
    "LabelledSet",
    "TaskError",
    "classification_metrics",
    "evaluate",
    "format_table",
    "load_task",
    "plot_tsne",
]
