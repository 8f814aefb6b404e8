"""Checkpoints of an interrupted run, the lock on a run folder, and reading a run back to resume it.

A checkpoint is the state of the last finished epoch: the model with its optimizer state
(`checkpoint.keras`), the state of every random generator in the model (`checkpoint_rng.npz`:
Dropout draws from a Keras SeedGenerator whose state Keras does not save), and
`checkpoint.json` saying which epoch that was. The data order needs no saved state: each epoch's
shuffle depends only on the seed and the epoch number (`pipeline.epoch_batches`). So a run
resumed at epoch k sees exactly what an uninterrupted run sees from epoch k on, and ends with the
same metrics, bit for bit.
"""

from __future__ import annotations

import csv
import fcntl
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kcnn.errors import KcnnError
from kcnn.runs import folders
from kcnn.runs.records import read_csv, read_json, write_json

CHECKPOINT, CHECKPOINT_INFO, CHECKPOINT_RNG = (
    "checkpoint.keras",
    "checkpoint.json",
    "checkpoint_rng.npz",
)
CHECKPOINT_BEST = "checkpoint_best.npz"  # early stopping's best weights so far
LOCK = ".lock"
RESUMABLE = ("interrupted", "running", "failed")  # "running" with no live process: killed outright


@dataclass
class Resume:
    """Where a resumed run picks up: its folder, the epochs already done and their history."""

    run_dir: Path
    epoch: int  # epochs finished in the checkpoint (0: start again from the beginning)
    rows: list[dict[str, float]]
    train_seconds: float = 0.0
    fingerprint: str | None = None  # the digest of the data it trained on


# --- random-generator state ---------------------------------------------------------------------


def rng_variables(model) -> list:
    """The state variables of every Keras SeedGenerator in `model` (Dropout's, for one), in a
    fixed order. `model.get_weights()` leaves them out and `load_model` re-seeds them."""
    return [v for v in model.variables if v.path.endswith("seed_generator_state")]


def rng_state(model) -> list:
    return [v.numpy() for v in rng_variables(model)]


def set_rng_state(model, states: list) -> None:
    variables = rng_variables(model)
    if len(variables) != len(states):
        raise KcnnError(
            f"the checkpoint holds {len(states)} random-generator states but the model has "
            f"{len(variables)}; this run cannot be resumed exactly"
        )
    for variable, value in zip(variables, states, strict=True):
        variable.assign(value)


# --- writing ------------------------------------------------------------------------------------


# Settings a resume may change: they do not alter what the checkpoint's epochs computed.
FREE_SETTINGS = ("epochs", "out", "name", "data_dir")


def save(
    run_dir: Path,
    model,
    epoch: int,
    reason: str,
    settings: dict[str, Any] | None = None,
    best: list | None = None,
) -> None:
    """Write the checkpoint atomically: the model and generator files first, then the note that
    points at them (a checkpoint without its note is never used). The note keeps the settings
    the epochs were trained with, so a config.json edited since cannot resume into another run."""
    import numpy as np

    (run_dir / CHECKPOINT_INFO).unlink(missing_ok=True)
    tmp = run_dir / f".{CHECKPOINT}.tmp.keras"  # Keras insists on the .keras suffix
    model.save(tmp)
    os.replace(tmp, run_dir / CHECKPOINT)
    tmp_rng = run_dir / f".{CHECKPOINT_RNG}.tmp.npz"
    np.savez(tmp_rng, *rng_state(model))
    os.replace(tmp_rng, run_dir / CHECKPOINT_RNG)
    (run_dir / CHECKPOINT_BEST).unlink(missing_ok=True)
    if best is not None:  # early stopping's best weights so far
        tmp_best = run_dir / f".{CHECKPOINT_BEST}.tmp.npz"
        np.savez(tmp_best, *best)
        os.replace(tmp_best, run_dir / CHECKPOINT_BEST)
    note = {"epoch": epoch, "reason": reason, "file": CHECKPOINT}
    if settings is not None:
        note["settings"] = {k: v for k, v in settings.items() if k not in FREE_SETTINGS}
    write_json(run_dir / CHECKPOINT_INFO, note)


