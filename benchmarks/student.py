"""Student speed and memory: the paper preset against an attention-only model of the same size.

Measures, for batch 1 (one sequence of L bases per step) unless --batch says otherwise:
  * encoder forward + backward tokens/s and peak memory at each --lengths;
  * time(L = 8,192) / time(L = 1,024) for the paper preset (the issue's goal: <= 9), and the
    same ratio for its two parts alone: the four Bi-GDN blocks (the preset without its attention
    block) and the attention block (the preset with only that block), which shows where the
    growth comes from; and for the preset with attention_window = 1,024;
  * the paper preset's GFLOP/s as a fraction of the attention-only model's at each length
    (issue 18's goal: >= 0.70 at L = 1,024);
  * the chunked gated delta rule against the step-by-step recurrence at L = 1,020, op alone,
    forward + backward, paper shapes (2 heads of 64; both directions, so batch 2); the goal is
    >= 5x. The same for the selective scan of a d_model-128 Mamba mixer (256 channels, N = 16).
    On CUDA a third column times the fast kernel (fla, mamba_ssm) when it imports.

--batch B times B sequences of L bases per step (training shapes). --rounds N runs the model
sweep N times, alternating the models, and summarises all timed steps of a configuration
together: on a shared machine, load then hits both models alike ("side by side").
--baseline DIR (CPU) also times both models with `had_train` imported from DIR (e.g. a
`git archive` of an older commit) in the same sweeps, for before/after figures from one run.
--compile times this code's models with every block under torch.compile
(`HadStudentModel.compile_blocks`); the compile happens in the untimed warm-up step, whose time
the table reports.

On CPU every configuration runs in a fresh subprocess, so one run's allocator state and peak
cannot leak into the next; on CUDA they run in one process (the allocator's peak is reset per
configuration; no repeated CUDA start-up). Peak memory: on CUDA, torch.cuda.max_memory_allocated
minus the memory allocated just before the first (warm-up) step; on CPU, the process's peak RSS
(resource.getrusage, over the warm-up and timed steps, which do identical work) minus its RSS
just before the warm-up step, i.e. activations, gradients and workspace of one step.
--dtype bfloat16 runs the model steps under bf16 autocast (the ops keep their state in fp32).

FLOPs of a model step (forward + backward) are counted by torch's FlopCounterMode on the meta
device, so they are the matmul FLOPs of our PyTorch formulation (chunked GDN; attention as
QK^T and PV, backward twice the forward, no recomputation), the same on every device; GFLOP/s
divides them by the measured time. For a part, the FLOP ratio 8k/1k is the time ratio it would
have if it ran at the same efficiency at both lengths.

    python benchmarks/student.py --threads 2 --repeats 3 --json /tmp/student.json
    python benchmarks/student.py --threads 2 --lengths 1024 --sections models --rounds 5 --stat min
    python benchmarks/student.py --device cuda --dtype bfloat16      # on a GPU
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import nullcontext
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from had_train.model import HadStudentConfig, HadStudentModel, count_parameters
from had_train.ops import (
    gated_delta_rule,
    gated_delta_rule_backend,
    gated_delta_rule_chunked,
    gated_delta_rule_recurrent,
    selective_scan,
    selective_scan_backend,
    selective_scan_chunked,
    selective_scan_recurrent,
)

GDN_LABEL = "gated delta rule, 2 x 2 heads x 64"
OPS = (("gdn", GDN_LABEL), ("mamba", "selective scan, 2 x 256 channels x N 16"))


MODELS = ("paper", "attention")
PARTS = {"gdn-blocks": "the 4 Bi-GDN blocks", "attention-block": "the attention block"}
WINDOWED = {"paper-window-1k": "the preset, attention_window 1,024 (not the paper)"}
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def model_config(name: str) -> HadStudentConfig:
    """The two models and the paper preset's two parts.

    "paper" is the preset; "attention" has five attention blocks with MLP width 424, so its
    encoder is within 0.3% of the paper preset's size (width 384 would be -6.5%). "gdn-blocks" is
    the preset without its attention block, "attention-block" the preset with only that block
    (each with the embedding and final norm, which cost next to nothing). "paper-window-1k" is
    the preset with its attention restricted to blocks of 1,024 bases (an opt-in, not the paper).
    """
    if name == "paper":
        return HadStudentConfig.from_preset("paper")
    if name == "attention":
        return HadStudentConfig.from_preset(
            "paper", mixers=["attention"] * 5, intermediate_size=424
        )
    if name == "gdn-blocks":
        return HadStudentConfig.from_preset("paper", mixers=["gdn"] * 4)
    if name == "attention-block":
        return HadStudentConfig.from_preset("paper", mixers=["attention"])
    if name == "paper-window-1k":
        return HadStudentConfig.from_preset("paper", attention_window=1024)
    raise ValueError(f"unknown model {name!r}")


def _rss_bytes() -> int:
    """Current resident set size (Linux /proc; elsewhere the peak so far, a conservative base)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return _peak_rss_bytes()


