"""Where a result came from: command, code version, package versions, seeds, input checksums.

Every store, pretraining run and evaluation result carries this record, so a number can be traced
to the exact command and inputs that produced it, and reproduced.
"""

from __future__ import annotations

import platform
import shlex
import subprocess
import sys
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

PACKAGES = ("had", "torch", "transformers", "zarr", "numcodecs", "numpy", "click")
SOURCE_ROOT = Path(__file__).resolve().parents[1]
TESTED = {"torch": "2.13", "transformers": "5.24", "zarr": "3.1"}
"""Versions the test suite ran under (CI); other versions may work but are not tested."""


def package_versions() -> dict[str, str | None]:
    """Installed distribution versions of what shapes a result (None: not installed)."""
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def module_version(module: str) -> str:
    """A module's `__version__` as imported here, or why it is not available (for `doctor`)."""
    from importlib import import_module

    try:
        return str(getattr(import_module(module), "__version__", "installed"))
    except Exception as err:  # an optional kernel that fails to import for any reason
        return f"not available ({type(err).__name__})"


def git_state(root: Path = SOURCE_ROOT) -> dict[str, Any]:
    """Commit of the `had` source tree and whether it had uncommitted changes (None if not git)."""

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(
                ["git", "-C", str(root), *args], capture_output=True, text=True, timeout=5
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if commit is None:
        return {"commit": None, "dirty": None}
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": bool(status)}


def command_line(argv: list[str] | None = None) -> str:
    argv = sys.argv if argv is None else argv
    return shlex.join([Path(argv[0]).name, *argv[1:]])


def provenance(
    seeds: dict[str, int] | None = None, inputs: dict[str, str] | None = None
) -> dict[str, Any]:
    """The record: `inputs` maps a role (fasta, store, task, ...) to a checksum or fingerprint."""
    return {
        "command": command_line(),
        "git": git_state(),
        "versions": package_versions(),
        "seeds": dict(seeds or {}),
        "inputs": dict(inputs or {}),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }
