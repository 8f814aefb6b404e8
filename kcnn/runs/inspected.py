"""Where `kcnn inspect`, `kcnn calibrate` and `kcnn lr-find` keep their records in a run folder.

One owner of these names: the modules that write the records (kcnn.use.errors, .calibration,
.robustness) and report.html's sections that read them both take them from here.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

INSPECT = "inspect"  # RUN/inspect/: every record and picture below

ERRORS_JSON, TOP_LOSSES_PNG, MISCLASSIFIED_CSV = (
    "errors.json",
    "top_losses.png",
    "misclassified.csv",
)
CALIBRATION_JSON, RELIABILITY_PNG = "calibration.json", "reliability.png"
TEMPERATURE_JSON = "temperature.json"  # the fitted temperature `kcnn predict` applies
ROBUSTNESS_JSON, ROBUSTNESS_PNG, CORRUPTIONS_PNG = (
    "robustness.json",
    "robustness.png",
    "corruptions.png",
)
LR_FIND_JSON, LR_FIND_PNG = "lr_find.json", "lr_find.png"


def folder(run_dir: str | Path) -> Path:
    return Path(run_dir) / INSPECT


def make_folder(run_dir: str | Path) -> Path:
    """RUN/inspect as a real folder of the run (made if missing; a link there is refused)."""
    from kcnn.runs.run import RunFolder

    return RunFolder(run_dir).subfolder(INSPECT)


def save_picture(path: Path, draw: Callable[[Path], None]) -> None:
    """`draw(temporary path)` writes a picture into a fresh file (never a planted link) that is
    then renamed into place: a reader never sees half a PNG, and a failed drawing leaves the old
    picture (or none)."""
    from kcnn.runs.records import fresh_file

    with fresh_file(path, path.suffix) as tmp:
        draw(tmp)


def read(run_dir: str | Path, name: str) -> dict | None:
    """A record of RUN/inspect read as untrusted (a regular file, size-capped), or None when it
    is missing or damaged."""
    from kcnn.runs.records import Damaged
    from kcnn.runs.run import RunFolder

    try:
        return RunFolder(run_dir).json(f"{INSPECT}/{name}")
    except (FileNotFoundError, Damaged, ValueError):
        return None
