"""Train the small NT-style demo teacher that ships in `had_cache/assets/demo_teacher/`.

Why: the Hugging Face Hub is unreachable on a fresh machine, so the pipeline's default teacher
must live in the repository (design.md section 4). It is the NT v2 architecture of
`had_cache.ntv2` (ESM pre-LN encoder, rotary positions, gated SiLU feed-forward without biases,
untied output layer, `token_dropout=False`) at the `demo` shape, with NTv2's exact 6-mer
vocabulary (4,107 ids, `<cls>` prepended, no `<eos>`), saved in NTv2's folder layout with its
remote code, so the extraction code that loads it is the code that loads NTv2-500M.

Data: random 1,020-bp N-free windows (170 6-mer tokens + `<cls>`) of the demo slice
(`had_cache/assets/chrX_demo.fa.gz`, made by `scripts/make_demo_slice.py`), excluding the
slice's last 10%, which is held out. Objective: masked LM on exactly round(0.15 * 170) = 26
tokens per window, every masked token replaced by `<mask>` (the extraction stage always masks
with `<mask>`, so there is no 80/10/10 rule). AdamW with linear warm-up then cosine decay, fp32,
two CPU threads. Training stops after `--minutes` of wall time, and the learning-rate schedule
runs on the elapsed fraction of that budget (or on steps when `--max-steps` is given), so the
number of steps depends on the machine's speed; every other random choice follows `--seed`.

Long runs resume: every `--checkpoint-every` steps the model, optimizer, random states, step,
training time and running loss go to `<out>.checkpoint.pt` (written whole, then renamed), and
`--resume` continues from it; by steps (`--max-steps`) the resumed run equals an uninterrupted
one bit for bit (tested), by wall time the schedule continues from the training time spent.
The checkpoint is deleted once the finished teacher is saved.

At the end the script saves float16 safetensors plus the tokenizer files and
`training_summary.json`, reloads the folder with `AutoModelForMaskedLM.from_pretrained(folder,
dtype=torch.float32)`, refuses to finish if any weight is missing, unexpected or newly
initialised, and evaluates the reloaded (shipped) model: masked-token accuracy on the held-out
tail of the slice and on an independent chrX region outside it, beside a baseline that predicts
the most frequent 6-mer of the training part for every masked token.

    python scripts/train_demo_teacher.py --independent-fasta grch37_chrX_first70Mb.fa.gz
    python scripts/train_demo_teacher.py --minutes 1 --out /tmp/t --log /tmp/t.csv   # smoke run
    python scripts/train_demo_teacher.py --max-steps 6000 --out T --log T.csv [--resume]

The FASTA reader, the N rule and tiling, the `<cls>` rule, the learning-rate curve, the
weight-decay groups and the masked-6-mer accuracy are the library's (`had_cache.windows`,
`had_cache.tokenize`, `had_train.schedule`, `had_train.optim`, `had_cache.gate`), so the
teacher is trained and scored by the rules extraction and the teacher gate apply.
"""

from __future__ import annotations

import argparse
import copy
import csv
import dataclasses
import json
import os
import random
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from transformers import AutoModelForMaskedLM, AutoTokenizer

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from had_cache import dna, masking, ntv2, windows  # noqa: E402
from had_cache.gate import masked_token_accuracy  # noqa: E402
from had_cache.ntv2.modeling_esm import EsmForMaskedLM  # noqa: E402
from had_cache.tokenize import (  # noqa: E402
    CLS_ID,
    MASK_ID,
    VOCAB,
    kmer_ids,
    save_tokenizer,
    tokenize,
    with_cls,
)
from had_train.optim import optim_groups  # noqa: E402
from had_train.schedule import warmup_cosine_fraction  # noqa: E402

DEFAULT_SLICE = windows.DEMO_FASTA
DEFAULT_OUT = ROOT / "had_cache" / "assets" / "demo_teacher"
DEFAULT_LOG = ROOT / "docs" / "teacher_training_log.csv"
DEFAULT_INDEPENDENT_REGION = "40000001-41000000"
"""chrX:40,000,001-41,000,000 of a GRCh37 chrX FASTA that reaches past the slice (the committed
teacher was scored on grch37_chrX_first70Mb.fa.gz from Debian's smalt-examples)."""
WINDOW_BP = 1020
MASK_RATIO = masking.DEFAULT_RATIO
HELD_OUT_FRACTION = 0.10


