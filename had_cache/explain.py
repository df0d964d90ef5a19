"""`had-cache tokenize`: how the teacher tokenizes a sequence and which groups a mask hides.

The same rules as extraction (`tokenize.tokenize`, `masking.group_mask`), shown token by token
with 1-based base spans, so a user can check a window by eye before spending GPU hours on it.
"""

from __future__ import annotations

from pathlib import Path

from had_cache import masking, tokenize, windows
from had_common.errors import ConfigError


def explain_tokens(
    seq: str | None = None,
    fasta: str | Path | None = None,
    region: str | None = None,
    seed: int | None = None,
    record: int = 0,
    mask_ratio: float = masking.DEFAULT_RATIO,
) -> list[str]:
    """Lines of a table: token index, token, id, bases covered and MASK where `seed` hides it.

    Give `seq`, or `fasta` (`demo` = the embedded slice) with `region` (contig:start-end,
    1-based inclusive); the mask is that of record `record` of an extraction with `seed`.
    """
    offset = 0
    if (seq is None) == (region is None):
        raise ConfigError("give either --seq or --fasta with --region")
    if region is not None:
        if fasta is None:
            raise ConfigError("--region needs --fasta")
        where = windows.Region.parse(region)
        seq, offset = where.read(windows.open_fasta(fasta)), where.start - 1
    assert seq is not None
    tokens = tokenize.tokenize(seq)
    masked = (
        masking.group_mask(seed, record, len(tokens), mask_ratio)
        if seed is not None and len(tokens) > 1
        else [False] * len(tokens)
    )
    lines = [f"{'#':>5}  {'token':<7} {'id':>5}  {'bases (1-based)':<19} masked"]
    for i, (tok, hidden) in enumerate(zip(tokens, masked, strict=True)):
        span = f"{offset + tok.start + 1}-{offset + tok.end}"
        lines.append(
            f"{i:>5}  {tokenize.VOCAB[tok.id]:<7} {tok.id:>5}  {span:<19} {'MASK' if hidden else ''}"
        )
    lines.append(
        f"{len(tokens)} tokens over {len(seq)} bases"
        + (
            f"; {int(sum(masked))} masked (seed {seed}, record {record})"
            if seed is not None
            else ""
        )
    )
    return lines
