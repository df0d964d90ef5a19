"""`python -m had_cache ...` runs the `had-cache` command (no console script needed)."""

from had_cache.cli import main

main(prog_name="had-cache")
