"""Experiment files: TOML that names one or more runs of kcnn's commands, for `kcnn run FILE`.

    description = "Seed 003: one CNN in three Keras APIs"

    [[run]]
    command = "compare-apis"
    arch = "simple-cnn"
    dataset = "cifar10"
    epochs = 20

Each `[[run]]` table takes `command` plus that command's settings: the same names as its
command-line options, with underscores (`batch_size`, `val_split`, ...), checked by the same schema
(`kcnn.engine.config`). A run's own config.json is an experiment of one run: `kcnn run
RUN_DIR/config.json` redoes it. A file that holds several runs also writes one comparison of them.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import stat
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kcnn import text
from kcnn.commands import registry, runner, steps
from kcnn.commands.command import Outcome
from kcnn.engine import interrupts
from kcnn.engine.config import RunConfig, safe_label
from kcnn.engine.interrupts import Interrupted
from kcnn.errors import KcnnError, did_you_mean
from kcnn.progress import heading, stream
from kcnn.runs import folders
from kcnn.runs.browse import RunInfo
from kcnn.runs.records import Damaged, read_text
from kcnn.runs.run import RUN_FACTS, RunFolder

FILE_KEYS = ("description", "run", "compare")
MAX_FILE_BYTES = 1024 * 1024  # an experiment file is a page of settings, not a data set
MAX_DEPTH = 8  # tables within tables: settings are flat, so anything deeper is a mistake
MAX_RUNS = 1000
CONFIG_JSON = "config.json"


@dataclass
class Experiment:
    path: Path
    description: str
    runs: list[RunConfig]  # validated configs, each knowing its command
    compare: bool = False  # several runs: also write one comparison of them
    set_args: list[str] = field(default_factory=list)  # the --set KEY=VALUE it was loaded with

    def command(self, *extra: str) -> str:
        """The `kcnn run` command line of this experiment (its --set overrides too), for a hint."""
        sets = [part for item in self.set_args for part in ("--set", item)]
        return shlex.join(["kcnn", "run", str(self.path), *sets, *extra])


def _parse_value(text: str) -> Any:
    """An override value as TOML reads it (numbers, booleans, lists), else as a plain string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except (tomllib.TOMLDecodeError, RecursionError):
        return text


def parse_overrides(items: list[str]) -> dict[str, Any]:
    overrides = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise KcnnError(f"--set takes KEY=VALUE (such as epochs=1), got {item!r}")
        overrides[key.strip().replace("-", "_")] = _parse_value(value.strip())
    return overrides


def _depth(value: Any, level: int = 0) -> int:
    if level > MAX_DEPTH:
        return level
    if isinstance(value, dict):
        return max([_depth(v, level + 1) for v in value.values()], default=level + 1)
    if isinstance(value, list):
        return max([_depth(v, level + 1) for v in value], default=level + 1)
    return level


