"""Is the loader ever the bottleneck? Windows/s and MB/s the pretraining loader delivers with
0, 1 and 2 worker processes, beside the windows/s one training step consumes, in one run.

The store is a synthetic one at the NTv2-500M shape (1,020-bp windows, 170 tokens, 26 masked,
width 1,024, float16 features, ~16 MB chunks, zarr's default compression) unless --cache names a
real one; its bytes are random, so they compress as badly as real features. The loader runs
exactly as `had-train pretrain` runs it (`PretrainBatches.iterate`: whole-chunk reads, shuffling
within groups of --shuffle-chunks chunks, workers building whole steps, each with its own store
handle) and every batch is widened to the model's dtypes as the trainer's `prefetch` does.
The step is the paper preset's forward + backward + AdamW step on batches from the same store.
It also prints the bytes per step of the paper's recipe (batch 1,024) as stored and on disk.

    python benchmarks/loader.py --threads 2 --json /tmp/loader.json
    python benchmarks/loader.py --cache runs/demo/chrX_demo.had.zarr --batch-size 16
    python benchmarks/loader.py --device cuda --batch-size 256 --records 2048   # GPU step
"""

from __future__ import annotations

import argparse
import itertools
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from had_cache import dna, schema
from had_cache.windows import WindowTable
from had_cache.writer import StoreWriter
from had_train import losses
from had_train.data import PretrainBatches, prefetch
from had_train.model import HadStudentConfig, HadStudentForPretraining
from had_train.optim import optim_groups

PAPER_BATCH = 1024
NTV2_500M = {"window_bp": 1020, "n_masked": 26, "hidden_size": 1024, "num_layers": 29}


def synthetic_store(path: Path, n_records: int, seed: int = 0) -> Path:
    """A complete store at the NTv2-500M shape with random bases, masks and features."""
    shape = NTV2_500M
    n_tokens = shape["window_bp"] // dna.K
    n_visible = n_tokens - shape["n_masked"]
    teacher = schema.TeacherInfo(
        name_or_path="synthetic",
        revision=None,
        weights_sha256=None,
        layers=[shape["num_layers"]],
        num_layers=shape["num_layers"],
        hidden_size=shape["hidden_size"],
        dtype="float16",
        token_dropout=False,
        mask_token_id=2,
    )
    attrs = schema.StoreAttrs(
        k=dna.K,
        window_bp=shape["window_bp"],
        n_tokens=n_tokens,
        n_masked=shape["n_masked"],
        mask_ratio=0.15,
        mask_seed=seed,
        n_records=n_records,
        chunk_records=schema.default_chunk_records(n_visible, shape["hidden_size"]),
        contigs=["synthetic"],
        strands="forward",
        skipped_n_windows=0,
        max_windows=None,
        teacher=teacher,
        fasta=schema.FastaInfo(path="synthetic", size=0, sha256="0"),
        had_version="benchmark",
    )
    table = WindowTable(
        ["synthetic"],
        np.zeros(n_records, np.int32),
        np.arange(n_records, dtype=np.int64) * shape["window_bp"],
        np.ones(n_records, np.int8),
        0,
    )
    writer = StoreWriter.open_or_create(path, attrs, table)
    rng = np.random.default_rng(seed)
    for shard in range(attrs.n_shards):  # one chunk per shard: shard_chunks defaults to 1
        rows = attrs.shard_slice(shard)
        n = rows.stop - rows.start
        mask = np.zeros((n, n_tokens), bool)
        for row in mask:
            row[rng.choice(n_tokens, shape["n_masked"], replace=False)] = True
        seq = rng.integers(0, 4, (n, shape["window_bp"]), dtype=np.uint8)
        feats = rng.standard_normal((n, n_visible, shape["hidden_size"]), dtype=np.float32)
        writer.write_shard(shard, seq, mask, {shape["num_layers"]: feats})
    writer.finalize()
    return path


def record_bytes(attrs: schema.StoreAttrs) -> int:
    """Bytes of one record as stored (uint8 bases, bool mask, float16 features of one layer)."""
    return (
        attrs.window_bp
        + attrs.n_tokens
        + attrs.n_visible * attrs.hidden_size * schema.TEACHER_DTYPE.itemsize
    )


def disk_bytes(store: Path, layer: int) -> int:
    """Bytes on disk of the arrays a training step reads (seq, mask, one teacher layer)."""
    names = (schema.SEQ, schema.MASK, schema.teacher_array(layer))
    return sum(f.stat().st_size for n in names for f in (store / n).rglob("*") if f.is_file())


