"""Where code runs: the device choice shared by every command."""

from __future__ import annotations

import torch

from had_cache.errors import ConfigError


def resolve_device(device: str) -> torch.device:
    """`auto` -> cuda if available, else cpu; anything else must name an available device."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as err:
        raise ConfigError(f"unknown --device {device!r}") from err
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {device} asked for, but torch sees no CUDA GPU here")
    return dev
