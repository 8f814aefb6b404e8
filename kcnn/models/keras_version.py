"""The Keras release kcnn needs, checked before any command loads or builds a model.

Keras 3.13.2 is the first release with every published fix to its model loader that kcnn relies
on when it opens a model file from someone else (CVE-2025-1550, CVE-2025-9905, CVE-2025-9906,
CVE-2026-1462, CVE-2026-1669: code run or files read through a crafted `.keras` file, even in safe
mode). pyproject.toml states the same floor; a test keeps the two equal. The version is read from
the installed package's metadata, so checking it never imports Keras or TensorFlow.
"""

from __future__ import annotations

import re
from importlib import metadata

from kcnn.errors import KcnnError

MINIMUM = (3, 13, 2)
# The names Keras is published under: the release, and the nightly builds (which install `keras`).
DISTRIBUTIONS = ("keras", "keras-nightly")
FIXES = "CVE-2025-1550, CVE-2025-9905, CVE-2025-9906, CVE-2026-1462, CVE-2026-1669"


def installed() -> str | None:
    """The installed Keras's version string, or None when Keras is not installed."""
    for name in DISTRIBUTIONS:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return None


def new_enough(version: str) -> bool:
    """Whether `version` (PEP 440, e.g. 3.15.1, 3.13.2rc1, 3.14.0.dev2025) is at least MINIMUM.

    A pre-release or dev build of MINIMUM itself comes before it and is refused; an unreadable
    version is refused too (kcnn cannot tell what it holds)."""
    match = re.match(r"^\s*v?(?:\d+!)?(\d+(?:\.\d+)*)(.*)$", version)
    if not match:
        return False
    release = tuple(int(part) for part in match.group(1).split("."))
    while len(release) > len(MINIMUM) and release[-1] == 0:  # 3.13.2.0 is 3.13.2
        release = release[:-1]
    release += (0,) * (len(MINIMUM) - len(release))
    suffix = match.group(2).strip().lower()
    before_release = bool(re.match(r"^[-_.]?(a|b|c|rc|alpha|beta|pre|preview|dev)", suffix))
    if release == MINIMUM:
        return not before_release
    return release > MINIMUM


def required() -> str:
    return ".".join(map(str, MINIMUM))


def require() -> None:
    """Refuse, in one line, a Keras older than MINIMUM (or none at all)."""
    version = installed()
    upgrade = f"pip install --upgrade 'keras>={required()}'"
    if version is None:
        raise KcnnError(f"Keras is not installed; kcnn needs Keras >= {required()}: {upgrade}")
    if not new_enough(version):
        raise KcnnError(
            f"Keras {version} is installed, but kcnn needs Keras >= {required()} (its model loader "
            f"fixes {FIXES}); upgrade it: {upgrade}"
        )
