"""Training recipes: learning-rate schedules, optimizers, label smoothing, early stopping.

Everything that changes from epoch to epoch is a function of the epoch number and of the history
kcnn records (history.csv), never of how many epochs this process has run, so an interrupted run
resumed at epoch k continues exactly as if it had never stopped:

- `learning_rate(epoch, ...)` is a pure function of the epoch;
- `plateau_scale(val_losses, ...)` recomputes ReduceLROnPlateau's reductions from the recorded
  validation losses, and `callbacks.LearningRate` applies schedule × plateau at each epoch's
  start;
- `callbacks.EarlyStopping` recomputes its best epoch and patience counter from the recorded
  history; the best epoch's weights, which no history holds, come from `state()` / `restore(state)`.

Learning rates change per epoch, not per batch: the schedule is the same whatever the batch size,
and each epoch's rate is one row of history.csv.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from kcnn import defaults
from kcnn.errors import KcnnError, unknown

SCHEDULES = ("constant", "cosine", "step", "one-cycle")
TTA_MODES = ("flip", "crops")  # test-time augmentation (kcnn.data.tta)
OPTIMIZERS = defaults.OPTIMIZERS
STEP_MILESTONES = (0.5, 0.75)  # step: ×0.1 at half and three quarters of the post-warm-up epochs
STEP_FACTOR = 0.1
ONE_CYCLE_RISE = 0.3  # one-cycle climbs for 30 % of the epochs unless `warmup` says otherwise
ONE_CYCLE_START = 1 / 25  # ... from base_lr / 25 (the start fastai and PyTorch's OneCycleLR use)


def check_schedule(schedule: str, epochs: int, warmup: int = 0, min_lr: float = 0.0) -> None:
    if schedule not in SCHEDULES:
        raise unknown("learning-rate schedule", schedule, SCHEDULES)
    if warmup < 0 or (warmup and warmup >= epochs):
        raise KcnnError(
            f"--warmup must be 0 or more and fewer than the {epochs} epochs, got {warmup}"
        )
    if min_lr < 0:
        raise KcnnError(f"--min-lr must be 0 or more, got {min_lr}")


def learning_rate(
    epoch: int,
    base_lr: float,
    epochs: int,
    schedule: str = "constant",
    warmup: int = 0,
    min_lr: float = 0.0,
) -> float:
    """The learning rate of epoch `epoch` (0-based) of `epochs`.

    warm-up (constant, cosine, step): epochs 0..W-1 climb linearly, lr = base_lr·(e+1)/(W+1),
        and the schedule proper runs over the remaining N = epochs − W epochs, t = e − W.
    constant: base_lr.
    cosine: min_lr + (base_lr − min_lr)·(1 + cos(π·t/N))/2 — base_lr at t = 0, approaching
        min_lr (default 0) without spending an epoch on it.
    step: base_lr·0.1^k, k = how many of the milestones W + ⌊0.5·N⌋ and W + ⌊0.75·N⌋ are ≤ e.
    one-cycle: a linear climb from base_lr/25 to base_lr over R epochs (R = W if given, else
        max(1, round(0.3·epochs))), lr = base_lr/25 + (base_lr − base_lr/25)·e/R, then cosine from
        base_lr down towards min_lr over the remaining epochs as above.
    """
    check_schedule(schedule, epochs, warmup, min_lr)
    if schedule == "one-cycle":
        rise = warmup or max(1, round(ONE_CYCLE_RISE * epochs))
        if epoch < rise:
            start = base_lr * ONE_CYCLE_START
            return start + (base_lr - start) * epoch / rise
        return _cosine(epoch - rise, max(epochs - rise, 1), base_lr, min_lr)
    if epoch < warmup:
        return base_lr * (epoch + 1) / (warmup + 1)
    t, n = epoch - warmup, max(epochs - warmup, 1)
    if schedule == "cosine":
        return _cosine(t, n, base_lr, min_lr)
    if schedule == "step":
        passed = sum(t >= math.floor(m * n) for m in STEP_MILESTONES)
        return base_lr * STEP_FACTOR**passed
    return base_lr


def _cosine(t: int, n: int, high: float, low: float) -> float:
    return low + (high - low) * (1 + math.cos(math.pi * t / n)) / 2


def plateau_scale(
    val_losses: Sequence[float], factor: float = 0.1, patience: int = 5, min_delta: float = 1e-4
) -> float:
    """The factor ReduceLROnPlateau has multiplied the rate by after these epochs' losses.

    After an epoch whose validation loss is not below the best so far by more than `min_delta`
    the wait grows; when it reaches `patience` the rate is multiplied by `factor` and the wait
    starts again (as keras.callbacks.ReduceLROnPlateau with cooldown 0 and mode 'min').
    """
    scale, best, wait = 1.0, math.inf, 0
    for loss in val_losses:
        if loss < best - min_delta:
            best, wait = loss, 0
            continue
        wait += 1
        if wait >= patience:
            scale, wait = scale * factor, 0
    return scale


def check_plateau(factor: float, patience: int) -> None:
    if not 0.0 < factor < 1.0:
        raise KcnnError(f"--plateau-factor must be between 0 and 1 (exclusive), got {factor}")
    if patience < 1:
        raise KcnnError(
            f"--reduce-lr-on-plateau must be a patience of 1 or more epochs, got {patience}"
        )


def check_optimizer(
    name: str, weight_decay: float = 0.0, momentum: float = 0.0, nesterov: bool = False
) -> None:
    if name not in OPTIMIZERS:
        raise unknown("optimizer", name, OPTIMIZERS)
    if weight_decay < 0:
        raise KcnnError(f"--weight-decay must be 0 or more, got {weight_decay}")
    if not 0.0 <= momentum < 1.0:
        raise KcnnError(f"--momentum must be at least 0 and below 1, got {momentum}")
    if name != "sgd" and (momentum or nesterov):
        raise KcnnError(
            f"--momentum and --nesterov apply to the sgd optimizer, not {name}; "
            "use --optimizer sgd or drop them"
        )
    if nesterov and not momentum:
        raise KcnnError("--nesterov needs a --momentum above 0")


def make_optimizer(
    name: str,
    lr: float,
    weight_decay: float = 0.0,
    momentum: float = 0.0,
    nesterov: bool = False,
    ema: float | None = None,
):
    """A Keras optimizer. `weight_decay` is decoupled (AdamW-style: w ← w − lr·wd·w) in every
    Keras 3 optimizer; `adamw` is Adam with it. Momentum and Nesterov belong to SGD alone.
    `ema`: the optimizer also keeps a moving average of the weights with this decay per step
    (Keras's `use_ema`; kcnn.engine.averaging)."""
    import keras

    check_optimizer(name, weight_decay, momentum, nesterov)
    decay = weight_decay or None  # None: no decay at all, rather than a zero multiply per step
    averaged = {"use_ema": True, "ema_momentum": ema} if ema else {}
    if name == "sgd":
        return keras.optimizers.SGD(
            lr, momentum=momentum, nesterov=nesterov, weight_decay=decay, **averaged
        )
    if name == "adamw":
        return keras.optimizers.AdamW(lr, weight_decay=weight_decay, **averaged)
    cls = {"adam": keras.optimizers.Adam, "rmsprop": keras.optimizers.RMSprop}[name]
    return cls(lr, weight_decay=decay, **averaged)


def check_label_smoothing(label_smoothing: float) -> None:
    if not 0.0 <= label_smoothing < 1.0:
        raise KcnnError(f"--label-smoothing must be at least 0 and below 1, got {label_smoothing}")


def make_loss(
    label_smoothing: float = 0.0, dense: bool = False, teacher: tuple[float, float] | None = None
):
    """Cross-entropy for integer labels and softmax outputs, optionally label-smoothed.

    Keras 3's SparseCategoricalCrossentropy has no label smoothing, so smoothing uses
    `SmoothedSparseCrossentropy`, which one-hots the labels itself: the pipeline keeps integer
    labels and compile's "accuracy" still resolves to sparse categorical accuracy.

    `dense`: training targets are rows (mixed labels, a teacher's probabilities after them), and
    the loss is `TargetCrossentropy`, which takes those and integer labels alike; `teacher` =
    (weight, temperature) adds the distillation term (kcnn.models.losses).
    """
    check_label_smoothing(label_smoothing)
    if dense or teacher is not None:
        from kcnn.models.losses import target_classes

        weight, temperature = teacher or (0.0, 1.0)
        return target_classes()[0](label_smoothing, weight, temperature)
    if not label_smoothing:
        return "sparse_categorical_crossentropy"
    from kcnn.models.losses import smoothed_loss_class

    return smoothed_loss_class()(label_smoothing=label_smoothing)


def check_early_stopping(patience: int) -> None:
    if patience < 1:
        raise KcnnError(f"--early-stopping must be a patience of 1 or more epochs, got {patience}")


def make_metrics(dense: bool = False) -> list:
    """The metrics a run logs: accuracy (against the larger-weight label of a dense row)."""
    if not dense:
        return ["accuracy"]
    from kcnn.models.losses import target_classes

    return [target_classes()[1]()]
