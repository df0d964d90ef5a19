"""Which compressor for the store's teacher features? Bytes and write/read GB/s on real features.

The features are read from a store `had-cache extract` wrote (real DNA, a trained teacher: the
embedded demo teacher, width 192, unless --store names another), then written to and read back
from a fresh array in a temporary folder with the store's own layout (the same chunks and shards,
sharding codec, crc32c on every chunk), once per candidate codec. GB/s count the uncompressed
float16 bytes over the wall time of the zarr write or read (codec, checksum and the files; the
page cache keeps the disk out of it). The best of --repeats runs is kept for each.

    python benchmarks/compressors.py --store runs/bench/demo.had.zarr --json /tmp/compressors.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import zarr
from zarr.codecs import BloscCodec, Crc32cCodec, ZstdCodec

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from had_cache.reader import CacheReader  # noqa: E402

CANDIDATES = {
    "none": [],
    "zstd 1": [ZstdCodec(level=1)],
    "zstd 3": [ZstdCodec(level=3)],
    "zstd 9": [ZstdCodec(level=9)],
    "blosc-lz4 5 + byte shuffle": [BloscCodec(cname="lz4", clevel=5, shuffle="shuffle")],
    "blosc-zstd 3 + byte shuffle": [BloscCodec(cname="zstd", clevel=3, shuffle="shuffle")],
}


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def measure(
    feats: np.ndarray, chunks: tuple[int, ...], shards: tuple[int, ...], codecs: list, repeats: int
) -> dict[str, float]:
    """Bytes on disk and the best write and read rate of `feats` under `codecs` + crc32c."""
    best_write = best_read = float("inf")
    size = 0
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as tmp:
            array = zarr.create_array(
                f"{tmp}/a.zarr",
                shape=feats.shape,
                dtype=feats.dtype,
                chunks=chunks,
                shards=shards,
                fill_value=0,
                compressors=[*codecs, Crc32cCodec()],
                config={"write_empty_chunks": True},
            )
            t0 = time.perf_counter()
            array[:] = feats
            best_write = min(best_write, time.perf_counter() - t0)
            size = folder_bytes(Path(tmp) / "a.zarr")
            t0 = time.perf_counter()
            back = zarr.open_array(f"{tmp}/a.zarr", mode="r")[:]
            best_read = min(best_read, time.perf_counter() - t0)
            assert np.array_equal(back.view(np.uint16), feats.view(np.uint16))
    return {
        "bytes": size,
        "ratio": feats.nbytes / size,
        "write_gb_s": feats.nbytes / best_write / 1e9,
        "read_gb_s": feats.nbytes / best_read / 1e9,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", type=Path, required=True, help="a store of real features")
    parser.add_argument("--records", type=int, default=2048, help="records to use (at most)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    reader = CacheReader(args.store)
    a = reader.attrs
    n = min(args.records, a.n_records)
    feats = reader.read(slice(0, n)).teacher
    chunk = a.chunk_records
    chunks = (chunk, a.n_visible, a.hidden_size)
    shards = (chunk * max(1, min(a.shard_chunks, -(-n // chunk))), a.n_visible, a.hidden_size)
    print(
        f"{n:,} records of {a.n_visible} x {a.hidden_size} float16 features "
        f"({feats.nbytes / 1e6:,.1f} MB) from {args.store} (teacher {a.teacher.name_or_path}); "
        f"chunks of {chunk} records, shards of {shards[0]}; best of {args.repeats}"
    )
    results = {}
    for name, codecs in CANDIDATES.items():
        results[name] = measure(feats, chunks, shards, codecs, args.repeats)
        r = results[name]
        print(
            f"{name:<28} {r['bytes'] / 1e6:9.1f} MB  ratio {r['ratio']:5.3f}  "
            f"write {r['write_gb_s']:6.3f} GB/s  read {r['read_gb_s']:6.3f} GB/s"
        )
    if args.json:
        args.json.write_text(json.dumps({"records": n, "shape": list(feats.shape), **results}))


if __name__ == "__main__":
    main()
