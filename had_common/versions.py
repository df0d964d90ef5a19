"""Format versions of what `had` writes (stores, run configs) and the one rule for reading them.

A version is "MAJOR.MINOR". A new minor version only adds optional fields, so a reader accepts
its own major version at any minor version up to its own (missing optional fields take their
defaults); a newer minor or another major version is refused with one line naming both.
Files written before versions had a minor part carry a bare integer, read as MAJOR.0.
"""

from __future__ import annotations

from had_common.errors import HadError


def parse_version(value: object) -> tuple[int, int] | None:
    """(major, minor) of "2.1" or a bare 2; None if `value` is no version at all."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return (value, 0)
    if isinstance(value, str):
        major, dot, minor = value.partition(".")
        if major.isdigit() and (minor.isdigit() if dot else True):
            return (int(major), int(minor) if dot else 0)
    return None


def format_version(version: tuple[int, int]) -> str:
    return f"{version[0]}.{version[1]}"


def check_readable(
    found: object,
    current: str,
    what: str,
    where: str,
    error: type[HadError],
    also_reads: tuple[int, ...] = (),
) -> tuple[int, int]:
    """The version of `where` if this code can read it, else `error` naming both versions.

    `also_reads`: older major versions this code still reads, at any minor version (a format
    whose layout changed may keep reading the old one where that is cheap)."""
    mine = parse_version(current)
    assert mine is not None, current
    theirs = parse_version(found)
    if theirs is None:
        raise error(f"{where} has no readable {what} version ({found!r}); this had reads {current}")
    if theirs[0] in also_reads:
        return theirs
    if theirs[0] != mine[0] or theirs[1] > mine[1]:
        advice = "upgrade had" if theirs > mine else "re-create it with this version of had"
        older = "".join(f"{major}.x, " for major in sorted(also_reads))
        raise error(
            f"{where} has {what} version {format_version(theirs)}, this had reads "
            f"{older}{mine[0]}.0 to {current}; {advice}"
        )
    return theirs
