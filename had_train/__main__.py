"""`python -m had_train ...` runs the `had-train` command (no console script needed)."""

from had_train.cli import main

main(prog_name="had-train")
