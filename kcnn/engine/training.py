"""`kcnn train` as a library call: data → pipeline → model → fit → evaluate → run folder.

from kcnn.engine.training import TrainConfig, train
result = train(TrainConfig("lenet5", dataset="mnist-5k", epochs=10))
result.metrics["test_accuracy"], result.run_dir
"""

from __future__ import annotations

import contextlib
import dataclasses
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kcnn import defaults
from kcnn.data.splits import check_split
from kcnn.errors import KcnnError, unknown
from kcnn.models.architectures import get as get_architecture
from kcnn.runs import folders
from kcnn.runs.records import write_csv, write_json


def check_common(config) -> None:
    """Check the settings every training command shares and fill in the optimizer's usual rate:
    optimizer, epochs, batch size, learning rate, validation and test splits, limit."""
    if config.optimizer not in defaults.OPTIMIZERS:
        raise unknown("optimizer", config.optimizer, defaults.OPTIMIZERS)
    for option, value in (("--epochs", config.epochs), ("--batch-size", config.batch_size)):
        if value <= 0:
            raise KcnnError(f"{option} must be a positive whole number, got {value}")
    if config.lr is None:
        config.lr = defaults.LEARNING_RATES[config.optimizer]
    if not config.lr > 0:
        raise KcnnError(f"--lr must be a positive number, got {config.lr}")
    check_split(config.val_split, "--val-split")
    check_split(config.test_split, "--test-split")
    if config.limit is not None and config.limit <= 0:
        raise KcnnError(f"--limit must be a positive number of images, got {config.limit}")


@dataclass
class TrainConfig:
    arch: str
    dataset: str = "mnist"
    data_dir: str | None = None
    api: str = defaults.API
    epochs: int = defaults.EPOCHS
    batch_size: int = defaults.BATCH_SIZE
    optimizer: str = defaults.OPTIMIZER
    lr: float | None = None  # None: the optimizer's usual rate (defaults.LEARNING_RATES)
    seed: int = defaults.SEED
    val_split: float = defaults.VAL_SPLIT
    test_split: float = defaults.TEST_SPLIT
    limit: int | None = None
    image_size: int | None = None
    shapes_count: int = defaults.SHAPES_COUNT
    out: str = defaults.OUT_DIR
    name: str | None = None

    def validate(self) -> TrainConfig:
        """Check every setting before any work starts; fill in the derived defaults."""
        get_architecture(self.arch)
        if self.api not in defaults.APIS:
            raise unknown("API form", self.api, defaults.APIS)
        check_common(self)
        if self.image_size is not None and self.image_size <= 0:
            raise KcnnError(
                f"--image-size must be a positive number of pixels, got {self.image_size}"
            )
        if self.name is None:
            self.name = f"{self.arch}-{folders.dataset_label(self.dataset)}-{self.api}"
        folders.check_name(self.name)
        return self


@dataclass
class RunResult:
    run_dir: Path
    metrics: dict[str, Any]
    history: dict[str, list[float]]
    model: Any = None


def input_shape_for(
    arch: str, image_shape: tuple[int, int, int], image_size: int | None, classes: int
) -> tuple[int, int, int]:
    """The model input for data of `image_shape`: `--image-size` if given, else the data's own
    size grown to the architecture's minimum; the data's channels are kept."""
    h, w, c = image_shape
    architecture = get_architecture(arch)
    if image_size is not None:
        shape = (image_size, image_size, c)
    else:
        smallest = architecture.min_size(c, classes)
        shape = (max(h, smallest), max(w, smallest), c)
    architecture.check_input(shape, classes)
    return shape


def seed_everything(seed: int) -> None:
    """Same seed, same run: Python, NumPy and TensorFlow seeds, and deterministic TF ops."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def make_optimizer(name: str, lr: float):
    import keras

    return {
        "adam": keras.optimizers.Adam,
        "sgd": keras.optimizers.SGD,
        "rmsprop": keras.optimizers.RMSprop,
    }[name](learning_rate=lr)


def model_summary(model) -> str:
    lines: list[str] = []
    model.summary(print_fn=lambda line, *a, **k: lines.append(line), line_length=110)
    return "\n".join(lines) + "\n"


def count_params(model) -> dict[str, int]:
    import numpy as np

    trainable = int(sum(np.prod(w.shape) for w in model.trainable_weights))
    total = int(model.count_params())
    return {"total": total, "trainable": trainable, "non_trainable": total - trainable}


def _recorder(run_dir: Path, base: dict[str, Any]):
    """A Keras callback that keeps history.csv and metrics.json current after every epoch and
    measures training throughput (validation time excluded)."""
    import keras

    class Recorder(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.rows: list[dict[str, float]] = []
            self.train_seconds = 0.0
            self._start = 0.0

        def on_epoch_begin(self, epoch, logs=None):
            self._start = time.perf_counter()
            self._in_train = True

        def _stop_train_clock(self):
            if self._in_train:
                self.train_seconds += time.perf_counter() - self._start
                self._in_train = False

        def on_test_begin(self, logs=None):
            self._stop_train_clock()

        def on_epoch_end(self, epoch, logs=None):
            self._stop_train_clock()
            self.rows.append({"epoch": epoch + 1, **{k: float(v) for k, v in (logs or {}).items()}})
            write_csv(run_dir / folders.HISTORY, self.rows)
            write_json(
                run_dir / folders.METRICS,
                {**base, "status": "running", "epochs_completed": epoch + 1},
            )

        def history(self) -> dict[str, list[float]]:
            keys = [k for k in (self.rows[0] if self.rows else {}) if k != "epoch"]
            return {k: [row[k] for row in self.rows] for k in keys}

    return Recorder()


def verbosity() -> int:
    """Keras's progress bar on a terminal, one line per epoch in logs and pipes."""
    return 1 if sys.stdout.isatty() else 2


