"""Why the cache exists: a student training step fed from the cache against the same step with
the teacher computing its features online, timed in one run, per teacher shape.

  cached step  = the paper-preset student's forward, both HAD losses, backward, clipping and an
                 AdamW step, on a batch whose teacher features are already in memory (what the
                 loader hands the trainer: float16 features, widened on the device);
  online step  = the teacher's forward pass over the same masked windows (`<cls>` + 6-mer ids,
                 masked groups as `<mask>`, inference mode, the features of the visible tokens of
                 the final layer, exactly what `had-cache extract` computes), then the same step.

Cached and online steps alternate and the best of --repeats is kept (medians are reported too),
so a shared machine's changing load does not land on one side only. The ratio online / cached
is the speed-up of training from the cache; the FLOP ratio is the
same quotient of matmul FLOPs (the student's step counted by torch's FlopCounterMode, the
teacher's forward by benchmarks/teacher.py's formula), i.e. the ratio if both ran at the same
efficiency. Teachers have random weights (timing only): `demo` is the embedded demo shape,
`ntv2-500m` NTv2-500M's published shape (496M parameters), built in memory. bf16 autocast for
both models on CUDA, float32 on CPU.

    python benchmarks/cache_vs_online.py --threads 2 --batch 2 --json /tmp/cache_vs_online.json
    python benchmarks/cache_vs_online.py --device cuda --batch 64      # on a GPU
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from had_cache import dna, masking, ntv2, tokenize
from had_train import losses
from had_train.model import HadStudentConfig, HadStudentForPretraining
from had_train.optim import optim_groups

WINDOW_BP = 1020
MASK_RATIO = 0.15


def _teacher_bench():
    """benchmarks/teacher.py, for its one FLOP formula of a teacher forward."""
    spec = importlib.util.spec_from_file_location(
        "teacher_bench", Path(__file__).with_name("teacher.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def windows(batch: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Random N-free windows and their group masks (the store's mask count)."""
    rng = np.random.default_rng(seed)
    seq = rng.integers(0, 4, (batch, WINDOW_BP), dtype=np.uint8)
    mask = masking.group_masks(seed, np.arange(batch), WINDOW_BP // dna.K, MASK_RATIO)
    return seq, mask


class Student:
    """The paper preset and its optimizer; `step` is one training step on one batch."""

    def __init__(self, hidden_size: int, device: torch.device, autocast: torch.dtype | None):
        torch.manual_seed(0)
        config = HadStudentConfig.from_preset("paper", teacher_hidden_size=hidden_size)
        self.model = HadStudentForPretraining(config).to(device)
        self.opt = torch.optim.AdamW(optim_groups(self.model, 0.1), lr=1e-4)
        self.device, self.autocast = device, autocast

    def step(self, seq: torch.Tensor, mask: torch.Tensor, teacher: torch.Tensor) -> None:
        ctx = (
            torch.autocast(self.device.type, dtype=self.autocast)
            if self.autocast
            else contextlib.nullcontext()
        )
        with ctx:
            out = self.model(seq, mask)
        targets = self.model.reconstruction_targets(seq, mask)
        loss = losses.alignment_loss(out.aligned, teacher.float()) + losses.reconstruction_loss(
            out.recon_logits, targets
        )
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.opt.step()


def teacher_features(
    model: torch.nn.Module, seq: np.ndarray, mask: np.ndarray, device: torch.device
) -> torch.Tensor:
    """What extraction computes per window: the final layer's features of the visible tokens."""
    ids = masking.teacher_input(tokenize.kmer_ids(seq), mask, tokenize.MASK_ID)
    ids = torch.as_tensor(tokenize.with_cls(ids), device=device)
    with torch.inference_mode():
        hidden = model.base_model(input_ids=ids, output_hidden_states=True).hidden_states[-1]
    visible = torch.as_tensor(~mask, device=device)
    return hidden[:, 1:][visible].reshape(len(seq), -1, hidden.shape[-1]).clone()


def timed_pair(first, second, device: torch.device, repeats: int) -> tuple[list, list]:
    """Seconds of `repeats` calls of each, alternating (so load that comes and goes on a shared
    machine hits both alike), after one warm-up call of each."""
    times: tuple[list, list] = ([], [])
    for i in range(repeats + 1):
        for fn, out in ((first, times[0]), (second, times[1])):
            sync(device)
            t0 = time.perf_counter()
            fn()
            sync(device)
            if i:
                out.append(time.perf_counter() - t0)
    return times


def compare(shape: str, batch: int, device: torch.device, repeats: int) -> dict:
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    config = ntv2.ntv2_config(shape)
    teacher = ntv2.build_teacher(config, seed=0).to(device=device, dtype=dtype).eval()
    seq_np, mask_np = windows(batch)
    seq = torch.as_tensor(seq_np, device=device).long()
    mask = torch.as_tensor(mask_np, device=device)
    cached = teacher_features(teacher, seq_np, mask_np, device).to(torch.float16)
    student = Student(config.hidden_size, device, dtype if device.type == "cuda" else None)

    def cached_step() -> None:
        student.step(seq, mask, cached)

    def online_step() -> None:
        student.step(seq, mask, teacher_features(teacher, seq_np, mask_np, device))

    cached_times, online_times = timed_pair(cached_step, online_step, device, repeats)
    t_cached, t_online = min(cached_times), min(online_times)
    with FlopCounterMode(display=False) as counter:
        cached_step()
    student_flops = float(counter.get_total_flops())
    n_tokens = WINDOW_BP // dna.K + 1  # with <cls>
    teacher_flops = batch * _teacher_bench().forward_flops(config, n_tokens)
    return {
        "shape": shape,
        "teacher_parameters": sum(p.numel() for p in teacher.parameters()),
        "batch": batch,
        "device": str(device),
        "dtype": str(dtype).removeprefix("torch."),
        "cached_step_s": t_cached,
        "online_step_s": t_online,
        "ratio": t_online / t_cached,
        "cached_step_median_s": statistics.median(cached_times),
        "online_step_median_s": statistics.median(online_times),
        "ratio_of_medians": statistics.median(online_times) / statistics.median(cached_times),
        "student_step_gflop": student_flops / 1e9,
        "teacher_forward_gflop": teacher_flops / 1e9,
        "flop_ratio": (student_flops + teacher_flops) / student_flops,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--shapes", nargs="+", default=["demo", "ntv2-500m"])
    parser.add_argument("--batch", type=int, default=2, help="windows of 1,020 bp per step")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = []
    for shape in args.shapes:
        row = compare(shape, args.batch, torch.device(args.device), args.repeats)
        rows.append(row)
        print(
            f"{shape} teacher ({row['teacher_parameters']:,} params), batch {args.batch}, "
            f"{row['device']} {row['dtype']}: cached step {row['cached_step_s'] * 1e3:.0f} ms, "
            f"online step {row['online_step_s'] * 1e3:.0f} ms (best of {args.repeats}, "
            f"alternating), ratio {row['ratio']:.2f}x (of medians {row['ratio_of_medians']:.2f}x); "
            f"FLOPs student step {row['student_step_gflop']:.1f} G, teacher forward "
            f"{row['teacher_forward_gflop']:.1f} G, FLOP ratio {row['flop_ratio']:.2f}x",
            flush=True,
        )
    if args.json:
        args.json.write_text(
            json.dumps({"threads": torch.get_num_threads(), "rows": rows}, indent=2)
        )


if __name__ == "__main__":
    main()
