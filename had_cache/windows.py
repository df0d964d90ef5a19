"""FASTA -> the table of windows to extract.

A window is `window_bp` bases (a multiple of 6, so each teacher token is a whole 6-mer) at a
fixed tiling of each contig, on one strand. Windows containing any base other than A, C, G, T
are skipped (and counted): the teacher would tokenize them with single-letter fallbacks, which
breaks the one-token-per-6-bases contract of the store. The table is a pure function of the
FASTA and the options, so record i is the same window in every run and on every rank.
"""

from __future__ import annotations

import gzip
import os
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyfaidx

from had_cache import dna
from had_common.checksums import file_sha256
from had_common.errors import ConfigError, HadError

DEMO = "demo"
DEMO_FASTA = Path(__file__).parent / "assets" / "chrX_demo.fa.gz"
"""GRCh37 chrX:15,000,001-24,500,000, shipped so `--fasta demo` and the teacher gate work offline."""
PRIMARY_CONTIG = re.compile(r"^(chr)?([0-9]+|X|Y)$")
CONTIG_CHOICES = ("primary", "all")
STRAND_CHOICES = ("forward", "both")
REGION = re.compile(r"^(?P<contig>[^:]+):(?P<start>[\d,]+)-(?P<end>[\d,]+)$")


class FastaError(HadError):
    """The FASTA file is missing, unreadable or unusable."""


def fasta_path(name: str | Path) -> Path:
    """`demo` names the embedded chrX slice; anything else is a path."""
    return DEMO_FASTA if str(name) == DEMO else Path(name)


@dataclass(frozen=True)
class WindowTable:
    """The windows of one extraction, in record order."""

    contigs: list[str]
    contig: np.ndarray  # int32 [N], index into `contigs`
    start: np.ndarray  # int64 [N], 0-based start on the forward strand
    strand: np.ndarray  # int8 [N], +1 forward, -1 reverse complement
    skipped_n: int  # windows skipped for any base other than A, C, G, T
    skipped_ambiguous: int = 0  # of those, windows with IUPAC ambiguity codes but no N

    def __len__(self) -> int:
        return len(self.start)

    def take(self, index: np.ndarray) -> WindowTable:
        return WindowTable(
            self.contigs,
            self.contig[index],
            self.start[index],
            self.strand[index],
            self.skipped_n,
            self.skipped_ambiguous,
        )