def prepare(config: TrainConfig):
    """Load and split the data of a validated config; returns (data, splits, input_shape)."""
    from kcnn.data import datasets, splits

    data = datasets.load(config.dataset, config.data_dir, config.seed, config.shapes_count)
    parts = splits.make_splits(data, config.val_split, config.seed, config.limit, config.test_split)
    input_shape = input_shape_for(
        config.arch, data.image_shape, config.image_size, parts.num_classes
    )
    return data, parts, input_shape


def train(config: TrainConfig, quiet: bool = False) -> RunResult:
    """Train one architecture on one data set and leave a complete run folder.

    `quiet` sends Keras's progress to stderr, keeping stdout for a machine-readable answer.
    """
    config.validate()
    started = time.perf_counter()
    data, parts, input_shape = prepare(config)
    seed_everything(config.seed)
    from kcnn.data.pipeline import fit_mode
    from kcnn.models import forms

    build_start = time.perf_counter()
    model = forms.build(config.arch, config.api, input_shape, parts.num_classes)
    build_seconds = time.perf_counter() - build_start
    record = {
        **dataclasses.asdict(config),
        "command": "train",
        "input_shape": list(input_shape),
        "fit": fit_mode(data.image_shape[:2], input_shape[:2]),
    }
    return run(
        model,
        record,
        data,
        parts,
        input_shape,
        config,
        quiet=quiet,
        started=started,
        extra_metrics={"build_seconds": build_seconds},
    )


