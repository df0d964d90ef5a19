"""Errors a user can fix. The CLIs print them as one line and exit with status 2."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any

import click


class HadError(Exception):
    """A problem with the user's input or environment, explained in one line."""


class FastaError(HadError):
    """The FASTA file is missing, unreadable or unusable."""


class TeacherError(HadError):
    """The teacher cannot be loaded or does not fit the NT 6-mer contract."""


class StoreError(HadError):
    """A Zarr store is missing, incomplete, or disagrees with what the caller expects."""


class ConfigError(HadError):
    """Options that contradict each other or the data."""


def exit_on_had_error(func: Callable[..., Any]) -> Callable[..., Any]:
    """Turn a HadError raised by a CLI command into `error: ...` on stderr and exit code 2."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except HadError as err:
            click.echo(f"error: {err}", err=True)
            sys.exit(2)

    return wrapper
