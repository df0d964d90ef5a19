"""Plain tensor functions (no parameters) that the student's layers call."""

import torch

from .gated_delta_rule import (
    gated_delta_rule,
    gated_delta_rule_backend,
    gated_delta_rule_chunked,
    gated_delta_rule_recurrent,
)
from .selective_scan import (
    selective_scan,
    selective_scan_backend,
    selective_scan_chunked,
    selective_scan_recurrent,
)
from .short_convolution import short_convolution


def mixer_backends(device: torch.device | str) -> dict[str, str]:
    """Which implementation each mixer runs on `device`: the one place that answers it."""
    return {
        "gdn": gated_delta_rule_backend(device),
        "mamba": selective_scan_backend(device),
        "attention": "sdpa",
    }


__all__ = [
    "mixer_backends",
    "gated_delta_rule",
    "gated_delta_rule_backend",
    "gated_delta_rule_chunked",
    "gated_delta_rule_recurrent",
    "selective_scan",
    "selective_scan_backend",
    "selective_scan_chunked",
    "selective_scan_recurrent",
    "short_convolution",
]
