"""The trainer every command shares: one run, trained phase by phase.

A command composes the phases it needs (kcnn/commands/train.py is the plainest example): the
run's frame (`running`: folder, lock, signals, the status however the run ends), its data
(`load_data` or `use`), the model (`build`, `compile`), one `fit` per training phase and
`finish` (test evaluation, pictures, model.keras, the final metrics.json). `transfer` adds a
feature phase and a fine-tune phase, each one more call to `fit`; `compare-apis` runs one trainer
per API form. What the run records lives in its `RunRecords` (`trainer.records`), written through
its `RunFolder` (kcnn/runs/run.py), the one owner of a run folder; the engine names that
interface (`kcnn.engine.recording.RunRecorder`); commands add their facts and results there. The trainer never asks which command it serves.

The practitioners' recipes live in the phases they change: soft targets (MixUp, CutMix, a
teacher's probabilities) and Keras's augmentation layers in the pipeline, the EMA, the averaged
epochs and the time limit as callbacks of `fit`, the choice of final weights (`--ema`,
`--average-last`) and test-time augmentation in `finish`.

Stopping early: Ctrl-C, SIGTERM or SIGHUP stop after the current batch. The folder is marked
`interrupted`, keeps the finished epochs and a checkpoint of the last one (weights, optimizer and
random-generator state), and `kcnn train --resume` finishes it with the numbers an uninterrupted
run would have had. A NaN or infinite loss marks it `diverged` (exit 3).

Longer than 600 lines for a stated reason: it is one class whose phases share one run's state
(its folder and lock, the model, the epochs' rows, the signal guard); each phase is a few short
methods under its own heading below, and what a phase needs from elsewhere lives in its own module
(recipes, callbacks, averaging, budget, streamed, evaluation, checkpoints).
"""

from __future__ import annotations

import contextlib
import signal
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kcnn.data import augment
from kcnn.data.prepared import Prepared, prepare_data  # noqa: F401  (commands import them here)
from kcnn.engine import (
    averaging,
    budget,
    checkpoints,
    distribute,
    familiar,
    hooks,
    interrupts,
    performance,
    recipes,
    streamed,
)
from kcnn.engine.config import RunConfig
from kcnn.engine.recording import RunRecorder
from kcnn.errors import KcnnError
from kcnn.models.architectures import get as get_architecture
from kcnn.models.params import count_params, model_summary


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


