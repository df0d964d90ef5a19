"""Command-line conventions shared by `had-cache` and `had-train`.

A user mistake is one line on stderr, `error: ...`, and exit status 2 (never a traceback), and
every command that runs a model takes the same `--device`.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from had_common import device
from had_common.errors import HadError
from had_common.files import disk_full_message, is_disk_full

F = TypeVar("F", bound=Callable[..., Any])
CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"]}


def exit_on_had_error(func: F) -> F:
    """Turn a HadError raised by a CLI command into `error: ...` on stderr and exit code 2;
    so too a full disk wherever it strikes (the writers name the space needed themselves)."""

    def fail(message: str) -> None:
        message = " ".join(message.split())  # one line, whatever the message holds
        click.echo(f"error: {message}", err=True)
        sys.exit(2)

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except HadError as err:
            fail(str(err))
        except OSError as err:
            if not is_disk_full(err):
                raise
            where = err.filename or "the output"
            fail(disk_full_message(where, "writing") + "; free space and rerun the same command")

    return wrapper  # type: ignore[return-value]


def device_option(help_suffix: str = "") -> Callable[[F], F]:
    """`--device`, the same default and rule everywhere (`had_common.device`)."""
    return click.option(
        "--device",
        default=device.AUTO,
        show_default=True,
        help=device.HELP + help_suffix,
    )
