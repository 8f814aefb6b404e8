"""Errors a user can fix, and how the CLI reports them."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class KcnnError(Exception):
    """Bad input: the CLI prints the message on one line and exits with `exit_code`."""

    exit_code = 2


class ModelMismatchError(KcnnError):
    """Two models that should be the same network are not (compare-apis proof failed)."""

    exit_code = 1


class DivergedError(KcnnError):
    """Training produced a NaN or infinite loss."""

    exit_code = 3


def closest(name: str, choices: Iterable[str]) -> str | None:
    """The valid name nearest to `name`, if any is near enough to suggest."""
    choices = list(choices)
    lowered = {c.lower(): c for c in choices}
    if name.lower() in lowered:
        return lowered[name.lower()]
    match = difflib.get_close_matches(name.lower(), list(lowered), n=1, cutoff=0.5)
    return lowered[match[0]] if match else None


def unknown(kind: str, name: str, choices: Iterable[str]) -> KcnnError:
    """An error for a name that is not in a registry, suggesting the closest valid one."""
    choices = sorted(choices)
    hint = closest(name, choices)
    tip = f"did you mean '{hint}'? " if hint else ""
    return KcnnError(f"unknown {kind} '{name}': {tip}choose one of: {', '.join(choices)}")
