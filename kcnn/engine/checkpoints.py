"""Checkpoints of an interrupted run: what a resume needs to go on exactly where it stopped.

A checkpoint is the state of the last finished epoch: the model with its optimizer state
(`checkpoint.keras`), the state of every random generator in the model (`checkpoint_rng.npz`:
Dropout draws from a Keras SeedGenerator whose state Keras does not save), and
`checkpoint.json` saying which epoch that was. The data order needs no saved state: each epoch's
shuffle depends only on the seed and the epoch number (`pipeline.epoch_batches`). So a run
resumed at epoch k sees exactly what an uninterrupted run sees from epoch k on, and ends with the
same metrics, bit for bit. The run folder (`kcnn.runs.run.RunFolder`) is handed in: it owns the
files, their fresh writes and their checked reads; reading a run back to resume it is its job too
(`kcnn.runs.run.read_resume`).
"""

from __future__ import annotations

import zipfile
from typing import Any

from kcnn.errors import KcnnError

CHECKPOINT, CHECKPOINT_INFO, CHECKPOINT_RNG = (
    "checkpoint.keras",
    "checkpoint.json",
    "checkpoint_rng.npz",
)
CHECKPOINT_BEST = "checkpoint_best.npz"  # early stopping's best weights so far
CHECKPOINT_AVERAGE = "checkpoint_average.npz"  # --average-last: the sum of the epochs averaged


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


def save(
    run,
    model,
    epoch: int,
    reason: str,
    settings: dict[str, Any] | None = None,
    best: list | None = None,
    phase: int = 1,
    average: tuple[list | None, int] | None = None,
) -> None:
    """Write the checkpoint atomically: the model and generator files first, then the note that
    points at them (a checkpoint without its note is never used). The note keeps the settings
    the epochs were trained with, so a config.json edited since cannot resume into another run."""
    import numpy as np

    run.remove(CHECKPOINT_INFO, CHECKPOINT_BEST, CHECKPOINT_AVERAGE)
    run.save_model(model, CHECKPOINT)
    with run.new_file(CHECKPOINT_RNG, ".npz") as tmp:
        np.savez(tmp, *rng_state(model))
    if best is not None:  # early stopping's best weights so far
        with run.new_file(CHECKPOINT_BEST, ".npz") as tmp:
            np.savez(tmp, *best)
    if average is not None:  # --average-last: the weights summed so far, and how many epochs
        sums, count = average
        with run.new_file(CHECKPOINT_AVERAGE, ".npz") as tmp:
            np.savez(tmp, *(sums or []), count=np.int64(count))
    # `phase`: which fit phase of the run the model was in (transfer's frozen phase 1 or its
    # fine-tune phase 2), so a resume restores it into the model of that phase.
    note = {"epoch": epoch, "phase": phase, "reason": reason, "file": CHECKPOINT}
    if settings is not None:
        note["settings"] = settings
    run.write_json(CHECKPOINT_INFO, note)


def discard(run) -> None:
    """A finished run keeps model.keras; its checkpoint is no longer needed."""
    run.remove(CHECKPOINT_INFO, CHECKPOINT, CHECKPOINT_RNG, CHECKPOINT_BEST, CHECKPOINT_AVERAGE)


# --- reading a run back -------------------------------------------------------------------------


def load_model(run):
    """The checkpointed model, optimizer and random-generator state included, loaded with Keras
    safe mode (a saved model can never run arbitrary Python code through a lambda)."""
    import numpy as np

    from kcnn.models import saved

    run_dir = run.path
    path = run_dir / CHECKPOINT
    if not run.has(CHECKPOINT):  # missing, or a link or special file: never followed
        raise KcnnError(
            f"{run_dir} has no {CHECKPOINT} (a regular file); this run cannot be resumed"
        )
    if not zipfile.is_zipfile(path):  # Keras would call it "not found"
        raise KcnnError(
            f"the checkpoint {path} is damaged (not a .keras zip archive); this run cannot be resumed"
        )
    model = saved.load(path, "this run cannot be resumed")
    if not run.has(CHECKPOINT_RNG):
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


def load_best_weights(run) -> list | None:
    """Early stopping's best weights saved with the checkpoint (None: the last epoch was best)."""
    import numpy as np

    path = run.path / CHECKPOINT_BEST
    if not run.has(CHECKPOINT_BEST):
        return None
    try:
        with np.load(path) as saved:
            return [saved[f"arr_{i}"] for i in range(len(saved.files))]
    except Exception as e:
        raise KcnnError(
            f"the checkpoint {path} is damaged ({type(e).__name__}); this run cannot be resumed"
        ) from None


def load_average(run, like: list) -> tuple[list | None, int]:
    """--average-last's sum of weights and its count saved with the checkpoint, checked against
    the model's weights (`like`); (None, 0) when no epoch was averaged yet."""
    import numpy as np

    path = run.path / CHECKPOINT_AVERAGE
    if not run.has(CHECKPOINT_AVERAGE):
        raise KcnnError(
            f"{run.path} has no {CHECKPOINT_AVERAGE} beside its checkpoint: the weights "
            "--average-last summed are lost, so this run cannot be resumed exactly"
        )
    try:
        with np.load(path) as saved:
            count = int(saved["count"])
            sums = [saved[f"arr_{i}"] for i in range(len(saved.files) - 1)]
    except Exception as e:
        raise KcnnError(
            f"the checkpoint {path} is damaged ({type(e).__name__}); this run cannot be resumed"
        ) from None
    shapes_match = [s.shape for s in sums] == [np.shape(w) for w in like]
    if count < 0 or (count and not shapes_match) or (not count and sums):
        raise KcnnError(
            f"the checkpoint {path} does not fit this run's model; this run cannot be resumed"
        )
    return (sums or None), count


def restore(model, run) -> None:
    """Put the checkpoint's state into `model`, a freshly built and compiled copy of the network
    it was taken from: weights, optimizer variables and random-generator state. For runs whose
    model is rebuilt rather than loaded (transfer: the backbone comes from its weights file and
    the head is trained on features)."""
    saved = load_model(run)
    weights, states = saved.get_weights(), rng_state(saved)
    mine = model.get_weights()
    if [w.shape for w in weights] != [w.shape for w in mine]:
        raise KcnnError(
            f"the checkpoint in {run.path} holds another network than this run builds; "
            "it cannot be resumed"
        )
    model.set_weights(weights)
    set_rng_state(model, states)
    theirs = getattr(saved, "optimizer", None)
    ours = getattr(model, "optimizer", None)
    if theirs is not None and ours is not None:
        if [tuple(v.shape) for v in theirs.variables] != [tuple(v.shape) for v in ours.variables]:
            raise KcnnError(
                f"the checkpoint in {run.path} holds another optimizer state than this run "
                "builds; it cannot be resumed"
            )
        for variable, value in zip(ours.variables, theirs.variables, strict=True):
            variable.assign(value)