def _read(path: Path) -> dict[str, Any]:
    """A TOML experiment file or a run's config.json, refused when absurdly large or nested."""
    from kcnn.runs import groups  # NumPy: not for `kcnn --help`

    if path.is_dir() and groups.is_group(path):  # a group of seed runs: finish its missing seeds
        return groups.as_experiment(path)
    if path.is_dir():
        if os.path.lexists(path / CONFIG_JSON):  # inside a run folder: read, never followed
            path = path / CONFIG_JSON
        else:
            raise KcnnError(
                f"{path} is a folder without {CONFIG_JSON}: pass an experiment file or a run folder"
            )
    elif path.is_symlink():  # a file the user named: a link they chose is followed
        path = path.resolve()
    if not os.path.lexists(path):
        raise KcnnError(f"no such experiment file: {path}; see the experiments/ folder")
    if not stat.S_ISREG(os.lstat(path).st_mode):
        raise KcnnError(
            f"{path} is not a regular file: pass an experiment file (TOML) or a run's {CONFIG_JSON}"
        )
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise KcnnError(
            f"{path} holds {size:,} bytes, over the {MAX_FILE_BYTES:,}-byte limit of an experiment file"
        )
    try:
        # a run's config.json may be anyone's: a regular file, never a link, read within the cap
        text = read_text(path.parent, path.name, MAX_FILE_BYTES)
        data = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except Damaged as e:
        raise KcnnError(f"cannot read {path}: {e.reason}") from None
    except OSError as e:
        raise KcnnError(f"cannot read {path}: {e.strerror or e}") from None
    except tomllib.TOMLDecodeError as e:
        raise KcnnError(f"{path} is not valid TOML: {e}") from None
    except json.JSONDecodeError as e:
        raise KcnnError(f"{path} is not valid JSON: {e}") from None
    except RecursionError:
        raise KcnnError(f"{path} nests tables or lists too deeply") from None
    if not isinstance(data, dict):
        raise KcnnError(f"{path} must hold a table of settings")
    if _depth(data) > MAX_DEPTH:
        raise KcnnError(f"{path} nests tables or lists more than {MAX_DEPTH} deep")
    if path.suffix == ".json":  # a run's config.json: one run, settings beside recorded facts
        command = data.get("command")
        if command not in registry.COMMANDS:
            raise KcnnError(f"{path} is not a kcnn run's {CONFIG_JSON} (it names no kcnn command)")
        own = registry.entry(command).config.settings()  # `arch`, `head`: settings and facts
        # Anything that is neither a fact nor versions is taken as a setting, so that an edited
        # or foreign key is refused by the schema like any unknown setting.
        settings = {
            k: v
            for k, v in data.items()
            if k not in ("command", "versions") and (k in own or k not in RUN_FACTS)
        }
        return {
            "description": f"redo of {path.parent.name}",
            "run": [{"command": command, **settings}],
        }
    return data


def settings_of(path: str | Path, command: str) -> dict[str, Any]:
    """The settings of the one run of `command` in an experiment file or config.json (for --config)."""
    path = Path(path).expanduser()
    data = _read(path)
    tables = [t for t in data.get("run") or [] if isinstance(t, dict)]
    if len(tables) != 1:
        raise KcnnError(f"--config {path} holds {len(tables)} runs; pass a file with exactly one")
    settings = dict(tables[0])
    found = settings.pop("command", None)
    if found != command:
        raise KcnnError(
            f"--config {path} is a `{found}` run; use `kcnn {found} --config` or `kcnn run`"
        )
    return settings


def load(path: str | Path, overrides: dict[str, Any] | None = None) -> Experiment:
    """Read and validate an experiment file (or a run's config.json); `overrides` replace
    settings in every run that has them. Every run is checked before any one starts."""
    path = Path(path).expanduser()
    data = _read(path)
    if "sweep" in data:
        raise KcnnError(f"{path} is a sweep file (it has a [sweep] table): use `kcnn sweep {path}`")
    check_top_keys(
        str(path),
        data,
        FILE_KEYS,
        "an experiment file holds `description`, `compare` and [[run]] tables",
    )
    tables = data.get("run")
    if not isinstance(tables, list) or not tables or not all(isinstance(t, dict) for t in tables):
        raise KcnnError(f"{path} names no runs: add at least one [[run]] table with a `command`")
    if len(tables) > MAX_RUNS:
        raise KcnnError(f"{path} names {len(tables):,} runs; at most {MAX_RUNS} are allowed")
    description = data.get("description", "")
    compare = data.get("compare", len(tables) > 1)
    if not isinstance(description, str) or not isinstance(compare, bool):
        raise KcnnError(f"{path}: `description` must be text and `compare` true or false")
    overrides = overrides or {}
    used: set[str] = set()
    runs = []
    for number, table in enumerate(tables, 1):
        where = f"{path} run {number}"
        settings = dict(table)
        command = settings.pop("command", None)
        if command is None:
            raise KcnnError(f"{where} has no `command` (one of: {', '.join(registry.COMMANDS)})")
        cls = registry.entry(str(command)).config
        fitting = {k: v for k, v in overrides.items() if k in cls.settings()}
        used.update(fitting)
        settings.update(fitting)
        runs.append(cls.from_settings(settings, source=where).validate())
    unused = sorted(set(overrides) - used)
    if unused:
        raise KcnnError(f"--set {unused[0]}: no run in {path} has a setting named '{unused[0]}'")
    return Experiment(path, description, runs, compare and len(runs) > 1)


