"""Experiment files: TOML that names one or more runs of kcnn's commands, for `kcnn run FILE`.

    description = "Seed 003: one CNN in three Keras APIs"

    [[run]]
    command = "compare-apis"
    arch = "simple-cnn"
    dataset = "cifar10"
    epochs = 20

Each `[[run]]` table takes `command` plus the settings of that command's config (the same names
as the command-line options, with underscores: `batch_size`, `val_split`, ...). An unknown key is
an error that names the closest valid one, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
import importlib
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kcnn.errors import KcnnError, closest, unknown


@dataclass(frozen=True)
class Command:
    module: str  # kcnn.<module> holds the config class and the function that runs it
    config: str
    function: str


COMMANDS = {
    "train": Command("engine.training", "TrainConfig", "train"),
    "compare-apis": Command("commands.compare", "CompareConfig", "compare_apis"),
    "transfer": Command("commands.transfer", "TransferConfig", "transfer"),
}
FILE_KEYS = ("description", "run")


@dataclass
class Experiment:
    path: Path
    description: str
    runs: list[tuple[str, Any]]  # (command, validated config)


def _parse_value(text: str) -> Any:
    """An override value as TOML reads it (numbers, booleans, lists), else as a plain string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def parse_overrides(items: list[str]) -> dict[str, Any]:
    overrides = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise KcnnError(f"--set takes KEY=VALUE (such as epochs=1), got {item!r}")
        overrides[key.strip().replace("-", "_")] = _parse_value(value.strip())
    return overrides


def _config_class(command: str):
    spec = COMMANDS[command]
    return getattr(importlib.import_module(f"kcnn.{spec.module}"), spec.config)


def _fields(command: str) -> set[str]:
    return {f.name for f in dataclasses.fields(_config_class(command))}


def _config(command: str, settings: dict[str, Any], where: str):
    cls, fields = _config_class(command), _fields(command)
    for key in settings:
        if key not in fields:
            hint = closest(key, fields)
            tip = f"did you mean '{hint}'? " if hint else ""
            raise KcnnError(
                f"{where}: unknown key '{key}' for {command}: {tip}valid keys: {', '.join(sorted(fields))}"
            )
    required = [
        f.name
        for f in dataclasses.fields(cls)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    missing = [name for name in required if name not in settings]
    if missing:
        raise KcnnError(f"{where}: {command} needs the setting(s) {', '.join(missing)}")
    config = cls(**settings)
    return config.validate() if hasattr(config, "validate") else config


def load(path: str | Path, overrides: dict[str, Any] | None = None) -> Experiment:
    """Read and validate an experiment file; `overrides` replace settings in every run."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise KcnnError(f"no such experiment file: {path}; see the experiments/ folder") from None
    except (OSError, UnicodeDecodeError) as e:
        raise KcnnError(f"cannot read {path}: {e}") from None
    except tomllib.TOMLDecodeError as e:
        raise KcnnError(f"{path} is not valid TOML: {e}") from None
    for key in data:
        if key not in FILE_KEYS:
            raise KcnnError(
                f"{path}: unknown top-level key '{key}': an experiment file holds "
                "`description` and [[run]] tables"
            )
    tables = data.get("run")
    if not isinstance(tables, list) or not tables:
        raise KcnnError(f"{path} names no runs: add at least one [[run]] table with a `command`")
    overrides = overrides or {}
    used: set[str] = set()
    runs = []
    for number, table in enumerate(tables, 1):
        where = f"{path} run {number}"
        settings = dict(table)
        command = settings.pop("command", None)
        if command is None:
            raise KcnnError(f"{where} has no `command` (one of: {', '.join(COMMANDS)})")
        if command not in COMMANDS:
            raise unknown("command", str(command), COMMANDS)
        # an override applies to the runs whose command has that setting
        fitting = {k: v for k, v in overrides.items() if k in _fields(command)}
        used.update(fitting)
        settings.update(fitting)
        runs.append((command, _config(command, settings, where)))
    unused = sorted(set(overrides) - used)
    if unused:
        raise KcnnError(f"--set {unused[0]}: no run in {path} has a setting named '{unused[0]}'")
    return Experiment(path, str(data.get("description", "")), runs)


def run(experiment: Experiment, quiet: bool = False) -> list[dict[str, Any]]:
    """Run every run of an experiment in order; returns one short summary per run."""
    summaries = []
    for command, config in experiment.runs:
        spec = COMMANDS[command]
        function = getattr(importlib.import_module(f"kcnn.{spec.module}"), spec.function)
        summaries.append(summarize(command, function(config, quiet=quiet)))
    return summaries


def summarize(command: str, result: Any) -> dict[str, Any]:
    """Where a run's results are, and its headline numbers."""
    if command == "train":
        return {
            "command": command,
            "run_dir": str(result.run_dir),
            "test_accuracy": result.metrics["test_accuracy"],
        }
    folder = getattr(result, "folder", None)
    run_dirs = [str(r.run_dir) for r in getattr(result, "runs", [])]
    return {
        "command": command,
        "folder": str(folder) if folder else None,
        "run_dirs": run_dirs,
        "rows": getattr(result, "rows", []),
    }
