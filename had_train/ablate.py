"""Does distillation help? Pretrain each objective at equal compute, evaluate each, tabulate.

Arms: `had` (alignment + reconstruction), `mlm` (reconstruction only), `distill` (alignment
only), each pretrained with the same store, steps, batch, learning rate and seed, and `none`
(no pretraining: a random encoder). Every arm is evaluated on the same task splits with each
evaluation seed; the table reports, per arm, the mean ± sample std over seeds of the per-seed
mean over folds, and, when chunks are held out, the alignment cosine and reconstruction accuracy
on held-out windows (visible before any fine-tuning). The run is resumable: finished
pretraining runs and evaluations are reused.
"""

from __future__ import annotations

import csv
import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from had_common.device import resolve_device
from had_common.errors import ConfigError
from had_common.provenance import provenance
from had_train import checkpoint, losses
from had_train.data import PretrainBatches, store_fingerprint
from had_train.eval.finetune import EVAL_MODES, EvalConfig, evaluate
from had_train.eval.metrics import METRICS, summarize
from had_train.eval.report import format_mean_std
from had_train.pretrain import (
    HELD_OUT_FILE,
    PretrainConfig,
    build_model,
    held_out_metrics,
    pretrain,
    validate,
)
from had_train.runs import default_ablation_dir

ARMS = (*losses.OBJECTIVES, "none")
DEFAULT_ARMS = ("had", "mlm", "distill", "none")
"""`had-soft` needs a store extracted with --predictions, so it runs only when asked for."""
ARM_LABELS = {
    "had": "HAD (align + recon)",
    "mlm": "reconstruction only",
    "distill": "alignment only",
    "had-soft": "HAD, teacher's soft targets",
    "none": "no pretraining",
}
TABLE_FILES = ("ablation.md", "ablation.csv", "ablation.json", "ablation.png")
ABLATION_HOLDOUT_CHUNKS = 1


@dataclass(frozen=True)
class AblationConfig:
    """The shared pretraining recipe (`pretrain`: PretrainConfig fields) and the evaluation."""

    cache: str
    out: str
    task: str = "splice"
    arms: tuple[str, ...] = DEFAULT_ARMS
    seeds: tuple[int, ...] = (0, 1, 2)
    folds: int = 5
    mode: str = EVAL_MODES[0]
    pooling: str | None = None
    epochs: int = EvalConfig.epochs
    eval_batch_size: int = EvalConfig.batch_size
    eval_lr: float = EvalConfig.lr
    pretrain: dict[str, Any] = field(default_factory=dict)
    """PretrainConfig fields shared by every arm; `holdout_chunks` defaults to
    ABLATION_HOLDOUT_CHUNKS here so each arm is scored on windows none trained on."""

    @classmethod
    def from_options(
        cls, cache: Path, out: Path | None, arms: str, seeds: str, **options: Any
    ) -> AblationConfig:
        """The command line's form: comma-separated arms and seeds, `--out` defaulting to
        runs/ablate-<store>, and the recipe options (PretrainConfig fields) under `pretrain`."""
        own = {f.name for f in dataclasses.fields(cls)}
        try:
            seed_list = tuple(int(s) for s in seeds.split(","))
        except ValueError:
            raise ConfigError(f"--seeds takes comma-separated integers, got {seeds!r}") from None
        return cls(
            cache=str(cache),
            out=str(out or default_ablation_dir(cache)),
            arms=tuple(a.strip() for a in arms.split(",") if a.strip()),
            seeds=seed_list,
            **{k: v for k, v in options.items() if k in own},
            pretrain={k: v for k, v in options.items() if k not in own},
        )

    def validate(self) -> None:
        unknown = [a for a in self.arms if a not in ARMS]
        if unknown or not self.arms:
            raise ConfigError(f"--arms takes {', '.join(ARMS)}; got {', '.join(self.arms)}")
        if len(self.seeds) < 1 or len(set(self.seeds)) != len(self.seeds):
            raise ConfigError(f"--seeds must be distinct integers, got {self.seeds}")
        if self.mode not in EVAL_MODES:
            raise ConfigError(f"--mode must be one of {', '.join(EVAL_MODES)}")
        if "objective" in self.pretrain:
            raise ConfigError("the ablation sets the objective per arm; do not pass --objective")


def _pretrained(base: PretrainConfig, arm: str, run: Path, progress: bool) -> Path:
    """The arm's final checkpoint: reused if the run already reached its steps, else trained."""
    cfg = dataclasses.replace(base, out=str(run), objective=arm)
    done = checkpoint.complete_checkpoints(run)
    if done and done[-1][0] >= cfg.steps:
        return done[-1][1]
    return pretrain(cfg, resume=bool(done), progress=progress)


