"""Bytes on disk: `had-cache plan`'s estimate against what `extract` writes, array by array.

Extracts the demo FASTA with the demo teacher once per codec (fp16, int8, pca-int8 at D/4) and
prints, for every array, raw bytes, bytes on disk and their ratio (the figures behind
`had_cache.plan.COMPRESSION`), then the plan's total against the store's. Usage:

    OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/plan.py --windows 512 --out /tmp/plan-bench
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
from pathlib import Path

from had_cache import schema, windows
from had_cache.extract import ExtractConfig, extract
from had_cache.plan import estimate_bytes, make_plan
from had_cache.reader import CacheReader

CODECS = {
    "fp16": {},
    "int8": {},
    "pca-int8": {"pca_dim": 48},
    "fp16+predictions": {"predictions": 16},
}


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=int, default=512)
    parser.add_argument("--out", type=Path, default=Path("/tmp/plan-bench"))
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    rows = {}
    for codec, extra in CODECS.items():
        out = args.out / f"{codec}.zarr"
        if out.exists():
            shutil.rmtree(out)
        cfg = ExtractConfig(
            fasta=windows.fasta_path("demo"),
            out=out,
            teacher="demo",
            max_windows=args.windows,
            batch_size=32,
            codec=codec.split("+")[0],
            progress=False,
            **extra,
        )
        extract(cfg)
        attrs = CacheReader(out).attrs
        estimate = estimate_bytes(attrs)
        specs = schema.array_specs(attrs)
        arrays = {}
        for name, (shape, dtype, _) in specs.items():
            raw = math.prod(shape) * dtype.itemsize
            disk = folder_bytes(out / name)
            arrays[name] = {
                "raw": raw,
                "disk": disk,
                "ratio": disk / raw,
                "estimate": estimate.arrays[name],
            }
        meta = (out / "zarr.json").stat().st_size
        params = {
            p.name: folder_bytes(p) for p in out.iterdir() if p.is_dir() and p.name not in specs
        }
        total = folder_bytes(out)
        planned = make_plan(cfg).bytes.total
        rows[codec] = {
            "arrays": arrays,
            "group_metadata": meta,
            "parameter_arrays": params,
            "total": total,
            "plan": planned,
            "plan_error": planned / total - 1,
        }
        print(
            f"{codec}: store {total:,} B, plan {planned:,} B ({planned / total - 1:+.2%}); "
            f"group zarr.json {meta:,} B; parameter arrays {params}"
        )
        for name, a in arrays.items():
            print(
                f"  {name:<24} raw {a['raw']:>12,} disk {a['disk']:>12,} ratio {a['ratio']:.3f}"
                f" estimate {a['estimate']:>12,}"
            )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
