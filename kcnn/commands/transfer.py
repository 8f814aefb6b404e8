"""`kcnn transfer` as a library call: a frozen ImageNet backbone with a small head, trained on a
data set, optionally fine-tuned, leaving the run folder `kcnn train` leaves.

Seed 003's second experiment, done right:

- each backbone's own `preprocess_input`, applied per batch in the tf.data pipeline, which also
  resizes (`--image-size`) and repeats grayscale to three channels, so no bigger copy of the data
  set is ever made;
- frozen means frozen: the backbone is not trainable *and* is called with `training=False`, so its
  BatchNormalization layers stay in inference mode even when fine-tuning (Chollet, "Transfer
  learning & fine-tuning", keras.io/guides/transfer_learning);
- the frozen backbone's features are computed once per split and the head is trained on them:
  the same training as running the backbone every epoch, for the cost of one pass;
- weights come from the Keras cache, a download, a local file, or nowhere (`none`), and the run
  records which; with no network and nothing cached the run stops with what to do, never
  switching to random weights on its own.

    from kcnn.commands.transfer import transfer
    from kcnn.engine.config import TransferConfig
    result = transfer(TransferConfig(["vgg16"], dataset="shapes", weights="none", epochs=3))
    result.runs[0].metrics["test_accuracy"], result.runs[0].run_dir
"""

from __future__ import annotations

import contextlib
import dataclasses
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kcnn import defaults
from kcnn.commands.command import (
    Command,
    Outcome,
    members,
    outcome_of,
    resumed_facts,
    settings_to_resume,
)
from kcnn.data.files import kept_labels
from kcnn.data.prepared import Prepared, prepare_data
from kcnn.engine import checkpoints, distribute, interrupts
from kcnn.engine.config import TransferConfig
from kcnn.engine.trainer import RunResult, Trainer, count_params, record_stand_in
from kcnn.errors import KcnnError
from kcnn.models import backbones
from kcnn.models.transfer_net import (  # noqa: F401  (part of this command's library interface)
    FEATURE_BATCH_MAX,
    FEATURE_BATCH_PIXELS,
    TransferModel,
    WeightsSource,
    backbone_layer_count,
    build,
    extract_features,
    feature_batch,
    head_layers,
    load_weights,
    resolve_weights,
    unfreeze_top,
)
from kcnn.progress import heading
from kcnn.runs import folders, tables
from kcnn.runs.browse import interval_cell
from kcnn.runs.recorder import RunRecords
from kcnn.runs.records import write_json
from kcnn.runs.run import RunFolder, read_resume


@dataclass
class TransferResult:
    runs: list[RunResult]
    rows: list[dict[str, Any]] = field(default_factory=list)
    folder: Path | None = None  # the comparison folder when several backbones ran


def input_shape_for(image_size: int | None, min_size: int):
    """Three channels always (grayscale is repeated by the pipeline); `--image-size` if given,
    else the data's own size grown to the backbones' minimum."""

    def shape(image_shape, classes):
        h, w, _ = image_shape
        if image_size is not None:
            return (image_size, image_size, 3)
        return (max(h, min_size), max(w, min_size), 3)

    return shape


