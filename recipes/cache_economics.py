"""Issue 21's measured answer: helpers of `recipes/cache_economics.sh`.

    python recipes/cache_economics.py split OUT          # train.fa / eval.fa from the demo slice
    python recipes/cache_economics.py score OUT RUN      # held-out scores of one finished run
    python recipes/cache_economics.py table OUT [--plot PNG]
    python recipes/cache_economics.py archive OUT DEST   # the small files the table needs

`split` cuts the embedded chrX slice into a training part (all but its last TAIL_BP bases) and a
held-out part (the last TAIL_BP), so every arm, stores and the online teacher alike, trains on
the same bases and none sees the held-out ones. `score` scores a run's final checkpoint on the
reference store of the held-out part (fp16, the masked teacher: HAD's own targets), whatever
store it trained on: alignment MSE and R^2 in the full teacher space, cosine, masked-base
accuracy. `table` prints the markdown table of docs/results.md (mean +- sd over seeds, store
bytes on disk, splice probe accuracy) and plots quality against bytes on disk. `archive` copies
what `table` reads (held-out scores, evaluation results, run configs and curves, the stores'
attributes and their sizes in `stores/store_bytes.json`; no checkpoints, no features) to DEST,
so the table can be rebuilt from DEST (the recipe keeps it in docs/) after the run folder is gone.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
from pathlib import Path

import numpy as np
import torch

TAIL_BP = 1_020_000
"""Bases at the end of the demo slice held out from every arm (1,000 windows)."""
ARMS = {
    "a-fp16-once": "(a) fp16, one record per window",
    "b-fp16-replay": "(b) fp16 replay",
    "c-int8-replay": "(c) int8 replay",
    "d-pca-replay": "(d) pca-int8 replay, R = D/4",
    "e-unmasked": "(e) unmasked teacher",
    "f-online": "(f) online teacher",
}


def split(out: Path) -> None:
    from had_cache import windows

    fasta = windows.open_fasta("demo")
    (name,) = list(fasta.keys())
    seq = str(fasta[name][:])
    out.mkdir(parents=True, exist_ok=True)
    for part, bases in (("train", seq[:-TAIL_BP]), ("eval", seq[-TAIL_BP:])):
        lines = [f">{name}_{part}"] + [bases[i : i + 60] for i in range(0, len(bases), 60)]
        (out / f"{part}.fa").write_text("\n".join(lines) + "\n")


def score(out: Path, run: Path) -> dict:
    """Held-out scores of the run's last checkpoint on OUT/stores/eval.had.zarr."""
    from had_train import checkpoint
    from had_train.data import PretrainBatches
    from had_train.model import HadStudentForPretraining
    from had_train.pretrain import held_out_metrics

    data = PretrainBatches(out / "stores" / "eval.had.zarr", batch_size=1)
    data.held_out = np.arange(data.attrs.n_records)  # every record: none was trained on
    latest = checkpoint.latest_checkpoint(run)
    if latest is None:
        raise SystemExit(f"{run} has no checkpoint yet")
    model = HadStudentForPretraining.from_pretrained(latest).eval()
    torch.manual_seed(0)
    report = held_out_metrics(model, data, torch.device("cpu"), 32, baseline=False)
    report["checkpoint"] = latest.name
    (run / "heldout_reference.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


STORE_BYTES = "store_bytes.json"
"""In an archive, the sizes of the stores it no longer holds: {store folder name: bytes}."""


def _store_bytes(path: Path) -> int:
    files = [p for p in path.rglob("*") if p.is_file()] if path.is_dir() else []
    if any(p.name != "zarr.json" for p in files):  # a store, not an archive's attributes
        return sum(p.stat().st_size for p in files)
    recorded = path.parent / STORE_BYTES
    if recorded.exists():
        return json.loads(recorded.read_text()).get(path.name, 0)
    return 0


ARCHIVED = ("heldout_reference.json", "pretrain_config.json", "val.csv", "usage.json")


def archive(out: Path, dest: Path) -> None:
    """Copy the small files `table` reads from OUT to DEST (see the module docstring)."""
    sizes = {s.name: _store_bytes(s) for s in sorted((out / "stores").glob("*.had.zarr"))}
    (dest / "stores").mkdir(parents=True, exist_ok=True)
    (dest / "stores" / STORE_BYTES).write_text(json.dumps(sizes, indent=2) + "\n")
    wanted = [s / "zarr.json" for s in (out / "stores").glob("*.had.zarr")]
    wanted += [r / name for r in (out / "pretrain").glob("*-s*") for name in ARCHIVED]
    wanted += list((out / "eval").glob("*/results.json"))
    for source in wanted:
        if source.is_file():
            target = dest / source.relative_to(out)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)


