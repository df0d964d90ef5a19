"""Print docs/results.md's issue-18 tables, and draw the held-out curves, from what
`recipes/science.sh` wrote so far (missing runs are shown as such, never guessed).

python recipes/science_tables.py [runs/science] [--plot docs/results_pretraining.png]
    [--dose-plot docs/results_dose.png]

The recipe copies these files to docs/science_runs/ after each phase; point this script there to
print the committed figures.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
from pathlib import Path

ARMS = ("had", "mlm", "distill", "had-soft")
LABELS = {
    "had": "HAD (align + recon)",
    "mlm": "reconstruction only",
    "distill": "alignment only",
    "had-soft": "HAD, teacher's soft targets",
}
BASELINES = {
    "student": "no pretraining (random init)",
    "teacher-ft": "demo teacher, fine-tuned",
    "teacher": "demo teacher, probe",
    "kmer": "k-mer (3-6) LR",
    "onehot": "positional one-hot LR",
}


def pm(values: list[float], sign: str = "") -> str:
    """mean ± sample sd (n); sign="+" for differences."""
    if not values:
        return "–"
    mean = f"{statistics.mean(values):{sign}.4f}"
    if len(values) == 1:
        return f"{mean} (n = 1)"
    return f"{mean} ± {statistics.stdev(values):.4f} (n = {len(values)})"


def runs(root: Path) -> list[Path]:
    return sorted((root / "pretrain").glob("*-s*"))


def arm_seed(run: Path) -> tuple[str, int]:
    arm, _, seed = run.name.rpartition("-s")
    return arm, int(seed)


def val_curve(run: Path) -> list[dict[str, float]]:
    path = run / "val.csv"
    if not path.exists():
        return []
    return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(path.open())]


def pretraining_table(root: Path) -> None:
    print(
        "| arm | seed | steps | held-out masked-base accuracy | context-count baseline (best k) "
        "| lead over it (95% CI, windows) | teacher's own | align R² | align cosine |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for run in runs(root):
        arm, seed = arm_seed(run)
        final = run / "held_out.json"
        if final.exists():
            h = json.loads(final.read_text())
            ctx = h["context_baseline"]
            steps = json.loads((run / "pretrain_config.json").read_text())["steps"]
            lead = h.get("versus_context")
            lead = (
                f"{lead['difference']:+.4f} ({lead['ci95'][0]:+.4f} to {lead['ci95'][1]:+.4f})"
                if lead
                else "–"
            )
            print(
                f"| {LABELS.get(arm, arm)} | {seed} | {steps} | {h['reconstruction_accuracy']:.4f} "
                f"| {ctx['best_accuracy']:.4f} (k = {ctx['best_k']}) | {lead} "
                f"| {h.get('teacher_base_accuracy', float('nan')):.4f} "
                f"| {h['alignment_r2']:.4f} | {h['alignment_cosine']:.4f} |"
            )
            continue
        curve = val_curve(run)
        if curve:
            last = curve[-1]
            print(
                f"| {LABELS.get(arm, arm)} | {seed} | {int(last['step'])} (running) "
                f"| {last['reconstruction_accuracy']:.4f} | | | | {last['alignment_r2']:.4f} "
                f"| {last['alignment_cosine']:.4f} |"
            )
        else:
            print(f"| {LABELS.get(arm, arm)} | {seed} | not scored yet | | | | | | |")


def paired_table(root: Path) -> None:
    """Each arm against reconstruction only (same seed), window by window on the same bases."""
    from had_train.pretrain import HELD_OUT_WINDOWS_FILE, paired_difference

    print("\n| arm | seed | masked-base accuracy minus reconstruction only's (95% CI) |")
    print("|---|---:|---:|")
    for run in runs(root):
        arm, seed = arm_seed(run)
        mlm = root / "pretrain" / f"mlm-s{seed}"
        if arm == "mlm" or not (mlm / HELD_OUT_WINDOWS_FILE).exists():
            continue
        if not (run / HELD_OUT_WINDOWS_FILE).exists():
            print(f"| {LABELS.get(arm, arm)} | {seed} | not scored yet |")
            continue
        d = paired_difference(run, mlm)
        print(
            f"| {LABELS.get(arm, arm)} | {seed} | {d['difference']:+.4f} "
            f"({d['ci95'][0]:+.4f} to {d['ci95'][1]:+.4f}; {d['windows']} windows) |"
        )


def replicate_scores(results: Path, task: str, model: str, metric: str) -> list[float]:
    if not results.exists():
        return []
    record = json.loads(results.read_text())
    entry = record["tasks"].get(task, {}).get("models", {}).get(model)
    return [r[metric] for r in entry["replicates"]] if entry else []


def by_replicate(results: Path, task: str, model: str, metric: str) -> dict[int, float]:
    """{replicate index: score}: replicate r of every model is tested on the same split."""
    if not results.exists():
        return {}
    record = json.loads(results.read_text())
    entry = record["tasks"].get(task, {}).get("models", {}).get(model)
    return {r["replicate"]: r[metric] for r in entry["replicates"]} if entry else {}


def downstream_table(root: Path, task: str, mode: str) -> None:
    """Mean ± sd per model, and each model minus random init on the same splits (paired)."""
    folder = root / "eval" / f"{task}-{mode}"
    base = folder / "baselines" / "results.json"
    random_init = by_replicate(base, task, "student", "accuracy")
    print(f"\n{task}, {mode} (mean ± sample std over pretraining seeds x evaluation replicates)\n")
    print("| model | accuracy | MCC | accuracy minus random init's, same split (mean ± sd) |")
    print("|---|---:|---:|---:|")

    def row(label: str, results: list[Path], model: str = "student") -> None:
        acc, mcc, gain = [], [], []
        for path in results:
            scores = by_replicate(path, task, model, "accuracy")
            acc += scores.values()
            mcc += by_replicate(path, task, model, "mcc").values()
            gain += [v - random_init[r] for r, v in scores.items() if r in random_init]
        gain_text = "–" if model == "student" and results == [base] else pm(gain, "+")
        print(f"| {label} | {pm(acc)} | {pm(mcc)} | {gain_text} |")

    for arm in ARMS:
        arm_runs = [r for r in runs(root) if arm_seed(r)[0] == arm]
        row(LABELS[arm], [folder / r.name / "results.json" for r in arm_runs] or [folder / "none"])
    attention = folder / "attention" / "results.json"
    if attention.exists():
        row("no pretraining, attention pooling", [attention])
    for model, label in BASELINES.items():
        if by_replicate(base, task, model, "accuracy") or model == "student":
            row(label, [base], model)


DEMO_TEACHER_STEPS = 1803
"""Training steps of the shipped demo teacher (its training_summary.json)."""


def dose_teachers(root: Path) -> list[tuple[str, str, str, str]]:
    """(label, store, HAD run, eval name) per teacher, weakest first: random weights, then by
    training steps (science.sh's dose/steps<N> teachers and the demo teacher, a's had-s0)."""
    trained = {
        DEMO_TEACHER_STEPS: (
            "demo (1,803 steps)",
            "chrX_demo_pred.had.zarr",
            "pretrain/had-s0",
            "had-s0",
        )
    }
    for store in (root / "dose").glob("steps*.had.zarr"):
        name = store.name.removesuffix(".had.zarr")
        steps = int(name.removeprefix("steps"))
        trained[steps] = (
            f"{steps:,} steps",
            f"dose/{name}.had.zarr",
            f"dose/{name}/had-s0",
            f"dose-{name}",
        )
    random = ("random weights", "dose/random.had.zarr", "dose/random/had-s0", "dose-random")
    return [random] + [trained[n] for n in sorted(trained)]


def dose_rows(root: Path) -> list[dict]:
    """One row per teacher: its strength and HAD's held-out and fine-tuned figures (seed 0)."""
    from had_train.pretrain import HELD_OUT_WINDOWS_FILE, paired_difference

    rows = []
    mlm_run = root / "pretrain" / "mlm-s0"
    mlm = mlm_run / "held_out.json"
    mlm_recon = json.loads(mlm.read_text())["reconstruction_accuracy"] if mlm.exists() else None
    mlm_acc = replicate_scores(
        root / "eval" / "splice-finetune" / "mlm-s0" / "results.json",
        "splice",
        "student",
        "accuracy",
    )
    for teacher, store, run, evals in dose_teachers(root):
        attrs = root / store / "zarr.json"
        if not attrs.exists():
            continue
        gate = json.loads(attrs.read_text())["attributes"]["had"].get("teacher_gate") or {}
        held = root / run / "held_out.json"
        h = json.loads(held.read_text()) if held.exists() else {}
        acc = replicate_scores(
            root / "eval" / "splice-finetune" / evals / "results.json",
            "splice",
            "student",
            "accuracy",
        )
        # the same windows and masks in every store, so the runs pair window by window
        paired = (root / run / HELD_OUT_WINDOWS_FILE).exists() and (
            mlm_run / HELD_OUT_WINDOWS_FILE
        ).exists()
        rows.append(
            {
                "teacher": teacher,
                "recon_gain_ci": paired_difference(root / run, mlm_run)["ci95"] if paired else None,
                "gate_accuracy": gate.get("accuracy"),
                "teacher_base_accuracy": h.get("teacher_base_accuracy"),
                "recon": h.get("reconstruction_accuracy"),
                "recon_gain": h["reconstruction_accuracy"] - mlm_recon if h and mlm_recon else None,
                "align_r2": h.get("alignment_r2"),
                "splice": acc,
                "splice_gain": statistics.mean(acc) - statistics.mean(mlm_acc)
                if acc and mlm_acc
                else None,
                # replicate r of every model is tested on the same split: paired differences
                "splice_gain_sd": statistics.stdev(
                    [a - b for a, b in zip(acc, mlm_acc, strict=True)]
                )
                if len(acc) == len(mlm_acc) > 1
                else None,
            }
        )
    return rows