def cache_decision(
    config: TransferConfig, feature_shape, images: int, directory: Path | None = None
) -> tuple[str | None, str]:
    """Where the frozen phase's cached features go — "memory", "file" (an unnamed file in
    `directory`, the run folder) or None (not cached: the backbone runs every epoch) — and why,
    in words for metrics.json."""
    import shutil

    import numpy as np

    if not config.cache_features:
        return None, "off (--no-cache-features): the backbone runs every epoch"
    size = images * int(np.prod(feature_shape)) * 4
    limit = defaults.FEATURE_CACHE_MAX_BYTES
    if directory is not None:
        limit = min(limit, shutil.disk_usage(directory).free // 2)
    if size > limit:
        return None, (
            f"off: the features would take {size / 1024**3:.1f} GB, over the "
            f"{limit / 1024**3:.1f} GB limit (at most {defaults.FEATURE_CACHE_MAX_BYTES / 1024**3:.0f} GB "
            f"and half the free disk space); the backbone runs every epoch"
        )
    where = "memory" if size <= defaults.FEATURE_MEMORY_MAX_BYTES or directory is None else "file"
    note = f"on: features of {images} images computed once ({size / 1024**2:.1f} MB, " + (
        "in memory)" if where == "memory" else "in an unnamed file in the run folder)"
    )
    if config.fine_tune:
        note += "; the fine-tune phase runs the whole model"
    return where, note


def train_one(
    config: TransferConfig,
    backbone: backbones.Backbone,
    weights: WeightsSource,
    prepared: Prepared,
    out: Path | None = None,
    quiet: bool = False,
    resume=None,
    resume_hint: str | None = None,
) -> RunResult:
    """Build, train (frozen phase, then the optional fine-tune phase), evaluate and record one
    backbone, each phase a phase of the shared trainer. `resume` (a `kcnn.runs.run.Resume`)
    finishes an interrupted run in its folder: the network is rebuilt as it was, the
    checkpoint's state is put back into the model of the phase it was taken in, and the epochs
    left are trained as an uninterrupted run would have trained them."""
    one = dataclasses.replace(config, backbones=[backbone.name])
    if len(config.backbones) > 1:
        one.name, one.derived_name = f"{backbone.name}-{config.head}", False
    epochs = config.epochs + (config.fine_tune_epochs if config.fine_tune else 0)
    trainer = Trainer(
        one,
        _records(one, backbone, weights, resume),
        quiet=quiet,
        out=out,
        resume=resume,
        epochs_planned=epochs,
        resumable=True,
        resume_hint=resume_hint,
    )
    with trainer.running():
        trainer.use(prepared)
        trainer.preprocess = backbone.preprocess_input()
        net = _build_net(trainer, backbone, prepared, config, weights)
        layers = backbone_layer_count(net.base)
        if config.fine_tune > layers:
            raise KcnnError(
                f"--fine-tune {config.fine_tune} is more than the {layers} layers of {backbone.name}"
            )
        trainer.compile(net.model)
        use_cache, store = _plan_cache(trainer, net, prepared, config, weights)

        def restore(model, phase: int) -> None:
            """A resumed run's checkpoint goes back into the model of the phase it was taken in."""
            if resume is not None and resume.epoch and resume.phase == phase:
                checkpoints.restore(model, trainer.run)

        # Phase 1, frozen backbone: on cached features (one pass of the backbone per split, in
        # the pipeline's order), or on images through the whole model every epoch.
        if use_cache:
            # The head trains with the whole model's optimizer (same variables), so that
            # model.keras saves an optimizer state that fits the model it belongs to; and with
            # the recipe's loss, as the whole model would.
            trainer.compile(net.head, optimizer=net.model.optimizer)
            restore(net.head, phase=1)
            _frozen_phase_on_features(trainer, net, prepared, config, store)
        else:
            restore(net.model, phase=1)
            trainer.fit(
                net.model,
                trainer.training_batches(config.epochs),
                trainer.batches("val"),
                epochs=config.epochs,
            )
        if config.fine_tune:  # Phase 2: the top layers unfrozen, the whole model at a lower rate
            _fine_tune_phase(trainer, net, config, epochs, restore)
        scorer = None
        if use_cache and not config.fine_tune:
            scorer = _head_on_test_features(trainer, net, prepared, config, store)
        return trainer.finish(
            net.model,
            title=f"{backbone.name} + {config.head} head on {prepared.data.name}",
            evaluate_with=scorer,
        )


def _records(one: TransferConfig, backbone, weights: WeightsSource, resume) -> RunRecords:
    """What one backbone's run records: its settings, what the model is, where its weights came
    from; resumed, the facts its config.json kept and this resume added to them."""
    identity = {"backbone": backbone.name, "head": one.head}
    facts = {
        "backbone_paper": backbone.paper,
        "preprocess_input": backbone.preprocess,
        **weights.record(),
    }
    if resume is not None:
        record = RunFolder(resume.run_dir).config()
        facts = {**resumed_facts(record, resume, identity), **facts}
    folder = resume.run_dir if resume else None
    return RunRecords(one.command, one.settings_dict(), identity, facts, folder=folder)


def _plan_cache(trainer: Trainer, net, prepared: Prepared, config, weights) -> tuple[bool, Any]:
    """Whether the frozen phase trains on cached features, and where big ones are written;
    recorded with the run's parameter counts."""
    frozen = trainer.records.results["params"]
    parts = prepared.parts
    cache_in, cache_note = cache_decision(
        config,
        net.extractor.output.shape[1:],
        len(parts.y_train) + len(parts.y_val),
        trainer.run_dir,
    )
    use_cache = cache_in is not None
    trainer.records.add_facts(feature_cache=use_cache, feature_cache_note=cache_note)
    trainer.records.results.update(
        {
            **weights.record(),
            "total_params": frozen["total"],
            "trainable_params": frozen["trainable"],
            "frozen_params": frozen["non_trainable"],
            "feature_cache": use_cache,
            "feature_cache_note": cache_note,
            "fine_tune_layers": config.fine_tune,
            "feature_seconds": None,
            "fine_tune_trainable_params": None,
            "fine_tune_unfrozen": [],
        }
    )
    return use_cache, trainer.run_dir if cache_in == "file" else None


def _fine_tune_phase(trainer: Trainer, net, config: TransferConfig, epochs: int, restore) -> None:
    """Fine-tuning: the top layers unfrozen (BatchNorm stays frozen), the whole model
    recompiled (the trainable set changed) at the fine-tune rate, without the recipe's schedule
    (it is the frozen phase's; fine-tuning is gentle)."""
    trainer.records.results["fine_tune_unfrozen"] = unfreeze_top(net.base, config.fine_tune)
    trainer.compile(net.model, config.fine_tune_lr)
    restore(net.model, phase=2)
    trainer.records.results["fine_tune_trainable_params"] = count_params(net.model)["trainable"]
    trainer.fit(
        net.model,
        trainer.training_batches(epochs),
        trainer.batches("val"),
        epochs=epochs,
        lr=config.fine_tune_lr,
        schedule=False,
    )


def _head_on_test_features(trainer: Trainer, net, prepared: Prepared, config, store):
    """The backbone is as it was when its features were cached: the head on the test images'
    features is the whole model, without a second graph at full image size."""
    from kcnn.data.pipeline import array_batches  # TensorFlow: only once a run trains

    parts = prepared.parts
    f_test = extract_features(
        net.extractor,
        parts.x_test,
        prepared.input_shape,
        trainer.preprocess,
        store,
        what=f"{trainer.records.identity['backbone']} features of the test images",
        quiet=trainer.quiet,
    )
    y_test = kept_labels(parts.x_test, parts.y_test)  # image files that decoded
    return net.head, array_batches(f_test, y_test, config.batch_size), y_test


def _frozen_phase_on_features(trainer: Trainer, net, prepared: Prepared, config, store) -> None:
    """The frozen phase on cached features: one pass of the backbone per split, then the head's
    epochs on them (none left: a resumed run past this phase computes no features)."""
    from kcnn.data.pipeline import array_batches

    parts = prepared.parts
    if len(trainer.rows) >= config.epochs:
        trainer.fit(net.head, None, None, epochs=config.epochs)  # counts the phase, trains nothing
        return
    start = time.perf_counter()
    name = trainer.records.identity["backbone"]
    f_train, f_val = (
        extract_features(
            net.extractor,
            x,
            prepared.input_shape,
            trainer.preprocess,
            store,
            what=f"{name} features of the {split} images",
            quiet=trainer.quiet,
        )
        for x, split in ((parts.x_train, "training"), (parts.x_val, "validation"))
    )
    seconds = time.perf_counter() - start
    trainer.records.results["feature_seconds"] = seconds
    trainer.add_training_seconds(seconds)
    trainer.check_images()  # an image folder whose files failed to decode, past the share kcnn skips
    # (the labels of the images the passes gave: an image folder's unreadable files left out)
    y_train, y_val = (
        kept_labels(parts.x_train, parts.y_train),
        kept_labels(parts.x_val, parts.y_val),
    )
    trainer.fit(
        net.head,
        trainer.training_batches(config.epochs, x=f_train, y=y_train),
        array_batches(f_val, y_val, config.batch_size),
        epochs=config.epochs,
    )


def _build_net(trainer: Trainer, backbone, prepared: Prepared, config, weights) -> TransferModel:
    built: list[TransferModel] = []
    trainer.build(
        lambda: (
            built.append(
                build(
                    backbone,
                    prepared.input_shape,
                    prepared.classes,
                    config.head,
                    config.dropout,
                    weights,
                )
            )
            or built[0].model
        )
    )
    return built[0]


def prepare(
    config: TransferConfig, quiet: bool = False
) -> tuple[Prepared, dict[str, WeightsSource]]:
    """The data, and every backbone's weights found and checked against the backbone (and
    --fine-tune against its layers), before the first run starts: no half-done comparison.
    `kcnn run --check` calls it too. (A download's progress bar goes to stderr for --json.)"""
    chosen = [backbones.get(b) for b in config.backbones]
    prepared = prepare_data(
        config, input_shape_for(config.image_size, max(b.min_size for b in chosen))
    )
    size = prepared.input_shape[0]
    with contextlib.redirect_stdout(sys.stderr) if quiet else contextlib.nullcontext():
        sources = {b.name: resolve_weights(b, config.weights, size) for b in chosen}
    for b in chosen:
        base = b.build(prepared.input_shape)
        load_weights(base, b, sources[b.name])
        layers = backbone_layer_count(base)
        if config.fine_tune > layers:
            raise KcnnError(
                f"--fine-tune {config.fine_tune} is more than the {layers} layers of {b.name}; "
                f"use at most {layers}"
            )
        del base
    return prepared, sources


def transfer(config: TransferConfig, quiet: bool = False) -> TransferResult:
    """Train a head on each named backbone; several backbones also get a comparison report."""
    config.validate()
    distribute.activate(config)  # before TensorFlow starts: devices, cluster, scratch out
    prepared, sources = prepare(config, quiet)
    record_stand_in(config, prepared)  # an offline stand-in's data set names the runs
    chosen = [backbones.get(b) for b in config.backbones]
    folder = folders.create(config.out, config.name) if len(chosen) > 1 else None
    if folder is not None:
        write_json(
            folder / folders.CONFIG,
            {"command": config.command, **config.settings_dict(), "versions": folders.versions()},
        )
    results = []
    for number, b in enumerate(chosen, 1):
        interrupts.check_stop(f"continue with: kcnn transfer --resume {folder}" if folder else "")
        _heading(number, chosen, config, prepared, quiet)
        results.append(train_one(config, b, sources[b.name], prepared, folder, quiet))
    return _finish(config, prepared, results, folder)


def _heading(number: int, chosen, config: TransferConfig, prepared: Prepared, quiet: bool) -> None:
    """Which backbone of several is training (one alone needs no heading)."""
    if len(chosen) > 1:
        b = chosen[number - 1]
        text = f"{b.name} + {config.head} head on {prepared.data.name}"
        heading(number, len(chosen), text, quiet)


def _finish(config: TransferConfig, prepared: Prepared, results, folder) -> TransferResult:
    """The result of a transfer command, with the comparison report when several backbones ran."""
    from kcnn.runs import report

    rows = [comparison_row(r) for r in results]
    if folder is not None:
        report.write_comparison(
            folder,
            f"Transfer learning on {prepared.data.name}: {' vs '.join(config.backbones)}",
            rows,
            {r.metrics["backbone"]: r.history for r in results},
            intro=(
                f"Frozen backbones with the `{config.head}` head, {config.epochs} epoch(s)"
                + (
                    f" + {config.fine_tune_epochs} fine-tuning the top {config.fine_tune} layers"
                    if config.fine_tune
                    else ""
                )
                + f", input {'×'.join(map(str, prepared.input_shape))}, weights: {config.weights}."
            ),
        )
    return TransferResult(results, rows, folder)


def resume(path: str | Path, quiet: bool = False) -> TransferResult:
    """Finish an interrupted `kcnn transfer` in its folder (one backbone's run folder, or the
    comparison folder of several): the feature pass is computed again, the head's and the
    fine-tune phase's epochs go on from the checkpoint, and the numbers are those of an
    uninterrupted run. Backbones that completed are kept as they are."""
    folder = Path(path).expanduser()
    config = settings_to_resume(folder, TransferConfig).validate()
    several = len(config.backbones) > 1
    if several and RunFolder(folder).has(folders.COMPARISON_MD):
        raise KcnnError(f"{folder} is a finished comparison; start a new one to train again")
    # what cannot be resumed is refused before any work
    found = members(folder, "backbone", "transfer") if several else None
    state = None if several else read_resume(folder, ("transfer",))[1]
    distribute.activate(config)
    prepared, sources = prepare(config, quiet)
    chosen = [backbones.get(b) for b in config.backbones]
    hint = f"kcnn transfer --resume {folder}"
    if not several:
        b = chosen[0]
        results = [train_one(config, b, sources[b.name], prepared, None, quiet, state, hint)]
        return _finish(config, prepared, results, None)
    results = []
    for number, b in enumerate(chosen, 1):
        interrupts.check_stop(f"continue with: {hint}")
        _heading(number, chosen, config, prepared, quiet)
        member = found.get(b.name)
        if member is not None and member.result is not None:
            results.append(member.result)
            continue
        state = member.state if member is not None else None
        results.append(train_one(config, b, sources[b.name], prepared, folder, quiet, state, hint))
    return _finish(config, prepared, results, folder)


def comparison_row(result: RunResult) -> dict[str, Any]:
    m = result.metrics
    return {
        "backbone": m["backbone"],
        "head": m["head"],
        "test_accuracy": m["test_accuracy"],
        "test_accuracy_95ci": interval_cell(result.run_dir),  # Wilson, from the test size
        "test_loss": m["test_loss"],
        "best_val_accuracy": m["best_val_accuracy"],
        "total_params": m["total_params"],
        "trainable_params": m["trainable_params"],
        "frozen_params": m["frozen_params"],
        "weights_source": m["weights_source"],
        "feature_cache": "on" if m["feature_cache"] else "off",
        "seconds_per_epoch": m["seconds_per_epoch"],
        "wall_seconds": m["wall_seconds"],
        "run_dir": Path(result.run_dir).name,
    }


class Transfer(Command):
    """`kcnn transfer`: a frozen backbone with a small head, one run folder per backbone (in a
    comparison folder when there are several)."""

    name = "transfer"
    config = TransferConfig
    finished_file = folders.COMPARISON_MD

    def title(self, config: TransferConfig) -> str:
        return f"{', '.join(config.backbones)} + {config.head} head"

    def several(self, config: TransferConfig) -> bool:
        return len(config.backbones) > 1

    def trainings(self, config: TransferConfig) -> int:
        return len(config.backbones)

    def epochs(self, config: TransferConfig) -> int:
        return config.epochs + (config.fine_tune_epochs if config.fine_tune else 0)

    def preflight(self, config: TransferConfig) -> None:
        folders.check_out(config.out)
        prepare(config, quiet=True)  # the data, and every backbone's weights

    def start(self, config: TransferConfig, quiet: bool = False) -> Outcome:
        return self._outcome(transfer(config, quiet=quiet))

    def resume(self, folder: Path, quiet: bool = False) -> Outcome:
        return self._outcome(resume(folder, quiet=quiet))

    def _outcome(self, result: TransferResult) -> Outcome:
        outcome = outcome_of(self.name, result.runs, result.folder)
        columns = ["backbone", "test_accuracy", "test_accuracy_95ci", "test_loss", "total_params",
                   "trainable_params", "seconds_per_epoch", "weights_source"]  # fmt: skip
        headers = ["backbone", "test acc", "95% CI", "test loss", "total params", "trainable"]
        headers.append("s/epoch")
        table = tables.as_text(result.rows, columns, [*headers, "weights"])
        where = (
            f"report: {result.folder / folders.COMPARISON_MD}"
            if result.folder is not None
            else f"run folder: {result.runs[0].run_dir}"
        )
        outcome.lines = ["", *table.splitlines(), where]
        return outcome


TRANSFER = Transfer()
