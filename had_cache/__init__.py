"""Stage one of HAD: FASTA -> windows -> group masks -> teacher features -> Zarr store.

This package knows nothing about training; `had_train` reads its stores through
`had_cache.reader` only.
"""

__version__ = "0.1.0"