def _peak_rss_bytes() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # macOS: bytes; Linux: KiB


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _measure(
    step: Callable[[], None], device: torch.device, repeats: int, stat: str = "median"
) -> dict[str, Any]:
    """One warm-up step, then `repeats` timed steps; their median (or min) and peak memory."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
    else:
        base = _rss_bytes()
    start = time.perf_counter()
    step()
    _sync(device)
    warmup = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        _sync(device)
        times.append(time.perf_counter() - start)
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else _peak_rss_bytes()
    return {
        "seconds": min(times) if stat == "min" else statistics.median(times),
        "all_seconds": times,
        "warmup_seconds": warmup,
        "peak_bytes": float(peak - base),
    }


@functools.cache
def model_flops(model: str, length: int, batch: int = 1) -> float:
    """Matmul FLOPs of one forward + backward of `model` on `batch` sequences of `length` bases."""
    with torch.device("meta"):
        encoder = HadStudentModel(model_config(model)).train()
        ids = torch.randint(0, 4, (batch, length))
    with FlopCounterMode(display=False) as counter:
        encoder(ids).last_hidden_state.square().mean().backward()
    return float(counter.get_total_flops())


def _model_step(spec: dict[str, Any], device: torch.device) -> Callable[[], None]:
    """Encoder forward + backward on spec["batch"] random sequences of spec["length"] bases."""
    model = HadStudentModel(model_config(spec["model"])).to(device).train()
    if spec.get("compile"):
        model.compile_blocks()  # compiles during the untimed warm-up step
    ids = torch.randint(0, 4, (spec.get("batch", 1), spec["length"]), device=device)
    dtype = DTYPES[spec.get("dtype", "float32")]
    autocast = (
        nullcontext()
        if dtype == torch.float32
        else torch.autocast(device_type=device.type, dtype=dtype)
    )

    def step() -> None:
        model.zero_grad(set_to_none=True)
        with autocast:
            out = model(ids).last_hidden_state
        out.float().square().mean().backward()

    return step


def _op_step(spec: dict[str, Any], device: torch.device) -> Callable[[], None]:
    """One op, forward + backward, at paper shapes (both directions stacked: batch 2)."""
    gen = torch.Generator().manual_seed(0)
    length = spec["length"]

    def leaf(*shape: int, scale: float = 1.0, shift: float = 0.0) -> torch.Tensor:
        x = torch.randn(*shape, generator=gen) * scale + shift
        return x.to(device).requires_grad_(True)

    if spec["op"] == "gdn":
        fn = {
            "recurrent": gated_delta_rule_recurrent,
            "chunked": gated_delta_rule_chunked,
            "kernel": gated_delta_rule,
        }[spec["impl"]]
        q = F.normalize(torch.randn(2, length, 2, 64, generator=gen), dim=-1).to(device)
        k = F.normalize(torch.randn(2, length, 2, 64, generator=gen), dim=-1).to(device)
        q.requires_grad_(True)
        k.requires_grad_(True)
        v = leaf(2, length, 2, 64)
        g = (-torch.rand(2, length, 2, generator=gen) * 0.1).to(device).requires_grad_(True)
        beta = torch.rand(2, length, 2, generator=gen).to(device).requires_grad_(True)
        args: tuple[torch.Tensor, ...] = (q, k, v, g, beta)
    elif spec["op"] == "mamba":
        fn = {
            "recurrent": selective_scan_recurrent,
            "chunked": selective_scan_chunked,
            "kernel": selective_scan,
        }[spec["impl"]]
        a = (-torch.arange(1, 17.0)).repeat(256, 1).to(device).requires_grad_(True)
        args = (
            leaf(2, 256, length),
            leaf(2, 256, length, scale=0.5, shift=-4.0),
            a,
            leaf(2, 16, length),
            leaf(2, 16, length),
        )
    else:
        raise ValueError(f"unknown op {spec['op']!r}")

    def step() -> None:
        for x in args:
            x.grad = None
        if spec["op"] == "mamba":
            out, _ = fn(*args, delta_softplus=True)
        else:
            out, _ = fn(*args)
        out.square().mean().backward()

    return step


def measure(
    spec: dict[str, Any], device: str, threads: int | None, repeats: int, stat: str = "median"
) -> dict[str, Any]:
    """Build and time one configuration in this process."""
    if threads:
        torch.set_num_threads(threads)
    dev = torch.device(device)
    torch.manual_seed(0)
    step = _model_step(spec, dev) if spec["kind"] == "model" else _op_step(spec, dev)
    result = {**spec, **_measure(step, dev, repeats, stat)}
    if spec.get("count_flops"):  # here, so a --baseline worker counts its own code's FLOPs
        result["flops"] = model_flops(spec["model"], spec["length"], spec.get("batch", 1))
    return result


def run_in_process(spec: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """`measure` here (CUDA); an error (e.g. out of memory) becomes an error entry."""
    try:
        result = measure(spec, args.device, args.threads, args.repeats, args.stat)
    except Exception as error:  # one failed configuration must not lose the others
        result = {**spec, "error": f"{type(error).__name__}: {str(error).splitlines()[0]}"}
    finally:
        if args.device.startswith("cuda"):
            torch.cuda.empty_cache()
    print(f"  {spec}: {result.get('seconds', float('nan')):.4f} s", file=sys.stderr)
    return result


def run_isolated(spec: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """`measure` in a fresh interpreter (CPU); a crash (e.g. out of memory) becomes an error entry."""
    if args.device.startswith("cuda"):
        return run_in_process(spec, args)
    command = [sys.executable, os.path.abspath(__file__), "--worker", json.dumps(spec)]
    command += ["--device", args.device, "--repeats", str(args.repeats), "--stat", args.stat]
    if args.threads:
        command += ["--threads", str(args.threads)]
    env = dict(os.environ)
    if spec.get("code"):  # the baseline's had_train first on the path
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [spec["code"], env.get("PYTHONPATH")]))
    proc = subprocess.run(command, capture_output=True, text=True, env=env)
    if proc.returncode != 0 or not proc.stdout.strip():
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return {**spec, "error": f"exit {proc.returncode}: {tail}"}
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"  {spec}: {result['seconds']:.3f} s", file=sys.stderr)
    return result


def _ratio(short: dict[str, Any], long: dict[str, Any]) -> float | None:
    """long's time / short's time, or None when either run failed."""
    if "seconds" not in short or "seconds" not in long:
        return None
    return long["seconds"] / short["seconds"]


def _mib(result: dict[str, Any]) -> str:
    return f"{result['peak_bytes'] / 2**20:,.0f}" if "peak_bytes" in result else "-"


def _gflop(result: dict[str, Any]) -> str:
    return f"{result['flops'] / 1e9:,.1f}" if "flops" in result else "-"


def _gflops(result: dict[str, Any]) -> str:
    if "flops" not in result or "seconds" not in result:
        return "-"
    return f"{result['flops'] / result['seconds'] / 1e9:,.1f}"


def _ms(result: dict[str, Any], digits: int = 0) -> str:
    return f"{result['seconds'] * 1e3:,.{digits}f}" if "seconds" in result else "failed"


def _gflops_fraction(results: dict[str, Any], length: int, baseline: bool = False) -> float | None:
    """The paper preset's GFLOP/s over the attention-only model's at `length`, or None.

    FLOPs are those of each model's own formulation; the time ratio is printed beside it."""
    rows = {
        r["model"]: r
        for r in results["models"]
        if r["length"] == length and bool(r.get("code")) == baseline
    }
    paper, attention = rows.get("paper", {}), rows.get("attention", {})
    if not all("flops" in r and "seconds" in r for r in (paper, attention)):
        return None
    return (paper["flops"] / paper["seconds"]) / (attention["flops"] / attention["seconds"])


