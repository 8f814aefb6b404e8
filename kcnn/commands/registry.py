"""The training commands by name: the one place every path that trains looks a command up
(the command line, experiment files, seed groups, sweeps, `--resume`).

Each entry says what the command line needs before anything trains — its config class (the
settings, `kcnn.engine.config`), its help, what it says when nothing names a model, the settings
`--resume` takes — and where the `Command` that trains it lives (`get` loads it). `kcnn --help`
builds every training command from these entries alone: the trainer, the run folders and the
comparisons are loaded only when a command runs (`kcnn --help` answers within its start-up
target). Adding a training command is one module with one `Command`, and one entry here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from kcnn.engine import config
from kcnn.engine.config import CompareConfig, RunConfig, TrainConfig, TransferConfig
from kcnn.errors import unknown

if TYPE_CHECKING:
    from kcnn.commands.command import Command


def _train() -> Command:
    from kcnn.commands.train import TRAIN

    return TRAIN


def _transfer() -> Command:
    from kcnn.commands.transfer import TRANSFER

    return TRANSFER


def _compare_apis() -> Command:
    from kcnn.commands.compare import COMPARE_APIS

    return COMPARE_APIS


@dataclass(frozen=True)
class Entry:
    """One training command as the command line knows it, and where its `Command` lives."""

    name: str
    config: type[RunConfig]
    help: str  # what `kcnn COMMAND --help` says it does
    needs: str  # the error when nothing names the model to train
    load: Callable[[], Command]
    resume_options: tuple[str, ...] = ()  # settings `--resume` takes besides --json


# in the order `kcnn --help` lists them
COMMANDS: dict[str, Entry] = {
    e.name: e
    for e in (
        Entry(
            "train",
            TrainConfig,
            "Train one architecture, evaluate it on the test set, and save a run folder.",
            "name an architecture to train (see `kcnn list models`), or pass --resume RUN_DIR",
            _train,
            resume_options=("epochs", "time_limit"),
        ),
        Entry(
            "transfer",
            TransferConfig,
            "A frozen ImageNet backbone with a small head (seed 003's transfer experiment, "
            "done right).",
            "name a backbone: vgg16, mobilenetv2, resnet50v2 or all (see `kcnn list backbones`)",
            _transfer,
        ),
        Entry(
            "compare-apis",
            CompareConfig,
            "The same CNN as Sequential, Functional and subclassed models: proven identical, "
            "then trained side by side.",
            "name an architecture to compare (see `kcnn list models`), or pass --resume FOLDER",
            _compare_apis,
        ),
    )
}
assert set(COMMANDS) == set(config.COMMANDS), "a command without its config class, or one more"
assert all(e.config is config.COMMANDS[name] for name, e in COMMANDS.items())


def entry(name: str) -> Entry:
    """The entry of the command called `name`; an unknown name is refused with the closest one."""
    if name not in COMMANDS:
        raise unknown("command", str(name), COMMANDS)
    return COMMANDS[name]


def get(name: str) -> Command:
    """The `Command` that trains `name` (loaded on first use)."""
    return entry(name).load()
