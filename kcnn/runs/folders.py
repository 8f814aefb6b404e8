"""Run folders: `<out>/<timestamp>-<name>/`, what they hold, and the versions a run records."""

from __future__ import annotations

import os
import platform
import re
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

from kcnn.engine.config import check_name
from kcnn.errors import KcnnError

# Files of a finished run (README, "A run folder").
CONFIG, SUMMARY, HISTORY, METRICS = "config.json", "summary.txt", "history.csv", "metrics.json"
CURVES, CONFUSION, MODEL = "curves.png", "confusion_matrix.png", "model.keras"
RUN_FILES = (CONFIG, SUMMARY, HISTORY, METRICS, CURVES, CONFUSION, MODEL)
REPORT_HTML = "report.html"
# Files of a comparison folder (compare-apis, transfer of several backbones, kcnn compare).
COMPARISON_MD, COMPARISON_CSV, COMPARISON_JSON = (
    "comparison.md",
    "comparison.csv",
    "comparison.json",
)
OVERLAY, PROOF_JSON = "curves_overlay.png", "proof.json"
# What the training images look like (kcnn.data.typical): predict warns of an image unlike them.
TYPICAL = "training_images.json"
NEAREST = "training_features.npz"  # the training images' features, predict's second check
# A group of seed runs (kcnn.runs.groups): its record and its summary in words.
GROUP_JSON, GROUP_MD = "group.json", "group.md"
# Beside accuracy wherever runs are listed (metrics.json's names): the figures where a rare
# class counts as much as a common one.
CLASS_BALANCED = ("test_balanced_accuracy", "test_macro_f1")
# A fold of `--folds`: its answers on the fold it held out; the group's gathered answers.
FOLD_PREDICTIONS, OUT_OF_FOLD = "fold_predictions.npz", "oof_probabilities.npz"

STATUSES = ("running", "completed", "interrupted", "diverged", "failed")
STAMP = re.compile(r"^(\d{8}-\d{6})-")  # the time stamp `create` puts before a run's name


def stamp_time(name: str) -> float | None:
    """When a folder `create` named was made, from the time stamp before its name (local time,
    as written); None for a name without one."""
    found = STAMP.match(name)
    if found is None:
        return None
    try:
        return time.mktime(time.strptime(found.group(1), "%Y%m%d-%H%M%S"))
    except (ValueError, OverflowError):
        return None


def made_for(folder_name: str, name: str) -> bool:
    """Whether `create` could have made a folder of this name for a run named `name`
    (`<stamp>-<name>`, or `<stamp>-<name>-<n>` for the second of one second)."""
    return re.fullmatch(rf"\d{{8}}-\d{{6}}-{re.escape(name)}(-\d+)?", folder_name) is not None


def check_out(out: str | Path) -> None:
    """Refuse an output folder that `create` could not make or write in, without making it."""
    out = Path(out).expanduser()
    existing = out
    while not existing.exists() and existing != existing.parent:
        if existing.is_symlink() or existing.parent.is_file():
            break
        existing = existing.parent
    try:  # the one sure test of "can a folder be made here" is making one (and removing it)
        if not existing.is_dir():
            raise NotADirectoryError(20, "Not a directory")
        os.rmdir(tempfile.mkdtemp(prefix=".kcnn-check-", dir=existing))
    except OSError as e:
        raise KcnnError(
            f"cannot create output folder {out}: {e.strerror or e}; choose another --out"
        ) from None


def make(folder: str | Path) -> list[Path]:
    """`folder` made with its missing parents (an existing folder is fine); returns the folders
    it made, outermost first, for `unmake`. A folder that cannot be made (a name too long, a
    file in the way) raises OSError with nothing left behind: the parents it had made already
    are removed again, so a refused `--out` leaves no trace."""
    folder = Path(folder).expanduser()
    missing = []
    here = folder
    while not os.path.lexists(here) and here != here.parent:
        missing.append(here)
        here = here.parent
    made: list[Path] = []
    try:
        for path in reversed(missing):
            path.mkdir()
            made.append(path)
        if not folder.is_dir():
            raise NotADirectoryError(20, "Not a directory", str(folder))
    except OSError:
        unmake(made)
        raise
    return made


def unmake(made: list[Path]) -> None:
    """Remove the folders `make` made, innermost first, where they are still empty."""
    for path in reversed(made):
        try:
            path.rmdir()
        except OSError:
            return  # something was written there after all: keep it and its parents


def create(out: str | Path, name: str) -> Path:
    """Make a new, empty run folder; refuse an output folder that cannot be written (leaving none
    of the folders above it that it made)."""
    check_name(name)
    out = Path(out).expanduser()
    try:
        made = make(out)
    except OSError as e:
        raise KcnnError(
            f"cannot create output folder {out}: {e.strerror or e}; choose another --out"
        ) from None
    if not os.access(out, os.W_OK | os.X_OK):
        unmake(made)
        raise KcnnError(f"output folder {out} is not a writable folder; choose another --out")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for attempt in range(1000):
        run_dir = out / (f"{stamp}-{name}" if attempt == 0 else f"{stamp}-{name}-{attempt}")
        try:
            run_dir.mkdir()
            return run_dir
        except FileExistsError:
            continue
        except OSError as e:
            unmake(made)
            raise KcnnError(
                f"cannot create run folder in {out}: {e.strerror or e}; choose another --out"
            ) from None
    unmake(made)
    raise KcnnError(f"too many runs named {name} this second in {out}")


# The CPU kernels a run computed with (kcnn/__init__.py sets the default): a run resumed under
# another choice agrees with an uninterrupted one only to float rounding.
KERNELS = "TF_ENABLE_ONEDNN_OPTS"


def kernels() -> str:
    return os.environ.get(KERNELS, "unset")


def versions() -> dict[str, str]:
    found = {"python": sys.version.split()[0], "platform": platform.platform(), KERNELS: kernels()}
    for package in ("kcnn", "tensorflow", "keras", "numpy", "scikit-learn", "mlxtend"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    return found


def rename(run_dir: Path, name: str) -> Path:
    """A folder made by `create`, renamed `<same timestamp>-<name>` (a run whose data set turned
    out to be another than asked for is named for the one it used). Never replaces a folder that
    exists: the new name is claimed by making it, then the run is moved onto it. A name that
    cannot be had leaves the folder as it was (its records still say what was used)."""
    check_name(name)
    stamp = STAMP.match(run_dir.name)
    if stamp is None:
        return run_dir
    for attempt in range(1000):
        suffix = "" if attempt == 0 else f"-{attempt}"
        target = run_dir.parent / f"{stamp.group(1)}-{name}{suffix}"
        if target == run_dir:
            return run_dir
        try:
            target.mkdir()
        except FileExistsError:
            continue
        except OSError:
            return run_dir
        try:
            os.rename(run_dir, target)  # onto the empty folder just made: one atomic step
        except OSError:
            target.rmdir()
            return run_dir
        return target
    return run_dir


def inside(folder: Path, path: str | Path) -> str:
    """`path`, a folder kcnn made inside `folder`, as a path from `folder`: what a record keeps,
    so that it names the same place on every machine the folder is copied to."""
    return Path(path).resolve().relative_to(Path(folder).resolve()).as_posix()
