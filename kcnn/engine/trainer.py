"""The trainer every command shares: one run folder, trained phase by phase.

A command composes the phases it needs:

    trainer = Trainer(config)                    # a validated RunConfig
    with trainer.running():                      # folder, lock, signals, divergence, failure
        data = trainer.load_data(input_shape_for)    # data: load, validate, split
        model = trainer.build(make_model)            # build: seeded, timed, summary.txt
        trainer.compile(model)                       # compile: optimizer, loss, metrics
        trainer.fit(model, trainer.training_batches(), trainer.batches("val"))  # fit phase(s)
        result = trainer.finish(model, title)        # evaluate, pictures, model.keras, metrics.json

`kcnn train` is exactly that; `transfer` adds a feature phase and a fine-tune phase, each one more
call to `fit`; `compare-apis` runs one trainer per API form. The trainer alone writes config.json
(`config_record`, the one function that builds it) and metrics.json; it never asks which command
it serves.

Stopping early: Ctrl-C, SIGTERM or SIGHUP stop after the current batch. The folder is marked
`interrupted`, keeps the finished epochs and a checkpoint of the last one (weights, optimizer and
random-generator state), and `kcnn train --resume` finishes it with the numbers an uninterrupted
run would have had. A NaN or infinite loss marks it `diverged` (exit 3).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kcnn.engine import checkpoints, distribute, hooks, interrupts
from kcnn.engine.config import RunConfig, check_batch_memory
from kcnn.errors import KcnnError
from kcnn.models.params import count_params, model_summary
from kcnn.runs import folders
from kcnn.runs.records import write_atomic, write_csv, write_json

# What config.json records besides the command, its settings and the versions: the facts of the
# run (what the model is, what the data turned out to be, how it was fed). Replaying a run
# recomputes them; `kcnn run config.json` refuses any other key, so an edited record is caught.
RUN_FACTS = frozenset(
    {
        "arch",  # train: also settings; transfer: backbone and head are what the model is
        "api",
        "backbone",
        "head",
        "backbone_paper",
        "preprocess_input",
        "weights_kind",
        "weights_file",
        "weights_source",
        "weights_md5_verified",
        "feature_cache",
        "feature_cache_note",
        "input_shape",
        "fit",
        "image_shape",
        "classes",
        "split_sizes",
        "dataset_provenance",
        "data_fingerprint",
        "augmentation",
        "resumed",
        "part_of",
        "init",
        "init_seed",
        "initial_weights_from",
        "replicas",
        "device_names",
        "precision_policy",
        "workers",
    }
)


@dataclass
class Prepared:
    """What the data phase hands on: the data, its splits, and the model input they are fed at."""

    data: Any  # kcnn.data.datasets.Data
    parts: Any  # kcnn.data.splits.Splits
    input_shape: tuple[int, int, int]
    fit: str  # how images reach input_shape: none, pad or resize

    fingerprint: str  # digest of the images and labels (a resume must see the same data)

    @property
    def classes(self) -> int:
        return self.parts.num_classes


def prepare_data(
    config: RunConfig,
    input_shape_for: Callable[[tuple[int, int, int], int], tuple[int, int, int]],
) -> Prepared:
    """The data phase: load and validate the data set, split it, and settle the model input."""
    from kcnn.data import datasets, splits
    from kcnn.data.pipeline import fit_mode

    data = datasets.load(config.dataset, config.data_dir, config.seed, config.shapes_count)
    parts = splits.make_splits(data, config.val_split, config.seed, config.limit, config.test_split)
    input_shape = tuple(int(v) for v in input_shape_for(data.image_shape, parts.num_classes))
    check_batch_memory(config.batch_size, *input_shape)
    fit = fit_mode(data.image_shape[:2], input_shape[:2])
    fingerprint = data_fingerprint(data)
    # The splits hold their own copies of the images; past this point the loaded arrays serve
    # only to describe the data (name, source, image shape), so one image of them is kept and a
    # data set sits in memory once, not twice.
    described = dataclasses.replace(
        data, x_train=data.x_train[:1].copy(), y_train=data.y_train[:1].copy()
    )
    if data.x_test is not None:
        described.x_test, described.y_test = data.x_test[:1].copy(), data.y_test[:1].copy()
    return Prepared(described, parts, input_shape, fit, fingerprint)


@dataclass
class RunResult:
    run_dir: Path
    metrics: dict[str, Any]
    history: dict[str, list[float]]
    model: Any = None


def seed_everything(seed: int) -> None:
    """Same seed, same run: Python, NumPy and TensorFlow seeds, and deterministic TF ops."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def verbosity() -> int:
    """Keras's progress bar on a terminal, one line per epoch in logs and pipes."""
    return 1 if sys.stdout.isatty() else 2


