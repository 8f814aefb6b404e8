"""Errors a user can fix, and how the CLI reports them."""

from __future__ import annotations

import difflib
import re
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


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """`did you mean 'x'? ` naming the closest valid choice, or '' when none is near: the one
    hint every "unknown ..." error gives."""
    hint = closest(str(name), choices)
    return f"did you mean '{hint}'? " if hint else ""


def unknown(kind: str, name: str, choices: Iterable[str]) -> KcnnError:
    """An error for a name that is not in a registry, suggesting the closest valid one."""
    choices = sorted(choices)
    return KcnnError(
        f"unknown {kind} '{name}': {did_you_mean(name, choices)}choose one of: {', '.join(choices)}"
    )


# What a failed download's errno says, in words a user acts on (socket.gaierror's codes are negative).
_DOWNLOAD_ERRNOS = {
    -2: "its host could not be found (no network, or no DNS)",
    -3: "its host could not be found (no network, or no DNS)",
    -5: "its host could not be found (no network, or no DNS)",
    101: "the network is unreachable",
    110: "the connection timed out",
    111: "the server refused the connection",
    113: "the server's host is unreachable",
}
_ERRNO = re.compile(r"\[Errno (-?\d+)\]\s*")
# keras.utils.get_file: "URL fetch failure on URL: ERRNO-OR-HTTP-CODE -- REASON"
_KERAS_FETCH = re.compile(r"URL fetch failure on (\S+?):? (\S+) -- (.*)", re.DOTALL)


def download_failure(error: BaseException) -> str:
    """Why a download failed, as a whole phrase ("the network is unreachable", "the server
    answered HTTP 404 (Not Found)"): never a message cut mid-word, never Keras's `None -- [Errno`."""
    text = " ".join(str(error).split())
    found = _KERAS_FETCH.search(text)
    code, reason = (found.group(2), found.group(3)) if found else (None, text)
    if code is not None and code.isdigit() and 100 <= int(code) < 600:
        return f"the server answered HTTP {code}" + (f" ({reason})" if reason else "")
    numbers = [int(n) for n in _ERRNO.findall(reason)]
    errno = getattr(error, "errno", None)
    for number in [*numbers, errno]:
        if number in _DOWNLOAD_ERRNOS:
            return _DOWNLOAD_ERRNOS[number]
    lowered = reason.lower()
    if "timed out" in lowered:
        return "the connection timed out"
    if "unreachable" in lowered:
        return "the network is unreachable"
    if "name or service not known" in lowered or "name resolution" in lowered:
        return _DOWNLOAD_ERRNOS[-2]
    reason = _ERRNO.sub("", reason).strip(" .;:")
    if found and reason:
        return reason
    return f"{type(error).__name__}: {reason}" if reason else type(error).__name__