def _held_out(base: PretrainConfig, run: Path | None) -> dict[str, Any] | None:
    if not base.holdout_chunks:
        return None
    if run is not None:
        return json.loads((run / HELD_OUT_FILE).read_text())
    data = PretrainBatches(
        base.cache,
        base.batch_size,
        base.seed,
        base.shuffle_chunks,
        base.teacher_layer,
        base.holdout_chunks,
    )
    device = resolve_device(base.device)
    model = build_model(base, data.attrs.hidden_size).to(device)  # the arms' shared init
    return held_out_metrics(model, data, device, base.batch_size // base.grad_accum)


def run_ablation(cfg: AblationConfig, progress: bool = True) -> dict[str, Any]:
    """Pretrain and evaluate every arm; write the table as markdown, CSV, JSON and a bar chart."""
    cfg.validate()
    out = Path(cfg.out)
    recipe = {"holdout_chunks": ABLATION_HOLDOUT_CHUNKS} | cfg.pretrain
    base = PretrainConfig(cache=cfg.cache, out=str(out), **recipe)
    validate(base)
    per_seed: list[dict[str, Any]] = []
    held_out: dict[str, Any] = {}
    for arm in cfg.arms:
        run = out / f"pretrain-{arm}" if arm != "none" else None
        model_dir = _pretrained(base, arm, run, progress) if run is not None else None
        held_out[arm] = _held_out(base, run)
        for seed in cfg.seeds:
            eval_dir = out / f"eval-{arm}-seed{seed}"
            if (eval_dir / "results.json").exists():
                results = json.loads((eval_dir / "results.json").read_text())
            else:
                ecfg = EvalConfig(
                    task=cfg.task,
                    folds=cfg.folds,
                    seed=seed,
                    mode=cfg.mode,
                    pooling=cfg.pooling,
                    epochs=cfg.epochs,
                    batch_size=cfg.eval_batch_size,
                    lr=cfg.eval_lr,
                    preset=base.preset,
                    mixers=base.mixers,
                    device=base.device,
                    tsne=False,
                    baselines=False,  # the `none` arm is the ablation's own baseline
                )
                results = evaluate(model_dir, ecfg, eval_dir, progress)
            summary = results["summary"]
            per_seed.append(
                {
                    "arm": arm,
                    "seed": seed,
                    **{name: summary[name]["mean"] for name in METRICS if name in summary},
                    "folds": len(results["folds"]),
                }
            )
    table = summarize_arms(per_seed, held_out, cfg.arms)
    report = {
        "config": dataclasses.asdict(cfg),
        "pretrain": base.to_json(),
        "arms": table,
        "per_seed": per_seed,
        "provenance": provenance(
            seeds={"pretrain_seed": base.seed, "eval_seeds": list(cfg.seeds)},
            inputs={"store_fingerprint": store_fingerprint(cfg.cache)},
        ),
    }
    write_tables(report, out)
    return report


def summarize_arms(
    per_seed: list[dict[str, Any]], held_out: dict[str, Any], arms: tuple[str, ...]
) -> list[dict[str, Any]]:
    """One row per arm: mean ± std over seeds of MCC and accuracy, and held-out figures."""
    rows = []
    for arm in arms:
        mine = [r for r in per_seed if r["arm"] == arm]
        over_seeds = summarize(mine)
        extra = held_out.get(arm) or {}
        rows.append(
            {
                "arm": arm,
                "label": ARM_LABELS[arm],
                "seeds": len(mine),
                "folds": mine[0]["folds"],
                "mcc_mean": over_seeds["mcc"]["mean"],
                "mcc_std": over_seeds["mcc"]["std"],
                "accuracy_mean": over_seeds["accuracy"]["mean"],
                "accuracy_std": over_seeds["accuracy"]["std"],
                "held_out_alignment_cosine": extra.get("alignment_cosine"),
                "held_out_alignment_r2": extra.get("alignment_r2"),
                "held_out_reconstruction_accuracy": extra.get("reconstruction_accuracy"),
                "held_out_context_baseline": (extra.get("context_baseline") or {}).get(
                    "best_accuracy"
                ),
            }
        )
    return rows


def _opt(value: float | None) -> str:
    return "–" if value is None else f"{value:.4f}"


def write_tables(report: dict[str, Any], out: Path) -> None:
    """ablation.md / .csv / .json and ablation.png (MCC and accuracy bars with std whiskers)."""
    out.mkdir(parents=True, exist_ok=True)
    rows = report["arms"]
    lines = [
        "| arm | MCC | accuracy | held-out align cosine | held-out align R² "
        "| held-out recon accuracy | seeds × folds |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['label']} | {format_mean_std(r['mcc_mean'], r['mcc_std'])} | "
            f"{format_mean_std(r['accuracy_mean'], r['accuracy_std'])} | "
            f"{_opt(r['held_out_alignment_cosine'])} | {_opt(r['held_out_alignment_r2'])} | "
            f"{_opt(r['held_out_reconstruction_accuracy'])} | {r['seeds']} × {r['folds']} |"
        )
    floor = next(
        (r["held_out_context_baseline"] for r in rows if r.get("held_out_context_baseline")), None
    )
    if floor is not None:
        lines += [
            "",
            f"Held-out masked-base accuracy of the best context-count model (k bases either side "
            f"of the hidden group, fitted on the training records, no teacher): {floor:.4f}. "
            "A reconstruction accuracy below it has learnt less than local base statistics.",
        ]
    (out / TABLE_FILES[0]).write_text("\n".join(lines) + "\n")
    with open(out / TABLE_FILES[1], "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    (out / TABLE_FILES[2]).write_text(json.dumps(report, indent=2) + "\n")
    plot_ablation(rows, out / TABLE_FILES[3], title=f"{report['config']['task']}")


def plot_ablation(rows: list[dict[str, Any]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    x = np.arange(len(rows))
    for ax, metric in zip(axes, ("mcc", "accuracy"), strict=True):
        means = [r[f"{metric}_mean"] for r in rows]
        stds = [r[f"{metric}_std"] or 0.0 for r in rows]
        ax.bar(x, means, yerr=stds, capsize=4, color=["C0", "C1", "C2", "C7"][: len(rows)])
        ax.set_xticks(x, [r["arm"] for r in rows])
        ax.set_title(f"{title}: {metric.upper() if metric == 'mcc' else metric}")
        lo = min(m - s for m, s in zip(means, stds, strict=True))
        ax.set_ylim(max(0.0, lo - 0.05), min(1.0, max(means) + max(stds) + 0.05))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
