"""Run a training command's config, whatever asks: the command line, an experiment file, a
sweep's trial. One run, or one per seed as a group (`seeds`); each run with its own steps
(`kcnn.commands.steps`). `--resume` goes through `steps.resume_one`.

    from kcnn.commands import runner
    from kcnn.engine.config import TrainConfig
    outcome = runner.execute(TrainConfig("lenet5", dataset="digits", seeds=3, calibrate=True))
    outcome.group, outcome.run_dirs, outcome.answer()
"""

from __future__ import annotations

from pathlib import Path

from kcnn.commands import autobatch, seeds, steps, teacher
from kcnn.commands.command import Outcome
from kcnn.engine.config import RunConfig


def execute(
    config: RunConfig, quiet: bool = False, resume: bool = False, group: Path | None = None
) -> Outcome:
    """Train `config` — once, or once per seed (or fold) when it names seeds (or folds) — and
    its runs' steps.
    `quiet` sends progress to stderr, keeping stdout for a machine-readable answer; `resume`
    (a group) finishes the newest group of these settings, completed or not (`group`: that
    group folder)."""
    config.validate()
    autobatch.resolve(config)  # --batch-size auto: found once, for every seed of a group
    teacher.locate(config)  # --teacher named in --out: its folder, for every seed of a group
    if not config.is_group():
        return steps.train_one(config, quiet)
    found = seeds.run_group(config, quiet=quiet, resume=resume, folder=group)
    return seeds.outcome(found, config)
