"""Where code runs: the one `--device` rule every command shares."""

from __future__ import annotations

import torch

from had_common.errors import ConfigError

AUTO = "auto"
"""The default of every `--device`: cuda if torch sees a GPU, else cpu."""
HELP = "auto (cuda if present, else cpu), cpu, cuda, cuda:1, ..."


def resolve_device(device: str = AUTO) -> torch.device:
    """`auto` -> cuda if available, else cpu; anything else must name an available device."""
    if device == AUTO:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as err:
        raise ConfigError(f"unknown --device {device!r}") from err
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {device} asked for, but torch sees no CUDA GPU here")
    return dev