def discard(run_dir: Path) -> None:
    """A finished run keeps model.keras; its checkpoint is no longer needed."""
    for name in (CHECKPOINT_INFO, CHECKPOINT, CHECKPOINT_RNG, CHECKPOINT_BEST):
        (run_dir / name).unlink(missing_ok=True)


class Lock:
    """An exclusive lock on a run folder, held while a process works in it. The kernel drops it
    when the process dies, however it dies, so a killed run never stays locked."""

    def __init__(self, run_dir: Path):
        self.path = run_dir / LOCK
        self._fd: int | None = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._fd)
            self._fd = None
            raise KcnnError(
                f"another kcnn process is working in {run_dir}; wait for it to end (or stop it) first"
            ) from None

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def lock(run_dir: Path) -> Lock:
    return Lock(run_dir)


# --- reading a run back -------------------------------------------------------------------------


def read_record(path: Path, what: str) -> dict:
    """A JSON record of a run folder, or a clear error that names the file."""
    try:
        record = read_json(path)
    except FileNotFoundError:
        raise KcnnError(f"{path.parent} has no {path.name}: it is not a kcnn run folder") from None
    except (OSError, ValueError, RecursionError) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise KcnnError(
            f"the {what} {path} is damaged ({reason[:120]}); this run cannot be resumed"
        ) from None
    if not isinstance(record, dict):
        raise KcnnError(
            f"the {what} {path} is damaged (not a JSON object); this run cannot be resumed"
        )
    return record


def open_run(run_dir: str | Path) -> tuple[dict[str, Any], Resume]:
    """Check that `run_dir` is a `kcnn train` run that can be resumed; its record and its state."""
    run_dir = Path(run_dir).expanduser()
    if not run_dir.is_dir():
        raise KcnnError(
            f"run folder {run_dir} does not exist; pass the folder of an interrupted run to --resume"
        )
    record = read_record(run_dir / folders.CONFIG, "run configuration")
    metrics = read_record(run_dir / folders.METRICS, "run metrics")
    status = metrics.get("status")
    if record.get("command") != "train":
        raise KcnnError(
            f"{run_dir} is a `kcnn {record.get('command')}` run; --resume continues `kcnn train` runs"
        )
    if status == "completed":
        raise KcnnError(
            f"{run_dir} already completed its {metrics.get('epochs_completed')} epochs; "
            "start a new run to train longer"
        )
    if status == "diverged":
        raise KcnnError(
            f"{run_dir} diverged; resuming would diverge again: start a new run with a lower --lr"
        )
    if status not in RESUMABLE:
        raise KcnnError(f"{run_dir} has status {status!r}; it cannot be resumed")
    epoch = 0
    if (run_dir / CHECKPOINT_INFO).exists():
        info = read_record(run_dir / CHECKPOINT_INFO, "checkpoint note")
        epoch = info.get("epoch")
        if not isinstance(epoch, int) or isinstance(epoch, bool) or epoch < 0:
            raise KcnnError(
                f"the checkpoint note {run_dir / CHECKPOINT_INFO} is damaged (epoch {epoch!r}); "
                "this run cannot be resumed"
            )
        if not (run_dir / CHECKPOINT).is_file():
            raise KcnnError(
                f"{run_dir} has no {CHECKPOINT} beside its checkpoint note; this run cannot be resumed"
            )
        _check_same_settings(run_dir, record, info.get("settings"))
    rows = read_history(run_dir / folders.HISTORY) if epoch else []
    if len(rows) < epoch:
        raise KcnnError(
            f"{run_dir / folders.HISTORY} holds {len(rows)} epochs but the checkpoint is of epoch "
            f"{epoch}; this run cannot be resumed"
        )
    seconds = metrics.get("train_seconds", 0.0)
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not seconds >= 0:
        raise KcnnError(
            f"the run metrics {run_dir / folders.METRICS} are damaged (train_seconds {seconds!r}); "
            "this run cannot be resumed"
        )
    fingerprint = record.get("data_fingerprint")
    if fingerprint is not None and not isinstance(fingerprint, str):
        raise KcnnError(
            f"the run configuration {run_dir / folders.CONFIG} is damaged (data_fingerprint "
            f"{fingerprint!r}); this run cannot be resumed"
        )
    return record, Resume(
        run_dir, epoch, rows[:epoch], float(seconds) if epoch else 0.0, fingerprint
    )