def _is_gzip(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(2) == b"\x1f\x8b"


def _is_bgzip(path: Path) -> bool:
    """BGZF = gzip with the FEXTRA flag and a 'BC' subfield in the first member's header."""
    with open(path, "rb") as fh:
        head = fh.read(18)
    return len(head) == 18 and head[3] & 4 and head[12:14] == b"BC"


def cache_dir() -> Path:
    """Where had keeps derived files (decompressed FASTA); $HAD_CACHE_DIR overrides."""
    return Path(os.environ.get("HAD_CACHE_DIR", Path.home() / ".cache" / "had"))


def _decompress_plain_gzip(path: Path) -> Path:
    """Plain gzip cannot be indexed for random access: decompress once into the cache."""
    target = cache_dir() / "fasta" / f"{path.name.removesuffix('.gz')}.{file_sha256(path)[:12]}.fa"
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        print(
            f"note: {path} is plain gzip (not bgzip); decompressing once to {target}",
            file=sys.stderr,
        )
        tmp = target.with_suffix(".partial")
        try:
            with gzip.open(path, "rb") as src, open(tmp, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 22)
        except (OSError, EOFError) as err:
            tmp.unlink(missing_ok=True)
            raise FastaError(f"cannot decompress {path}: {err}") from err
        tmp.replace(target)
    return target


def open_fasta(path: str | Path) -> pyfaidx.Fasta:
    """Open a plain, bgzip or plain-gzip FASTA (`demo`: the embedded slice) with pyfaidx,
    building the .fai once if missing."""
    path = fasta_path(path)
    if path.is_dir():
        raise FastaError(f"--fasta {path} is a folder; give the FASTA file itself")
    if not path.is_file():
        raise FastaError(f"FASTA file not found: {path}")
    readable = path
    if _is_gzip(path) and not _is_bgzip(path):
        readable = _decompress_plain_gzip(path)
    try:
        return pyfaidx.Fasta(str(readable), as_raw=True, sequence_always_upper=True)
    except ValueError as err:
        if str(err).startswith("Duplicate key"):
            name = str(err).removeprefix("Duplicate key").strip()
            raise FastaError(
                f"{path} names two contigs {name}: contig names must be unique"
            ) from err
        raise FastaError(f"cannot index {path} as FASTA: {err}") from err
    except (pyfaidx.FastaIndexingError, pyfaidx.UnsupportedCompressionFormat) as err:
        raise FastaError(f"cannot index {path} as FASTA: {err}") from err
    except OSError as err:
        raise FastaError(
            f"cannot read or index {path} ({err}); if its folder is read-only, copy the FASTA "
            "somewhere writable so the .fai index can be built beside it"
        ) from err


def select_contigs(names: list[str], spec: str) -> list[str]:
    """`primary` (chr1-22, X, Y when present, else all), `all`, or a comma-separated list.

    `primary` leaves out unplaced and alternative contigs (chrUn_*, *_random, *_alt) and chrM.
    """
    if spec == "all":
        return list(names)
    if spec == "primary":
        primary = [n for n in names if PRIMARY_CONTIG.match(n)]
        return primary or list(names)
    wanted = [n.strip() for n in spec.split(",") if n.strip()]
    missing = [n for n in wanted if n not in names]
    if missing:
        shown = ", ".join(names[:8]) + (" ..." if len(names) > 8 else "")
        raise ConfigError(f"contig(s) {', '.join(missing)} not in the FASTA (it has: {shown})")
    return wanted


def check_contig_lengths(
    fasta: pyfaidx.Fasta, names: list[str], window_bp: int, explicit: bool
) -> None:
    """From the FASTA index alone: refuse contigs named by the user that are shorter than a
    window, and a selection in which no contig holds one window."""
    lengths = {name: len(fasta[name]) for name in names}
    short = [f"{n} ({length:,} bp)" for n, length in lengths.items() if length < window_bp]
    if explicit and short:
        raise ConfigError(
            f"--contigs: {', '.join(short[:5])} shorter than one --window-bp {window_bp} window"
        )
    if lengths and max(lengths.values()) < window_bp:
        longest = max(lengths, key=lengths.get)
        raise FastaError(
            f"every selected contig is shorter than --window-bp {window_bp} (longest: {longest}, "
            f"{lengths[longest]:,} bp); lower --window-bp or choose other --contigs"
        )


def _refuse_invalid(name: str, classes: np.ndarray, seq: object) -> None:
    pos = int(np.flatnonzero(classes == dna.INVALID)[0])
    char = str(seq[pos : pos + 1])
    raise FastaError(
        f"contig {name} holds {char!r} at position {pos + 1:,}, which is no nucleotide letter "
        "(A, C, G, T, N or an IUPAC ambiguity code); is this a FASTA of DNA?"
    )


def plan_windows(
    fasta: pyfaidx.Fasta,
    window_bp: int,
    contigs: str = "primary",
    strands: str = "forward",
    max_windows: int | None = None,
    progress: bool = True,
) -> WindowTable:
    """Tile the chosen contigs into N-free windows; optionally keep an evenly spread subset."""
    from tqdm.auto import tqdm

    dna.groups_per_window(window_bp)
    if strands not in STRAND_CHOICES:
        raise ConfigError(f"--strands must be one of {STRAND_CHOICES}, got {strands!r}")
    names = select_contigs(list(fasta.keys()), contigs)
    check_contig_lengths(fasta, names, window_bp, explicit=contigs not in CONTIG_CHOICES)
    contig_idx, starts, skipped, ambiguous = [], [], 0, 0
    for i, name in enumerate(
        tqdm(names, desc="scanning contigs", unit="contig", disable=not progress, delay=2)
    ):
        length = len(fasta[name])
        n_win = length // window_bp
        if n_win == 0:
            continue
        classes = dna.letter_classes(fasta[name][: n_win * window_bp])
        per_window = classes.reshape(n_win, window_bp).max(axis=1)
        if (per_window == dna.INVALID).any():
            _refuse_invalid(name, classes, fasta[name])
        clean = np.flatnonzero(per_window == dna.CLEAN)
        skipped += n_win - len(clean)
        ambiguous += int((per_window == dna.AMBIGUOUS).sum())
        contig_idx.append(np.full(len(clean), i, dtype=np.int32))
        starts.append(clean.astype(np.int64) * window_bp)
    if not starts or sum(len(s) for s in starts) == 0:
        raise FastaError(
            f"no N-free window of {window_bp} bp in the selected contigs ({len(names)} contig(s)); "
            "try a smaller --window-bp or other --contigs"
        )
    contig = np.concatenate(contig_idx)
    start = np.concatenate(starts)
    strand = np.ones(len(start), dtype=np.int8)
    if strands == "both":
        # Reverse-complement windows are their own records (never flip cached features).
        contig, start = np.repeat(contig, 2), np.repeat(start, 2)
        strand = np.tile(np.array([1, -1], dtype=np.int8), len(strand))
    table = WindowTable(names, contig, start, strand, skipped, ambiguous)
    if max_windows is not None and max_windows < len(table):
        if max_windows <= 0:
            raise ConfigError(f"--max-windows must be positive, got {max_windows}")
        # Evenly spread over the genome rather than the first contig's first windows.
        keep = np.unique(np.linspace(0, len(table) - 1, max_windows).round().astype(np.int64))
        table = table.take(keep)
    return table


def read_windows(
    fasta: pyfaidx.Fasta, table: WindowTable, records: range, window_bp: int
) -> np.ndarray:
    """uint8 codes [len(records), window_bp] of the given records, reverse-complemented where -1."""
    out = np.empty((len(records), window_bp), dtype=np.uint8)
    for row, r in enumerate(records):
        name = table.contigs[table.contig[r]]
        start = int(table.start[r])
        codes = dna.encode(fasta[name][start : start + window_bp])
        out[row] = dna.reverse_complement(codes) if table.strand[r] < 0 else codes
    return out


def tile_n_free(codes: np.ndarray, window_bp: int) -> np.ndarray:
    """The N-free windows [n, window_bp] of one stretch of codes, tiled from its left end
    (the extraction's tiling and N rule, for the teacher gate and the demo teacher's data)."""
    tiles = codes[: len(codes) // window_bp * window_bp].reshape(-1, window_bp)
    return tiles[~dna.is_n(tiles).any(axis=1)]


@dataclass(frozen=True)
class Region:
    """contig:start-end, 1-based and inclusive, as genome browsers write it."""

    contig: str
    start: int
    end: int

    @classmethod
    def parse(cls, text: str) -> Region:
        match = REGION.match(text)
        if not match:
            raise ConfigError(f"--region {text!r} is not contig:start-end")
        start, end = (int(match[k].replace(",", "")) for k in ("start", "end"))
        return cls(match["contig"], start, end)

    def read(self, fasta: pyfaidx.Fasta) -> str:
        """The region's bases (upper case), checked against the contig's length."""
        if self.contig not in set(fasta.keys()):
            raise ConfigError(f"contig {self.contig!r} is not in the FASTA")
        length = len(fasta[self.contig])
        if not 1 <= self.start <= self.end <= length:
            raise ConfigError(
                f"--region {self.contig}:{self.start}-{self.end} is outside "
                f"{self.contig} (1-{length})"
            )
        return fasta[self.contig][self.start - 1 : self.end]