def data_fingerprint(data) -> str:
    """A digest of the images and labels a run trained on: a resume must see the very same data."""
    digest = hashlib.blake2b(digest_size=16)
    for array in (data.x_train, data.y_train, data.x_test, data.y_test):
        if array is None:
            digest.update(b"-")
            continue
        digest.update(str((array.shape, array.dtype.str)).encode())
        digest.update(memoryview(array).cast("B") if array.flags.c_contiguous else array.tobytes())
    return digest.hexdigest()


class Trainer:
    """One run folder, trained phase by phase (see the module docstring)."""

    def __init__(
        self,
        config: RunConfig,
        *,
        quiet: bool = False,
        out: str | Path | None = None,
        resume: checkpoints.Resume | None = None,
        identity: dict[str, Any] | None = None,
        facts: dict[str, Any] | None = None,
        epochs_planned: int | None = None,
        resumable: bool = False,
    ):
        self.config = config
        self.quiet = quiet  # Keras's progress goes to stderr, stdout is kept for --json
        self.out = Path(out if out is not None else config.out)
        self.resume = resume
        self.started = time.perf_counter()
        self.run_dir: Path | None = resume.run_dir if resume else None
        self.prepared: Prepared | None = None
        # What the model is (arch and API form, or backbone and head): in config.json and metrics.json.
        self.identity: dict[str, Any] = dict(identity or {})
        self.facts: dict[str, Any] = dict(facts or {})  # what config.json holds besides settings
        self.preprocess = None  # a backbone's preprocess_input, applied per batch in the pipeline
        self.results: dict[str, Any] = {}  # what metrics.json holds besides the trainer's own
        self.rows: list[dict[str, float]] = list(resume.rows) if resume else []
        self.train_seconds = resume.train_seconds if resume else 0.0
        # Training seconds when each epoch ended: a checkpoint keeps the time of its own epochs,
        # not of a half-done epoch that a resume does again (throughput stays right).
        self._seconds_at = {len(self.rows): self.train_seconds}
        self.epochs_planned = epochs_planned or config.epochs
        # Whether an interrupted run keeps a checkpoint that `kcnn train --resume` continues: the
        # command says so (one model trained in one phase can be resumed exactly).
        self.resumable = resumable
        self.model = None  # the model the current fit phase trains (a checkpoint saves it)
        self.early = None  # the early-stopping callback, when the recipe asks for it
        self.guard = interrupts.SignalGuard()
        self.dist: distribute.Distribution | None = None  # set by running(), before any work
        self.sentinel = None
        self._lock = None
        self._made_out = False
        # An epoch ran in this process: bad input found after that keeps the folder.
        self._trained = False

    # --- records --------------------------------------------------------------------------------

    def config_record(self) -> dict[str, Any]:
        """Everything config.json holds: the command, its resolved settings (which `kcnn run
        config.json` replays), the facts of the run (data provenance, input shape, ...), versions."""
        unknown = (set(self.identity) | set(self.facts)) - RUN_FACTS
        assert not unknown, f"add {sorted(unknown)} to RUN_FACTS"  # a kcnn bug, not bad input
        return {
            "command": self.config.command,
            **self.config.settings_dict(),
            **self.identity,
            **self.facts,
            "versions": folders.versions(),
        }

    def write_config(self) -> None:
        write_json(self.run_dir / folders.CONFIG, self.config_record())

    def _base_metrics(self) -> dict[str, Any]:
        data = self.prepared.data if self.prepared else None
        return {
            "command": self.config.command,
            **self.identity,
            "dataset": data.name if data else self.config.dataset,
            "dataset_fallback": bool(data.provenance.get("fallback")) if data else False,
            "epochs_planned": self.epochs_planned,
        }

    def _write_status(self, status: str, epochs: int | None = None, **extra) -> None:
        done = len(self.rows) if epochs is None else epochs
        write_json(
            self.run_dir / folders.METRICS,
            {
                **self._base_metrics(),
                **self.results,
                "status": status,
                "epochs_completed": done,
                "train_seconds": self.train_seconds,
                **extra,
            },
        )

    # --- the run's frame: folder, lock, signals -------------------------------------------------

    def open_folder(self) -> Path:
        """Make the run folder (once) and lock it. It is made after the data is loaded, so a data
        folder that holds --out is never read with a half-made run in it; a signal before then
        still leaves a folder that --resume starts from the beginning."""
        if self._lock is None:
            if self.run_dir is None:
                self._made_out = not self.out.expanduser().exists()
                self.run_dir = folders.create(self.out, self.config.name)
            self._lock = checkpoints.lock(self.run_dir)
            self.write_config()
            self._write_status("running")
        return self.run_dir

    @contextlib.contextmanager
    def running(self) -> Iterator[Trainer]:
        """The frame of a run: its folder and lock, signal handling, and the status written
        however it ends. Bad input found before any training leaves nothing that looks like a run;
        a resume refused for bad input leaves the run as it found it.

        The folder is made first, before TensorFlow even starts, so a signal at any moment leaves a
        run that --resume finishes — unless --out lies inside the data folder, which must not be
        read with a half-made run in it (then it is made once the data is loaded), or this is a
        multi-worker run, whose chief is known only once the cluster is joined. The distribution
        strategy comes next: devices can be split, and a cluster joined, only before TensorFlow
        starts (a non-chief worker writes to a scratch folder)."""
        before = None
        if self.resume is not None:
            before = (self.run_dir / folders.METRICS).read_text()
            self.open_folder()
        elif self.config.strategy != "multi-worker" and not out_inside_data(self.config):
            self.open_folder()
        with self.guard:
            try:
                self.dist = distribute.activate(self.config)
                self.facts.update(self.dist.record())
                if not self.dist.chief:
                    self.out = Path(self.config.out)
                with self.dist.lost_peers():
                    yield self
            except (interrupts.Interrupted, KeyboardInterrupt) as e:
                import signal

                signum = getattr(e, "signum", signal.SIGINT)
                name = signal.Signals(signum).name
                self.guard.shielded = True
                self.open_folder()
                done = self._stopped("interrupted", signal=name)
                again = (
                    f"continue with: kcnn train --resume {self.run_dir}"
                    if self.resumable
                    else f"records kept in {self.run_dir}"
                )
                raise interrupts.Interrupted(
                    signum,
                    f"interrupted by {name} after {done} of {self.epochs_planned} epochs; {again}",
                ) from None
            except interrupts.NonFiniteLoss as stop:
                self._stopped(
                    "diverged", diverged_at={"epoch": stop.epoch + 1, "batch": stop.batch + 1}
                )
                raise interrupts.diverged(stop, self.config.optimizer, self.config.lr) from None
            except KcnnError:
                self.guard.shielded = True
                if self._trained:
                    self._write_status("failed")
                elif before is not None:
                    write_atomic(self.run_dir / folders.METRICS, before)
                elif self.run_dir is not None:  # made, then refused before training: remove it
                    self._release()
                    shutil.rmtree(self.run_dir, ignore_errors=True)
                    if self._made_out:  # and the output folder, if this run made it for itself
                        with contextlib.suppress(OSError):
                            self.out.expanduser().rmdir()
                raise
            except BaseException:
                self.guard.shielded = True
                if self.run_dir is not None:
                    self._write_status("failed")
                raise
            finally:
                self._release()

    def _release(self) -> None:
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def _stopped(self, status: str, **extra) -> int:
        """Record a run that ends early; returns the epochs its records keep."""
        self.guard.shielded = True  # a second Ctrl-C must not cut the records short
        done = len(self.rows)
        if status == "interrupted" and self.resumable and self.model is not None:
            if self.sentinel is not None and self.sentinel.restore_snapshot(self.model):
                done = min(done, self.sentinel.snapshot_epoch)
            self.train_seconds = self._seconds_at.get(done, self.train_seconds)
            if done:
                checkpoints.save(
                    self.run_dir,
                    self.model,
                    done,
                    reason="interrupted",
                    settings=self.config.settings_dict(),
                    best=self.early.best_weights if self.early is not None else None,
                )
                extra["checkpoint"] = checkpoints.CHECKPOINT
        write_csv(self.run_dir / folders.HISTORY, self.rows[:done], None if done else ["epoch"])
        self._write_status(status, epochs=done, **extra)
        return done

    # --- phase: data ----------------------------------------------------------------------------

    def load_data(
        self, input_shape_for: Callable[[tuple[int, int, int], int], tuple[int, int, int]]
    ) -> Prepared:
        """Load, validate and split the data; `input_shape_for(image_shape, classes)` gives the
        model input the images are brought to in the pipeline."""
        return self.use(prepare_data(self.config, input_shape_for))

    def use(self, prepared: Prepared) -> Prepared:
        """Train on data prepared once for several runs (the forms of compare-apis)."""
        if self.resume is not None and self.resume.fingerprint not in (None, prepared.fingerprint):
            raise KcnnError(
                f"{self.run_dir} was trained on other data than `{self.config.dataset}` gives now "
                f"({prepared.data.provenance.get('source', prepared.data.name)}): resuming would "
                "mix two data sets; start a new run"
            )
        self.prepared = prepared
        self.open_folder()
        data, parts = prepared.data, prepared.parts
        self.facts.update(
            {
                "input_shape": list(prepared.input_shape),
                "fit": prepared.fit,
                "image_shape": list(data.image_shape),
                "classes": parts.class_names,
                "split_sizes": parts.sizes(),
                "dataset_provenance": data.provenance,
                "data_fingerprint": prepared.fingerprint,
            }
        )
        self.write_config()
        return prepared

    # --- phase: build and compile ---------------------------------------------------------------

    def build(self, make: Callable[[], Any], *, seed: int | None = None) -> Any:
        """Build the model with every random draw seeded; records its build time and summary."""
        seed_everything(self.config.seed if seed is None else seed)
        start = time.perf_counter()
        with self.scope():
            model = make()
        self.results["build_seconds"] = time.perf_counter() - start
        self.describe(model)
        return model

    def describe(self, model) -> None:
        """summary.txt and the parameter counts of the model this run trains."""
        (self.run_dir / folders.SUMMARY).write_text(model_summary(model))
        self.results["params"] = count_params(model)

    def scope(self):
        """Where models are built, loaded and compiled: the strategy's scope, under the
        mixed-precision policy when asked for."""
        return self.dist.scope() if self.dist else contextlib.nullcontext()

    def compile(self, model, lr: float | None = None, optimizer=None) -> None:
        """The optimizer and loss of the recipe (weight decay, momentum, label smoothing), in the
        strategy's scope; XLA when asked for; several steps per call of the training function
        (the measured winner on CPU, results unchanged) on one device. `optimizer`: one already
        made, shared with another model of the same variables (transfer's head)."""
        from kcnn.data.pipeline import steps_per_epoch
        from kcnn.engine import performance, recipes

        c = self.config
        speed = {}
        if c.strategy == "default" and self.prepared is not None:
            speed = performance.compile_options(
                steps_per_epoch(len(self.prepared.parts.y_train), c.batch_size)
            )
        with self.scope():
            model.compile(
                optimizer=optimizer
                or recipes.make_optimizer(
                    c.optimizer, lr or c.lr, c.weight_decay, c.momentum, c.nesterov
                ),
                loss=recipes.make_loss(c.label_smoothing),
                metrics=["accuracy"],
                jit_compile=bool(c.jit_compile),
                **speed,
            )
            if c.strategy == "default":  # under a strategy Keras builds this state itself
                # a model of its own inputs (transfer's head takes features); a subclassed model
                # has none and takes the data's images
                inputs = getattr(model, "inputs", None)
                shape = inputs[0].shape[1:] if inputs else self.prepared.input_shape
                performance.build_training_state(model, shape)

    # --- the pipeline ---------------------------------------------------------------------------

    def batches(self, split: str):
        """The validation or test split, batched and prepared for the model, in a fixed order."""
        from kcnn.data.pipeline import make_dataset

        p = self.prepared
        x, y = {"val": (p.parts.x_val, p.parts.y_val), "test": (p.parts.x_test, p.parts.y_test)}[
            split
        ]
        return self._distributed(
            make_dataset(x, y, p.input_shape, self.config.batch_size, preprocess=self.preprocess)
        )

    def training_batches(self, epochs: int, x=None, y=None):
        """Training batches from the current epoch to `epochs`, each epoch shuffled by (seed,
        epoch) alone, so a resumed run sees exactly the batches an uninterrupted one sees.
        `x`, `y` replace the training images (transfer trains its head on cached features)."""
        from kcnn.data.pipeline import epoch_batches

        p = self.prepared
        x = p.parts.x_train if x is None else x
        y = p.parts.y_train if y is None else y
        images = x is p.parts.x_train  # features need no preparing (and are never augmented)
        return self._distributed(
            epoch_batches(
                x,
                y,
                p.input_shape if images else None,
                self.config.batch_size,
                self.config.seed,
                len(self.rows),
                epochs,
                self.preprocess if images else None,
                self.augmenter() if images else None,
            )
        )

    def _distributed(self, dataset):
        """Batches of the global batch size, which the strategy splits over its replicas."""
        return self.dist.distribute(dataset) if self.dist else dataset

    def augmenter(self):
        """The training images' augmentation (None: none), recorded in config.json."""
        from kcnn.data import augment

        c, p = self.config, self.prepared
        settings = augment.resolve(
            c.augment, p.data.name, p.data.image_shape[2], c.augment_switches()
        )
        self.facts["augmentation"] = settings.to_dict()
        self.write_config()
        return augment.augmenter(settings, c.seed)

    # --- phase: fit -----------------------------------------------------------------------------

    def fit(
        self,
        model,
        train_ds,
        val_ds,
        *,
        epochs: int,
        steps: int | None = None,
        lr: float | None = None,
        schedule: bool = True,
    ) -> None:
        """One fit phase: train `model` from the epochs already done up to `epochs` in all.
        History rows continue across phases; the sentinel checks for signals and a diverged loss.
        Each epoch's learning rate comes from the recipe's schedule (`schedule=False`: `lr` as it
        is, as in transfer's fine-tune phase) and is recorded in history.csv."""
        from kcnn.data.pipeline import steps_per_epoch

        self.model = model
        first = len(self.rows)
        if first >= epochs:
            return
        if self.sentinel is None:
            self.sentinel = interrupts.sentinel(self.guard)
        recorder = _Recorder(self)
        # The sentinel first: a diverged epoch is never recorded; the rate before the recorder,
        # so that each epoch's row holds its learning rate.
        callbacks = [self.sentinel, self._learning_rate(lr, schedule, epochs)]
        if self.config.early_stopping:
            callbacks.append(self._early_stopping())
        callbacks.append(recorder)
        if self.config.tensorboard:
            from kcnn.runs.tracking import tensorboard_callback

            callbacks.append(tensorboard_callback(self.run_dir, self.config.tensorboard_histograms))
        callbacks += hooks.callbacks(self)  # a sweep's pruning, MLflow tracking (kcnn.engine.hooks)
        steps = steps or steps_per_epoch(len(self.prepared.parts.y_train), self.config.batch_size)
        progress = (
            contextlib.redirect_stdout(sys.stderr) if self.quiet else contextlib.nullcontext()
        )
        with progress, self.guard.deferred():
            model.fit(
                train_ds,
                validation_data=val_ds,
                epochs=epochs,
                initial_epoch=first,
                steps_per_epoch=steps,
                shuffle=False,
                callbacks=callbacks,
                verbose=verbosity(),
            )
        self.guard.check()  # a signal during the last epoch's validation

    def _learning_rate(self, lr: float | None, schedule: bool, epochs: int):
        from kcnn.engine import recipes

        c = self.config
        plateau = (c.plateau_factor, c.reduce_lr_on_plateau) if c.reduce_lr_on_plateau else None
        return recipes.learning_rate_callback(
            lr or c.lr,
            epochs,
            c.schedule if schedule else "constant",
            c.warmup if schedule else 0,
            c.min_lr,
            plateau=plateau if schedule else None,
            val_losses=[row["val_loss"] for row in self.rows if "val_loss" in row],
        )

    def _early_stopping(self):
        """Early stopping, its state carried across a resume: the monitored values from the
        history, the best epoch's weights from the checkpoint."""
        from kcnn.engine import recipes

        if self.early is None:
            self.early = recipes.early_stopping_callback(
                self.config.early_stopping,
                history=[row["val_loss"] for row in self.rows if "val_loss" in row],
            )
            if self.resume is not None and self.rows:
                best = checkpoints.load_best_weights(self.run_dir)
                self.early.restore({"values": self.early.values, "best_weights": best})
        return self.early

    def add_training_seconds(self, seconds: float) -> None:
        """Training work done outside Keras's epochs (such as computing cached features)."""
        self.train_seconds += seconds

    # --- phase: evaluate and record -------------------------------------------------------------

    def history(self) -> dict[str, list[float]]:
        keys = [k for k in (self.rows[0] if self.rows else {}) if k != "epoch"]
        return {k: [row[k] for row in self.rows] for k in keys}

    def finish(self, model, title: str, evaluate_with=None) -> RunResult:
        """Evaluate on the test set and write the rest of the run folder, metrics.json last.
        `evaluate_with` = (a model, its test batches) stands in for `model` on the test set when
        it computes the same function more cheaply (transfer's head on cached features)."""
        import numpy as np

        from kcnn.engine import evaluation
        from kcnn.runs import plots

        p, run_dir = self.prepared, self.run_dir
        self.model = model
        if self.early is not None:
            self.results["early_stopping"] = self.early.summary()
        history = self.history()
        scorer, test_ds = evaluate_with or (model, self.batches("test"))
        metrics, matrix = evaluation.evaluate(scorer, test_ds, p.parts.y_test, p.parts.class_names)
        plots.curves(history, run_dir / folders.CURVES, title=title)
        plots.confusion_matrix(
            matrix, p.parts.class_names, run_dir / folders.CONFUSION, title=f"{title}: test set"
        )
        model.save(run_dir / folders.MODEL)
        epochs = len(self.rows)
        images = len(p.parts.y_train) * epochs
        final = {
            **self._base_metrics(),
            **self.results,
            "status": "completed",
            "epochs_completed": epochs,
            **metrics,
            "best_val_accuracy": max(history.get("val_accuracy", [float("nan")])),
            "wall_seconds": time.perf_counter() - self.started,
            "train_seconds": self.train_seconds,
            "seconds_per_epoch": self.train_seconds / max(epochs, 1),
            "train_images_per_second": images / self.train_seconds if self.train_seconds else None,
            "confusion_matrix": np.asarray(matrix).tolist(),
            "run_dir": str(run_dir),
        }
        self.guard.shielded = (
            True  # from here on the run is complete: a late signal changes nothing
        )
        write_json(run_dir / folders.METRICS, final)
        checkpoints.discard(run_dir)
        from kcnn.runs.html import write_report_after  # report.html, from the finished folder

        write_report_after(run_dir)
        result = RunResult(run_dir, final, history, model)
        hooks.finished(self, result)
        return result