def loader_rate(store: Path, batch: int, workers: int, steps: int, shuffle: int) -> dict:
    """Windows/s and MB/s (as stored) over `steps` batches after the first (start-up apart)."""
    data = PretrainBatches(store, batch, seed=0, shuffle_chunks=shuffle)
    it = prefetch(data.iterate(0, workers), torch.device("cpu"))
    t_first = time.perf_counter()
    next(it)
    t0 = time.perf_counter()
    for b in itertools.islice(it, steps):
        assert b.teacher.dtype == torch.float32
    seconds = time.perf_counter() - t0
    windows = steps * batch
    return {
        "workers": workers,
        "first_batch_s": t0 - t_first,
        "windows_per_s": windows / seconds,
        "mb_per_s": windows * record_bytes(data.attrs) / seconds / 1e6,
    }


def step_rate(store: Path, batch: int, preset: str, repeats: int, device: torch.device) -> dict:
    """Windows/s one training step consumes (forward, both losses, backward, clip, AdamW;
    bf16 autocast on CUDA)."""
    data = PretrainBatches(store, batch, seed=0)
    torch.manual_seed(0)
    config = HadStudentConfig.from_preset(preset, teacher_hidden_size=data.attrs.hidden_size)
    model = HadStudentForPretraining(config).to(device)
    opt = torch.optim.AdamW(optim_groups(model, 0.1), lr=1e-3)
    cuda = device.type == "cuda"
    times = []
    for step in range(repeats + 1):
        b = data.batch(step).to(device)
        if cuda:
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda):
            out = model(b.seq, b.group_mask)
        loss = losses.alignment_loss(out.aligned, b.teacher) + losses.reconstruction_loss(
            out.recon_logits, model.reconstruction_targets(b.seq, b.group_mask)
        )
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if cuda:
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - t0)
    seconds = float(np.median(times[1:]))
    return {
        "preset": preset,
        "batch": batch,
        "device": str(device),
        "step_s": seconds,
        "windows_per_s": batch / seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", type=Path, default=None, help="a store [default: synthetic]")
    parser.add_argument("--records", type=int, default=512, help="records of the synthetic store")
    parser.add_argument("--batch-size", type=int, default=16, help="windows per step")
    parser.add_argument("--loader-steps", type=int, default=48)
    parser.add_argument("--shuffle-chunks", type=int, default=8)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--preset", default="paper")
    parser.add_argument("--step-repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu", help="where the training step runs")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        store = args.cache
        if store is None:
            t0 = time.perf_counter()
            store = synthetic_store(Path(tmp) / "synthetic.had.zarr", args.records)
            print(f"synthetic store: {args.records} records in {time.perf_counter() - t0:.1f} s")
        data = PretrainBatches(store, args.batch_size)
        attrs, layer = data.attrs, data.reader.layer
        per_record = record_bytes(attrs)
        on_disk = disk_bytes(Path(store), layer) / attrs.n_records
        print(
            f"store: {attrs.n_records} records, W {attrs.window_bp}, T {attrs.n_tokens}, "
            f"M {attrs.n_masked}, D {attrs.hidden_size}, {attrs.chunk_records} records/chunk; "
            f"{per_record / 1e3:.1f} kB/record as stored (float16), {on_disk / 1e3:.1f} kB on disk"
        )
        step = step_rate(
            Path(store), args.batch_size, args.preset, args.step_repeats, torch.device(args.device)
        )
        print(
            f"training step ({step['preset']}, batch {step['batch']}, {step['device']}): "
            f"{step['step_s']:.3f} s "
            f"= {step['windows_per_s']:.1f} windows/s consumed"
        )
        rows = []
        for workers in args.workers:
            row = loader_rate(
                Path(store), args.batch_size, workers, args.loader_steps, args.shuffle_chunks
            )
            row["x_step"] = row["windows_per_s"] / step["windows_per_s"]
            rows.append(row)
            print(
                f"loader, {workers} workers: {row['windows_per_s']:.0f} windows/s, "
                f"{row['mb_per_s']:.0f} MB/s = {row['x_step']:.1f}x the step's consumption "
                f"(first batch {row['first_batch_s']:.2f} s)"
            )
        recipe = {
            "batch": PAPER_BATCH,
            "mb_per_step_float16": PAPER_BATCH * per_record / 1e6,
            "mb_per_step_on_disk": PAPER_BATCH * on_disk / 1e6,
        }
        print(
            f"paper recipe (batch {PAPER_BATCH}) at this shape: "
            f"{recipe['mb_per_step_float16']:.0f} MB/step as stored (float16), "
            f"{recipe['mb_per_step_on_disk']:.0f} MB/step read from disk"
        )
    if args.json:
        result = {
            "step": step,
            "loader": rows,
            "paper_recipe": recipe,
            "threads": torch.get_num_threads(),
        }
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
