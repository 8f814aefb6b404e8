"""Where `kcnn inspect`, `kcnn calibrate` and `kcnn lr-find` keep their records in a run folder.

One owner of these names: the modules that write the records (kcnn.use.errors, .calibration,
.robustness) and report.html's sections that read them both take them from here.
"""

from __future__ import annotations

import os
import tempfile
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


def save_picture(path: Path, draw: Callable[[Path], None]) -> None:
    """`draw(temporary path)` writes a picture that is then renamed into place: a reader never
    sees half a PNG, and a failed drawing leaves the old picture (or none)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        draw(Path(tmp))
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
