"""What a pretraining run reports while it runs, besides losses.csv: held-out scores every
`--val-every` steps (val.csv) and, when the optional `tensorboard` package is installed
(`pip install -e ".[tensorboard]"`), the same scalars as TensorBoard events in <run>/tb/.
Only rank 0 keeps a Monitor.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

VAL_FILE = "val.csv"
VAL_COLUMNS = ("step", "alignment_cosine", "alignment_r2", "reconstruction_accuracy")
TB_DIR = "tb"


def _summary_writer(folder: Path) -> Any | None:
    """A TensorBoard SummaryWriter, or None when tensorboard is not installed."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(folder))


class Monitor:
    """val.csv rows and TensorBoard scalars; a resumed run keeps the rows up to its step."""

    def __init__(self, run_dir: Path, resume_step: int, validation: bool) -> None:
        self.run_dir = Path(run_dir)
        self.tb = _summary_writer(self.run_dir / TB_DIR)
        self._fh = self._writer = None
        if validation:
            path = self.run_dir / VAL_FILE
            rows = []
            if resume_step and path.exists():
                with open(path, newline="") as fh:
                    rows = [r for r in csv.DictReader(fh) if int(r["step"]) <= resume_step]
            self._fh = open(path, "w", newline="")  # noqa: SIM115 - kept open for the whole run
            self._writer = csv.DictWriter(self._fh, fieldnames=VAL_COLUMNS)
            self._writer.writeheader()
            self._writer.writerows(rows)
            self._fh.flush()

    def step(self, step: int, scalars: dict[str, float]) -> None:
        if self.tb is not None:
            for name, value in scalars.items():
                self.tb.add_scalar(f"train/{name}", value, step)

    def validation(self, step: int, report: dict[str, Any]) -> None:
        row = {"step": step} | {k: f"{report[k]:.6g}" for k in VAL_COLUMNS[1:]}
        if self._writer is not None:
            self._writer.writerow(row)
            self._fh.flush()
        if self.tb is not None:
            for name in VAL_COLUMNS[1:]:
                self.tb.add_scalar(f"val/{name}", report[name], step)

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
        if self.tb is not None:
            self.tb.close()