@dataclass(frozen=True)
class Region:
    """Bases of one FASTA region as uint8 codes, with where they came from (1-based, inclusive)."""

    name: str
    start: int
    end: int
    codes: np.ndarray


def only_record(path: Path) -> tuple[str, str]:
    """(name, bases) of the only record of a FASTA, read by the library's FASTA reader."""
    fasta = windows.open_fasta(path)
    names = list(fasta.keys())
    if len(names) != 1:
        raise SystemExit(f"{path}: expected exactly one FASTA record, found {len(names)}")
    return names[0], fasta[names[0]][:]


def slice_region(path: Path) -> Region:
    """The demo slice, with its chrX coordinates parsed from `>chrX_<start>_<end> ...`."""
    name, bases = only_record(path)
    _, start, end = name.rsplit("_", 2)
    region = Region(name, int(start), int(end), dna.encode(bases))
    if region.end - region.start + 1 != len(region.codes):
        raise SystemExit(f"{path}: header says {start}-{end} but holds {len(bases):,} bases")
    return region


def n_free_starts(codes: np.ndarray, width: int) -> np.ndarray:
    """Every start s such that codes[s:s+width] holds no N (why: windows must be whole 6-mers)."""
    n_cum = np.concatenate([[0], np.cumsum(dna.is_n(codes))])
    starts = np.arange(len(codes) - width + 1)
    return starts[n_cum[starts + width] == n_cum[starts]]


def build_model(args: argparse.Namespace) -> EsmForMaskedLM:
    """NTv2's architecture and conventions (`had_cache.ntv2`), sized for a CPU."""
    config = ntv2.ntv2_config(
        "demo",
        hidden_size=args.hidden,
        num_hidden_layers=args.layers,
        num_attention_heads=args.heads,
        intermediate_size=args.intermediate,
    )
    return ntv2.build_teacher(config, seed=args.seed)


def check_tokenizer(folder: Path, seed: int, n: int = 400) -> dict[str, object]:
    """Compare the saved tokenizer with `had_cache.tokenize` on random upper-case DNA with N.

    Why: the teacher is only a stand-in for NTv2 if `AutoTokenizer` on its folder splits DNA the
    way NT does. Returns the behaviour on a few probes (lower case among them) for the summary.
    """
    tok = AutoTokenizer.from_pretrained(str(folder))
    rng = random.Random(seed)
    for i in range(n):
        length = rng.randint(1, 400) | (i % 2)  # odd lengths on every other draw
        chars = [rng.choice("ACGT") for _ in range(length)]
        for _ in range(rng.choice([0, 0, 1, 3])):  # single Ns and N runs at random places
            at = rng.randrange(length)
            run = rng.choice([1, 1, 2, 7])
            chars[at : at + run] = ["N"] * len(chars[at : at + run])
        seq = "".join(chars)
        got = tok(seq)["input_ids"]
        want = [CLS_ID] + [t.id for t in tokenize(seq)]
        if got != want:
            raise SystemExit(f"tokenizer mismatch on {seq!r}:\n got  {got}\n want {want}")
    probes = {}
    for seq in ("ACGTACGTA", "ACGNACGTACGT", "acgtacgtA", "ACGTACgt"):
        probes[seq] = tok.convert_ids_to_tokens(tok(seq)["input_ids"])
    return {"class": type(tok).__name__, "random_sequences_checked": n, "probes": probes}


