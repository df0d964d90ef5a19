#!/usr/bin/env bash
# Gather, on a machine with pip access, what benchmarks/gpu.sh needs on a bare GPU machine that can
# reach nothing: wheels of the packages its image lacks and the mamba-ssm sources to compile there.
#
#     bash benchmarks/gpu_prepare.sh           # -> .gpu/ (ignored by git, ~16 MB)
#
# The GPU image (see docs/benchmarks.md) already has Python 3.12, a CUDA build of torch, triton,
# transformers, numpy, scikit-learn, matplotlib, click, tqdm, einops and pyyaml. Versions below are
# the ones this repository is tested with on CPU; fla-core is the kernel half of
# flash-linear-attention (the half `had` imports). mamba-ssm ships only sources on PyPI and would
# compile for nine GPU architectures; gpu.sh compiles its one kernel for the GPU it runs on.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-.venv/bin/python}
DEST=.gpu
WHEELS=(
    zarr==3.1.6 numcodecs==0.16.6 google-crc32c==1.9.0 donfig==0.8.1.post1
    pyfaidx==0.9.2.2 biopython==1.88
    fla-core==0.6.0
)
MAMBA_SSM=2.3.2.post1

rm -rf "$DEST"
mkdir -p "$DEST/wheels"
"$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: \
    --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 \
    -d "$DEST/wheels" "${WHEELS[@]}"
# pip would build mamba-ssm's metadata (importing torch) just to download it: fetch the sdist itself.
"$PYTHON" - "$MAMBA_SSM" "$DEST" <<'EOF'
import re, sys, tarfile, urllib.request
from pathlib import Path

version, dest = sys.argv[1], Path(sys.argv[2])
name = f"mamba_ssm-{version}.tar.gz"
with urllib.request.urlopen("https://pypi.org/simple/mamba-ssm/") as r:
    page = r.read().decode()
url = re.search(rf'href="([^"#]*/{re.escape(name)})(#[^"]*)?"', page).group(1)
archive = dest / name
urllib.request.urlretrieve(url, archive)
with tarfile.open(archive) as tar:
    tar.extractall(dest, filter="data")
archive.unlink()
(dest / f"mamba_ssm-{version}").rename(dest / "mamba_ssm")
print(f"mamba-ssm {version} sources -> {dest / 'mamba_ssm'}")
EOF
du -sh "$DEST"
ls "$DEST/wheels"
