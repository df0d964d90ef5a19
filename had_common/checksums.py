"""sha256 of input files, the one rule behind every checksum in stores, runs and results."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

BLOCK = 1 << 22


def files_sha256(paths: Iterable[Path], with_names: bool = True) -> str:
    """sha256 over the files in name order; each file's name is hashed before its bytes unless
    `with_names` is False (a single input file such as a FASTA: its content alone, so a renamed
    copy has the same checksum)."""
    digest = hashlib.sha256()
    for path in sorted(Path(p) for p in paths):
        if with_names:
            digest.update(path.name.encode())
        with open(path, "rb") as fh:
            for block in iter(lambda fh=fh: fh.read(BLOCK), b""):
                digest.update(block)
    return digest.hexdigest()


def file_sha256(path: Path) -> str:
    """sha256 of one file's content."""
    return files_sha256([path], with_names=False)