def _splice(out: Path, run: str) -> float | None:
    results = out / "eval" / run / "results.json"
    if not results.exists():
        return None
    entry = json.loads(results.read_text())["tasks"]["splice"]["models"]["student"]
    return statistics.mean(r["accuracy"] for r in entry["replicates"])


def rows(out: Path) -> list[dict]:
    stores = {
        "a-fp16-once": "fp16-once",
        "b-fp16-replay": "fp16-replay",
        "c-int8-replay": "int8-replay",
        "d-pca-replay": "pca-replay",
        "e-unmasked": "unmasked",
    }
    found = []
    for arm, label in ARMS.items():
        runs = sorted((out / "pretrain").glob(f"{arm}-s*"))
        scored = [
            json.loads((r / "heldout_reference.json").read_text())
            for r in runs
            if (r / "heldout_reference.json").exists()
        ]
        store = out / "stores" / f"{stores[arm]}.had.zarr" if arm in stores else None
        found.append(
            {
                "arm": arm,
                "label": label,
                "seeds": len(scored),
                "bytes": _store_bytes(store) if store else 0,
                "mse": [s["alignment_mse"] for s in scored],
                "r2": [s["alignment_r2"] for s in scored],
                "acc": [s["reconstruction_accuracy"] for s in scored],
                "splice": [v for r in runs if (v := _splice(out, r.name)) is not None],
            }
        )
    return found


def _pm(values: list[float], scale: float = 1.0, digits: int = 4) -> str:
    if not values:
        return "not yet"
    mean = statistics.mean(values) * scale
    sd = statistics.stdev(values) * scale if len(values) > 1 else 0.0
    return f"{mean:.{digits}f} ± {sd:.{digits}f}"


def table(out: Path, plot: Path | None) -> None:
    found = rows(out)
    print(
        "| arm | seeds | store on disk | held-out alignment MSE | R² | masked-base acc. | splice probe acc. |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in found:
        size = f"{r['bytes'] / 1e6:,.1f} MB" if r["bytes"] else "none (teacher in memory)"
        print(
            f"| {r['label']} | {r['seeds']} | {size} | {_pm(r['mse'])} | {_pm(r['r2'])} | "
            f"{_pm(r['acc'], 100, 2)} | {_pm(r['splice'], 100, 2)} |"
        )
    if plot is None:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key, name in (
        (axes[0], "mse", "held-out alignment MSE"),
        (axes[1], "acc", "masked-base accuracy"),
    ):
        for r in found:
            if not r[key]:
                continue
            y = statistics.mean(r[key])
            if r["bytes"]:
                ax.errorbar(
                    r["bytes"] / 1e6,
                    y,
                    yerr=statistics.stdev(r[key]) if len(r[key]) > 1 else 0,
                    fmt="o",
                    label=r["label"],
                )
            else:
                ax.axhline(y, linestyle="--", color="grey", label=r["label"])
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlabel("store on disk (MB)")
        ax.set_ylabel(name)
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(plot, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["split", "score", "table", "archive"])
    parser.add_argument("out", type=Path)
    parser.add_argument("run", type=Path, nargs="?", help="score: the run; archive: DEST")
    parser.add_argument("--plot", type=Path, default=None)
    args = parser.parse_args()
    if args.command == "split":
        split(args.out)
    elif args.command == "score":
        if args.run is None:
            parser.error("score needs RUN")
        print(json.dumps(score(args.out, args.run)))
    elif args.command == "archive":
        if args.run is None:
            parser.error("archive needs DEST")
        archive(args.out, args.run)
    else:
        table(args.out, args.plot)


if __name__ == "__main__":
    main()
