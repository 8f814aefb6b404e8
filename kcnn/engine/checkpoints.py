"""Checkpoints of an interrupted run, and `kcnn train --resume RUN_DIR`.

A checkpoint is the model of the last finished epoch, optimizer state included
(`checkpoint.keras`), and `checkpoint.json` saying which epoch that was. The data order needs no
saved state: each epoch's shuffle depends only on the seed and the epoch number
(`pipeline.epoch_batches`), so a run resumed at epoch k sees exactly the batches an
uninterrupted run sees from epoch k on, and ends with the same metrics.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

from kcnn.errors import KcnnError
from kcnn.runs import folders
from kcnn.runs.records import read_csv, read_json, write_csv, write_json

CHECKPOINT, CHECKPOINT_INFO = "checkpoint.keras", "checkpoint.json"
RESUMABLE = ("interrupted",)


@dataclass
class Resume:
    """Where a resumed run picks up: its folder, the epochs already done and their history."""

    run_dir: Path
    epoch: int  # epochs finished in the checkpoint
    rows: list[dict[str, float]]
    train_seconds: float = 0.0


def save(run_dir: Path, model, epoch: int, reason: str) -> None:
    """Write the checkpoint atomically: the model file first, then the note that points at it."""
    tmp = run_dir / f".{CHECKPOINT}.tmp.keras"  # Keras insists on the .keras suffix
    model.save(tmp)
    os.replace(tmp, run_dir / CHECKPOINT)
    write_json(run_dir / CHECKPOINT_INFO, {"epoch": epoch, "reason": reason, "file": CHECKPOINT})


def discard(run_dir: Path) -> None:
    """A finished run keeps model.keras; its checkpoint is no longer needed."""
    (run_dir / CHECKPOINT).unlink(missing_ok=True)
    (run_dir / CHECKPOINT_INFO).unlink(missing_ok=True)


def _read(path: Path, what: str) -> dict:
    try:
        return read_json(path)
    except FileNotFoundError:
        raise KcnnError(
            f"{path.parent} has no {path.name}: it is not a kcnn run folder that can be resumed"
        ) from None
    except (OSError, ValueError) as e:
        raise KcnnError(
            f"cannot read the {what} {path} ({e}); this run cannot be resumed"
        ) from None


def open_run(run_dir: str | Path) -> tuple[dict, Resume]:
    """Check that `run_dir` is an interrupted `kcnn train` run with a checkpoint; its config and state."""
    run_dir = Path(run_dir).expanduser()
    if not run_dir.is_dir():
        raise KcnnError(
            f"run folder {run_dir} does not exist; pass the folder of an interrupted run to --resume"
        )
    config = _read(run_dir / folders.CONFIG, "run configuration")
    metrics = _read(run_dir / folders.METRICS, "run metrics")
    status = metrics.get("status")
    if config.get("command") != "train":
        raise KcnnError(
            f"{run_dir} is a `kcnn {config.get('command')}` run; --resume continues `kcnn train` runs"
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
        raise KcnnError(f"{run_dir} has status {status!r} and no checkpoint to resume from")
    info = _read(run_dir / CHECKPOINT_INFO, "checkpoint note")
    if not (run_dir / CHECKPOINT).is_file() or not isinstance(info.get("epoch"), int):
        raise KcnnError(f"{run_dir} has no usable {CHECKPOINT}; this run cannot be resumed")
    epoch = info["epoch"]
    history = run_dir / folders.HISTORY
    rows = (
        [
            {k: float(v) if k != "epoch" else int(v) for k, v in row.items()}
            for row in read_csv(history)
        ]
        if history.is_file()
        else []
    )
    if len(rows) < epoch:
        raise KcnnError(
            f"{history} holds {len(rows)} epochs but the checkpoint is of epoch {epoch}; "
            "this run cannot be resumed"
        )
    return config, Resume(run_dir, epoch, rows[:epoch], float(metrics.get("train_seconds") or 0.0))


def load_model(run_dir: Path):
    """The checkpointed model, optimizer state included, loaded with Keras safe mode
    (a saved model can never run arbitrary Python code through a lambda)."""
    import keras

    import kcnn.models.blocks  # noqa: F401  registers kcnn's layers with Keras before loading
    import kcnn.models.forms  # noqa: F401

    try:
        return keras.saving.load_model(run_dir / CHECKPOINT, safe_mode=True)
    except Exception as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise KcnnError(
            f"cannot load {run_dir / CHECKPOINT} ({first[:160]}); this run cannot be resumed"
        ) from None


def resume(run_dir: str | Path, epochs: int | None = None, quiet: bool = False):
    """Continue an interrupted `kcnn train` run in its own folder; `epochs` may raise the total."""
    import time

    from kcnn.engine import training

    started = time.perf_counter()
    record, state = open_run(run_dir)
    fields = {f.name for f in dataclasses.fields(training.TrainConfig)}
    config = training.TrainConfig(**{k: v for k, v in record.items() if k in fields})
    if epochs is not None:
        config.epochs = epochs
    config.validate()
    if config.epochs <= state.epoch:
        raise KcnnError(
            f"{state.run_dir} has already trained {state.epoch} epochs; pass --epochs larger than "
            f"{state.epoch} to train further"
        )
    training.seed_everything(config.seed)
    model = load_model(state.run_dir)  # before the data: a bad checkpoint fails fast
    data, parts, input_shape = training.prepare(config)
    record = {
        **record,
        "epochs": config.epochs,
        "resumed": [
            *record.get("resumed", []),
            {"from_epoch": state.epoch, "at": time.strftime("%Y-%m-%d %H:%M:%S")},
        ],
    }
    for key in ("classes", "split_sizes", "dataset_provenance", "versions"):
        record.pop(key, None)
    return training.run(
        model, record, data, parts, input_shape, config, quiet=quiet, started=started, resume=state
    )


def truncate_history(run_dir: Path, rows: list[dict], epoch: int) -> None:
    """history.csv holds exactly the epochs a checkpoint has."""
    write_csv(run_dir / folders.HISTORY, rows[:epoch])
