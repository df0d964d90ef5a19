"""Compile mamba-ssm's selective-scan CUDA extension for the GPU of this machine only.

mamba-ssm's own setup.py compiles its kernels for nine GPU architectures, far too slow for a
15-minute GPU lease; this builds the same sources with the same nvcc flags for the one
architecture present, in parallel (ninja), into --build-dir, which then holds
`selective_scan_cuda*.so`. Put that folder and mamba-ssm's Python sources on PYTHONPATH and
`import mamba_ssm` works as after `pip install mamba-ssm`. Used by benchmarks/gpu.sh.

    python benchmarks/build_mamba_kernel.py --src .gpu/mamba_ssm --build-dir /tmp/mamba_build
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch
from torch.utils.cpp_extension import load

# As in mamba-ssm 2.3's setup.py (CUDA branch), minus the architecture list.
NVCC_FLAGS = [
    "-O3",
    "-std=c++17",
    "-U__CUDA_NO_HALF_OPERATORS__",
    "-U__CUDA_NO_HALF_CONVERSIONS__",
    "-U__CUDA_NO_BFLOAT16_OPERATORS__",
    "-U__CUDA_NO_BFLOAT16_CONVERSIONS__",
    "-U__CUDA_NO_BFLOAT162_OPERATORS__",
    "-U__CUDA_NO_BFLOAT162_CONVERSIONS__",
    "--expt-relaxed-constexpr",
    "--expt-extended-lambda",
    "--use_fast_math",
    "-lineinfo",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", type=Path, default=Path(".gpu/mamba_ssm"))
    parser.add_argument("--build-dir", type=Path, required=True)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("no CUDA device: nothing to compile for")
    major, minor = torch.cuda.get_device_capability()
    # cpp_extension turns this into the one -gencode flag
    os.environ["TORCH_CUDA_ARCH_LIST"] = f"{major}.{minor}"
    csrc = (args.src / "csrc" / "selective_scan").resolve()
    sources = [csrc / "selective_scan.cpp", *sorted(csrc.glob("selective_scan_*.cu"))]
    args.build_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    load(
        name="selective_scan_cuda",
        sources=[str(s) for s in sources],
        extra_cflags=["-O3", "-std=c++17"],
        extra_cuda_cflags=NVCC_FLAGS,
        extra_include_paths=[str(csrc)],
        build_directory=str(args.build_dir),
        verbose=False,
    )
    print(
        f"selective_scan_cuda: {len(sources)} sources for sm_{major}{minor} "
        f"in {time.perf_counter() - start:.0f} s -> {args.build_dir}"
    )


if __name__ == "__main__":
    main()
