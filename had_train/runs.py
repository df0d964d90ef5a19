"""Run folders: where a command writes when `--out` is not given, and which run it reads when
`--checkpoint` is not given. The one home of these rules, so `pretrain`, `eval`, `ablate` and
`export` agree on them.

    had-train pretrain --cache hg38.had.zarr   -> runs/hg38/
    had-train pretrain --online-teacher T --fasta hg38.fa.gz -> runs/online-hg38/
    had-train eval                             -> the newest run under ./runs -> runs/hg38/eval-splice/
    had-train eval --checkpoint none           -> runs/baseline/eval-splice/
    had-train eval --tasks nt                  -> runs/hg38/bench-nt/
    had-train ablate --cache hg38.had.zarr     -> runs/ablate-hg38/
"""

from __future__ import annotations

from pathlib import Path

from had_train import checkpoint

RUNS_DIR = Path("runs")
NO_CHECKPOINT = "none"
"""`--checkpoint none`: no pretraining, a randomly initialised encoder (the baseline)."""
BASELINE_DIR = RUNS_DIR / "baseline"


def default_run_dir(cache: Path) -> Path:
    """store.had.zarr -> runs/store"""
    return RUNS_DIR / Path(cache).name.removesuffix(".zarr").removesuffix(".had")


def default_online_run_dir(fasta: str | Path) -> Path:
    """--online-teacher with hg38.fa.gz -> runs/online-hg38 (`demo` -> runs/online-demo)"""
    stem = Path(fasta).name
    for suffix in (".gz", ".bgz", ".fa", ".fasta", ".fna"):
        stem = stem.removesuffix(suffix)
    return RUNS_DIR / f"online-{stem}"


def default_ablation_dir(cache: Path) -> Path:
    """store.had.zarr -> runs/ablate-store"""
    return RUNS_DIR / f"ablate-{default_run_dir(cache).name}"


def latest_run(runs: Path = RUNS_DIR) -> Path:
    """The run under ./runs whose newest complete checkpoint was written last."""
    candidates = []
    if runs.is_dir():
        for run in runs.iterdir():
            latest = checkpoint.latest_checkpoint(run)
            if latest is not None:
                candidates.append(((latest / checkpoint.MARKER).stat().st_mtime, run))
    if not candidates:
        raise checkpoint.CheckpointError(
            f"no pretraining run with a checkpoint under ./{runs}; pass --checkpoint RUN_DIR "
            f"(or --checkpoint {NO_CHECKPOINT} for a no-pretraining baseline)"
        )
    return max(candidates)[1]


def checkpoint_option(value: str | None) -> Path | None:
    """`--checkpoint`: unset -> the latest run under ./runs; `none` -> None (random init)."""
    if value is None:
        return latest_run()
    if value.lower() == NO_CHECKPOINT:
        return None
    return Path(value)


def task_label(task: str) -> str:
    """A task's name in folder names: the built-in name, or a CSV's stem."""
    return Path(task).stem if task.endswith(".csv") else task


def default_eval_dir(model_dir: Path | None, task: str) -> Path:
    """<run>/eval-<task> for a run or step folder; runs/baseline/eval-<task> without one."""
    base = BASELINE_DIR
    if model_dir is not None and model_dir.is_dir():
        base = model_dir.parent if (model_dir / checkpoint.MARKER).exists() else model_dir
    return base / f"eval-{task_label(task)}"


def default_bench_dir(model_dir: Path | None, tasks: str) -> Path:
    """<run>/bench-<tasks> (a benchmark run); runs/baseline/bench-<tasks> without a checkpoint."""
    label = "+".join(task_label(t.strip()).replace("/", "_") for t in tasks.split(",") if t.strip())
    if len(label) > 60:
        label = label[:60].rstrip("+_") + "+more"
    return default_eval_dir(model_dir, "x").with_name(f"bench-{label or 'tasks'}")
