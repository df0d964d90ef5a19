"""The root of every error a user can fix, and the generic one for contradictory options.

Each rule's own error class (a bad FASTA, teacher, store, checkpoint, task, loss) is a subclass
declared in the module that owns the rule; the CLIs print any of them as one line and exit 2.
"""

from __future__ import annotations


class HadError(Exception):
    """A problem with the user's input or environment, explained in one line."""


class ConfigError(HadError):
    """Options that contradict each other or the data."""
