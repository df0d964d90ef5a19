"""Print docs/results.md's tables from the files `recipes/ablation_chrx_demo.sh` wrote.

python recipes/results_tables.py [runs/results]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from had_train.eval.report import format_mean_std as pm


def held_out(run: Path) -> dict:
    path = run / "held_out.json"
    return json.loads(path.read_text()) if path.exists() else {}


def main(root: Path) -> None:
    report = json.loads((root / "ablation" / "ablation.json").read_text())
    print(
        "| arm | MCC | accuracy | held-out align cosine | held-out align R² | held-out recon accuracy |"
    )
    print("|---|---|---|---|---|---|")
    for row in report["arms"]:
        extra = held_out(root / "ablation" / f"pretrain-{row['arm']}")
        none = row["arm"] == "none"
        cos, r2 = row["held_out_alignment_cosine"], row["held_out_alignment_r2"]
        recon = row["held_out_reconstruction_accuracy"]
        print(
            f"| {row['label']} | {pm(row['mcc_mean'], row['mcc_std'])} | "
            f"{pm(row['accuracy_mean'], row['accuracy_std'])} | {cos:.4f} | {r2:.4f} | "
            f"{recon:.4f} |" + ("" if extra or none else " (no held_out.json)")
        )
    print()
    print(
        "| HAD variant | λ | teacher layer | MCC | accuracy | held-out align R² | held-out recon accuracy |"
    )
    print("|---|---|---|---|---|---|---|")
    sweeps = [
        ("lambda-0.3", "0.3", "4"),
        ("ablation", "1", "4"),
        ("lambda-3", "3", "4"),
        ("layer-2", "1", "2"),
    ]
    for folder, lam, layer in sweeps:
        path = root / folder / "ablation.json"
        if not path.exists():
            print(f"| {folder} | {lam} | {layer} | not run | | | |")
            continue
        row = next(r for r in json.loads(path.read_text())["arms"] if r["arm"] == "had")
        print(
            f"| {folder} | {lam} | {layer} | {pm(row['mcc_mean'], row['mcc_std'])} | "
            f"{pm(row['accuracy_mean'], row['accuracy_std'])} | "
            f"{row['held_out_alignment_r2']:.4f} | {row['held_out_reconstruction_accuracy']:.4f} |"
        )


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "runs/results"))
