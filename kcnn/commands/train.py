"""`kcnn train` as a library call: data → pipeline → model → fit → evaluate → run folder.

    from kcnn.commands.train import train
    from kcnn.engine.config import TrainConfig, check_value
    result = train(TrainConfig("lenet5", dataset="mnist-5k", epochs=10))
    result.metrics["test_accuracy"], result.run_dir

`resume(run_dir)` finishes an interrupted run in its own folder with the numbers an uninterrupted
run would have had.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from kcnn.engine import checkpoints
from kcnn.engine.config import COMMAND_LINE, TrainConfig, check_value
from kcnn.engine.trainer import RunResult, Trainer, default_input_shape
from kcnn.errors import KcnnError
from kcnn.runs.recorder import RunRecords
from kcnn.runs.run import RUN_FACTS, read_resume


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
        if checkpoint:
            from kcnn.engine.trainer import seed_everything

            seed_everything(config.seed)
            with trainer.scope():  # under the run's strategy and precision, as it was built
                model = checkpoints.load_model(trainer.run)  # weights, optimizer, generators
            trainer.describe(model)
        else:
            from kcnn.models import forms

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


def resume(run_dir: str | Path, epochs: int | None = None, quiet: bool = False) -> RunResult:
    """Finish an interrupted (or killed) `kcnn train` run in its own folder; `epochs` may raise
    the total. Its settings are checked by the same schema as a new run's."""
    record, state = read_resume(run_dir, ("train",))
    settings = {k: v for k, v in record.items() if k in TrainConfig.settings()}
    strange = sorted(set(record) - set(settings) - RUN_FACTS - {"command", "versions"})
    if strange:  # as `kcnn run config.json` would refuse it: an edit, not a kcnn record
        settings[strange[0]] = record[strange[0]]
    config = TrainConfig.from_settings(settings, source=str(Path(run_dir) / "config.json"))
    if epochs is not None:  # checked on its own: an error in it is not the file's
        config.epochs = check_value(
            "epochs", TrainConfig.settings()["epochs"], epochs, COMMAND_LINE
        )
    config.validate()
    if config.epochs < state.epoch:
        raise KcnnError(
            f"{state.run_dir} has already trained {state.epoch} epochs; pass --epochs {state.epoch} "
            "or more"
        )
    facts = {
        k: v for k, v in record.items() if k not in settings and k not in ("command", "versions")
    }
    for key in ("arch", "api"):
        facts.pop(key, None)
    facts["resumed"] = [
        *(facts.get("resumed") or []),
        {"from_epoch": state.epoch, "at": time.strftime("%Y-%m-%d %H:%M:%S")},
    ]
    records = RunRecords(
        config.command, config.settings_dict(), identity(config), facts, folder=state.run_dir
    )
    trainer = Trainer(config, records, quiet=quiet, resume=state, resumable=True)
    return _run(trainer, checkpoint=state.epoch > 0)