def _check_same_settings(run_dir: Path, record: dict, trained: Any) -> None:
    """Refuse a config.json whose settings differ from those the checkpoint was trained with."""
    if trained is None:  # a checkpoint from before notes kept settings
        return
    if not isinstance(trained, dict):
        raise KcnnError(
            f"the checkpoint note {run_dir / CHECKPOINT_INFO} is damaged (settings {trained!r}); "
            "this run cannot be resumed"
        )
    changed = [k for k, v in trained.items() if record.get(k) != v]
    if changed:
        key = changed[0]
        raise KcnnError(
            f"{run_dir / folders.CONFIG} says {key} = {record.get(key)!r} but the checkpoint was "
            f"trained with {key} = {trained[key]!r}; put it back, or start a new run with the "
            "new settings"
        )


def read_history(path: Path) -> list[dict[str, float]]:
    """The epochs history.csv records: numbered 1, 2, ... with the same numbers in each row."""
    try:
        rows = read_csv(path)
        rows = [{k: int(v) if k == "epoch" else float(v) for k, v in row.items()} for row in rows]
    except FileNotFoundError:
        return []
    except (OSError, ValueError, TypeError, UnicodeDecodeError, csv.Error) as e:
        raise KcnnError(
            f"the history {path} is damaged ({str(e)[:120]}); this run cannot be resumed"
        ) from None
    for number, row in enumerate(rows, 1):
        if row.get("epoch") != number or "loss" not in row or None in row:
            raise KcnnError(
                f"the history {path} is damaged (row {number} is not epoch {number} with its "
                "loss); this run cannot be resumed"
            )
    return rows


def load_model(run_dir: Path):
    """The checkpointed model, optimizer and random-generator state included, loaded with Keras
    safe mode (a saved model can never run arbitrary Python code through a lambda)."""
    import numpy as np

    from kcnn.models import saved

    path = run_dir / CHECKPOINT
    if path.is_file() and not zipfile.is_zipfile(path):  # Keras would call it "not found"
        raise KcnnError(
            f"the checkpoint {path} is damaged (not a .keras zip archive); this run cannot be resumed"
        )
    model = saved.load(path, "this run cannot be resumed")
    if not (run_dir / CHECKPOINT_RNG).is_file():
        if rng_variables(model):
            raise KcnnError(
                f"{run_dir} has no {CHECKPOINT_RNG}: the model's random-generator state is lost, "
                "so this run cannot be resumed exactly"
            )
        return model
    try:
        with np.load(run_dir / CHECKPOINT_RNG) as saved:
            states = [saved[f"arr_{i}"] for i in range(len(saved.files))]
    except Exception as e:
        raise KcnnError(
            f"the checkpoint {run_dir / CHECKPOINT_RNG} is damaged ({type(e).__name__}); "
            "this run cannot be resumed"
        ) from None
    set_rng_state(model, states)
    return model


def load_best_weights(run_dir: Path) -> list | None:
    """Early stopping's best weights saved with the checkpoint (None: the last epoch was best)."""
    import numpy as np

    path = run_dir / CHECKPOINT_BEST
    if not path.is_file():
        return None
    try:
        with np.load(path) as saved:
            return [saved[f"arr_{i}"] for i in range(len(saved.files))]
    except Exception as e:
        raise KcnnError(
            f"the checkpoint {path} is damaged ({type(e).__name__}); this run cannot be resumed"
        ) from None