def preflight(config: RunConfig) -> None:
    """Everything a run checks before it trains, done without training or making a folder (its
    command's `preflight`): `kcnn run --check` refuses what the run refuses."""
    registry.get(config.command).preflight(config)


def title(config: RunConfig) -> str:
    """What a run trains, in a few words: `train — lenet5 (sequential) on digits`."""
    what = registry.get(config.command).title(config)
    seeds = f", {len(config.seed_list())} seeds" if config.seeds is not None else ""
    seeds += f", {config.folds} folds" if config.fold_list() else ""
    named = f", named {config.name}" if config.name != config.default_name() else ""
    return f"{config.command} — {what} on {config.dataset}{seeds}{named}"


@dataclass
class Workload:
    """How much a file asks for: trainings (a run per seed, per form or backbone) and epochs."""

    trainings: int
    epochs: int

    def text(self) -> str:
        each = "training" if self.trainings == 1 else "trainings"
        return f"{self.trainings:,} {each}, {self.epochs:,} epochs in all"


def workload(config: RunConfig) -> Workload:
    """The trainings one run of a file stands for, and their epochs."""
    command = registry.get(config.command)
    runs = len(config.fold_list()) or len(config.seed_list())  # a run per seed, or per fold
    trainings = runs * command.trainings(config)
    return Workload(trainings, trainings * command.epochs(config))


def in_run(experiment: Experiment, number: int, error: KcnnError) -> KcnnError:
    """An error of one run of a file of several, saying which run it is (`run 2 of 3 (...)`)."""
    count = len(experiment.runs)
    if count < 2:
        return error
    named = KcnnError(f"run {number} of {count} ({title(experiment.runs[number - 1])}): {error}")
    named.exit_code = error.exit_code
    return named


def run(experiment: Experiment, quiet: bool = False, resume: bool = False) -> list[dict[str, Any]]:
    """Run every run of an experiment in order; returns one short summary per run, and for a file
    of several runs one more: the comparison of them all (`compare = false` in the file: none).
    With several runs, each is checked (`preflight`) before the first starts: no experiment fails
    half-way for input a check could have found. `resume`: finish an earlier, interrupted attempt
    at the same file (see `run_each`)."""
    if len(experiment.runs) > 1:
        for number, config in enumerate(experiment.runs, 1):
            try:
                preflight(config)
            except KcnnError as e:
                raise in_run(experiment, number, e) from None
    summaries = run_each(experiment, quiet, resume)
    if experiment.compare:
        interrupts.check_stop(_finish_text(experiment))
        from kcnn.runs.report import compare_runs  # matplotlib: only for the comparison

        run_dirs = [d for s in summaries for d in s["run_dirs"]]
        name = (
            f"compare-{experiment.path.stem}"
            if experiment.path.suffix == ".toml"
            else "compare-runs"
        )
        folder = compare_runs(
            [RunInfo.load(d) for d in run_dirs],
            experiment.runs[0].out,
            name=safe_label(name),
            title=f"experiment {experiment.path.name}",  # what was asked for, not its first model
            intro=_intro(experiment, len(run_dirs)),
        )
        summaries.append(Outcome("compare", [Path(d) for d in run_dirs], [], folder).summary())
    return summaries


