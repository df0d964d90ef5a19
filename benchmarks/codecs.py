"""What each feature codec costs on a real teacher's features: relative round-trip error,
explained variance (R^2 of the decoded features against the true ones) and bytes per record.

Windows are drawn uniformly from the FASTA (as `had-cache drift` draws them), masked as
extraction masks them, and the teacher's features of the visible tokens are split by window:
the first half fits the PCA, the second is measured (so PCA's figure is out of sample). Bytes
per record are given at the teacher's width and at NTv2-500M's (1,024), for 1,020-bp windows.

    python benchmarks/codecs.py --teacher demo --fasta demo --windows 400 --json /tmp/codecs.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from had_cache import codecs, dna, masking
from had_cache import teacher as teacher_mod
from had_cache.drift import DriftConfig, sample_windows

NTV2_500M_WIDTH = 1024


def features(teacher_name: str, fasta: str, n: int, seed: int, batch: int) -> np.ndarray:
    """[n, visible tokens, D] float32 features of `n` masked windows (float16-rounded, as stored)."""
    seq, mask = sample_windows(DriftConfig(fasta=Path(fasta), windows=n, seed=seed))
    teacher = teacher_mod.load_teacher(teacher_name, torch.device("cpu"), torch.float32)
    (layer,) = teacher.info.layers
    parts = [
        teacher.visible_features(seq[lo : lo + batch], mask[lo : lo + batch])[layer]
        for lo in range(0, n, batch)
    ]
    return torch.cat(parts).half().float().numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--teacher", default="demo")
    parser.add_argument("--fasta", default="demo")
    parser.add_argument("--windows", type=int, default=400)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    feats = features(args.teacher, args.fasta, args.windows, args.seed, args.batch)
    half = len(feats) // 2
    fit, test = feats[:half], feats[half:]
    width, visible = feats.shape[-1], feats.shape[1]
    n_tokens = dna.groups_per_window(1020)
    paper_visible = n_tokens - masking.n_masked(n_tokens, masking.DEFAULT_RATIO)
    sample = fit.reshape(-1, width)
    arms = {
        "fp16": codecs.Fp16Codec(width),
        "int8, no rotation": codecs.Int8Codec(width, rotation="none"),
        "int8": codecs.Int8Codec(width),
        "int8, stochastic rounding": codecs.Int8Codec(width, stochastic=True),
        f"pca-int8 R={width // 4}": codecs.PcaInt8Codec.fit(sample, width // 4),
        f"pca-int8 R={width // 2}": codecs.PcaInt8Codec.fit(sample, width // 2),
    }
    rows = []
    for label, codec in arms.items():
        report = codecs.measure(codec, test, visible)
        paper = codec.to_json() | {"hidden_size": NTV2_500M_WIDTH}
        if "pca_dim" in paper:
            paper["pca_dim"] = paper["pca_dim"] * NTV2_500M_WIDTH // width
        paper_codec = _shaped(paper)
        row = report.to_json() | {
            "arm": label,
            "codec_json": codec.to_json(),
            "ntv2_500m_bytes_per_record": paper_codec.bytes_per_record(paper_visible),
        }
        rows.append(row)
        print(
            f"{label:28s} rel. error {report.relative_error:.2e}  explained variance "
            f"{report.explained_variance:.5f}  {report.bytes_per_record:,} B/record at D={width}"
            f"  {row['ntv2_500m_bytes_per_record']:,} B/record at D={NTV2_500M_WIDTH}",
            flush=True,
        )
    if args.json:
        meta = {"teacher": args.teacher, "fasta": args.fasta, "windows": args.windows}
        args.json.write_text(json.dumps(meta | {"rows": rows}, indent=2))


def _shaped(meta: dict) -> codecs.FeatureCodec:
    """A codec of the same kind at another width (for its byte count only)."""
    width = meta["hidden_size"]
    if meta["name"] == "fp16":
        return codecs.Fp16Codec(width)
    if meta["name"] == "int8":
        return codecs.Int8Codec(width, rotation="none")
    dim = meta["pca_dim"]
    return codecs.PcaInt8Codec(
        width, dim, np.zeros(width), np.eye(width, dim), 1.0, 0, rotation="none"
    )


if __name__ == "__main__":
    main()