def dose_table(root: Path) -> None:
    print("\ndose-response: HAD (seed 0) by teacher strength; gains are over reconstruction only\n")
    print(
        "| teacher | masked-6-mer accuracy (gate) | its masked-base accuracy | HAD held-out "
        "masked-base accuracy | gain over recon only (95% CI, windows) | align R² | splice fine-tuned accuracy "
        "| gain over recon only (± sd of the paired replicate differences) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")

    def f(x: float | None) -> str:
        return "–" if x is None else f"{x:.4f}"

    for r in dose_rows(root):
        gain = "–" if r["recon_gain"] is None else f"{r['recon_gain']:+.4f}"
        if r["recon_gain_ci"]:
            gain += " ({:+.4f} to {:+.4f})".format(*r["recon_gain_ci"])
        sgain = "–" if r["splice_gain"] is None else f"{r['splice_gain']:+.4f}"
        if r["splice_gain_sd"] is not None:
            sgain += f" ± {r['splice_gain_sd']:.4f}"
        print(
            f"| {r['teacher']} | {f(r['gate_accuracy'])} | {f(r['teacher_base_accuracy'])} "
            f"| {f(r['recon'])} | {gain} | {f(r['align_r2'])} | {pm(r['splice'])} | {sgain} |"
        )


def reference_lines(run: Path) -> tuple[float | None, float | None]:
    """(context-count baseline, the teacher's own masked-base accuracy) on a run's held-out
    records: from its held_out.json once it has finished, else computed the same way now (if
    its store is here: an archived run in progress has only its curve)."""
    final = run / "held_out.json"
    if final.exists():
        h = json.loads(final.read_text())
        return h["context_baseline"]["best_accuracy"], h.get("teacher_base_accuracy")
    from had_train.data import PretrainBatches
    from had_train.pretrain import context_baseline, load_run_config

    cfg = load_run_config(run)
    if not Path(cfg.cache).exists():
        return None, None
    data = PretrainBatches(cfg.cache, cfg.batch_size, holdout_chunks=cfg.holdout_chunks)
    held = data.records(data.held_out)
    teacher = None
    if held.soft is not None:
        truth = held.seq.reshape(len(held.seq), -1, 6)[held.group_mask].long()
        teacher = float((held.soft.float().reshape(-1, 6, 4).argmax(-1) == truth).float().mean())
    return context_baseline(data)[0]["best_accuracy"], teacher


