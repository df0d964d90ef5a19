"""What the op files share: the optional fast-kernel probe and the PyTorch paths' compute dtype.

Op files import this relatively (`from ._common import ...`), never through `had_train`, so an
exported model runs the copied op files without `had` installed.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor


@functools.cache
def optional_kernel(module: str, name: str) -> Callable[..., Any] | None:
    """`module.name` if it imports, else None: an optional kernel (fla, mamba_ssm) that fails to
    import for any reason (not installed, no CUDA, a broken build) is 'not available', never an
    error. Cached: probed once per process."""
    try:
        return getattr(importlib.import_module(module), name)
    except Exception:
        return None


def compute_dtype(x: Tensor) -> torch.dtype:
    """float64 stays float64 (for exact parity tests); everything else runs in float32."""
    return torch.float64 if x.dtype == torch.float64 else torch.float32
