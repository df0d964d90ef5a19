"""Cut the demo slice of real human DNA that ships in `had_cache/assets/chrX_demo.fa.gz`.

Why: a fresh machine has neither hg38 nor NTv2 weights, so the README's main command runs on a
small slice of real DNA that lives in the repository (design.md section 4). The slice is also the
training data of the embedded demo teacher (`scripts/train_demo_teacher.py`).

Source: GRCh37 chrX bases 1-69,999,930 (`grch37_chrX_first70Mb.fa.gz`, plain gzip, from the
Debian package `smalt-examples`; pass its path as --source). Default region: chrX:15,000,001-24,500,000 (9.5 Mb, 1-based,
inclusive), which holds no N. The choice was measured, not guessed: every 10-Mb window between
11 and 37 Mb compresses to 2.91-2.93 MB, just over the 2.9 MB budget, so the largest round size
that fits is 9.5 Mb; the window starting at 15 Mb compressed best (about 2.77 MB).

Output: one FASTA record, 60 bases per line, soft-masking case kept as in the source, written as
PLAIN gzip (not bgzip; pyfaidx readers that need random access build their own copy) at level 9
with mtime 0 and no file name in the gzip header, so re-running this script reproduces the
committed file byte for byte:

    python scripts/make_demo_slice.py --source grch37_chrX_first70Mb.fa.gz
"""

from __future__ import annotations

import argparse
import gzip
import io
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "had_cache" / "assets" / "chrX_demo.fa.gz"
DEFAULT_START = 15_000_001
DEFAULT_END = 24_500_000
LINE_WIDTH = 60
MAX_BYTES = 3_000_000


def read_single_record(path: Path) -> bytes:
    """Return the bases of the only record of a (gzipped) FASTA file, case preserved."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        lines = fh.read().split(b"\n")
    headers = [i for i, line in enumerate(lines) if line.startswith(b">")]
    if headers != [0]:
        raise ValueError(f"{path}: expected exactly one record at the top, found {len(headers)}")
    return b"".join(line.strip() for line in lines[1:])


def slice_fasta(bases: bytes, start: int, end: int) -> bytes:
    """FASTA text of bases[start..end] (1-based, inclusive) with 60-column lines."""
    if not 1 <= start <= end <= len(bases):
        raise ValueError(f"region {start}-{end} is outside 1-{len(bases)}")
    sub = bases[start - 1 : end]
    header = f">chrX_{start}_{end} GRCh37 chrX:{start}-{end} (1-based, inclusive)".encode()
    body = b"\n".join(sub[i : i + LINE_WIDTH] for i in range(0, len(sub), LINE_WIDTH))
    return header + b"\n" + body + b"\n"


def gzip_deterministic(data: bytes) -> bytes:
    """Plain gzip at level 9 with a fixed header (no name, mtime 0): same input, same bytes."""
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, compresslevel=9, mtime=0) as gz:
        gz.write(data)
    return buf.getvalue()


def main(argv: list[str] | None = None) -> None:
    """Parse arguments, cut the slice, check its size and N content, write it."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--source", type=Path, required=True, help="grch37_chrX_first70Mb.fa.gz (smalt-examples)"
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--start", type=int, default=DEFAULT_START, help="1-based, inclusive")
    parser.add_argument("--end", type=int, default=DEFAULT_END, help="1-based, inclusive")
    parser.add_argument("--max-bytes", type=int, default=MAX_BYTES)
    args = parser.parse_args(argv)

    bases = read_single_record(args.source)
    text = slice_fasta(bases, args.start, args.end)
    packed = gzip_deterministic(text)
    if len(packed) > args.max_bytes:
        raise SystemExit(f"compressed slice is {len(packed):,} B > {args.max_bytes:,} B")
    sub = bases[args.start - 1 : args.end]
    n_count = len(sub) - sum(sub.upper().count(b) for b in (b"A", b"C", b"G", b"T"))
    lower = sum(sub.count(b) for b in (b"a", b"c", b"g", b"t", b"n"))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(packed)
    print(
        f"wrote {args.out}: chrX:{args.start:,}-{args.end:,} ({len(sub):,} bp, "
        f"{n_count:,} N, {lower / len(sub):.1%} soft-masked), {len(packed):,} B compressed"
    )


if __name__ == "__main__":
    main()