def plot(root: Path, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    context = teacher = None
    for run in runs(root):
        curve = val_curve(run)
        if not curve:
            continue
        arm, seed = arm_seed(run)
        ax.plot(
            [c["step"] for c in curve],
            [c["reconstruction_accuracy"] for c in curve],
            marker="o",
            ms=3,
            ls="-" if seed == 0 else "--",
            label=f"{LABELS.get(arm, arm)}, seed {seed}",
        )
        if context is None:
            context, teacher = reference_lines(run)
    if context is not None:
        ax.axhline(context, color="k", ls=":", label="context-count baseline (best k)")
    if teacher is not None:
        ax.axhline(teacher, color="grey", ls="-.", label="the teacher's own guess")
    ax.axhline(0.25, color="lightgrey", lw=0.8)
    ax.set_xlabel("pretraining step (8 windows of 1,020 bp each)")
    ax.set_ylabel("held-out masked-base accuracy")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"\nplot: {path}")


def dose_plot(root: Path, path: Path) -> None:
    """HAD's gain over reconstruction only against the teacher's strength (issue 18, point 6)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in dose_rows(root) if r["gate_accuracy"] is not None]
    if not rows:
        print(f"\nno dose-response plot: no teacher store under {root} yet")
        return
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6), sharex=True)

    def splice_bar(r: dict) -> tuple[float, float] | None:
        sd = r["splice_gain_sd"]
        return None if sd is None else (r["splice_gain"] - sd, r["splice_gain"] + sd)

    for ax, key, label, bar in (
        (
            axes[0],
            "recon_gain",
            "held-out masked-base accuracy\n(bars: 95% CI over windows)",
            lambda r: r["recon_gain_ci"],
        ),
        (
            axes[1],
            "splice_gain",
            "splice fine-tuned accuracy\n(bars: sd of 3 paired replicates)",
            splice_bar,
        ),
    ):
        points = [(r["gate_accuracy"], r[key], r["teacher"]) for r in rows if r[key] is not None]
        if points:
            ordered = sorted(points)
            ax.plot([x for x, _, _ in ordered], [y for _, y, _ in ordered], marker="o")
            for r in rows:
                if r[key] is not None and (bounds := bar(r)):
                    ax.vlines(r["gate_accuracy"], *bounds, color="C0", lw=1.5)
            for x, y, name in points:
                ax.annotate(name, (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
        ax.axhline(0, color="k", lw=0.8)
        ax.margins(x=0.2)
        ax.set_xlabel("teacher's held-out masked-6-mer accuracy (gate)")
        ax.set_ylabel(f"HAD minus recon only: {label}", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"\ndose-response plot: {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("root", nargs="?", default="runs/science", type=Path)
    parser.add_argument("--plot", type=Path, default=None, help="the held-out curves (PNG)")
    parser.add_argument("--dose-plot", type=Path, default=None, help="the dose-response (PNG)")
    args = parser.parse_args()
    pretraining_table(args.root)
    paired_table(args.root)
    for task, mode in (
        ("splice", "finetune"),
        ("splice", "linear"),
        ("oct4_mafk", "finetune"),
        ("oct4_mafk", "linear"),
    ):
        downstream_table(args.root, task, mode)
    dose_table(args.root)
    if args.plot:
        plot(args.root, args.plot)
    if args.dose_plot:
        dose_plot(args.root, args.dose_plot)


if __name__ == "__main__":
    main()
