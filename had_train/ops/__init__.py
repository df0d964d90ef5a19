"""Plain tensor functions (no parameters) that the student's layers call."""

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

__all__ = [
    "gated_delta_rule",
    "gated_delta_rule_backend",
    "gated_delta_rule_chunked",
    "gated_delta_rule_recurrent",
    "selective_scan",
    "selective_scan_backend",
    "selective_scan_chunked",
    "selective_scan_recurrent",
]