class Trainer:
    """One run folder, trained phase by phase (see the module docstring)."""

    def __init__(
        self,
        config: RunConfig,
        records: RunRecorder,
        *,
        quiet: bool = False,
        out: str | Path | None = None,
        resume=None,
        epochs_planned: int | None = None,
        resumable: bool = False,
        resume_hint: str | None = None,
    ):
        """`records`: what the run records, written through its folder (a `RunRecorder`: its
        folder already set when resuming); `resume`: where a resumed run picks up
        (`kcnn.runs.run.Resume`)."""
        self.config = config
        self.quiet = quiet  # Keras's progress goes to stderr, stdout is kept for --json
        self.out = Path(out if out is not None else config.out)
        self.resume = resume
        self.started = time.perf_counter()
        self.prepared: Prepared | None = None
        self.records = records  # what the run records, added to by the command too
        self.preprocess = None  # a backbone's preprocess_input, applied per batch in the pipeline
        self.rows: list[dict[str, float]] = list(resume.rows) if resume else []
        self.train_seconds = resume.train_seconds if resume else 0.0
        # Training seconds when each epoch ended: a checkpoint keeps the time of its own epochs,
        # not of a half-done epoch that a resume does again (throughput stays right).
        self._seconds_at = {len(self.rows): self.train_seconds}
        self.epochs_planned = epochs_planned or config.epochs
        # Whether an interrupted run keeps a checkpoint that `kcnn train --resume` continues: the
        # command says so (one model trained in one phase can be resumed exactly).
        self.resumable = resumable
        self.resume_hint = resume_hint  # the command that continues it (default: --resume RUN)
        self.phase = 0  # the fit phase being trained (1, 2, ...: one per call of `fit`)
        self.model = None  # the model the current fit phase trains (a checkpoint saves it)
        self.early = None  # the early-stopping callback, when the recipe asks for it
        self.summed: averaging.WeightSum | None = None  # --average-last's sum of weights
        # --teacher's probabilities for each training image (set by the command), rows of K
        self.soft_labels = None
        # --time-limit: counted from the start of this process's work on the run
        self.clock = budget.Clock(config.time_limit) if config.time_limit else None
        self.time_limit = None  # the TimeLimit callback of the current fit phase
        self.guard = interrupts.SignalGuard()
        self.dist: distribute.Distribution | None = None  # set by running(), before any work
        self.sentinel = None
        self._locked = False
        # An epoch ran in this process: bad input found after that keeps the folder.
        self._trained = False

    # --- records --------------------------------------------------------------------------------

    @property
    def run(self):
        """The run's folder (`RunFolder`), once made."""
        return self.records.folder

    @property
    def run_dir(self) -> Path | None:
        return self.records.path

    def _metrics_base(self) -> dict[str, Any]:
        data = self.prepared.data if self.prepared else None
        base = {
            "dataset": data.name if data else self.config.dataset,
            "dataset_fallback": bool(data.provenance.get("fallback")) if data else False,
            "epochs_planned": self.epochs_planned,
        }
        skipped = self.prepared.skipped() if self.prepared else None
        if skipped is not None:  # an image folder: the files left out as unreadable, so far
            base["skipped_images"] = skipped
            base["images_decoded"] = self.prepared.decoded()  # by this process (not the cache)
        return base

    def _write_status(self, status: str, epochs: int | None = None, **extra) -> None:
        done = len(self.rows) if epochs is None else epochs
        self.records.write_status(
            status,
            **self._metrics_base(),
            epochs_completed=done,
            train_seconds=self.train_seconds,
            **extra,
        )

    # --- the run's frame: folder, lock, signals -------------------------------------------------

    def open_folder(self) -> Path:
        """Make the run folder (once) and lock it. It is made after the data is loaded, so a data
        folder that holds --out is never read with a half-made run in it; a signal before then
        still leaves a folder that --resume starts from the beginning."""
        if self._locked:
            return self.run_dir
        # A signal meanwhile waits until the folder's records (config.json, a `running` status)
        # are whole, so no folder is ever left without them; then it stops the run as any other.
        held = self.guard.shielded
        self.guard.shielded = True
        try:
            self.records.open(self.out, self.config.name)
            self._locked = True
            self._write_status("running")
        finally:
            self.guard.shielded = held
        if not held:
            interrupts.check_stop()
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
            before = self.records.metrics_text()
            self._skipped_before = streamed.skipped_in(before)
        with self.guard:
            try:
                self._open_early()
                self.dist = distribute.activate(self.config)
                self.records.facts.update(self.dist.record())
                if not self.dist.chief:
                    self.out = Path(self.config.out)
                with self.dist.lost_peers():
                    yield self
            except (interrupts.Interrupted, KeyboardInterrupt) as e:
                raise self._interrupted(getattr(e, "signum", signal.SIGINT)) from None
            except budget.TimeLimitReached:
                raise self._time_up() from None
            except streamed.TooManyBadImages as stop:
                raise self._unreadable(stop) from None
            except interrupts.NonFiniteLoss as stop:
                self._stopped(
                    "diverged", diverged_at={"epoch": stop.epoch + 1, "batch": stop.batch + 1}
                )
                raise interrupts.diverged(stop, self.config.optimizer, self.config.lr) from None
            except KcnnError:
                if interrupts.stop_requested():  # a library made the signal an error of its own
                    raise self._interrupted(interrupts.stop_requested()) from None
                self._refused(before)
                raise
            except BaseException:
                self.guard.shielded = True
                if self.run_dir is not None:
                    self._write_status("failed")
                raise
            finally:
                self._release()

    def _open_early(self) -> None:
        """Make the folder before TensorFlow starts, where it may be (see `running`)."""
        early = self.config.strategy != "multi-worker" and not out_inside_data(self.config)
        if self.resume is not None or early:
            self.open_folder()

    def _interrupted(self, signum: int) -> interrupts.Interrupted:
        """Record a run a signal stopped (its checkpoint, when it can be resumed); the error
        that says so and how to go on."""
        name = signal.Signals(signum).name
        self.guard.shielded = True
        self.open_folder()
        done = self._stopped("interrupted", signal=name)
        hint = self.resume_hint or f"kcnn {self.config.command} --resume {self.run_dir}"
        again = f"continue with: {hint}" if self.resumable else f"records kept in {self.run_dir}"
        return interrupts.Interrupted(
            signum, f"interrupted by {name} after {done} of {self.epochs_planned} epochs; {again}"
        )

    def _time_up(self) -> budget.TimeUp:
        """Record a run its time limit stopped, as an interrupted one (its checkpoint the last
        finished epoch); the error that says so and how to go on."""
        self.guard.shielded = True
        self.open_folder()
        limit = budget.duration_text(self.config.time_limit)
        done = self._stopped("interrupted", stop_reason=f"time limit {limit}")
        hint = self.resume_hint or f"kcnn {self.config.command} --resume {self.run_dir}"
        return budget.TimeUp(
            f"time limit {limit} reached after {done} of {self.epochs_planned} epochs; "
            f"continue with: {hint}"
        )

    def _unreadable(self, stop: Exception) -> KcnnError:
        """Record a run stopped because too many of its image files failed to decode (its
        checkpoint kept, so it goes on once they are fixed); the error that says so."""
        self.guard.shielded = True
        self.open_folder()
        done = self._stopped("failed", keep=True, reason="unreadable images")
        hint = self.resume_hint or f"kcnn {self.config.command} --resume {self.run_dir}"
        return KcnnError(
            f"{stop}; stopped after {done} of {self.epochs_planned} epochs: fix or remove "
            f"those files, then continue with: {hint}"
        )

    def _record_test_predictions(self, probabilities) -> None:
        """What the run answered on each test image, and where each came from (an image
        folder's test files that failed to decode are not among them)."""
        p = self.prepared
        parts, files = p.parts, p.test_files
        index, true = parts.test_index, parts.y_test
        if p.streamed:
            kept = parts.x_test.kept()
            index = index[kept] if index is not None else None
            true = true[kept]
            files = [f for f, k in zip(files, kept, strict=True) if k] if files else files
        self.records.write_test_predictions(index, true, probabilities, files, parts.test_held_out)

    def _record_fold_predictions(self, model) -> None:
        """A fold of `--folds`: what the run answers on its validation images, the fold held
        out of its training (`fold_predictions.npz`, the per-image record's form, positions into
        the training images), which the group gathers into its out-of-fold probabilities."""
        import numpy as np

        from kcnn.data.files import is_files
        from kcnn.data.prepared import relative_files

        if self.config.fold is None:
            return
        parts = self.prepared.parts
        probabilities = np.asarray(model.predict(self.batches("val"), verbose=0), np.float32)
        index, true = parts.val_index, parts.y_val
        files = relative_files(self.config.dataset, parts.x_val)
        if is_files(parts.x_val):
            kept = parts.x_val.kept()
            index, true = index[kept], true[kept]
            files = [f for f, k in zip(files, kept, strict=True) if k]
        self.records.write_fold_predictions(index, true, probabilities, files)

    def _refused(self, before: str | None) -> None:
        """Bad input found while running: a run that trained is `failed`; a refused resume is
        left as it was found (`before`: its metrics.json); a new run leaves nothing behind."""
        self.guard.shielded = True
        if self._trained:
            self._write_status("failed")
        elif before is not None:
            self.records.restore_metrics(before)
        elif self.run_dir is not None:  # made, then refused before training: remove it
            self._release()
            self.records.discard()

    def _release(self) -> None:
        self.records.unlock()
        self._locked = False

    def _stopped(self, status: str, keep: bool = False, **extra) -> int:
        """Record a run that ends early; returns the epochs its records keep. An interrupted run
        (or one stopped with `keep`) keeps a checkpoint of its last finished epoch."""
        self.guard.shielded = True  # a second Ctrl-C must not cut the records short
        if self.prepared is not None:
            self.prepared.flush()
        done = len(self.rows)
        if (status == "interrupted" or keep) and self.resumable and self.model is not None:
            if self.sentinel is not None and self.sentinel.restore_snapshot(self.model):
                done = min(done, self.sentinel.snapshot_epoch)
            self.train_seconds = self._seconds_at.get(done, self.train_seconds)
            if done:
                checkpoints.save(
                    self.run,
                    self.model,
                    done,
                    reason=extra.get("reason", "interrupted"),
                    settings=self.config.settings_dict(),
                    best=self.early.best_weights if self.early is not None else None,
                    phase=max(self.phase, 1),
                    average=self.summed.at(done) if self.summed is not None else None,
                )
                extra["checkpoint"] = checkpoints.CHECKPOINT
        self.run.write_history(self.rows[:done], None if done else ["epoch"])
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
        if self.resume is not None and not self._same_data(prepared):
            raise KcnnError(
                f"{self.run_dir} was trained on other data than `{self.config.dataset}` gives now "
                f"({prepared.data.provenance.get('source', prepared.data.name)}): resuming would "
                "mix two data sets; start a new run"
            )
        self.prepared = prepared
        self._record_stand_in(prepared)
        self.open_folder()
        data, parts = prepared.data, prepared.parts
        self.records.add_facts(
            input_shape=list(prepared.input_shape),
            fit=prepared.fit,
            image_shape=list(data.image_shape),
            classes=parts.class_names,
            split_sizes=parts.sizes(),
            dataset_provenance=data.provenance,
            data_fingerprint=prepared.fingerprint,
            test_leakage=prepared.leakage,
        )
        if self.config.batch_size_search is not None:
            self.records.add_facts(batch_size_search=self.config.batch_size_search)
        self.records.write_typical(prepared.typical)  # predict's check of unfamiliar images
        return prepared

    def _same_data(self, prepared: Prepared) -> bool:
        """Whether a resumed run may go on with `prepared`: the data it trained on (an image
        folder's files it skipped as undecodable may have been fixed since)."""
        if self.resume.fingerprint is None:
            return True
        return prepared.resumes(self.resume.fingerprint, getattr(self, "_skipped_before", None))

    def _record_stand_in(self, prepared: Prepared) -> None:
        """A data set that stood in for the one asked for (mnist -> mnist-5k offline) is what the
        run records and is named for. A resumed run keeps what its records (and checkpoint) say."""
        if self.resume is not None or not record_stand_in(self.config, prepared):
            return
        self.records.settings = self.config.settings_dict()
        if self.run_dir is not None and self.config.derived_name:  # made before loading
            self.records.rename(self.config.name)

    # --- phase: build and compile ---------------------------------------------------------------

    def build(self, make: Callable[[], Any], *, seed: int | None = None) -> Any:
        """Build the model with every random draw seeded; records its build time and summary."""
        seed_everything(self.config.seed if seed is None else seed)
        start = time.perf_counter()
        with self.scope():
            model = make()
        self.records.results["build_seconds"] = time.perf_counter() - start
        self.describe(model)
        return model

    def describe(self, model) -> None:
        """summary.txt and the parameter counts of the model this run trains."""
        self.records.write_summary(model_summary(model))
        self.records.results["params"] = count_params(model)

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

        c = self.config
        speed = {}
        if c.strategy == "default" and self.prepared is not None:
            speed = performance.compile_options(
                steps_per_epoch(len(self.prepared.parts.y_train), c.batch_size)
            )
        dense = self.dense_targets()
        teacher = (c.teacher_weight, c.teacher_temperature) if c.teacher else None
        with self.scope():
            model.compile(
                optimizer=optimizer
                or recipes.make_optimizer(
                    c.optimizer, lr or c.lr, c.weight_decay, c.momentum, c.nesterov, ema=c.ema
                ),
                loss=recipes.make_loss(c.label_smoothing, dense, teacher),
                metrics=recipes.make_metrics(dense),
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

    def dense_targets(self) -> bool:
        """Whether training targets are rows rather than class numbers: mixed labels (MixUp,
        CutMix), or a teacher's probabilities after the one-hot labels (--teacher)."""
        return self.config.recipe_augmentation().mixes or self.config.teacher is not None

    def _targets(self, y):
        """The training targets of labels `y`: one-hot rows, a teacher's probabilities after."""
        import numpy as np

        classes = self.prepared.classes
        rows = np.eye(classes, dtype=np.float32)[np.asarray(y, dtype=np.int64)]
        if self.soft_labels is None:
            return rows
        return np.concatenate([rows, np.asarray(self.soft_labels, dtype=np.float32)], axis=1)

    def plain_batches(self, split: str):
        """A split in its fixed order, prepared for the model and not distributed (for the
        passes kcnn makes itself: test-time augmentation, BatchNorm statistics)."""
        from kcnn.data.pipeline import make_dataset

        p = self.prepared
        x, y = {
            "train": (p.parts.x_train, p.parts.y_train),
            "val": (p.parts.x_val, p.parts.y_val),
            "test": (p.parts.x_test, p.parts.y_test),
        }[split]
        return make_dataset(x, y, p.input_shape, self.config.batch_size, preprocess=self.preprocess)

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
        if x is None and p.streamed:
            remote = streamed.training_stream(self, epochs)
            if remote is not None:
                return remote
        x = p.parts.x_train if x is None else x
        y = p.parts.y_train if y is None else y
        images = x is p.parts.x_train  # features need no preparing (and are never augmented)
        if images and self.dense_targets():
            y = self._targets(y)
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

    def check_images(self) -> None:
        """Stop (exit 2, resumable) once more of an image folder's files have failed to decode
        than kcnn skips; `fit` checks after every batch, a pass outside it calls this."""
        streamed.check_images(self.prepared)

    def augmenter(self):
        """The training images' augmentation (None: none), recorded in config.json."""
        c, p = self.config, self.prepared
        settings = augment.resolve(
            c.augment, p.data.name, p.data.image_shape[2], c.augment_switches()
        )
        recipe = c.recipe_augmentation()
        extra = recipe.to_dict() if recipe.active else {}
        self.records.add_facts(augmentation={**settings.to_dict(), **extra})
        basic = augment.augmenter(settings, c.seed)
        if not recipe.active:
            return basic
        from kcnn.data import keras_augment  # Keras's layers: only once a run trains

        return keras_augment.batch_augmenter(recipe, c.seed, basic)

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
        self.phase += 1
        first = len(self.rows)
        if first >= epochs:
            return
        from kcnn.engine import callbacks as keras_callbacks  # Keras: only once a model fits

        self.check_images()  # files that failed to decode before this phase (a pass over them)
        if self.sentinel is None:
            self.sentinel = keras_callbacks.Sentinel(self.guard)
        # The sentinel first: a diverged epoch is never recorded; the rate before the recorder,
        # so that each epoch's row holds its learning rate.
        callbacks = [self.sentinel, self._learning_rate(lr, schedule, epochs)]
        callbacks += self._averaging(model, val_ds)
        if self.config.early_stopping:
            callbacks.append(self._early_stopping())
        if self.clock is not None:
            self.time_limit = keras_callbacks.TimeLimit(self.clock)
            callbacks.append(self.time_limit)
        callbacks.append(keras_callbacks.Recorder(self))
        if self.prepared.streamed:
            callbacks.append(streamed.watch(self.prepared))
        if self.config.tensorboard:
            callbacks.append(self.records.tensorboard(self.config.tensorboard_histograms))
        callbacks += hooks.callbacks(self)  # a sweep's pruning, MLflow tracking (kcnn.engine.hooks)
        steps = steps or steps_per_epoch(len(self.prepared.parts.y_train), self.config.batch_size)
        progress = (
            contextlib.redirect_stdout(sys.stderr) if self.quiet else contextlib.nullcontext()
        )
        train_ds = self._weighed(train_ds)
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
        if self.time_limit is not None and self.time_limit.stopped and len(self.rows) < epochs:
            raise budget.TimeLimitReached()

    def class_weights(self) -> dict[int, float] | None:
        """--class-weight balanced: class c's loss weighed n/(classes × count of c) over the
        training images (a class absent from them gets 1), recorded with the run; None: none."""
        import numpy as np

        if self.config.class_weight != "balanced":
            return None
        y, classes = self.prepared.parts.y_train, self.prepared.classes
        counts = np.bincount(np.asarray(y, dtype=np.int64), minlength=classes)
        weights = {
            c: float(len(y) / (classes * n)) if n else 1.0 for c, n in enumerate(counts.tolist())
        }
        self.records.add_facts(class_weights={str(c): w for c, w in weights.items()})
        return weights

    def _weighed(self, batches):
        """The training batches with each image's class weight as its sample weight (times the
        weight a streamed folder's batch carries already: 0 for a batch of undecodable files),
        so arrays and streamed folders are weighed alike; as they are without --class-weight."""
        weights = self.class_weights()
        if weights is None:
            return batches
        import tensorflow as tf

        table = tf.constant([weights[c] for c in range(len(weights))], tf.float32)

        def of(labels):
            if labels.shape.rank is not None and labels.shape.rank > 1:  # one-hot or mixed rows
                labels = tf.argmax(labels, axis=-1)
            return tf.gather(table, tf.cast(tf.reshape(labels, [-1]), tf.int32))

        def weigh(x, y, *carried):
            return x, y, of(y) * (carried[0] if carried else 1.0)

        return batches.map(weigh)

    def _averaging(self, model, val_ds) -> list:
        """The callbacks of --ema (its evaluation on validation each epoch) and --average-last
        (the sum of the weights it averages, carried across a resume by the checkpoint)."""
        from kcnn.engine import callbacks as keras_callbacks

        found = []
        c = self.config
        if c.ema:
            averaging.keep_raw_at_end(model)
            found.append(keras_callbacks.EmaEvaluation(val_ds))
        if c.average_last:
            if self.summed is None:
                self.summed = averaging.WeightSum(c.epochs - c.average_last)
                if self.resume is not None and self.rows:
                    sums, count = checkpoints.load_average(self.run, model.get_weights())
                    if count != max(0, len(self.rows) - self.summed.first):
                        raise KcnnError(
                            f"{self.run_dir} summed {count} epochs' weights for --average-last, "
                            "not those this --epochs would average; resume it with its own --epochs"
                        )
                    self.summed.restore(len(self.rows), sums, count)
            found.append(keras_callbacks.WeightAverage(self.summed))
        return found

    def _learning_rate(self, lr: float | None, schedule: bool, epochs: int):
        from kcnn.engine.callbacks import learning_rate_callback

        c = self.config
        plateau = (c.plateau_factor, c.reduce_lr_on_plateau) if c.reduce_lr_on_plateau else None
        return learning_rate_callback(
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
        from kcnn.engine.callbacks import early_stopping_callback

        if self.early is None:
            self.early = early_stopping_callback(
                self.config.early_stopping,
                history=[row["val_loss"] for row in self.rows if "val_loss" in row],
            )
            if self.resume is not None and self.rows:
                best = checkpoints.load_best_weights(self.run)
                self.early.restore({"values": self.early.values, "best_weights": best})
        return self.early

    def add_training_seconds(self, seconds: float) -> None:
        """Training work done outside Keras's epochs (such as computing cached features)."""
        self.train_seconds += seconds

    def epoch_done(self, row: dict[str, float]) -> None:
        """An epoch ended (the Recorder's call): its row goes into history.csv and the status."""
        self._trained = True
        self.rows.append(row)
        self._seconds_at[len(self.rows)] = self.train_seconds
        self.run.write_history(self.rows)
        self._write_status("running")

    # --- phase: evaluate and record -------------------------------------------------------------

    def _final_weights(self, model) -> None:
        """The weights a run ends with, where a recipe chooses them (--ema: the better of the raw
        weights and their average on validation; --average-last: the mean of the last K epochs,
        BatchNorm's statistics recomputed), recorded in metrics.json."""
        c, results = self.config, self.records.results
        if c.ema:
            results["ema"] = averaging.keep_better(model, self.batches("val"), c.ema)
        if c.average_last and self.summed is not None and self.summed.count:
            results["average_last"] = averaging.use_mean(
                model, self.summed, self.batches("val"), self.plain_batches("train")
            )

    def _record_familiar(self, model) -> None:
        """What `kcnn predict` compares a new image against in the model's feature space
        (kcnn.engine.familiar): nothing without a validation split to set its threshold on."""
        from kcnn.data import nearest
        from kcnn.data.pipeline import make_dataset
        from kcnn.models.transfer_net import feature_batch

        p = self.prepared
        if not len(p.parts.y_val):
            return
        size = min(self.config.batch_size, feature_batch(p.input_shape))  # a bounded pass

        def batches(x, y, most: int):
            x, y = familiar.sample(x, y, most)
            return make_dataset(x, y, p.input_shape, size, preprocess=self.preprocess)

        self.records.write_nearest(
            familiar.check(
                model,
                batches(p.parts.x_train, p.parts.y_train, nearest.SAMPLE),
                batches(p.parts.x_val, p.parts.y_val, nearest.HELD_OUT),
            )
        )

    def history(self) -> dict[str, list[float]]:
        keys = [k for k in (self.rows[0] if self.rows else {}) if k != "epoch"]
        return {k: [row[k] for row in self.rows] for k in keys}

    def finish(self, model, title: str, evaluate_with=None) -> RunResult:
        """Evaluate on the test set and write the rest of the run folder, metrics.json last.
        `evaluate_with` = (a model, its test batches) stands in for `model` on the test set when
        it computes the same function more cheaply (transfer's head on cached features); a third
        item, the test labels, when some test images were left out of its batches."""
        import numpy as np

        from kcnn.data.files import kept_labels
        from kcnn.engine import evaluation

        p, run_dir = self.prepared, self.run_dir
        self.model = model
        if self.early is not None:
            self.records.results["early_stopping"] = self.early.summary()
        self._final_weights(model)
        history = self.history()
        scorer, test_ds, *labels = evaluate_with or (model, self.batches("test"))
        y_test = labels[0] if labels else lambda: kept_labels(p.parts.x_test, p.parts.y_test)
        tta = (self.config.tta, self.plain_batches("test")) if self.config.tta else None
        metrics, matrix, probabilities = evaluation.evaluate(
            scorer, test_ds, y_test, p.parts.class_names, tta=tta
        )
        p.flush()
        self.check_images()  # test files that failed to decode count too
        self._record_test_predictions(probabilities)
        self._record_fold_predictions(model)
        self._record_familiar(model)
        self.records.draw(history, matrix, p.parts.class_names, title)
        self.records.save_model(model)
        epochs = len(self.rows)
        images = len(p.parts.y_train) * epochs
        final = self.records.metrics_record(
            "completed",
            **self._metrics_base(),
            epochs_completed=epochs,
            **metrics,
            best_val_accuracy=max(history.get("val_accuracy", [float("nan")])),
            wall_seconds=time.perf_counter() - self.started,
            train_seconds=self.train_seconds,
            seconds_per_epoch=self.train_seconds / max(epochs, 1),
            train_images_per_second=images / self.train_seconds if self.train_seconds else None,
            confusion_matrix=np.asarray(matrix).tolist(),
            run_dir=str(run_dir),
        )
        self.guard.shielded = (
            True  # from here on the run is complete: a late signal changes nothing
        )
        self.records.write_status("completed", **{k: v for k, v in final.items() if k != "status"})
        checkpoints.discard(self.run)
        self.records.write_report()  # report.html, from the finished folder
        result = RunResult(run_dir, final, history, model)
        hooks.finished(self, result)
        return result


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


def record_stand_in(config: RunConfig, prepared: Prepared) -> bool:
    """When an offline stand-in was loaded for the data set asked for (mnist -> mnist-5k), make it
    the config's data set, so that the run's records, name and later commands say what was used
    (never a download to retry); what was asked for stays in the data's provenance. Returns
    whether the config changed."""
    data = prepared.data
    if not data.provenance.get("fallback") or data.name == config.dataset:
        return False
    config.use_dataset(data.name)
    return True
