"""The training commands by name: the one place every path that trains looks a command up
(the command line, experiment files, seed groups, sweeps, `--resume`).

A command's settings are declared with its config class (`kcnn.engine.config.COMMANDS`, which the
run folders below the commands read too); here each name maps to the `Command` that trains it.
Importing this module loads no TensorFlow, Keras or matplotlib: `kcnn --help` builds its
commands from it.
"""

from __future__ import annotations

from kcnn.commands.command import Command
from kcnn.commands.compare import COMPARE_APIS
from kcnn.commands.train import TRAIN
from kcnn.commands.transfer import TRANSFER
from kcnn.engine import config
from kcnn.errors import unknown

# in the order `kcnn --help` lists them
COMMANDS: dict[str, Command] = {c.name: c for c in (TRAIN, TRANSFER, COMPARE_APIS)}
assert set(COMMANDS) == set(config.COMMANDS), "a command without its config class, or one more"
assert all(c.config is config.COMMANDS[name] for name, c in COMMANDS.items())


def get(name: str) -> Command:
    """The command called `name`; an unknown name is refused with the closest one."""
    if name not in COMMANDS:
        raise unknown("command", str(name), COMMANDS)
    return COMMANDS[name]
