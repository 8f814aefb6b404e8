"""A run's own steps, the same on every path that trains: the command line, an experiment file,
a seed of a group (in this process, or in a child's `kcnn run`), a sweep's trial, `--resume`.

1. A stop request (a signal the command received) is checked before the run begins: no run
   begins after one (`kcnn.engine.interrupts`).
2. The command trains (`Command.start`), finishes an interrupted folder (`Command.resume`), or an
   earlier attempt's finished folder is kept (`Command.kept`).
3. After training, `calibrate` fits temperature scaling on each run's validation split (as
   `kcnn calibrate` does): calibration.json, temperature.json, the reliability diagram, and the
   report again. In a multi-worker run only the chief does it: the other workers' folders were
   scratch. A kept run that was calibrated before is not calibrated again.

Tracking (MLflow, TensorBoard) follows every run by itself: TensorBoard is a setting every run
carries, MLflow a watcher of every trainer (`kcnn.engine.hooks`) that a child process is told of
(`hooks.child_args`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kcnn.commands import registry
from kcnn.commands.command import Outcome
from kcnn.engine import distribute, interrupts
from kcnn.engine.config import RunConfig
from kcnn.runs import html, inspected
from kcnn.runs.records import Damaged
from kcnn.runs.run import RunFolder


def train_one(config: RunConfig, quiet: bool = False) -> Outcome:
    """One run of `config` (no seeds) and its steps."""
    interrupts.check_stop()
    outcome = registry.get(config.command).start(config, quiet=quiet)
    return after(config.calibrate, outcome)


def resume_one(command: str, folder: str | Path, quiet: bool = False, **options: Any) -> Outcome:
    """Finish the interrupted folder of `command` in place, and its steps (calibration when its
    own settings ask for it)."""
    interrupts.check_stop()
    outcome = registry.get(command).resume(Path(folder).expanduser(), quiet=quiet, **options)
    return after(_asks_calibration(outcome.run_dirs), outcome)


def keep_one(config: RunConfig, folder: Path) -> Outcome:
    """A run an earlier attempt completed, kept as it is; calibrated if it asks and was not."""
    return after(config.calibrate, registry.get(config.command).kept(config, folder), kept=True)


def after(wanted: bool, outcome: Outcome, kept: bool = False) -> Outcome:
    """The steps after training: calibration of every run, when `wanted` and by the chief."""
    dist = distribute.active()
    if not wanted or (dist is not None and not dist.chief):
        return outcome
    records = []
    for run_dir in outcome.run_dirs:
        before = inspected.read(run_dir, inspected.CALIBRATION_JSON) if kept else None
        if before is None or inspected.read(run_dir, inspected.TEMPERATURE_JSON) is None:
            interrupts.check_stop()  # a stop request: the run is kept, its calibration not begun
            before = calibrate(run_dir)
        records.append(before)
    outcome.calibration = records
    return outcome


def calibrate(run_dir: Path) -> dict[str, Any]:
    """Calibrate a finished run (its model loaded from its folder, as `kcnn calibrate` would);
    progress goes to stderr. Returns the calibration record."""
    from kcnn.use import calibration, predict  # TensorFlow: only once a model is loaded

    loaded = predict.load(run_dir)
    record = calibration.calibrate(loaded, fit=True)
    html.write_report_after(loaded.info.folder)  # the report now shows the calibration
    return record


def calibrations(run_dirs: list[Path]) -> list[dict[str, Any]]:
    """The calibration records a group's runs left (each in its own process, perhaps)."""
    return [inspected.read(d, inspected.CALIBRATION_JSON) or {} for d in run_dirs]


def _asks_calibration(run_dirs: list[Path]) -> bool:
    """Whether a resumed run's own settings ask for calibration."""
    try:
        return any(RunFolder(d).config().get("calibrate") is True for d in run_dirs)
    except (OSError, Damaged):
        return False
