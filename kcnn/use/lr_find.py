"""`kcnn lr-find`: the learning-rate range test (Smith 2017, arXiv:1506.01186; fastai's lr_find).

The model `kcnn train` with the same options would build is trained for one epoch (at least 100
steps, fastai's default, continuing into the next epoch's batches; or N steps) while the rate
grows exponentially from `start` to `end`, one step at a time; the loss of each step, smoothed (an exponential moving average, bias-corrected, as fastai does), is plotted against
the rate. The sweep stops early once the smoothed loss passes four times its minimum (it has
diverged), as fastai's does. The rate reaches `end` on the last planned step (fastai's stops one
step short of it).

The suggested rates are fastai's, computed as fastai computes them on the part of the curve
fastai reads (the first tenth of the planned steps and the last five recorded dropped):
`valley`, fastai's default (about halfway along the longest stretch of falling loss); `steep`
(the steepest fall against log rate: forward differences, the left point of the steepest step);
`minimum` (the rate of the lowest loss ÷ 10).

Same data, split, pipeline (augmentation included), model, optimizer, loss and seed as the training
run; nothing is kept but the records: the model's weights and the optimizer's state are restored
after the sweep (so a model passed in is as it was), and no training run is made.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from kcnn.errors import KcnnError
from kcnn.progress import say
from kcnn.runs import inspected
from kcnn.runs.records import write_json

SMOOTHING = 0.98  # fastai's β
DIVERGED = 4.0  # stop once the smoothed loss passes this many times its minimum
START_LR, END_LR = 1e-7, 10.0
MIN_STEPS = 100  # fastai's default sweep: a one-epoch sweep of a small set is too coarse to read
SUGGESTION_RULES = (
    "fastai's (fastai.callback.schedule valley, steep, minimum) on the smoothed losses without "
    "the first tenth of the planned steps and the last five"
)


def rates(start: float, end: float, steps: int) -> np.ndarray:
    """`steps` rates growing exponentially from `start` to `end`."""
    if not 0 < start < end:
        raise KcnnError(f"--start-lr {start:g} and --end-lr {end:g}: need 0 < start < end")
    if steps < 2:
        raise KcnnError(f"--steps {steps}: give at least 2")
    return start * (end / start) ** (np.arange(steps) / (steps - 1))


def check_sweep(steps: int | None, start: float, end: float) -> None:
    """Refuse a sweep that cannot be made, before any work."""
    if not (math.isfinite(start) and math.isfinite(end) and 0 < start < end):
        raise KcnnError(f"--start-lr {start:g} and --end-lr {end:g}: need 0 < start < end")
    if steps is not None and not 2 <= steps <= 1_000_000:
        raise KcnnError(f"--steps {steps}: give 2 to 1,000,000 steps")


def sweep(model, batches, schedule: np.ndarray, progress=None) -> dict[str, list[float]]:
    """Train `model` (compiled) one batch per rate of `schedule`; returns the rates used and the
    raw and smoothed losses. The weights and optimizer state are put back afterwards, whatever
    happens, so the model leaves as it came."""
    optimizer = model.optimizer
    if not optimizer.built:
        optimizer.build(model.trainable_variables)
    weights = [np.array(v) for v in model.weights]
    state = [np.array(v) for v in optimizer.variables]
    used, raw, smooth = [], [], []
    average, best = 0.0, math.inf
    iterator = iter(batches)
    try:
        for step, rate in enumerate(schedule):
            try:
                x, y, *sample_weight = next(iterator)  # an image folder's carry weights
            except StopIteration:
                break
            optimizer.learning_rate.assign(float(rate))
            loss = float(model.train_on_batch(x, y, *sample_weight, return_dict=True)["loss"])
            if not math.isfinite(loss):
                break
            average = SMOOTHING * average + (1 - SMOOTHING) * loss
            smoothed = average / (1 - SMOOTHING ** (step + 1))
            used.append(float(rate))
            raw.append(loss)
            smooth.append(smoothed)
            best = min(best, smoothed)
            if progress is not None and (step % 10 == 0 or step == len(schedule) - 1):
                progress(
                    f"lr-find: step {step + 1}/{len(schedule)}  rate {rate:.2e}  loss {smoothed:.4f}"
                )
            if step > 0 and smoothed > DIVERGED * best:
                break
    finally:
        for variable, value in zip(model.weights, weights, strict=True):
            variable.assign(value)
        for variable, value in zip(optimizer.variables, state, strict=True):
            variable.assign(value)
    return {"rates": used, "losses": raw, "smoothed": smooth}


def suggest(curve: dict[str, list[float]], planned: int) -> dict[str, float | None]:
    """fastai's three suggestions (fastai.callback.schedule: `valley`, its default; `steep`;
    `minimum`), on fastai's part of the curve: the smoothed losses and their rates without the
    first tenth of the `planned` steps and the last five recorded (where the sweep diverges).
    None where that part is too short for the rule."""
    cut = slice(planned // 10, -5)
    r, s = np.asarray(curve["rates"])[cut], np.asarray(curve["smoothed"])[cut]
    return {
        "valley": float(r[_valley(s)]) if len(s) >= 1 else None,
        "steep": float(r[_steep(r, s)]) if len(s) >= 2 else None,
        "minimum": float(r[np.argmin(s)] / 10) if len(s) >= 1 else None,
    }


def _steep(r: np.ndarray, s: np.ndarray) -> int:
    """fastai's `steep`: where the forward difference of the loss against log rate is lowest,
    at the left point of that step."""
    return int(np.argmin((s[1:] - s[:-1]) / (np.log(r[1:]) - np.log(r[:-1]))))


def _valley(s: np.ndarray) -> int:
    """fastai's `valley`: the longest run of ever lower losses (a longest decreasing
    subsequence, ended at its first longest end), then the point 1/3 + 1/6 of the way along it,
    as fastai computes it: max_start + int(len/3) + int(len/6)."""
    n = len(s)
    longest = [1] * n
    start = end = 0
    for i in range(1, n):
        for j in range(i):
            if s[i] < s[j] and longest[i] < longest[j] + 1:
                longest[i] = longest[j] + 1
            if longest[end] < longest[i]:
                end = i
                start = end - longest[end]
    sections = (end - start) / 3
    return start + int(sections) + int(sections / 2)


def lr_find(
    config,
    steps: int | None = None,
    start: float = START_LR,
    end: float = END_LR,
    progress=say,
) -> dict[str, Any]:
    """The range test for a validated TrainConfig; its records go to a new folder under
    `config.out` named lr-find-<run name>; returns the record (with `folder`)."""
    from kcnn.data.pipeline import steps_per_epoch
    from kcnn.data.prepared import prepare_data
    from kcnn.engine.trainer import default_input_shape
    from kcnn.runs import folders

    check_sweep(steps, start, end)
    folders.check_out(config.out)
    ignored = _ignored_speed_settings(config)
    if ignored:  # speed settings: the shape of the curve does not hinge on them
        progress(f"lr-find: sweeping on one device in float32; {', '.join(ignored)} not applied")
    began = time.perf_counter()
    progress(f"lr-find: loading {config.dataset}")
    prepared = prepare_data(config, default_input_shape(config.arch, config.image_size))
    per_epoch = steps_per_epoch(len(prepared.parts.y_train), config.batch_size)
    steps = steps or max(per_epoch, MIN_STEPS)
    model, batches = _model_and_batches(config, prepared, start, -(-steps // per_epoch))
    progress(f"lr-find: {steps} steps, rate {start:.0e} to {end:.0e}")
    curve = sweep(model, batches, rates(start, end, steps), progress)
    record = {
        "command": "lr-find",
        "settings": config.settings_dict(),
        "method": "LR range test (Smith 2017; fastai lr_find): exponential sweep, smoothed loss",
        "suggestion_rules": SUGGESTION_RULES,
        "steps_planned": steps,
        "steps_done": len(curve["rates"]),
        "steps_per_epoch": per_epoch,
        "start_lr": start,
        "end_lr": end,
        "smoothing": SMOOTHING,
        "suggestions": suggest(curve, steps),
        "seconds": time.perf_counter() - began,
        **curve,
    }
    folder = folders.create(config.out, f"lr-find-{config.name}")
    inspected.save_picture(folder / inspected.LR_FIND_PNG, lambda p: _plot(record, p))
    write_json(folder / inspected.LR_FIND_JSON, record)
    record["folder"] = str(folder)
    return record


def _ignored_speed_settings(config) -> list[str]:
    """The settings that change only speed, which the sweep does not apply."""
    return [
        name
        for name, on in (
            (f"--strategy {config.strategy}", config.strategy != "default"),
            ("--mixed-precision", config.mixed_precision),
            ("--jit-compile", config.jit_compile),
        )
        if on
    ]


def _model_and_batches(config, prepared, start: float, epochs: int):
    """The compiled model at the sweep's first rate, and `epochs` epochs of training batches,
    seeded and augmented as the trainer's first epochs are."""
    from kcnn.data import augment
    from kcnn.data.pipeline import epoch_batches
    from kcnn.engine import recipes
    from kcnn.engine.trainer import seed_everything
    from kcnn.models import forms

    parts = prepared.parts
    settings = augment.resolve(
        config.augment, prepared.data.name, prepared.data.image_shape[2], config.augment_switches()
    )
    seed_everything(config.seed)  # as the trainer: seeded before the batches and the model
    batches = epoch_batches(
        parts.x_train,
        parts.y_train,
        prepared.input_shape,
        config.batch_size,
        config.seed,
        0,
        epochs,
        None,
        augment.augmenter(settings, config.seed),
    )
    model = forms.build(config.arch, config.api, prepared.input_shape, parts.num_classes)
    model.compile(
        optimizer=recipes.make_optimizer(
            config.optimizer, start, config.weight_decay, config.momentum, config.nesterov
        ),
        loss=recipes.make_loss(config.label_smoothing),
    )
    return model, batches


def _plot(record: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(record["rates"], record["losses"], color="#bbb", lw=0.8, label="loss per step")
    ax.plot(record["rates"], record["smoothed"], color="#1f77b4", label="smoothed loss")
    colours = {"valley": "#9467bd", "steep": "#d62728", "minimum": "#2ca02c"}
    shown = {"valley": "valley (fastai's default)", "steep": "steep", "minimum": "minimum ÷ 10"}
    for name, rate in record["suggestions"].items():
        if rate is not None:
            label = f"{shown.get(name, name)}: {rate:.1e}"
            ax.axvline(rate, color=colours.get(name, "#333"), ls="--", lw=1, label=label)
    ax.set_xscale("log")
    if record["smoothed"]:
        low, high = min(record["smoothed"]), max(record["smoothed"][:1] + [min(record["smoothed"])])
        ax.set_ylim(low - 0.1 * abs(low), max(high, low) * 1.5 + 1e-3)
    s = record["settings"]
    ax.set(xlabel="learning rate", ylabel="training loss")
    ax.set_title(f"LR range test: {s['arch']} on {s['dataset']}, {s['optimizer']}", fontsize=9)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    fig.savefig(path, dpi=90, format="png")
    plt.close(fig)