def run(
    model,
    record: dict[str, Any],
    data,
    parts,
    input_shape,
    config: TrainConfig,
    *,
    quiet: bool = False,
    started: float | None = None,
    extra_metrics: dict[str, Any] | None = None,
    preprocess=None,
    title: str | None = None,
    fit=None,
    resume=None,
) -> RunResult:
    """Compile (unless already compiled), fit, evaluate and record one model in a new run folder.

    The engine every training command shares: `train`, each form of `compare-apis`, `transfer`.
    `record` is what config.json holds beyond the data's provenance and the versions.
    `fit(train_ds, val_ds, callbacks, verbose)` replaces `model.fit` (transfer trains its head on
    cached features, then fine-tunes); it returns the seconds of training work it did outside
    Keras's epochs (such as computing those features), which count toward the training time.
    `resume` (a `checkpoints.Resume`) continues an interrupted run in its own folder.

    Ctrl-C or SIGTERM stops after the current batch: the folder is marked `interrupted`, keeps the
    finished epochs and a checkpoint of the last one, and `Interrupted` (exit 130 / 143) is raised.
    A NaN or infinite loss marks it `diverged` and raises `DivergedError` (exit 3).
    """
    import signal

    from kcnn.data.pipeline import epoch_batches, make_dataset, steps_per_epoch
    from kcnn.engine import checkpoints, interrupts

    started = time.perf_counter() if started is None else started
    if not model.compiled:
        model.compile(
            optimizer=make_optimizer(config.optimizer, config.lr),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
        )
    params = count_params(model)
    run_dir = resume.run_dir if resume is not None else folders.create(config.out, config.name)
    first_epoch = resume.epoch if resume is not None else 0
    write_json(
        run_dir / folders.CONFIG,
        {
            **record,
            "classes": parts.class_names,
            "split_sizes": parts.sizes(),
            "dataset_provenance": data.provenance,
            "versions": folders.versions(),
        },
    )
    (run_dir / folders.SUMMARY).write_text(model_summary(model))
    base = {
        "arch": config.arch,
        "api": config.api,
        "dataset": data.name,
        "dataset_fallback": bool(data.provenance.get("fallback")),
        "params": params,
    }
    write_json(
        run_dir / folders.METRICS, {**base, "status": "running", "epochs_completed": first_epoch}
    )

    def batches(x, y, shuffle=False):
        return make_dataset(
            x,
            y,
            input_shape,
            config.batch_size,
            shuffle=shuffle,
            seed=config.seed,
            preprocess=preprocess,
        )

    val_ds, test_ds = batches(parts.x_val, parts.y_val), batches(parts.x_test, parts.y_test)
    recorder = _recorder(run_dir, base)
    if resume is not None:
        recorder.rows, recorder.train_seconds = list(resume.rows), resume.train_seconds
    guard = interrupts.SignalGuard()
    sentinel = interrupts.sentinel(guard)
    callbacks = [sentinel, recorder]  # the sentinel first: a diverged epoch is never recorded
    progress = contextlib.redirect_stdout(sys.stderr) if quiet else contextlib.nullcontext()

    def stopped(status: str, extra: dict[str, Any]) -> int:
        """Record a run that ends early; returns the epochs its records keep."""
        guard.shielded = True  # a second Ctrl-C must not cut the records short
        done = len(recorder.rows)
        if status == "interrupted" and sentinel.restore_snapshot(model):
            done = min(done, sentinel.snapshot_epoch)
            checkpoints.save(run_dir, model, done, reason="interrupted")
            extra = {**extra, "checkpoint": checkpoints.CHECKPOINT}
        write_csv(run_dir / folders.HISTORY, recorder.rows[:done], None if done else ["epoch"])
        write_json(
            run_dir / folders.METRICS,
            {
                **base,
                "status": status,
                "epochs_completed": done,
                "epochs_planned": config.epochs,
                **extra,
            },
        )
        return done

    with guard:
        try:
            with progress, guard.deferred():
                if fit is None:
                    # Each epoch shuffled by (seed, epoch): a resumed run sees the same batches.
                    train_ds = epoch_batches(
                        parts.x_train,
                        parts.y_train,
                        input_shape,
                        config.batch_size,
                        config.seed,
                        first_epoch,
                        config.epochs,
                        preprocess,
                    )
                    model.fit(
                        train_ds,
                        validation_data=val_ds,
                        epochs=config.epochs,
                        initial_epoch=first_epoch,
                        steps_per_epoch=steps_per_epoch(len(parts.y_train), config.batch_size),
                        shuffle=False,
                        callbacks=callbacks,
                        verbose=verbosity(),
                    )
                else:
                    train_ds = batches(parts.x_train, parts.y_train, shuffle=True)
                    outside = fit(train_ds, val_ds, callbacks, verbosity()) or 0.0
                    recorder.train_seconds += outside  # after fit: fit itself advances the clock
            guard.check()  # a signal during the last epoch's validation
            result = _finish(
                model,
                run_dir,
                base,
                data,
                parts,
                config,
                recorder,
                test_ds,
                started,
                extra_metrics,
                title,
            )
        except (interrupts.Interrupted, KeyboardInterrupt) as e:
            signum = getattr(e, "signum", signal.SIGINT)
            name = signal.Signals(signum).name
            done = stopped("interrupted", {"signal": name})
            again = (
                f"continue with: kcnn train --resume {run_dir}"
                if record.get("command") == "train" and (run_dir / checkpoints.CHECKPOINT).is_file()
                else f"records kept in {run_dir}"
            )
            raise interrupts.Interrupted(
                signum, f"interrupted by {name} after {done} of {config.epochs} epochs; {again}"
            ) from None
        except interrupts.NonFiniteLoss as stop:
            stopped("diverged", {"diverged_at": {"epoch": stop.epoch + 1, "batch": stop.batch + 1}})
            raise interrupts.diverged(stop, config.optimizer, config.lr) from None
        except BaseException:
            guard.shielded = True
            write_json(
                run_dir / folders.METRICS,
                {**base, "status": "failed", "epochs_completed": len(recorder.rows)},
            )
            raise
    checkpoints.discard(run_dir)
    return result


def _finish(
    model,
    run_dir: Path,
    base: dict[str, Any],
    data,
    parts,
    config: TrainConfig,
    recorder,
    test_ds,
    started: float,
    extra_metrics: dict[str, Any] | None,
    title: str | None,
) -> RunResult:
    """Evaluate a trained model and write the rest of its run folder, metrics.json last."""
    import numpy as np

    from kcnn.engine import evaluation
    from kcnn.runs import plots

    history = recorder.history()
    metrics, matrix = evaluation.evaluate(model, test_ds, parts.y_test, parts.class_names)
    title = title or f"{config.arch} ({config.api}) on {data.name}"
    plots.curves(history, run_dir / folders.CURVES, title=title)
    plots.confusion_matrix(
        matrix, parts.class_names, run_dir / folders.CONFUSION, title=f"{title}: test set"
    )
    model.save(run_dir / folders.MODEL)
    images = len(parts.y_train) * len(recorder.rows)
    final = {
        **base,
        "status": "completed",
        "epochs_completed": len(recorder.rows),
        **metrics,
        "best_val_accuracy": max(history.get("val_accuracy", [float("nan")])),
        **(extra_metrics or {}),
        "wall_seconds": time.perf_counter() - started,
        "train_seconds": recorder.train_seconds,
        "seconds_per_epoch": recorder.train_seconds / max(len(recorder.rows), 1),
        "train_images_per_second": images / recorder.train_seconds
        if recorder.train_seconds
        else None,
        "confusion_matrix": np.asarray(matrix).tolist(),
        "run_dir": str(run_dir),
    }
    write_json(run_dir / folders.METRICS, final)
    from kcnn.runs.html import write_report_after  # report.html, from the finished folder

    write_report_after(run_dir)
    return RunResult(run_dir, final, history, model)
