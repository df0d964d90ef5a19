"""What both stages share and neither owns: errors, provenance, devices, checksums, versions and
the command-line conventions (one-line errors, the `--device` option).

`had_cache` (stage one) and `had_train` (stage two) import this package; it imports neither.
"""

__version__ = "0.1.0"
