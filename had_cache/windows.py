"""FASTA (+ BED) -> the table of windows to extract.

A window is `window_bp` bases (a multiple of 6, so each teacher token is a whole 6-mer) at a
fixed tiling of each contig (or of each --bed region), `--stride` bases apart, on one strand.
Soft-masked (lower-case) bases read as upper case. Windows containing any base other than A, C, G, T
are skipped (and counted): the teacher would tokenize them with single-letter fallbacks, which
breaks the one-token-per-6-bases contract of the store. The table is a pure function of the
FASTA and the options, so record i is the same window in every run and on every rank.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import re
import shutil
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyfaidx

from had_cache import dna
from had_common.checksums import file_sha256
from had_common.errors import ConfigError, HadError
from had_common.lock import FileLock, LockHeldError

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
    locus: np.ndarray | None = None  # int64 [N], replay: the locus each record was drawn from
    offset: np.ndarray | None = None  # int32 [N], replay: bases from the locus start
    n_loci: int | None = None  # replay: loci drawn from

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

    def index_arrays(self) -> dict[str, np.ndarray]:
        """The store's index arrays of this table (by schema name)."""
        from had_cache import schema

        out = {schema.CONTIG: self.contig, schema.START: self.start, schema.STRAND: self.strand}
        if self.locus is not None and self.offset is not None:
            out |= {schema.LOCUS: self.locus, schema.OFFSET: self.offset}
        return out


REPLAY_STREAM = 0x5EED_0FF5
"""Salt of the replay draws' hash, so a record's offset and strand are not its mask's bits."""


def _mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser on uint64 (wrapping arithmetic): a counter -> 64 random bits."""
    x = x.astype(np.uint64, copy=True)
    with np.errstate(over="ignore"):
        x ^= x >> np.uint64(30)
        x *= np.uint64(0xBF58476D1CE4E5B9)
        x ^= x >> np.uint64(27)
        x *= np.uint64(0x94D049BB133111EB)
        x ^= x >> np.uint64(31)
    return x


def replay_draws(
    seed: int, records: np.ndarray, n_loci: int, n_records: int, max_offset: int, both: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(locus, offset, strand) of replay records `records` out of `n_records` drawn over
    `n_loci` loci: each a pure function of (seed, record) and the counts. Record i draws locus
    floor(i x L / N), so a locus's draws are consecutive records (the same chunk, the same
    held-out side), offset uniform in 0..max_offset and, with `both`, a strand by coin flip:
    repeated draws of a locus vary offset, strand and mask (`masking.group_mask(seed, i)`)
    together."""
    i = np.asarray(records, dtype=np.int64)
    locus = (i * n_loci) // n_records
    with np.errstate(over="ignore"):
        key = np.uint64(seed) * np.uint64(0x9E3779B97F4A7C15) + np.uint64(REPLAY_STREAM)
        bits = _mix64(i.astype(np.uint64) + key)
    offset = (bits % np.uint64(max_offset + 1)).astype(np.int32)
    flip = ((bits >> np.uint64(63)) == 1) & both
    strand = np.where(flip, -1, 1).astype(np.int8)
    return locus, offset, strand