def run_each(
    experiment: Experiment, quiet: bool = False, resume: bool = False
) -> list[dict[str, Any]]:
    """Each run in turn, under a heading that says which one trains; its summary
    (`Outcome.summary`). With `resume`, a run that an earlier attempt at the file left behind
    (the newest folder of its name in its `out` with its very settings) is kept when it
    completed and finished from its checkpoint when it was interrupted; the others train as new.
    No run begins after a stop request; an interruption says how to finish the whole file."""
    summaries = []
    count = len(experiment.runs)
    claimed: set[Path] = set()  # two identical runs in one file are two folders
    for number, config in enumerate(experiment.runs, 1):
        with _finish_hint(experiment, number):
            interrupts.check_stop()
            if count > 1:
                heading(number, count, title(config), quiet)
            if config.is_group():  # a group finds its own folder and runs what it misses
                summaries.append(runner.execute(config, quiet, resume=resume).summary())
                continue
            earlier = _earlier(config, claimed) if resume else None
            if earlier is not None:
                claimed.add(earlier[0])
            summaries.append(_run_one(config, quiet, earlier).summary())
    return summaries


def _finish_text(experiment: Experiment) -> str:
    rest = "the file and its comparison" if experiment.compare else "the file"
    return f"to finish {rest}: {experiment.command('--resume')}"


@contextlib.contextmanager
def _finish_hint(experiment: Experiment, number: int):
    """Ctrl-C in run 2 of 3: the run's own message (how to continue that run), and how to finish
    the file and its comparison: `kcnn run FILE --resume` keeps run 1 and continues run 2."""
    try:
        yield
    except Interrupted as e:
        count = len(experiment.runs)
        if count < 2:
            raise
        raise Interrupted(
            e.signum,
            f"{e} (run {number} of {count} in {experiment.path}); {_finish_text(experiment)}",
        ) from None


def _run_one(config: RunConfig, quiet: bool, earlier: tuple[Path, str] | None) -> Outcome:
    """One run of the file: new, kept as an earlier attempt completed it, or finished."""
    if earlier is None:
        return runner.execute(config, quiet)
    folder, state = earlier
    if state == "completed":
        print(f"kept: {text.terminal(folder)} (completed earlier)", file=stream(quiet), flush=True)
        return steps.keep_one(config, folder)
    return steps.resume_one(config.command, folder, quiet)


def _earlier(config: RunConfig, claimed: set[Path]) -> tuple[Path, str] | None:
    """The newest folder of an earlier attempt at `config` (its name, its settings) and whether
    it "completed" or is "unfinished"; None when there is none (or only a failed, diverged or
    damaged one: the run then trains as new)."""
    out = Path(config.out).expanduser()
    if not out.is_dir():
        return None
    command = registry.get(config.command)
    wanted = json.loads(json.dumps(config.settings_dict(), default=str))
    for folder in sorted(out.iterdir(), key=lambda p: p.name, reverse=True):
        if folder in claimed or not folders.made_for(folder.name, config.name):
            continue
        if folder.is_symlink():
            continue
        run = RunFolder(folder)
        try:
            record = run.config()
            if record.get("command") != config.command:
                continue
            if any(record.get(k) != v for k, v in wanted.items()):
                continue
            state = command.state_of(config, run)
        except (OSError, Damaged):
            continue
        if state is not None:
            return folder, state
    return None


def _intro(experiment: Experiment, runs: int) -> str:
    """The comparison's opening line: the file's own description (escaped: it is anyone's text)."""
    said = f"{text.markdown_cell(experiment.description)} " if experiment.description else ""
    return f"{said}{runs} runs of `{text.markdown_cell(experiment.path.name)}`, compared."


def check_top_keys(where: str, data: dict, allowed, holds: str) -> None:
    """Refuse a top-level key of a file that is not in `allowed`, with the closest one and what
    such a file holds (`holds`): experiment and sweep files alike."""
    for key in data:
        if key not in allowed:
            tip = did_you_mean(str(key), allowed)
            raise KcnnError(f"{where}: unknown top-level key '{key}': {tip}{holds}")