def _speedup_lines(results: dict[str, Any], length: int) -> list[str]:
    """time(paper) / time(attention), and baseline time / time per model (--baseline)."""
    rows = {
        (r["model"], bool(r.get("code"))): r for r in results["models"] if r["length"] == length
    }
    lines = []
    for baseline in (False, True):
        paper, attention = rows.get(("paper", baseline)), rows.get(("attention", baseline))
        if paper and attention and _ratio(attention, paper) is not None:
            which = "baseline" if baseline else "this code"
            lines.append(
                f"time(paper) / time(attention) at L = {length:,} ({which}): "
                f"{_ratio(attention, paper):.2f}"
            )
    for model in MODELS:
        new, old = rows.get((model, False)), rows.get((model, True))
        if new and old and _ratio(new, old) is not None:
            lines.append(f"{model}: baseline time / this code's time = {_ratio(new, old):.2f}")
    return lines


def report(results: dict[str, Any], args: argparse.Namespace) -> str:
    """The markdown tables and the goals, from the collected results."""
    lines = [
        f"device: {args.device}, dtype: {args.dtype}, threads: {args.threads or 'torch default'}, "
        f"timed steps: {args.repeats} after 1 warm-up ({args.stat}"
        f"{f' over {args.rounds} rounds' if args.rounds > 1 else ''}), batch {args.batch}",
        "",
        "| model | encoder params | L (bases) | fwd+bwd ms | tokens/s | peak MiB | GFLOP | GFLOP/s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results["models"]:
        params = f"{results['params'][r['model']]:,}"
        label = r["model"] + (" (baseline)" if r.get("code") else "")
        if "error" in r:
            lines.append(f"| {label} | {params} | {r['length']:,} | {r['error']} | - | - | - | - |")
            continue
        if r.get("compile"):
            label += f" (compiled; first step {r['warmup_seconds']:,.0f} s)"
        lines.append(
            f"| {label} | {params} | {r['length']:,} | {_ms(r)} | "
            f"{args.batch * r['length'] / r['seconds']:,.0f} | {_mib(r)} | {_gflop(r)} | "
            f"{_gflops(r)} |"
        )
    lines.append("")
    for length in args.lengths:
        fraction = _gflops_fraction(results, length)
        if fraction is not None:
            goal = f" (goal >= 0.70: {'met' if fraction >= 0.7 else 'NOT met'})"
            lines.append(
                f"paper / attention GFLOP/s at L = {length:,}: {fraction:.2f}"
                + (goal if length == 1024 else "")
            )
        baseline = _gflops_fraction(results, length, baseline=True)
        if baseline is not None:
            lines.append(f"the same for the baseline code: {baseline:.2f}")
        lines += _speedup_lines(results, length)
    if "ratios" in args.sections:
        lines += _ratio_lines(results, args)
    if "ops" in args.sections:
        lines += _op_lines(results, args)
    return "\n".join(lines)


def _ratio_lines(results: dict[str, Any], args: argparse.Namespace) -> list[str]:
    """The time(8k) / time(1k) table of the preset and its parts, and that goal."""
    short, long = args.ratio_lengths
    lines = [
        "",
        f"| paper preset, by part | L {short:,} ms | L {long:,} ms | time ratio | "
        f"GFLOP/s at {short:,} / {long:,} | FLOP ratio |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, (a, b) in results["ratios"].items():
        ratio = _ratio(a, b)
        flop_ratio = b["flops"] / a["flops"] if "flops" in a and "flops" in b else None
        label = {**PARTS, **WINDOWED}.get(name, "the whole preset")
        lines.append(
            f"| {label} | {_ms(a)} | {_ms(b)} | {'-' if ratio is None else f'{ratio:.2f}'} | "
            f"{_gflops(a)} / {_gflops(b)} | "
            f"{'-' if flop_ratio is None else f'{flop_ratio:.2f}'} |"
        )
    ratio = _ratio(*results["ratios"]["paper"])
    lines.append("")
    lines.append(
        f"paper preset time(L={long:,}) / time(L={short:,}): failed"
        if ratio is None
        else f"paper preset time(L={long:,}) / time(L={short:,}) = {ratio:.2f} "
        f"(goal <= 9: {'met' if ratio <= 9 else 'NOT met'})"
    )
    return lines


def _op_lines(results: dict[str, Any], args: argparse.Namespace) -> list[str]:
    """The chunked ops against their recurrences, and the GDN goal."""
    kernel_column = any("kernel" in impls for impls in results["ops"].values())
    header = f"| op (fwd+bwd, L = {args.op_length:,}) | recurrent ms | chunked ms | speed-up |"
    lines = ["", header + (" kernel ms | kernel |" if kernel_column else "")]
    lines.append("|---|---:|---:|---:|" + ("---:|---|" if kernel_column else ""))
    for op, impls in results["ops"].items():
        naive, chunked = impls["recurrent"], impls["chunked"]
        speedup = _ratio(chunked, naive)
        row = (
            f"| {op} | {_ms(naive, 1)} | {_ms(chunked, 1)} | "
            f"{'-' if speedup is None else f'{speedup:.1f}x'} |"
        )
        if kernel_column:
            kernel = impls.get("kernel", {"error": "not installed"})
            row += f" {_ms(kernel, 2)} | {kernel.get('backend', kernel.get('error', '-'))} |"
        lines.append(row)
    gdn = results["ops"][GDN_LABEL]
    gdn_speedup = _ratio(gdn["chunked"], gdn["recurrent"])
    lines.append("")
    lines.append(
        f"chunked gated delta rule vs recurrence at L = {args.op_length:,}: failed"
        if gdn_speedup is None
        else f"chunked gated delta rule vs recurrence at L = {args.op_length:,}: "
        f"{gdn_speedup:.1f}x (goal >= 5x: {'met' if gdn_speedup >= 5 else 'NOT met'})"
    )
    return lines


def _pool(runs: tuple[dict[str, Any], ...], stat: str) -> dict[str, Any]:
    """One configuration's runs from several rounds as one result: `stat` over all their timed
    steps, the largest peak; an error if every round failed."""
    ok = [r for r in runs if "error" not in r]
    if not ok:
        return runs[0]
    times = [t for r in ok for t in r["all_seconds"]]
    return {
        **ok[0],
        "seconds": min(times) if stat == "min" else statistics.median(times),
        "all_seconds": times,
        "peak_bytes": max(r["peak_bytes"] for r in ok),
        "rounds": len(ok),
    }


def _kernel_backends(device: str) -> dict[str, str]:
    """op -> fast-kernel name, for the ops whose kernel runs on `device` (none on CPU)."""
    found = {"gdn": gated_delta_rule_backend(device), "mamba": selective_scan_backend(device)}
    return {op: name for op, name in found.items() if name in ("fla", "mamba_ssm")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", choices=list(DTYPES), default="float32", help="model steps")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--repeats", type=int, default=3, help="timed steps after one warm-up")
    parser.add_argument(
        "--stat",
        choices=["median", "min"],
        default="median",
        help="summary of the timed steps; min resists other load on a shared machine",
    )
    parser.add_argument("--lengths", type=int, nargs="+", default=[1024, 4096, 16384])
    parser.add_argument("--batch", type=int, default=1, help="sequences per model step")
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="run the model sweep this many times, alternating models; --stat over all steps",
    )
    parser.add_argument(
        "--sections",
        nargs="+",
        choices=["models", "ratios", "ops"],
        default=["models", "ratios", "ops"],
        help="models: the table at --lengths; ratios: time(8k)/time(1k) by part; ops: op alone",
    )
    parser.add_argument(
        "--baseline",
        default=None,
        metavar="DIR",
        help="also time the models with had_train imported from DIR (CPU; before/after)",
    )
    parser.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the blocks of this code's models (not --baseline's); the untimed "
        "warm-up step includes the compile, its time is reported",
    )
    parser.add_argument("--ratio-lengths", type=int, nargs=2, default=[1024, 8192])
    parser.add_argument("--op-length", type=int, default=1020)
    parser.add_argument("--json", default=None, help="also write the results here")
    parser.add_argument("--no-flops", action="store_true", help="skip the FLOP counts")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker is not None:
        result = measure(
            json.loads(args.worker), args.device, args.threads, args.repeats, args.stat
        )
        print(json.dumps(result))
        return

    results: dict[str, Any] = {
        "params": {m: count_parameters(HadStudentModel(model_config(m))) for m in MODELS},
        "models": [],
        "ratios": {},
        "ops": {},
    }
    for name, count in results["params"].items():
        print(f"{name}: {count:,} encoder parameters", file=sys.stderr)

    def model_run(model: str, length: int, code: str | None = None) -> dict[str, Any]:
        spec: dict[str, Any] = {
            "kind": "model",
            "model": model,
            "length": length,
            "dtype": args.dtype,
            "batch": args.batch,
        }
        if code:
            spec["code"] = code
        elif args.compile:
            spec["compile"] = True
        if args.device.startswith("cuda") or args.no_flops:
            result = run_isolated(spec, args)
            if not args.no_flops and "error" not in result:
                result["flops"] = model_flops(model, length, args.batch)
            return result
        return run_isolated({**spec, "count_flops": True}, args)

    if args.baseline and args.device.startswith("cuda"):
        parser.error("--baseline runs workers in fresh processes: CPU only")
    codes = [None] + ([os.path.abspath(args.baseline)] if args.baseline else [])
    if "models" in args.sections:
        sweeps = [
            [
                model_run(model, length, code)
                for length in args.lengths
                for model in MODELS
                for code in codes
            ]
            for _ in range(args.rounds)
        ]
        results["models"] = [_pool(runs, args.stat) for runs in zip(*sweeps, strict=True)]
    timed = {
        (r["model"], r["length"]): r
        for r in results["models"]
        if "error" not in r and not r.get("code")
    }
    for name in ("paper", *PARTS, *WINDOWED):
        if "ratios" not in args.sections:
            break
        results["ratios"][name] = [
            timed.get((name, length)) or model_run(name, length) for length in args.ratio_lengths
        ]
    kernels = _kernel_backends(args.device)
    for op, label in OPS if "ops" in args.sections else ():
        impls = ["recurrent", "chunked"] + (["kernel"] if op in kernels else [])
        results["ops"][label] = {
            impl: run_isolated(
                {"kind": "op", "op": op, "impl": impl, "length": args.op_length}, args
            )
            for impl in impls
        }
        if op in kernels:
            results["ops"][label]["kernel"]["backend"] = kernels[op]
    table = report(results, args)
    print(table)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {"command": " ".join(sys.argv), "results": results, "table": table}, f, indent=2
            )


if __name__ == "__main__":
    main()
