"""Averaged weights: an exponential moving average of the weights (`--ema DECAY`) and the mean
of the last K epochs' weights (`--average-last K`, SWA-style).

EMA is Keras's own: the optimizer keeps it (`use_ema`, `ema_momentum` = the decay), updated
inside every training step as a_t = d·a_{t-1} + (1 − d)·w_t (a_0 = w_0 at the first step), over
the trainable weights; BatchNorm's statistics stay the raw model's. Being optimizer variables,
the averages travel with the optimizer's state: in the Sentinel's snapshot, in checkpoint.keras,
in model.keras. Keras would overwrite the weights with their average when `fit` ends; kcnn turns
that off (`keep_raw_at_end`) and decides itself: each epoch both are evaluated on validation
(`ema_val_loss`, `ema_val_accuracy` in history.csv), and at the end the better of the two on
validation (higher accuracy, then lower loss) is kept, tested and saved (metrics.json says which).

Averaging the last K epochs sums the weights at the end of each of those epochs (all of them,
BatchNorm's statistics included); the sum and its count are part of the checkpoint, so a resumed
run averages the same epochs. At the end the mean replaces the weights, and since a mean of
weights has statistics no epoch had, BatchNorm's moving mean and variance are computed again over
the training images (unaugmented, in order): the cumulative mean of every batch's statistics, as
PyTorch's `update_bn` does.
"""

from __future__ import annotations

from typing import Any

import numpy as np

# --- EMA ----------------------------------------------------------------------------------------


def keep_raw_at_end(model) -> None:
    """Stop Keras from overwriting the weights with their EMA when `fit` returns."""
    optimizer = getattr(model, "optimizer", None)
    if optimizer is not None and getattr(optimizer, "use_ema", False):
        optimizer.finalize_variable_values = lambda var_list: None


def ema_pairs(model) -> list[tuple[Any, Any]]:
    """(trainable variable, its moving average) for every variable the optimizer averages."""
    optimizer = model.optimizer
    averages = getattr(optimizer, "_model_variables_moving_average", None)
    if not averages:
        return []
    return [
        (v, a)
        for v, a in zip(optimizer._trainable_variables, averages, strict=True)
        if a is not None
    ]


class EmaWeights:
    """`with EmaWeights(model):` the model holds the averages, and its own weights again after."""

    def __init__(self, model):
        self.pairs = ema_pairs(model)
        self.raw: list[np.ndarray] = []

    def __enter__(self):
        self.raw = [v.numpy() for v, _ in self.pairs]
        for v, a in self.pairs:
            v.assign(a)
        return self

    def __exit__(self, *exc):
        for (v, _), value in zip(self.pairs, self.raw, strict=True):
            v.assign(value)
        return False


def use_ema(model) -> None:
    """Put the averages into the model's weights for good."""
    for v, a in ema_pairs(model):
        v.assign(a)


def better_of(raw: dict[str, float], ema: dict[str, float]) -> str:
    """`ema` or `raw`: higher validation accuracy wins, then lower loss; a tie keeps the raw."""
    if (ema["accuracy"], -ema["loss"]) > (raw["accuracy"], -raw["loss"]):
        return "ema"
    return "raw"


def figures(model, batches) -> dict[str, float]:
    """The compiled loss and accuracy of `model` on `batches` (validation)."""
    found = model.evaluate(batches, verbose=0, return_dict=True)
    return {"loss": float(found["loss"]), "accuracy": float(found["accuracy"])}


def keep_better(model, val_batches, decay: float) -> dict[str, Any]:
    """Keep the better of the raw weights and their EMA on validation (`better_of`) in `model`;
    what metrics.json records of the choice."""
    raw = figures(model, val_batches)
    with EmaWeights(model):
        ema = figures(model, val_batches)
    kept = better_of(raw, ema)
    if kept == "ema":
        use_ema(model)
    return {
        "decay": decay,
        "kept": kept,
        "val_accuracy": {"raw": raw["accuracy"], "ema": ema["accuracy"]},
        "val_loss": {"raw": raw["loss"], "ema": ema["loss"]},
    }


