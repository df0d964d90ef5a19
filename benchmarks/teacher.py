"""Teacher throughput on the extraction path: tokens/s and model FLOP utilisation (MFU).

The model is a random NT v2 teacher of a published shape (`had_cache.ntv2`), saved as a folder and
loaded by `had_cache.teacher.load_teacher`, so what is timed is what `had-cache extract` runs:
remote code, `inference_mode`, equal-length windows without padding or attention mask, SDPA,
every stored layer returned. Inputs are real windows of the embedded chrX slice (the teacher
gate's held-out windows), masked as the store masks them.

MFU counts the matmul FLOPs of one forward pass (projections, gated feed-forward, attention
scores and values; no LM head, which extraction skips) against a peak: the vendor's dense
bf16/fp16 figure for known GPUs, otherwise a measured large-GEMM rate on this device in the
benchmark's dtype (the best of 1,024-4,096 square GEMMs; stated in the output, so CPU MFU reads
"share of what this CPU's GEMM does").

    python benchmarks/teacher.py --device cpu --shape demo            # this CPU, fp32
    python benchmarks/teacher.py --device cuda --shape ntv2-500m      # GPU, bf16
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from had_cache import dna, masking, ntv2, tokenize  # noqa: E402
from had_cache.gate import gate_windows  # noqa: E402
from had_cache.teacher import load_teacher, resolve_dtype  # noqa: E402

# Dense (no sparsity) tensor-core peaks in TFLOP/s, from the vendors' data sheets.
GPU_PEAK_TFLOPS = {
    ("H100", torch.bfloat16): 989.4,
    ("H100", torch.float16): 989.4,
    ("H200", torch.bfloat16): 989.4,
    ("H200", torch.float16): 989.4,
    ("A100", torch.bfloat16): 312.0,
    ("A100", torch.float16): 312.0,
}


def forward_flops(config: object, seq_len: int) -> float:
    """Matmul FLOPs of one encoder forward over one sequence of `seq_len` tokens."""
    h, i, n = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    per_token = 2 * (4 * h * h + 3 * h * i)  # q, k, v, o; gated FFN: h -> 2i and i -> h
    attention = 2 * 2 * seq_len * h  # scores and weighted values, per token
    return float(n * seq_len * (per_token + attention))


def measured_gemm_tflops(device: torch.device, dtype: torch.dtype) -> float:
    """Best rate of square GEMMs (1,024-4,096) over 2 s each: this device's practical peak."""
    best = 0.0
    for size in (1024, 2048, 4096):
        a = torch.randn(size, size, device=device, dtype=dtype)
        b = torch.randn(size, size, device=device, dtype=dtype)
        for _ in range(2):
            a @ b
        sync(device)
        reps, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < 2.0:
            a @ b
            reps += 1
        sync(device)
        best = max(best, 2 * size**3 * reps / (time.perf_counter() - t0) / 1e12)
    return best


def peak_tflops(device: torch.device, dtype: torch.dtype) -> tuple[float, str]:
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        for (gpu, dt), peak in GPU_PEAK_TFLOPS.items():
            if gpu in name and dt == dtype:
                return peak, f"{name} data-sheet dense peak"
    return measured_gemm_tflops(device, dtype), "best measured square GEMM on this device"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--shape", choices=list(ntv2.SHAPES), default=None)
    p.add_argument("--dtype", default="auto", help="auto = bfloat16 on GPU, float32 on CPU")
    p.add_argument("--batch", type=int, default=None, help="windows per forward pass")
    p.add_argument("--window-bp", type=int, default=1020)
    p.add_argument("--layers", default="-1", help="stored layers, comma-separated")
    p.add_argument("--seconds", type=float, default=10.0, help="time spent measuring")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--json", type=Path, default=None, help="also write the result here")
    args = p.parse_args(argv)

    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    shape = args.shape or ("ntv2-500m" if device.type == "cuda" else "demo")
    batch = args.batch or (64 if device.type == "cuda" else 8)
    dtype = resolve_dtype(args.dtype, device)
    layers = tuple(int(x) for x in args.layers.split(","))

    with tempfile.TemporaryDirectory() as tmp:
        config = ntv2.ntv2_config(shape)
        model = ntv2.build_teacher(config).to(dtype)
        ntv2.save_teacher_folder(model, Path(tmp) / "teacher")
        del model
        teacher = load_teacher(str(Path(tmp) / "teacher"), device, dtype, layers)

    n_tokens = dna.groups_per_window(args.window_bp)
    seqs = gate_windows(batch, args.window_bp)
    mask = masking.group_masks(0, np.arange(batch), n_tokens, masking.DEFAULT_RATIO)
    ids = masking.teacher_input(tokenize.kmer_ids(seqs), mask, tokenize.MASK_ID)

    for _ in range(2):
        teacher.features(ids)
    sync(device)
    passes, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < args.seconds or passes < 3:
        teacher.features(ids)
        passes += 1
    sync(device)
    seconds = (time.perf_counter() - t0) / passes

    seq_len = n_tokens + 1  # with <cls>
    achieved = batch * forward_flops(config, seq_len) / seconds / 1e12
    peak, peak_source = peak_tflops(device, dtype)
    result = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "threads": torch.get_num_threads(),
        "shape": shape,
        "parameters": sum(p.numel() for p in teacher.model.parameters()),
        "dtype": str(dtype).removeprefix("torch."),
        "attention": getattr(teacher.model.config, "_attn_implementation", None),
        "batch": batch,
        "tokens_per_window": seq_len,
        "layers": teacher.info.layers,
        "ms_per_batch": round(seconds * 1e3, 2),
        "windows_per_s": round(batch / seconds, 2),
        "tokens_per_s": round(batch * seq_len / seconds, 1),
        "achieved_tflops": round(achieved, 4),
        "peak_tflops": round(peak, 4),
        "peak_source": peak_source,
        "mfu": round(achieved / peak, 4),
        "torch": torch.__version__,
    }
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
