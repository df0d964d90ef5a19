"""Writing files so that a kill or a full disk never leaves something a later run trusts.

`atomic_write_text` writes beside the target and renames (a reader sees the old file or the new
one, never half of one). `disk_full_guard` turns "no space left on device" into one line naming
the path, the space needed and the space free, so the user frees space and reruns the same
command, which resumes.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

from had_common.errors import HadError

DISK_FULL_ERRNOS = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}


class DiskFullError(HadError):
    """The device (or quota) ran out of space while writing."""


def atomic_write_text(path: Path, text: str) -> None:
    """Write `text` to `path` through a temporary file renamed into place."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1000
    return f"{n} B"  # unreachable


def free_bytes(path: Path) -> int | None:
    """Free space on the device holding `path` (or its nearest existing ancestor); None for a
    URL (an object store has no device to ask)."""
    if "://" in str(path):
        return None
    path = Path(path).absolute()
    for candidate in (path, *path.parents):
        if candidate.exists():
            try:
                return shutil.disk_usage(candidate).free
            except OSError:
                return None
    return None


def is_disk_full(err: BaseException) -> bool:
    return isinstance(err, OSError) and err.errno in DISK_FULL_ERRNOS


def disk_full_message(path: Path, what: str, needed: int | None = None) -> str:
    free = free_bytes(path)
    parts = [f"no space left on the device of {path} while {what}"]
    if needed is not None:
        parts.append(f"about {human_bytes(needed)} more is needed")
    if free is not None:
        parts.append(f"{human_bytes(free)} free")
    return "; ".join(parts)


@contextlib.contextmanager
def disk_full_guard(
    path: Path, what: str, needed: Callable[[], int | None] | None = None, then: str = ""
) -> Iterator[None]:
    """Re-raise "no space left" inside the block as a one-line DiskFullError about `path`."""
    try:
        yield
    except OSError as err:
        if not is_disk_full(err):
            raise
        message = disk_full_message(path, what, needed() if needed else None)
        raise DiskFullError(message + (f"; {then}" if then else "")) from None
