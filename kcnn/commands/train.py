"""`kcnn train` as a library call: data → pipeline → model → fit → evaluate → run folder.

    from kcnn.commands.train import train
    from kcnn.engine.config import TrainConfig
    result = train(TrainConfig("lenet5", dataset="mnist-5k", epochs=10))
    result.metrics["test_accuracy"], result.run_dir

`resume(run_dir)` finishes an interrupted run in its own folder with the numbers an uninterrupted
run would have had. `TRAIN` is the command as the registry knows it (`kcnn.commands.command`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kcnn.commands import teacher
from kcnn.commands.command import (
    Command,
    Outcome,
    outcome_of,
    resumed_facts,
    settings_to_resume,
)
from kcnn.engine import checkpoints, distribute
from kcnn.engine.config import COMMAND_LINE, TrainConfig, check_value
from kcnn.engine.trainer import RunResult, Trainer, default_input_shape, seed_everything
from kcnn.errors import KcnnError
from kcnn.runs.browse import RunInfo
from kcnn.runs.recorder import RunRecords
from kcnn.runs.run import read_resume


def train(config: TrainConfig, quiet: bool = False) -> RunResult:
    """Train one architecture on one data set and leave a complete run folder.

    `quiet` sends Keras's progress to stderr, keeping stdout for a machine-readable answer.
    """
    config.validate()
    records = RunRecords(config.command, config.settings_dict(), identity(config))
    return _run(Trainer(config, records, quiet=quiet, resumable=True))


def identity(config: TrainConfig) -> dict[str, Any]:
    return {"arch": config.arch, "api": config.api}


def _run(trainer: Trainer, checkpoint: bool = False) -> RunResult:
    config = trainer.config
    with trainer.running():
        prepared = trainer.load_data(default_input_shape(config.arch, config.image_size))
        teacher.attach(trainer)  # --teacher's soft labels, before the loss is chosen
        if checkpoint:
            seed_everything(config.seed)
            with trainer.scope():  # under the run's strategy and precision, as it was built
                model = checkpoints.load_model(trainer.run)  # weights, optimizer, generators
            trainer.describe(model)
        else:
            from kcnn.models import forms  # Keras: only once a model is built

            model = trainer.build(
                lambda: forms.build(config.arch, config.api, prepared.input_shape, prepared.classes)
            )
            trainer.compile(model)
        trainer.fit(
            model,
            trainer.training_batches(config.epochs),
            trainer.batches("val"),
            epochs=config.epochs,
        )
        return trainer.finish(model, title=f"{config.arch} ({config.api}) on {prepared.data.name}")


def resume(
    run_dir: str | Path,
    epochs: int | None = None,
    quiet: bool = False,
    time_limit: float | str | None = None,
) -> RunResult:
    """Finish an interrupted (or killed) `kcnn train` run in its folder; `epochs` may raise the
    total, `time_limit` give this session a budget of its own. Its settings are checked by the
    same schema as a new run's."""
    record, state = read_resume(run_dir, ("train",))
    config = settings_to_resume(run_dir, TrainConfig)
    for key, value in (("epochs", epochs), ("time_limit", time_limit)):
        if value is not None:  # checked on its own: an error in it is not the file's
            spec = TrainConfig.settings()[key]
            setattr(config, key, check_value(key, spec, value, COMMAND_LINE))
    config.validate()
    if config.epochs < state.epoch:
        raise KcnnError(
            f"{state.run_dir} has already trained {state.epoch} epochs; pass --epochs {state.epoch} "
            "or more"
        )
    facts = resumed_facts(record, state, identity(config))
    records = RunRecords(
        config.command, config.settings_dict(), identity(config), facts, folder=state.run_dir
    )
    trainer = Trainer(config, records, quiet=quiet, resume=state, resumable=True)
    return _run(trainer, checkpoint=state.epoch > 0)


class Train(Command):
    """`kcnn train`: one architecture in one API form, one run folder."""

    name = "train"
    config = TrainConfig

    def start(self, config: TrainConfig, quiet: bool = False) -> Outcome:
        return self._outcome(train(config, quiet=quiet))

    def resume(
        self,
        folder: Path,
        quiet: bool = False,
        epochs: int | None = None,
        time_limit: float | str | None = None,
    ) -> Outcome:
        return self._outcome(resume(folder, epochs, quiet=quiet, time_limit=time_limit))

    def kept(self, config: TrainConfig, folder: Path) -> Outcome:
        outcome = super().kept(config, folder)
        return _said(outcome, outcome.metrics[0])

    def _outcome(self, result: RunResult) -> Outcome:
        return _said(outcome_of(self.name, [result]), result.metrics)


def _said(outcome: Outcome, m: dict[str, Any]) -> Outcome:
    """One run's headline: its test accuracy, and what a person reads of it."""
    outcome.test_accuracy = m.get("test_accuracy")
    dataset = m.get("dataset")
    if m.get("dataset_fallback"):  # `mnist-5k (asked: mnist, offline fallback)`
        dataset = RunInfo.load(outcome.run_dirs[0]).dataset_text or dataset
    interval = RunInfo.load(outcome.run_dirs[0]).accuracy_interval  # Wilson, from the test size
    accuracy = interval.text() if interval else f"{m['test_accuracy']:.4f}"
    result = f"test accuracy {accuracy}  test loss {m['test_loss']:.4f}  on {dataset}"
    dist = distribute.active()
    if dist is not None and not dist.chief:  # its folder was scratch, deleted at exit
        outcome.lines = [result, "run folder: written by the chief worker"]
    else:
        outcome.lines = [result, f"run folder: {outcome.run_dirs[0]}"]
    return outcome


TRAIN = Train()
