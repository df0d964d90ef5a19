"""The nucleotide alphabet and its uint8 codes: the one home of these facts.

Stores, the student's input and every test use these codes. The teacher's 6-mer vocabulary
lives in `tokenize.py`; the mapping from masked groups to bases lives in `masking.py`.
"""

from __future__ import annotations

import numpy as np

from had_common.errors import ConfigError

K = 6
"""Bases per teacher token (NT v2 tokenizes DNA into non-overlapping 6-mers)."""

BASES = "ACGTN"
A, C, G, T, N = range(5)
MASK = 5
"""Student input code for a base hidden by a masked group (never stored in `seq`)."""
PAD = 6
"""Student input code for padding in variable-length batches (never stored in `seq`)."""
STUDENT_VOCAB_SIZE = 7

_ENCODE = np.full(256, N, dtype=np.uint8)
for _code, _base in enumerate("ACGT"):
    _ENCODE[ord(_base)] = _code
    _ENCODE[ord(_base.lower())] = _code

_COMPLEMENT = np.array([T, G, C, A, N, MASK, PAD], dtype=np.uint8)


def encode(seq: str | bytes) -> np.ndarray:
    """ASCII DNA (any case) -> uint8 codes; every letter other than ACGT becomes N."""
    raw = seq.encode("ascii") if isinstance(seq, str) else seq
    return _ENCODE[np.frombuffer(raw, dtype=np.uint8)]


def decode(codes: np.ndarray) -> str:
    """uint8 codes -> upper-case DNA string (MASK shows as '?', PAD as '-')."""
    letters = np.frombuffer(b"ACGTN?-", dtype=np.uint8)
    return letters[np.asarray(codes, dtype=np.uint8)].tobytes().decode("ascii")


def reverse_complement(codes: np.ndarray) -> np.ndarray:
    """Reverse complement of codes along the last axis."""
    return _COMPLEMENT[np.asarray(codes)[..., ::-1]]


def is_n(codes: np.ndarray) -> np.ndarray:
    """The N rule, elementwise: True for every code that is not A, C, G or T.

    Windows holding any such base are skipped (the teacher would tokenize them with
    single-letter fallbacks, breaking one token per 6 bases); a row is usable iff
    `~is_n(row).any()`.
    """
    return np.asarray(codes) > T


IUPAC_AMBIGUITY = "RYSWKMBDHV"
"""IUPAC codes for uncertain bases other than N: real genome FASTAs hold a few (hg38: ~100)."""
CLEAN, AMBIGUOUS, UNKNOWN, INVALID = range(4)
"""Letter classes for the window rule, ordered so that a window's class is the max over its
bases: all A/C/G/T (clean), an IUPAC ambiguity code, an N, or a character that is no base."""
_CLASS = np.full(256, INVALID, dtype=np.uint8)
for _letters, _cls in (("ACGT", CLEAN), (IUPAC_AMBIGUITY, AMBIGUOUS), ("N", UNKNOWN)):
    for _letter in _letters:
        _CLASS[ord(_letter)] = _CLASS[ord(_letter.lower())] = _cls


def letter_classes(seq: str | bytes) -> np.ndarray:
    """ASCII DNA -> uint8 class per letter (CLEAN, AMBIGUOUS, UNKNOWN, INVALID)."""
    raw = seq.encode("ascii", errors="replace") if isinstance(seq, str) else seq
    return _CLASS[np.frombuffer(raw, dtype=np.uint8)]


def has_n(codes: np.ndarray) -> bool:
    """True if any base is not one of A, C, G, T."""
    return bool(is_n(codes).any())


def groups_per_window(window_bp: int) -> int:
    """Teacher tokens (6-mer groups) of a window; a window must be a positive multiple of K so
    that every token is a whole 6-mer and token i covers bases K*i .. K*i + K - 1."""
    if window_bp <= 0 or window_bp % K:
        raise ConfigError(f"--window-bp must be a positive multiple of {K}, got {window_bp}")
    return window_bp // K
