"""Does the teacher ever wait? The bare teacher forward and the whole extraction, same windows.

In one process and on the same windows of the embedded chrX slice:

- *bare forward*: the teacher's forward over every batch, the visible features cast to float16
  and copied to the host, with every input built beforehand (nothing else runs);
- *whole extraction*: `had_cache.extract.extract_shards` into a fresh store, exactly as
  `had-cache extract` runs it: windows read from the FASTA, masks drawn and tokens built in the
  prefetch threads, the teacher, the shards assembled and written (compressed, checksummed) by
  the writer thread, until the last shard is on disk.

Their ratio (bare / whole) is the share of the extraction during which the teacher runs: 1.0
means the teacher never waits. Both are timed --repeats times, alternating (a shared machine's
load hits both alike); it prints the ratio of the best of each and the median of the ratios of
each adjacent pair. One-time costs (loading, the gate, planning, creating
the store) are reported apart. From the whole extraction's rate it prints windows/s, tokens/s
and what hg38 (3.0M windows of 1,020 bp per strand) costs in hours per GPU count and terabytes.

    OMP_NUM_THREADS=1 python benchmarks/extract.py --teacher demo              # this CPU, fp32
    python benchmarks/extract.py --shape ntv2-500m --device cuda --dtype bfloat16 --windows 4096
        # GPU: the NTv2-500M shape with RANDOM weights (a timing benchmark; never a store to use)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from had_cache import dna, masking, ntv2, schema, windows  # noqa: E402
from had_cache.extract import (  # noqa: E402
    FEATURES_TORCH_DTYPE,
    ExtractConfig,
    extract_shards,
    store_attrs,
)
from had_cache.pipeline import Prefetcher  # noqa: E402
from had_cache.teacher import load_teacher, resolve_dtype  # noqa: E402
from had_cache.writer import StoreWriter  # noqa: E402

HG38_WINDOWS_PER_STRAND = 3_000_000
"""hg38's N-free 1,020-bp windows per strand, about (issue 20's figure)."""
GPU_COUNTS = (1, 8, 64)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bare_forward(teacher: object, batches: list, device: torch.device) -> float:
    """Seconds of the teacher alone over prebuilt batches, features landed on the host."""
    synchronize(device)
    t0 = time.perf_counter()
    for batch in batches:
        out = teacher.visible_features(batch.seq, batch.mask, batch.token_ids)
        for values in out.values():
            values.to(FEATURES_TORCH_DTYPE).cpu().numpy()
    synchronize(device)
    return time.perf_counter() - t0


def whole_extraction(
    cfg: ExtractConfig, table: windows.WindowTable, teacher: object, attrs: schema.StoreAttrs
) -> tuple[float, float, int]:
    """(seconds of `extract_shards`, seconds creating the store, bytes on disk) into a fresh
    store."""
    with tempfile.TemporaryDirectory(dir=os.environ.get("HAD_BENCH_TMP")) as tmp:
        out = Path(tmp) / "bench.had.zarr"
        t0 = time.perf_counter()
        writer = StoreWriter.open_or_create(out, attrs, table)
        created = time.perf_counter() - t0
        with writer:
            t0 = time.perf_counter()
            extract_shards(cfg.fasta, table, teacher, writer, writer.pending_shards(), cfg)
            seconds = time.perf_counter() - t0
            writer.finalize()
        size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    return seconds, created, size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--teacher", default="demo", help="teacher folder, hub id or `demo`")
    parser.add_argument(
        "--shape",
        default=None,
        choices=sorted(ntv2.SHAPES),
        help="a RANDOM-weight NT v2 teacher of this shape instead of --teacher (timing only)",
    )
    parser.add_argument("--windows", type=int, default=2048)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--chunk-records", type=int, default=64)
    parser.add_argument("--shard-chunks", type=int, default=2)
    parser.add_argument("--workers", type=int, default=ExtractConfig.workers)
    parser.add_argument("--write-queue", type=int, default=ExtractConfig.write_queue)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    device = torch.device(args.device)
    dtype = resolve_dtype(args.dtype, device)
    t_setup = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        name = args.teacher
        if args.shape is not None:
            name = str(ntv2.make_random_teacher(Path(tmp) / "teacher", args.shape, seed=0))
        teacher = load_teacher(name, device, dtype)
    cfg = ExtractConfig(
        fasta=windows.fasta_path("demo"),
        out=Path("unused"),
        teacher=name,
        batch_size=args.batch_size,
        max_windows=args.windows,
        chunk_records=args.chunk_records,
        shard_chunks=args.shard_chunks,
        workers=args.workers,
        write_queue=args.write_queue,
        progress=False,
    )
    fasta = windows.open_fasta(cfg.fasta)
    table = windows.plan_windows(fasta, cfg.window_bp, max_windows=cfg.max_windows, progress=False)
    n_tokens = dna.groups_per_window(cfg.window_bp)
    n_masked = masking.n_masked(n_tokens, cfg.mask_ratio)
    attrs = store_attrs(cfg, table, teacher.info, None, n_tokens, n_masked, "0" * 64)
    setup = time.perf_counter() - t_setup
    prefetch = Prefetcher(cfg.fasta, table, attrs, workers=0)
    spans = [
        (lo, min(lo + cfg.batch_size, len(table))) for lo in range(0, len(table), cfg.batch_size)
    ]
    batches = [prefetch.build(lo, hi) for lo, hi in spans]
    bare_forward(teacher, batches[:2], device)  # warm-up (allocator, kernels)

    bare, whole, created = [], [], []
    size = 0
    for _ in range(args.repeats):
        bare.append(bare_forward(teacher, batches, device))
        seconds, made, size = whole_extraction(cfg, table, teacher, attrs)
        whole.append(seconds)
        created.append(made)
    n = len(table)
    best_bare, best_whole = min(bare), min(whole)
    wps = n / best_whole
    per_record_disk = size / n
    per_record_raw = schema.record_bytes(attrs)
    result = {
        "teacher": "random-weight " + args.shape if args.shape else args.teacher,
        "device": str(device),
        "dtype": str(dtype).removeprefix("torch."),
        "threads": torch.get_num_threads(),
        "windows": n,
        "tokens_per_window": n_tokens,
        "batch_size": cfg.batch_size,
        "workers": cfg.workers,
        "shards": attrs.n_shards,
        "records_per_shard": attrs.shard_records,
        "bare_forward_s": bare,
        "whole_extraction_s": whole,
        "ratio": best_bare / best_whole,
        "pair_ratios": [b / w for b, w in zip(bare, whole, strict=True)],
        "median_pair_ratio": float(np.median([b / w for b, w in zip(bare, whole, strict=True)])),
        "windows_per_s": wps,
        "tokens_per_s": wps * n_tokens,
        "setup_s": setup,
        "create_store_s": min(created),
        "bytes_per_record_on_disk": per_record_disk,
        "bytes_per_record_raw": per_record_raw,
        "hg38_hours": {
            f"{strands} strand(s), {g} device(s)": HG38_WINDOWS_PER_STRAND
            * strands
            / (wps * g)
            / 3600
            for strands in (1, 2)
            for g in GPU_COUNTS
        },
        "hg38_tb_per_strand_on_disk": HG38_WINDOWS_PER_STRAND * per_record_disk / 1e12,
        "hg38_tb_per_strand_raw": HG38_WINDOWS_PER_STRAND * per_record_raw / 1e12,
    }
    print(
        f"{result['teacher']} on {device} ({result['dtype']}, {result['threads']} thread(s)); "
        f"{n:,} windows x {n_tokens} tokens, batch {cfg.batch_size}, {cfg.workers} prefetch "
        f"thread(s), {attrs.n_shards} shards of {attrs.shard_records} records"
    )
    print(f"bare teacher forward   {', '.join(f'{s:.2f}' for s in bare)} s (best {best_bare:.2f})")
    print(
        f"whole extraction       {', '.join(f'{s:.2f}' for s in whole)} s (best {best_whole:.2f})"
    )
    print(
        f"ratio                  {result['ratio']:.3f} of the bests, "
        f"{result['median_pair_ratio']:.3f} median of pairs "
        f"({', '.join(f'{r:.3f}' for r in result['pair_ratios'])}); 1.0 = the teacher never waits"
    )
    print(f"throughput             {wps:,.1f} windows/s, {wps * n_tokens:,.0f} tokens/s")
    print(f"one-time               setup {setup:.1f} s, store creation {min(created):.2f} s")
    print(
        f"store                  {per_record_disk / 1e3:,.1f} kB/record on disk "
        f"({per_record_raw / 1e3:,.1f} kB raw)"
    )
    for key, hours in result["hg38_hours"].items():
        print(f"hg38 {key:<22} {hours:12,.1f} h at this rate")
    print(
        f"hg38 size per strand   {result['hg38_tb_per_strand_on_disk']:.3f} TB on disk, "
        f"{result['hg38_tb_per_strand_raw']:.3f} TB raw"
    )
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
