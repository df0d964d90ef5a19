"""`had-train doctor`: what this machine will run, before a user spends hours finding out."""

from __future__ import annotations

import platform

from had_common.device import AUTO, resolve_device
from had_common.provenance import TESTED, module_version
from had_train.ops import mixer_backends

CORE_MODULES = ("torch", "transformers", "zarr", "numcodecs", "pyfaidx", "had_cache")
KERNEL_MODULES = ("fla", "mamba_ssm", "triton")


def doctor_lines(device: str = AUTO) -> list[str]:
    """Package versions (beside the ones CI tests), the device, and each mixer's implementation."""
    import torch

    dev = resolve_device(device)
    rows = [("python", platform.python_version(), "")]
    for name in CORE_MODULES:
        rows.append(
            (name, module_version(name), f"tested {TESTED[name]}.x" if name in TESTED else "")
        )
    for name in KERNEL_MODULES:
        rows.append((name, module_version(name), "optional GPU kernel"))
    gpu = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "no CUDA device"
    rows.append(("device", str(dev), gpu))
    rows += [(f"mixer {m}", b, "") for m, b in mixer_backends(dev).items()]
    w0, w1 = (max(len(r[i]) for r in rows) for i in (0, 1))
    return [f"{a:<{w0}}  {b:<{w1}}  {c}".rstrip() for a, b, c in rows]
