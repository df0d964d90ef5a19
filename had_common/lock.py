"""One writer at a time: a lock file naming its holder (host, pid, start time, command).

A store being extracted and a run folder being trained each hold a lock file. It is created
atomically (written aside, then hard-linked into place, which fails if a lock exists), so a lock
file is always whole. A second writer is refused in one line naming the holder. A lock left by a
killed process is stale and taken over:

- same host: the holder's pid is not alive, or is alive but started at another time (pid reuse);
- another host (a shared file system): its liveness cannot be probed, so the lock is stale once
  its holder has not refreshed it (its mtime) for `STALE_AFTER_S`; writers refresh it at every
  chunk or step, far more often.

Anything else is refused; the message says which file to delete if the holder is known to be gone.
Sharded writers (one per rank) will each hold a lock of their own name beside this one.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
from pathlib import Path

from had_common.errors import HadError
from had_common.provenance import command_line

STALE_AFTER_S = 3600.0
"""A lock from another host that has not been refreshed for this long is taken over."""


class LockHeldError(HadError):
    """Another live process holds the lock of a store or run folder."""


def _proc_start(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux), to tell a reused pid apart."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass(frozen=True)
class Holder:
    """Who holds a lock."""

    host: str
    pid: int
    started: str
    command: str
    proc_start: str | None = None
    purpose: str = ""

    @classmethod
    def me(cls, purpose: str = "") -> Holder:
        return cls(
            host=socket.gethostname(),
            pid=os.getpid(),
            started=datetime.now(UTC).isoformat(timespec="seconds"),
            command=command_line(),
            proc_start=_proc_start(os.getpid()),
            purpose=purpose,
        )

    def describe(self) -> str:
        return (
            f"{self.purpose or 'a had process'} by pid {self.pid} on {self.host} since "
            f"{self.started} ({self.command})"
        )

    def is_me(self) -> bool:
        return self.host == socket.gethostname() and self.pid == os.getpid()

    def is_stale(self, age_s: float) -> bool:
        """True if the holder is certainly gone (see the module docstring for the rule)."""
        if self.host != socket.gethostname():
            return age_s > STALE_AFTER_S
        if not _pid_alive(self.pid):
            return True
        now = _proc_start(self.pid)
        return self.proc_start is not None and now is not None and now != self.proc_start


def read_holder(path: Path) -> Holder | None:
    """The holder recorded in a lock file, or None if there is no readable one."""
    try:
        data = json.loads(Path(path).read_text())
        known = {f.name for f in fields(Holder)}  # a newer had may record more
        return Holder(**{k: v for k, v in data.items() if k in known})
    except (OSError, ValueError, TypeError, AttributeError):
        return None


def _link_exclusive(src: Path, dst: Path) -> None:
    """Put `src`'s content at `dst` atomically, FileExistsError if `dst` exists."""
    try:
        os.link(src, dst)
    except FileExistsError:
        raise
    except OSError:  # a file system without hard links: exclusive create, then write
        fd = os.open(dst, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        with os.fdopen(fd, "w") as fh:
            fh.write(Path(src).read_text())


class FileLock:
    """`with FileLock(path, "extracting"):` holds `path` for this process, or refuses."""

    def __init__(self, path: Path, purpose: str) -> None:
        self.path = Path(path)
        self.purpose = purpose
        self.holder: Holder | None = None

    def acquire(self) -> FileLock:
        me = Holder.me(self.purpose)
        tmp = self.path.with_name(f"{self.path.name}.{me.pid}.tmp")
        tmp.write_text(json.dumps(asdict(me)))
        try:
            for _ in range(3):
                try:
                    _link_exclusive(tmp, self.path)
                except FileExistsError:
                    self._take_over_if_stale()
                    continue
                self.holder = me
                return self
        finally:
            tmp.unlink(missing_ok=True)
        raise LockHeldError(f"cannot lock {self.path}: it keeps being taken by another process")

    def _take_over_if_stale(self) -> None:
        holder = read_holder(self.path)
        try:
            age = time.time() - self.path.stat().st_mtime
        except FileNotFoundError:
            return  # released meanwhile: try again
        if holder is None:
            if age < 60:  # not ours to judge yet
                raise LockHeldError(f"{self.path} is being locked by another process right now")
        elif not (holder.is_me() or holder.is_stale(age)):
            raise LockHeldError(
                f"{self.path.parent} is in use: {holder.describe()}; wait for "
                f"it to finish, or delete {self.path} if that process is gone"
            )
        self.path.unlink(missing_ok=True)

    def refresh(self) -> None:
        """Show a live holder (another host judges staleness by this time)."""
        if self.holder is not None:
            with contextlib.suppress(OSError):
                os.utime(self.path)

    def release(self) -> None:
        if self.holder is not None and read_holder(self.path) == self.holder:
            self.path.unlink(missing_ok=True)
        self.holder = None

    def __enter__(self) -> FileLock:
        return self.acquire() if self.holder is None else self

    def __exit__(self, *exc: object) -> None:
        self.release()
