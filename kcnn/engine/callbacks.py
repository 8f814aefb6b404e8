"""Every Keras callback kcnn trains with, as top-level classes in one place.

- `Sentinel`: stops `fit` after the current batch on a signal or a non-finite loss, and keeps the
  last finished epoch's state in memory (what a checkpoint holds);
- `Recorder`: keeps history.csv and metrics.json current after every epoch, and the training clock;
- `LearningRate`: each epoch's rate from the recipe's schedule (× the plateau's reductions);
- `EarlyStopping`: stops after `patience` epochs without a better value, restoring the best weights;
- `Watching`: hands each epoch to a watcher of `kcnn.engine.hooks` (a sweep's pruning, MLflow);
- `EmaEvaluation`: evaluates the EMA of the weights on validation beside the raw weights;
- `WeightAverage`: sums the weights of the epochs `--average-last` averages;
- `TimeLimit`: stops training at `--time-limit`'s budget.

Importing this module imports Keras: it is imported only where a model is fitted, never by
`kcnn --help`. Every rule these callbacks apply lives beside what it belongs to (the schedule in
`recipes`, the checkpoint's state in `checkpoints`, the signals in `interrupts`); here they only
meet Keras's callback interface.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import keras
import numpy as np

from kcnn.engine import averaging, budget, checkpoints, recipes
from kcnn.engine.interrupts import NonFiniteLoss, SignalGuard
from kcnn.engine.recording import RATE
from kcnn.errors import KcnnError


class Sentinel(keras.callbacks.Callback):
    """Stops `fit` after the current batch on a signal (`guard`) or a non-finite loss.

    It also keeps, in memory, the weights and optimizer state of the last finished epoch: that is
    what a checkpoint holds, so a resumed run starts exactly where a finished epoch ended."""

    def __init__(self, guard: SignalGuard):
        super().__init__()
        self.guard = guard
        self.epoch = 0  # the epoch being trained (0-based)
        self.snapshot_epoch: int | None = None  # epochs finished when the snapshot was taken
        self._weights: list | None = None
        self._optimizer: list | None = None
        self._rng: list = []
        self._of = None  # the model the snapshot was taken from (transfer fits a head, then all)

    def take_snapshot(self, finished_epochs: int) -> None:
        self._weights = self.model.get_weights()
        self._rng = checkpoints.rng_state(self.model)
        optimizer = getattr(self.model, "optimizer", None)
        self._optimizer = (
            [v.numpy() for v in optimizer.variables] if optimizer is not None else None
        )
        self.snapshot_epoch = finished_epochs
        self._of = self.model

    def restore_snapshot(self, model) -> bool:
        """Put the last finished epoch's state back into `model`; False if there is none of it."""
        if self._weights is None or self._of is not model:
            return False
        self.model.set_weights(self._weights)
        checkpoints.set_rng_state(self.model, self._rng)
        optimizer = getattr(self.model, "optimizer", None)
        if (
            optimizer is not None
            and self._optimizer is not None
            and len(optimizer.variables) == len(self._optimizer)
        ):
            for variable, value in zip(optimizer.variables, self._optimizer, strict=True):
                variable.assign(value)
        return True

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch
        if self._of is not self.model or self.snapshot_epoch != epoch:
            self.take_snapshot(epoch)

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            raise NonFiniteLoss(float(loss), self.epoch, batch)
        self.guard.check()

    def on_test_batch_end(self, batch, logs=None):
        self.guard.check()

    def on_epoch_end(self, epoch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            raise NonFiniteLoss(float(loss), epoch, int(self.params.get("steps") or 1) - 1)
        # No signal check here: the Recorder has yet to write this epoch's row. The next batch,
        # or the engine after `fit`, acts on a pending signal.
        self.take_snapshot(epoch + 1)


class Recorder(keras.callbacks.Callback):
    """Keeps history.csv and metrics.json current after every epoch (through the trainer) and
    measures training time, validation excluded."""

    def __init__(self, trainer):
        super().__init__()
        self.trainer = trainer
        self._start = 0.0
        self._in_train = False

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()
        self._in_train = True

    def _stop_train_clock(self):
        if self._in_train:
            self.trainer.train_seconds += time.perf_counter() - self._start
            self._in_train = False

    def on_test_begin(self, logs=None):
        self._stop_train_clock()

    def on_train_end(self, logs=None):
        self._stop_train_clock()  # an interrupted epoch's time still counts

    def on_epoch_end(self, epoch, logs=None):
        self._stop_train_clock()
        row = {"epoch": epoch + 1, **{k: float(v) for k, v in (logs or {}).items()}}
        self.trainer.epoch_done(row)


class LearningRate(keras.callbacks.Callback):
    """Sets each epoch's rate at its start and logs it as `learning_rate` (see
    `recipes.learning_rate_callback`, which checks the recipe and makes it)."""

    def __init__(
        self,
        base_lr: float,
        epochs: int,
        schedule: str,
        warmup: int,
        min_lr: float,
        plateau: tuple[float, int] | None,
        val_losses: Sequence[float],
    ):
        super().__init__()
        self.base_lr, self.epochs, self.schedule = base_lr, epochs, schedule
        self.warmup, self.min_lr, self.plateau = warmup, min_lr, plateau
        self.val_losses = [float(v) for v in val_losses]
        self.rate = base_lr

    def rate_for(self, epoch: int) -> float:
        rate = recipes.learning_rate(
            epoch, self.base_lr, self.epochs, self.schedule, self.warmup, self.min_lr
        )
        if self.plateau is not None:
            factor, patience = self.plateau
            rate *= recipes.plateau_scale(self.val_losses[:epoch], factor, patience)
        return rate

    def on_epoch_begin(self, epoch, logs=None):
        self.rate = self.rate_for(epoch)
        self.model.optimizer.learning_rate.assign(self.rate)

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs[RATE] = self.rate
            if self.plateau is not None:
                if "val_loss" not in logs:
                    raise KcnnError("--reduce-lr-on-plateau needs a validation split")
                del self.val_losses[epoch:]
                self.val_losses.append(float(logs["val_loss"]))


class EarlyStopping(keras.callbacks.Callback):
    """Stops training after `patience` epochs without a better `monitor` (lower loss, higher
    accuracy) and restores the best epoch's weights when training ends (see
    `recipes.early_stopping_callback`). Its state is recomputed from the recorded history; the
    best weights, which no history holds, come from `restore(state)` on resume."""

    def __init__(self, patience: int, monitor: str, history: Sequence[float]):
        super().__init__()
        self.patience, self.monitor = patience, monitor
        self.higher_is_better = "acc" in monitor
        self.values = [float(v) for v in history]
        self.best_weights: list[np.ndarray] | None = None
        self.stopped_epoch: int | None = None
        self.restored = False

    def _better(self, value: float, best: float | None) -> bool:
        if best is None:
            return True
        return value > best if self.higher_is_better else value < best

    @property
    def best_epoch(self) -> int | None:
        best = None
        for epoch, value in enumerate(self.values):
            if self._better(value, None if best is None else self.values[best]):
                best = epoch
        return best

    def on_epoch_end(self, epoch, logs=None):
        if self.monitor not in (logs or {}):
            raise KcnnError(f"--early-stopping watches {self.monitor}, which training did not log")
        del self.values[epoch:]
        self.values.append(float(logs[self.monitor]))
        if self.best_epoch == epoch:
            self.best_weights = [np.array(w) for w in self.model.get_weights()]
        elif epoch - self.best_epoch >= self.patience:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self.best_epoch != len(self.values) - 1:
            if self.best_weights is None:
                raise RuntimeError(  # an engine bug, not bad input
                    "early stopping lost the best epoch's weights: restore(state) on resume"
                )
            self.model.set_weights(self.best_weights)
            self.restored = True

    def state(self) -> dict[str, Any]:
        return {"values": list(self.values), "best_weights": self.best_weights}

    def restore(self, state: dict[str, Any]) -> None:
        self.values = [float(v) for v in state["values"]]
        weights = state.get("best_weights")
        self.best_weights = None if weights is None else [np.asarray(w) for w in weights]

    def summary(self) -> dict[str, Any]:
        best, monitor = self.best_epoch, self.monitor
        return {
            "monitor": monitor,
            "patience": self.patience,
            "best_epoch": None if best is None else best + 1,  # 1-based, as history.csv
            f"best_{monitor}": None if best is None else self.values[best],
            "stopped_early": self.stopped_epoch is not None,
            "stop_reason": (
                f"no better {monitor} for {self.patience} epochs after epoch {best + 1}"
                if self.stopped_epoch is not None
                else "ran all epochs"
            ),
            "restored_best_weights": self.restored,
        }


def learning_rate_callback(
    base_lr: float,
    epochs: int,
    schedule: str = "constant",
    warmup: int = 0,
    min_lr: float = 0.0,
    plateau: tuple[float, int] | None = None,
    val_losses: Sequence[float] = (),
) -> LearningRate:
    """A callback setting each epoch's rate at its start and logging it as `learning_rate`.

    `plateau` = (factor, patience) multiplies the schedule by `recipes.plateau_scale` of the
    validation losses seen so far; on resume pass the recorded losses of the finished epochs as
    `val_losses`. The recipe is checked first (`recipes.check_schedule`, `check_plateau`)."""
    recipes.check_schedule(schedule, epochs, warmup, min_lr)
    if plateau is not None:
        recipes.check_plateau(*plateau)
    return LearningRate(base_lr, epochs, schedule, warmup, min_lr, plateau, val_losses)


def early_stopping_callback(
    patience: int, monitor: str = "val_loss", history: Sequence[float] = ()
) -> EarlyStopping:
    """A callback stopping training after `patience` epochs without a better `monitor`.

    On resume pass the recorded values of `monitor` of the finished epochs as `history` and
    `restore(state)` the `state()` saved with the checkpoint (it holds the best weights).
    `summary()` says what happened, for metrics.json."""
    recipes.check_early_stopping(patience)
    return EarlyStopping(patience, monitor, history)


class Watching(keras.callbacks.Callback):
    """One watcher's view of a fit phase (`kcnn.engine.hooks`): `train_begin()` as the phase
    starts and `epoch_end(epoch, logs)` (1-based) after each epoch, after kcnn's own callbacks
    have recorded it. Either may return True to end the phase after that point (a pruned trial)."""

    def __init__(
        self,
        train_begin: Callable[[], bool | None] | None,
        epoch_end: Callable[[int, dict[str, Any]], bool | None] | None,
    ):
        super().__init__()
        self._train_begin, self._epoch_end = train_begin, epoch_end

    def on_train_begin(self, logs=None):
        if self._train_begin is not None and self._train_begin():
            self.model.stop_training = True

    def on_epoch_end(self, epoch, logs=None):
        if self._epoch_end is not None and self._epoch_end(epoch + 1, dict(logs or {})):
            self.model.stop_training = True


class EmaEvaluation(keras.callbacks.Callback):
    """After each epoch, the optimizer's moving average of the weights evaluated on `val_ds`,
    logged as `ema_val_loss` and `ema_val_accuracy` beside the raw weights' (kcnn.engine.averaging)."""

    def __init__(self, val_ds):
        super().__init__()
        self.val_ds = val_ds

    def on_epoch_end(self, epoch, logs=None):
        if logs is None or self.val_ds is None:
            return
        with averaging.EmaWeights(self.model):
            found = self.model.evaluate(self.val_ds, verbose=0, return_dict=True)
        logs["ema_val_loss"] = float(found["loss"])
        logs["ema_val_accuracy"] = float(found["accuracy"])


class WeightAverage(keras.callbacks.Callback):
    """Adds the weights at the end of each epoch to `summed` (an `averaging.WeightSum`), which
    keeps only the epochs it averages."""

    def __init__(self, summed: averaging.WeightSum):
        super().__init__()
        self.summed = summed

    def on_epoch_end(self, epoch, logs=None):
        self.summed.add(epoch, self.model.get_weights())


class TimeLimit(keras.callbacks.Callback):
    """Ends training when the budget of `clock` (a `budget.Clock`) runs out: at the end of an
    epoch when another as slow as the slowest would end past it (`stopped` is then True), or
    after any batch once it is passed (`budget.TimeLimitReached`: that epoch is not kept)."""

    def __init__(self, clock: budget.Clock):
        super().__init__()
        self.clock = clock
        self.stopped = False

    def on_epoch_begin(self, epoch, logs=None):
        self.clock.epoch_begins()

    def on_train_batch_end(self, batch, logs=None):
        if self.clock.passed():
            raise budget.TimeLimitReached()

    def on_epoch_end(self, epoch, logs=None):
        if self.clock.epoch_ends():
            self.stopped = True
            self.model.stop_training = True