def draw_batch(
    codes: np.ndarray, starts: np.ndarray, batch: int, n_mask: int, rng: np.random.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random training windows -> (masked input [B, T+1], bool mask [B, T+1]; False at <cls>)."""
    picks = starts[rng.integers(0, len(starts), size=batch)]
    windows = codes[picks[:, None] + np.arange(WINDOW_BP)]
    ids = kmer_ids(windows)
    n_tokens = ids.shape[1]
    order = rng.random((batch, n_tokens)).argsort(axis=1)[:, :n_mask]
    mask = np.zeros((batch, n_tokens), dtype=bool)
    np.put_along_axis(mask, order, True, axis=1)
    full = torch.from_numpy(with_cls(ids))
    mask_t = torch.from_numpy(np.concatenate([np.zeros((batch, 1), bool), mask], axis=1))
    return full, mask_t


def most_frequent_kmer(codes: np.ndarray) -> tuple[int, float]:
    """Token id of the commonest 6-mer over every offset of the training part, and its share.

    Why every offset: training windows start anywhere, so each 6-mer phase is equally likely.
    """
    counts = np.zeros(len(VOCAB), dtype=np.int64)
    for phase in range(dna.K):
        rows = codes[phase:][: (len(codes) - phase) // dna.K * dna.K].reshape(-1, dna.K)
        rows = rows[~dna.is_n(rows).any(axis=1)]
        counts += np.bincount(kmer_ids(rows)[:, 0], minlength=len(VOCAB))
    best = int(counts.argmax())
    return best, float(counts[best] / counts.sum())


def evaluate(
    model: EsmForMaskedLM, windows_: np.ndarray, seed: int, baseline_id: int
) -> dict[str, float]:
    """Masked-token accuracy and loss on fixed windows with the extraction's masks (the teacher
    gate's routine), beside always predicting `baseline_id` on the very same tokens."""
    score = masked_token_accuracy(model.eval(), windows_, seed, baseline_id, batch_size=64)
    return dataclasses.asdict(score)


def save_and_reload(model: EsmForMaskedLM, folder: Path) -> tuple[EsmForMaskedLM, dict[str, list]]:
    """Save float16 weights in NTv2's folder layout, reload as float32, refuse any weight change.

    Why: a checkpoint that loads with newly initialised weights runs and yields garbage
    (design.md section 7), so the shipped folder is proven loadable the way NTv2 is loaded:
    `AutoModelForMaskedLM` with `trust_remote_code=True`.
    """
    ntv2.save_teacher_folder(copy.deepcopy(model).to(torch.float16), folder)
    loaded, info = AutoModelForMaskedLM.from_pretrained(
        str(folder), dtype=torch.float32, output_loading_info=True, trust_remote_code=True
    )
    bad = {k: list(v) for k, v in info.items() if v}
    if bad:
        raise SystemExit(f"reloading {folder} was not clean: {bad}")
    for name, ref in model.state_dict().items():
        got = loaded.state_dict()[name]
        if not torch.equal(got, ref.to(torch.float16).to(torch.float32)):
            raise SystemExit(f"reloaded weight {name} differs from the trained one")
    return loaded.eval(), {k: list(v) for k, v in info.items()}


CHECKPOINT_KEYS = (
    "seed",
    "batch",
    "lr",
    "warmup",
    "lr_floor",
    "weight_decay",
    "max_steps",
    "minutes",
    "hidden",
    "layers",
    "heads",
    "intermediate",
    "slice",
)
"""Options a resumed run must share with the run it continues (the rest may change)."""


def checkpoint_path(out: Path) -> Path:
    return out.with_name(out.name + ".checkpoint.pt")


def save_checkpoint(path: Path, state: dict) -> None:
    """Write whole, then rename: a crash mid-write leaves the previous checkpoint intact."""
    partial = path.with_name(path.name + ".tmp")
    torch.save(state, partial)
    os.replace(partial, path)


def resume_log(log: Path, step: int) -> list[list[str]]:
    """The log's rows up to `step`: rows written after the checkpoint will be written again."""
    if not log.exists():
        return []
    with log.open(newline="") as fh:
        rows = list(csv.reader(fh))[1:]
    return [row for row in rows if int(row[0]) <= step]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options; the defaults reproduce the committed teacher (modulo step count)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--slice", type=Path, default=DEFAULT_SLICE)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    p.add_argument("--log", type=Path, default=DEFAULT_LOG)
    p.add_argument(
        "--independent-fasta",
        type=Path,
        default=None,
        help="a GRCh37 chrX FASTA reaching past the slice, for the independent evaluation",
    )
    p.add_argument(
        "--independent-region", default=DEFAULT_INDEPENDENT_REGION, help="1-based, inclusive"
    )
    p.add_argument(
        "--minutes", type=float, default=75.0, help="wall-time budget (without --max-steps)"
    )
    p.add_argument(
        "--max-steps", type=int, default=0, help="if > 0, schedule and stop by steps, not time"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eval-seed", type=int, default=1234, help="mask seed of the evaluations")
    p.add_argument("--eval-windows", type=int, default=1000)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--warmup", type=float, default=0.05, help="fraction of the budget")
    p.add_argument("--lr-floor", type=float, default=0.1, help="final lr as a share of peak")
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--log-every", type=int, default=10)
    shape = ntv2.SHAPES["demo"]
    p.add_argument("--hidden", type=int, default=shape["hidden_size"])
    p.add_argument("--layers", type=int, default=shape["num_hidden_layers"])
    p.add_argument("--heads", type=int, default=shape["num_attention_heads"])
    p.add_argument("--intermediate", type=int, default=shape["intermediate_size"])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument(
        "--checkpoint-every",
        type=int,
        default=200,
        help="steps between resumable checkpoints (<out>.checkpoint.pt); 0: none",
    )
    p.add_argument(
        "--resume", action="store_true", help="continue from <out>.checkpoint.pt (same options)"
    )
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Check the tokenizer, train by wall time, save, reload, evaluate, write the summary."""
    args = parse_args(argv)
    given = sys.argv[1:] if argv is None else argv
    command = " ".join(["python scripts/train_demo_teacher.py", *given])
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)

    tmp = args.out.with_name(args.out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    save_tokenizer(tmp)
    tok_report = check_tokenizer(tmp, args.seed)
    print(f"tokenizer ok on {tok_report['random_sequences_checked']} random sequences", flush=True)

    region = slice_region(args.slice)
    split = int(len(region.codes) * (1.0 - HELD_OUT_FRACTION))
    train_codes, held_codes = region.codes[:split], region.codes[split:]
    starts = n_free_starts(train_codes, WINDOW_BP)
    n_tokens = WINDOW_BP // dna.K
    n_mask = masking.n_masked(n_tokens, MASK_RATIO)

    model = build_model(args)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model: {n_params:,} parameters; training on {split:,} bp", flush=True)
    opt = torch.optim.AdamW(
        optim_groups(model, args.weight_decay),
        lr=args.lr,
        betas=(0.9, 0.98),
        eps=1e-8,
        fused=True,
    )

    args.log.parent.mkdir(parents=True, exist_ok=True)
    budget = args.minutes * 60.0
    step = 0
    run_loss, run_n = 0.0, 0
    spent = 0.0  # training seconds of the runs this one continues
    resumed_at: list[int] = []
    ckpt = checkpoint_path(args.out)
    options = {k: str(getattr(args, k)) for k in CHECKPOINT_KEYS}
    log_rows: list[list[str]] = []
    if ckpt.exists() and not args.resume:
        raise SystemExit(f"{ckpt} holds an interrupted run: add --resume, or delete it")
    if args.resume:
        if not ckpt.exists():
            raise SystemExit(f"--resume: no checkpoint at {ckpt}")
        state = torch.load(ckpt, weights_only=True)
        changed = {k: (v, options[k]) for k, v in state["options"].items() if options[k] != v}
        if changed:
            raise SystemExit(f"--resume: options differ from the checkpoint's: {changed}")
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        rng.bit_generator.state = state["numpy_rng"]
        torch.set_rng_state(state["torch_rng"])
        step, spent = state["step"], state["spent"]
        run_loss, run_n = state["run_loss"], state["run_n"]
        resumed_at = [*state["resumed_at"], step]
        log_rows = resume_log(args.log, step)
        print(f"resumed from {ckpt} at step {step} ({spent / 60:.1f} min trained)", flush=True)
    t0 = time.monotonic() - spent
    with args.log.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["step", "loss", "lr", "elapsed_s", "tokens_seen"])
        writer.writerows(log_rows)
        model.train()
        while True:
            elapsed = time.monotonic() - t0
            progress = step / args.max_steps if args.max_steps > 0 else elapsed / budget
            if progress >= 1.0:
                break
            lr = args.lr * warmup_cosine_fraction(progress, args.warmup, args.lr_floor)
            for group in opt.param_groups:
                group["lr"] = lr
            full, mask = draw_batch(train_codes, starts, args.batch, n_mask, rng)
            hidden = model.esm(input_ids=torch.where(mask, MASK_ID, full)).last_hidden_state
            # The stock lm_head on the masked positions only: the loss EsmForMaskedLM computes,
            # without projecting the ~85% visible positions onto 4,107 ids for nothing.
            loss = F.cross_entropy(model.lm_head(hidden[mask]), full[mask])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            step += 1
            run_loss += loss.item()
            run_n += 1
            if step % args.log_every == 0 or step == 1:
                elapsed = time.monotonic() - t0
                row = [step, f"{run_loss / run_n:.4f}", f"{lr:.3e}", f"{elapsed:.1f}"]
                writer.writerow([*row, step * args.batch * n_tokens])
                fh.flush()
                print("step {} loss {} lr {} elapsed {}s".format(*row), flush=True)
                run_loss, run_n = 0.0, 0
            if args.checkpoint_every > 0 and step % args.checkpoint_every == 0:
                fh.flush()
                state = {
                    "options": options,
                    "model": model.state_dict(),
                    "optimizer": opt.state_dict(),
                    "numpy_rng": rng.bit_generator.state,
                    "torch_rng": torch.get_rng_state(),
                    "step": step,
                    "spent": time.monotonic() - t0,
                    "run_loss": run_loss,
                    "run_n": run_n,
                    "resumed_at": resumed_at,
                }
                save_checkpoint(ckpt, state)
    train_s = time.monotonic() - t0
    print(f"trained {step} steps in {train_s / 60:.1f} min", flush=True)

    loaded, load_info = save_and_reload(model, tmp)
    probe = torch.from_numpy(with_cls(kmer_ids(train_codes[: 4 * WINDOW_BP].reshape(4, WINDOW_BP))))
    with torch.no_grad():
        model.eval()
        drift = (model(input_ids=probe).logits - loaded(input_ids=probe).logits).abs().max()

    baseline_id, baseline_share = most_frequent_kmer(train_codes)
    held = windows.tile_n_free(held_codes, WINDOW_BP)[: args.eval_windows]
    results = {"held_out": evaluate(loaded, held, args.eval_seed, baseline_id)}
    held_start = region.start + split
    results["held_out"]["region"] = f"chrX:{held_start}-{region.end}"
    print("held-out:", results["held_out"], flush=True)
    if args.independent_fasta is not None:
        lo, hi = (int(x) for x in args.independent_region.split("-"))
        if not (hi < region.start or lo > region.end):
            raise SystemExit(f"independent region {lo}-{hi} overlaps the slice")
        name, _ = only_record(args.independent_fasta)
        fasta = windows.open_fasta(args.independent_fasta)
        chrx = dna.encode(windows.Region(name, lo, hi).read(fasta))
        indep = windows.tile_n_free(chrx, WINDOW_BP)[: args.eval_windows]
        results["independent"] = evaluate(loaded, indep, args.eval_seed, baseline_id)
        results["independent"]["region"] = f"chrX:{lo}-{hi} ({args.independent_fasta.name})"
        print("independent:", results["independent"], flush=True)

    summary = {
        "what": "demo teacher: NT v2 architecture (had_cache.ntv2), NTv2 6-mer vocabulary",
        "parameters": n_params,
        "config": {k: getattr(model.config, k) for k in ntv2.NTV2_500M},
        "steps": step,
        "resumed_at_steps": resumed_at,
        "batch": args.batch,
        "window_bp": WINDOW_BP,
        "tokens_per_window": n_tokens,
        "masked_per_window": n_mask,
        "tokens_seen": step * args.batch * n_tokens,
        "masked_tokens_seen": step * args.batch * n_mask,
        "minutes": round(train_s / 60.0, 2),
        "minutes_budget": args.minutes,
        "threads": args.threads,
        "optimizer": {
            "name": "AdamW",
            "peak_lr": args.lr,
            "betas": [0.9, 0.98],
            "weight_decay": args.weight_decay,
            "warmup_fraction": args.warmup,
            "schedule": "cosine to lr_floor*peak over "
            + ("steps" if args.max_steps > 0 else "the wall-time budget"),
            "lr_floor": args.lr_floor,
            "grad_clip": 1.0,
        },
        "data": {
            "slice": f"GRCh37 chrX:{region.start}-{region.end}",
            "train_region": f"chrX:{region.start}-{region.start + split - 1}",
            "held_out_region": f"chrX:{held_start}-{region.end}",
            "train_window_starts": int(len(starts)),
        },
        "baseline": {
            "rule": "predict the most frequent 6-mer of the training part (all offsets)",
            "token": VOCAB[baseline_id],
            "token_id": baseline_id,
            "share_of_training_6mers": baseline_share,
        },
        "evaluation": {
            "mask_seed": args.eval_seed,
            "model": "the saved float16 weights",
            **results,
        },
        "fp16_max_logit_drift": float(drift),
        "loading_info": load_info,
        "tokenizer": tok_report,
        "seed": args.seed,
        "torch": torch.__version__,
        "transformers": __import__("transformers").__version__,
        "command": command,
    }
    (tmp / "training_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    shutil.rmtree(args.out, ignore_errors=True)
    tmp.rename(args.out)
    ckpt.unlink(missing_ok=True)
    print(f"wrote {args.out}", flush=True)


if __name__ == "__main__":
    main()