# --- the mean of the last K epochs --------------------------------------------------------------


class WeightSum:
    """The sum of the weights at the end of averaged epochs, and how many; kept for the last two
    epoch counts, so a checkpoint taken one epoch back still finds its own."""

    def __init__(self, first: int):
        self.first = first  # the first averaged epoch (0-based)
        self.sums: list[np.ndarray] | None = None
        self.count = 0
        self.done = 0  # epochs finished when `sums` was last brought up to date
        self._before: tuple[int, list[np.ndarray] | None, int] = (0, None, 0)

    def add(self, epoch: int, weights: list[np.ndarray]) -> None:
        """The weights at the end of epoch `epoch` (0-based)."""
        self._before = (self.done, self.sums, self.count)
        if epoch >= self.first:
            weights = [np.asarray(w, dtype=np.float64) for w in weights]
            if self.sums is None:
                self.sums = weights
            else:
                self.sums = [s + w for s, w in zip(self.sums, weights, strict=True)]
            self.count += 1
        self.done = epoch + 1

    def at(self, done: int) -> tuple[list[np.ndarray] | None, int]:
        """The sum and count after `done` epochs (this one, or the one before)."""
        if done == self.done:
            return self.sums, self.count
        if done == self._before[0]:
            return self._before[1], self._before[2]
        raise RuntimeError(f"the weight sum of epoch {done} is no longer held")  # an engine bug

    def restore(self, done: int, sums: list[np.ndarray] | None, count: int) -> None:
        self.done, self.sums, self.count = done, sums, count
        self._before = (done, sums, count)

    def mean(self, like: list[np.ndarray]) -> list[np.ndarray]:
        if self.sums is None or not self.count:
            raise RuntimeError("no epoch was averaged")  # an engine bug: K ≤ epochs is checked
        return [(s / self.count).astype(w.dtype) for s, w in zip(self.sums, like, strict=True)]


def batchnorm_layers(model) -> list:
    import keras

    return [
        layer
        for layer in model._flatten_layers(include_self=False)
        if isinstance(layer, keras.layers.BatchNormalization)
    ]


def recompute_batchnorm(model, batches) -> int:
    """BatchNorm's moving statistics made the cumulative mean of each batch's statistics over
    `batches` (images only, or (images, labels)); returns the batches seen (0: no BatchNorm)."""
    layers = batchnorm_layers(model)
    if not layers:
        return 0
    momenta = [layer.momentum for layer in layers]
    for layer in layers:
        layer.moving_mean.assign(np.zeros(layer.moving_mean.shape, np.float32))
        layer.moving_variance.assign(np.ones(layer.moving_variance.shape, np.float32))
    seen = 0
    try:
        for batch in batches:
            images = batch[0] if isinstance(batch, tuple | list) else batch
            for layer in layers:  # n batches so far: the new one weighs 1/(n + 1)
                layer.momentum = seen / (seen + 1)
            model(images, training=True)
            seen += 1
    finally:
        for layer, momentum in zip(layers, momenta, strict=True):
            layer.momentum = momentum
    return seen


def use_mean(model, summed: WeightSum, val_batches, train_batches) -> dict[str, Any]:
    """Put the mean of the summed epochs into `model`, BatchNorm's statistics recomputed over
    `train_batches`; what metrics.json records (validation before and after)."""
    last = figures(model, val_batches)
    model.set_weights(summed.mean(model.get_weights()))
    seen = recompute_batchnorm(model, train_batches)
    averaged = figures(model, val_batches)
    return {
        "epochs": [summed.first + 1, summed.first + summed.count],
        "count": summed.count,
        "batchnorm_recomputed_over_batches": seen,
        "val_accuracy": {"last_epoch": last["accuracy"], "averaged": averaged["accuracy"]},
        "val_loss": {"last_epoch": last["loss"], "averaged": averaged["loss"]},
    }