def replay_table(
    loci: WindowTable, n_records: int, seed: int, max_offset: int, both: bool
) -> WindowTable:
    """The records of a replay store drawn from `loci` (each locus N-free over its window and
    `max_offset` more bases, so every draw is a clean window): `replay_draws` for 0..N-1."""
    if n_records <= 0:
        raise ConfigError(f"--records must be positive, got {n_records}")
    locus, offset, strand = replay_draws(
        seed, np.arange(n_records), len(loci), n_records, max_offset, both
    )
    return WindowTable(
        loci.contigs,
        loci.contig[locus],
        loci.start[locus] + offset,
        strand,
        loci.skipped_n,
        loci.skipped_ambiguous,
        locus=locus,
        offset=offset,
        n_loci=len(loci),
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
        tmp = target.with_suffix(f".{os.getpid()}.partial")  # ranks of one node may race here
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
        with _indexing(readable):
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


INDEX_WAIT_S = 3600.0
"""How long a process waits for another one (a rank on the same node) to index the FASTA."""


@contextlib.contextmanager
def _indexing(fasta: Path) -> Iterator[None]:
    """Hold `<fasta>.fai.lock` while pyfaidx builds a missing `.fai` (it writes the index in
    place, so ranks starting together must not build it at once); nothing if it exists."""
    if Path(f"{fasta}.fai").exists():
        yield
        return
    lock = FileLock(Path(f"{fasta}.fai.lock"), "indexing the FASTA")
    deadline = time.monotonic() + INDEX_WAIT_S
    while True:
        try:
            lock.acquire()
            break
        except LockHeldError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
        except OSError:  # a read-only folder: pyfaidx says why it cannot index
            yield
            return
    try:
        yield
    finally:
        lock.release()


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


def _refuse_invalid(name: str, classes: np.ndarray, seq: object, offset: int = 0) -> None:
    pos = int(np.flatnonzero(classes == dna.INVALID)[0])
    char = str(seq[pos : pos + 1])
    raise FastaError(
        f"contig {name} holds {char!r} at position {offset + pos + 1:,}, which is no nucleotide letter "
        "(A, C, G, T, N or an IUPAC ambiguity code); is this a FASTA of DNA?"
    )


@dataclass(frozen=True)
class BedRegions:
    """Merged, sorted half-open intervals per contig from a BED file (0-based, as BED is)."""

    path: Path
    intervals: dict[str, list[tuple[int, int]]]
    n_lines: int

    @property
    def n_regions(self) -> int:
        return sum(len(v) for v in self.intervals.values())


def read_bed(path: Path, contig_lengths: dict[str, int]) -> BedRegions:
    """Regions of a BED file (the first three columns; `track`, `browser` and `#` lines are
    skipped), merged where they overlap or touch; any line that is not a region of a contig of
    the FASTA is a one-line ConfigError naming the file and line."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"--bed {path}: no such file")
    raw: dict[str, list[tuple[int, int]]] = {}
    n_lines = 0
    with open(path) as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip() or line.startswith(("#", "track", "browser")):
                continue
            fields = line.split()
            where = f"--bed {path}, line {number}"
            if len(fields) < 3:
                raise ConfigError(f"{where}: expected contig, start, end; got {line.strip()!r}")
            name = fields[0]
            try:
                start, end = int(fields[1]), int(fields[2])
            except ValueError:
                raise ConfigError(f"{where}: start and end must be integers") from None
            if name not in contig_lengths:
                shown = ", ".join(list(contig_lengths)[:8])
                raise ConfigError(f"{where}: contig {name} is not in the FASTA (it has: {shown})")
            if not 0 <= start < end <= contig_lengths[name]:
                raise ConfigError(
                    f"{where}: {name}:{start}-{end} is not a region of {name} "
                    f"(0-{contig_lengths[name]:,}, BED is 0-based, end exclusive)"
                )
            raw.setdefault(name, []).append((start, end))
            n_lines += 1
    if not n_lines:
        raise ConfigError(f"--bed {path} holds no region")
    merged = {}
    for name, spans in raw.items():
        out: list[tuple[int, int]] = []
        for start, end in sorted(spans):
            if out and start <= out[-1][1]:
                out[-1] = (out[-1][0], max(out[-1][1], end))
            else:
                out.append((start, end))
        merged[name] = out
    return BedRegions(path, merged, n_lines)


def window_starts(spans: list[tuple[int, int]], window_bp: int, stride: int) -> np.ndarray:
    """Starts of the windows tiled from the left end of each span, `stride` apart, each wholly
    inside its span."""
    parts = [np.arange(a, b - window_bp + 1, stride, dtype=np.int64) for a, b in spans]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


def _count_in_windows(positions: np.ndarray, starts: np.ndarray, window_bp: int) -> np.ndarray:
    """How many of the sorted `positions` fall in each window [start, start + window_bp)."""
    return np.searchsorted(positions, starts + window_bp) - np.searchsorted(positions, starts)


def plan_windows(
    fasta: pyfaidx.Fasta,
    window_bp: int,
    contigs: str = "primary",
    strands: str = "forward",
    max_windows: int | None = None,
    progress: bool = True,
    stride: int | None = None,
    bed: Path | None = None,
    extra_bp: int = 0,
) -> WindowTable:
    """Tile the chosen contigs (or the --bed regions on them) into N-free windows, `stride`
    bases apart (default: `window_bp`, no overlap); optionally keep an evenly spread subset.
    `extra_bp` > 0 (replay loci): each window must also have that many clean bases after it,
    inside its contig or region, so any draw shifted by up to `extra_bp` is a clean window."""
    from tqdm.auto import tqdm

    dna.groups_per_window(window_bp)
    if strands not in STRAND_CHOICES:
        raise ConfigError(f"--strands must be one of {STRAND_CHOICES}, got {strands!r}")
    stride = window_bp if stride is None else stride
    if stride <= 0:
        raise ConfigError(f"--stride must be positive, got {stride}")
    if max_windows is not None and max_windows <= 0:
        raise ConfigError(f"--max-windows must be positive, got {max_windows}")
    every = list(fasta.keys())
    names = select_contigs(every, contigs)
    check_contig_lengths(fasta, names, window_bp, explicit=contigs not in CONTIG_CHOICES)
    regions = None
    if bed is not None:
        regions = read_bed(bed, {name: len(fasta[name]) for name in every})
        outside = sorted(set(regions.intervals) - set(names))
        if outside and not set(regions.intervals) & set(names):
            raise ConfigError(
                f"--bed {bed}: no region is on the selected contigs (--contigs {contigs}; the "
                f"regions are on {', '.join(outside[:5])}); pass --contigs all"
            )
    contig_idx, starts, skipped, ambiguous = [], [], 0, 0
    tile_bp = window_bp + extra_bp
    for i, name in enumerate(
        tqdm(names, desc="scanning contigs", unit="contig", disable=not progress, delay=2)
    ):
        length = len(fasta[name])
        spans = [(0, length)] if regions is None else regions.intervals.get(name, [])
        first = window_starts(spans, tile_bp, stride)
        if not len(first):
            continue
        lo, hi = int(first[0]), int(first[-1]) + tile_bp
        classes = dna.letter_classes(fasta[name][lo:hi])
        local = first - lo
        invalid = np.flatnonzero(classes == dna.INVALID)
        if len(invalid) and _count_in_windows(invalid, local, tile_bp).any():
            _refuse_invalid(name, classes, fasta[name][lo:hi], offset=lo)
        with_n = _count_in_windows(np.flatnonzero(classes == dna.UNKNOWN), local, tile_bp) > 0
        with_iupac = _count_in_windows(np.flatnonzero(classes == dna.AMBIGUOUS), local, tile_bp) > 0
        clean = ~(with_n | with_iupac)
        skipped += int((~clean).sum())
        ambiguous += int((with_iupac & ~with_n).sum())
        contig_idx.append(np.full(int(clean.sum()), i, dtype=np.int32))
        starts.append(first[clean])
    if not starts or sum(len(s) for s in starts) == 0:
        where = "the --bed regions on " if regions is not None else ""
        raise FastaError(
            f"no N-free window of {window_bp} bp in {where}the selected contigs "
            f"({len(names)} contig(s)); try a smaller --window-bp or other --contigs"
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