def _Recorder(trainer: Trainer):
    """A Keras callback that keeps history.csv and metrics.json current after every epoch and
    measures training time (validation excluded)."""
    import keras

    class Recorder(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self._start = 0.0
            self._in_train = False

        def on_epoch_begin(self, epoch, logs=None):
            self._start = time.perf_counter()
            self._in_train = True

        def _stop_train_clock(self):
            if self._in_train:
                trainer.train_seconds += time.perf_counter() - self._start
                self._in_train = False

        def on_test_begin(self, logs=None):
            self._stop_train_clock()

        def on_train_end(self, logs=None):
            self._stop_train_clock()  # an interrupted epoch's time still counts

        def on_epoch_end(self, epoch, logs=None):
            self._stop_train_clock()
            trainer._trained = True
            trainer.rows.append(
                {"epoch": epoch + 1, **{k: float(v) for k, v in (logs or {}).items()}}
            )
            trainer._seconds_at[len(trainer.rows)] = trainer.train_seconds
            write_csv(trainer.run_dir / folders.HISTORY, trainer.rows)
            trainer._write_status("running")

    return Recorder()


def out_inside_data(config: RunConfig) -> bool:
    """Whether the output folder lies inside the data set's folder (a folder `--dataset` or
    `--data-dir`), where a run folder made before loading would be read as data."""
    out = Path(config.out).expanduser().resolve()
    for source in (config.dataset, config.data_dir):
        if source and Path(source).expanduser().is_dir():
            folder = Path(source).expanduser().resolve()
            if out == folder or folder in out.parents:
                return True
    return False


def default_input_shape(arch: str, image_size: int | None):
    """The model input for data of a given image shape: `--image-size` if given, else the data's
    own size grown to the architecture's minimum; the data's channels are kept."""
    from kcnn.models.architectures import get as get_architecture

    architecture = get_architecture(arch)

    def input_shape_for(image_shape, classes):
        h, w, c = image_shape
        if image_size is not None:
            shape = (image_size, image_size, c)
        else:
            smallest = architecture.min_size(c, classes)
            shape = (max(h, smallest), max(w, smallest), c)
        architecture.check_input(shape, classes)
        return shape

    return input_shape_for
