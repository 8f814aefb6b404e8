"""A sweep file once checked: its base run, its space and its study's settings (`Sweep`). Its own
module so that the parts of `kcnn sweep` (kcnn.commands.sweep, sweep_study, sweep_confirm) all
name it without importing each other."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kcnn.commands.sweep_space import Choice, Range
from kcnn.engine.config import COMMANDS, RunConfig


@dataclass
class Sweep:
    """A checked sweep file: the base run's settings, the space and the study's settings."""

    path: Path
    description: str
    command: str
    base: dict[str, Any]  # the [[run]] table's settings, as written (validated via `config`)
    space: dict[str, Choice | Range]
    metric: str
    direction: str
    trials: int
    sampler: str
    pruner: str
    prune_after: int
    seed: int
    name: str
    out: Path
    table: dict[str, Any] = field(default_factory=dict)  # the [sweep] table as written

    @property
    def folder(self) -> Path:
        return self.out / self.name

    def config(self, params: dict[str, Any], name: str, source: str) -> RunConfig:
        """The validated settings of one trial: the base run with `params` put in."""
        settings = {**self.base, **params, "out": str(self.folder), "name": name}
        return COMMANDS[self.command].from_settings(settings, source=source).validate()

    def identity(self) -> dict[str, Any]:
        """What must stay the same for a folder's study to be continued by this file."""
        space = {k: repr(v) for k, v in self.space.items()}
        return {"command": self.command, "base": self.base, "space": space, "metric": self.metric}
