"""A training command as an object: one protocol for `train`, `compare-apis` and `transfer`.

Every path that trains — the command line, an experiment file (`kcnn run`), a seed of a group (in
this process or in a child's `kcnn run`), a sweep's trial, `--resume` — takes the command from the
registry (`kcnn.commands.registry`) and goes through `kcnn.commands.runner`, which applies the
run's own steps the same way on each path (a stop request checked before it starts, calibration
after it, by the chief only). A command says:

- what it trains (`title`) and how much (`trainings`, `epochs`), for headings and `--check`;
- what it refuses before training (`preflight`);
- how it trains (`start`) and finishes an interrupted folder (`resume`);
- which state an earlier attempt's folder is in (`state_of`) and what a finished one holds (`kept`),
  for `kcnn run FILE --resume`;
- what its result says to a person (`Outcome.lines`, made with the outcome).

What every command shares to resume — its folder's settings checked as a new run's, the record of
every resume, the members of an interrupted comparison — is written once, here. Adding a
training command is one module with one `Command`, and its entry in the registry.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from kcnn.data.prepared import prepare_data
from kcnn.engine.config import RunConfig
from kcnn.engine.trainer import RunResult, default_input_shape
from kcnn.errors import KcnnError
from kcnn.runs import folders, tables
from kcnn.runs.browse import RunInfo, interval_cell
from kcnn.runs.records import Damaged
from kcnn.runs.run import RESUMABLE, RUN_FACTS, Resume, RunFolder, read_record, read_resume


@dataclass
class Outcome:
    """What one run of a training command left: its run folders (and the metrics.json of each),
    the comparison folder of several forms or backbones, a seed group's folder, the command's own
    answer beside its runs (compare-apis' proof, a group's statistics), and what its run steps
    added (the calibration of each run)."""

    command: str
    run_dirs: list[Path]
    metrics: list[dict[str, Any]]
    comparison: Path | None = None
    group: Path | None = None
    details: dict[str, Any] = field(default_factory=dict)
    lines: list[str] = field(default_factory=list)  # what the result says, for a person
    calibration: list[dict[str, Any]] | None = None
    test_accuracy: float | None = None  # one run's headline (train)

    def answer(self) -> dict[str, Any]:
        """The one JSON shape of a training command's answer (`--json`)."""
        return {
            "command": self.command,
            "runs": self.metrics,
            "comparison": str(self.comparison) if self.comparison else None,
            **({"group": str(self.group)} if self.group else {}),
            **self.details,
            **({"calibration": self.calibration} if self.calibration is not None else {}),
        }

    def summary(self) -> dict[str, Any]:
        """One run of an experiment file, as `kcnn run --json` lists it."""
        found: dict[str, Any] = {
            "command": self.command,
            "run_dirs": [str(d) for d in self.run_dirs],
            "comparison": str(self.comparison) if self.comparison else None,
        }
        if self.group:
            found["group"] = str(self.group)
        if self.test_accuracy is not None:
            found["test_accuracy"] = self.test_accuracy
        if self.calibration is not None:
            found["calibration"] = self.calibration
        return found


class Command:
    """One training command (see the module docstring); subclasses fill in what differs."""

    name: ClassVar[str]
    config: ClassVar[type[RunConfig]]
    # the file that says a comparison of several runs is finished (None: one run folder)
    finished_file: ClassVar[str | None] = None

    def title(self, config: RunConfig) -> str:
        """What one run trains, in a few words (`lenet5 (sequential)`)."""
        return f"{config.arch} ({config.api})"

    def several(self, config: RunConfig) -> bool:
        """Whether a run makes a comparison folder with one run folder per member."""
        return False

    def trainings(self, config: RunConfig) -> int:
        """The trainings one run of `config` is (one per form or backbone)."""
        return 1

    def epochs(self, config: RunConfig) -> int:
        """The epochs of each training."""
        return config.epochs

    def preflight(self, config: RunConfig) -> None:
        """Everything a run checks before it trains, done without training or making a folder:
        the output folder, the data (loaded, validated, split) and the model input it would be
        fed at. `kcnn run --check` refuses what the run refuses."""
        folders.check_out(config.out)
        prepare_data(config, default_input_shape(config.arch, config.image_size))

    def start(self, config: RunConfig, quiet: bool = False) -> Outcome:
        raise NotImplementedError

    def resume(self, folder: Path, quiet: bool = False, **options: Any) -> Outcome:
        raise NotImplementedError

    def state_of(self, config: RunConfig, run: RunFolder) -> str | None:
        """`completed` or `unfinished` for a folder an earlier attempt left; None when it cannot
        be continued (failed beyond resuming, diverged): the run then trains as new."""
        if self.several(config):
            return "completed" if run.has(self.finished_file) else "unfinished"
        status = run.metrics().get("status")
        if status == "completed":
            return "completed"
        return "unfinished" if status in RESUMABLE else None

    def kept(self, config: RunConfig, folder: Path) -> Outcome:
        """The outcome of a run an earlier attempt completed, read from its folder."""
        run = RunFolder(folder)
        if self.several(config):
            members = run.subfolders()
            metrics = [RunFolder(d).metrics() for d in members]
            return Outcome(self.name, members, metrics, comparison=folder)
        return Outcome(self.name, [folder], [run.metrics()])


def outcome_of(command: str, results: list[RunResult], comparison: Path | None = None) -> Outcome:
    """The outcome of runs trained in this process (their metrics as they were recorded)."""
    return Outcome(command, [r.run_dir for r in results], [r.metrics for r in results], comparison)


# --- resuming: written once for every command ----------------------------------------------


def settings_to_resume(folder: str | Path, cls: type[RunConfig], what: str = "run") -> RunConfig:
    """The settings of an interrupted folder of `cls.command` (a run's, or a comparison's),
    checked by the same schema as a new run's: a key that is neither a setting nor a fact kcnn
    records is refused as `kcnn run config.json` would refuse it (an edit, not a kcnn record)."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise KcnnError(
            f"no {what} folder {folder}; pass the folder of an interrupted `kcnn {cls.command}`"
        )
    run = RunFolder(folder)
    record = read_record(run, run.config, "run configuration")
    found = record.get("command")
    if found != cls.command:
        raise KcnnError(f"{folder} is a `kcnn {found}` {what}; use `kcnn {found} --resume` for it")
    settings = {k: v for k, v in record.items() if k in cls.settings()}
    strange = sorted(set(record) - set(settings) - RUN_FACTS - {"command", "versions"})
    if strange:
        settings[strange[0]] = record[strange[0]]
    return cls.from_settings(settings, source=str(folder / folders.CONFIG))


def resumed_facts(record: dict[str, Any], state: Resume, identity: dict[str, Any]) -> dict:
    """The facts a resumed run keeps from its config.json (neither settings nor what the model
    is), with this resume added to the list of every resume (`resumed`)."""
    facts = {k: v for k, v in record.items() if k in RUN_FACTS and k not in identity}
    facts["resumed"] = [
        *(facts.get("resumed") or []),
        {"from_epoch": state.epoch, "at": time.strftime("%Y-%m-%d %H:%M:%S")},
    ]
    return facts


@dataclass
class Member:
    """One run folder inside an interrupted comparison: completed (its result kept as it is) or
    to be finished from where it stopped (`state`)."""

    folder: Path
    result: RunResult | None = None
    state: Resume | None = None
    record: dict[str, Any] = field(default_factory=dict)


def members(folder: Path, key: str, command: str) -> dict[Any, Member]:
    """The run folders inside an interrupted comparison, by what each trained (`key` of its
    config.json: the API form, the backbone). A damaged one is refused before any work."""
    found: dict[Any, Member] = {}
    for sub in RunFolder(folder).subfolders():
        info = RunInfo.load(sub, member=True)
        if info.damage is not None:
            raise KcnnError(f"{sub} cannot be resumed: {info.damage}")
        run = RunFolder(sub)
        try:
            record, metrics = run.config(), run.metrics()
        except (FileNotFoundError, Damaged):  # made, then killed before its first record
            continue
        if metrics.get("status") == "completed":
            result = RunResult(sub, metrics, info.history())
            found[record.get(key)] = Member(sub, result=result, record=record)
            continue
        record, state = read_resume(sub, (command,))
        found[record.get(key)] = Member(sub, state=state, record=record)
    return found


def runs_table(run_dirs: list[Path]) -> str:
    """The table that ends multi-run work: each run's test accuracy and loss, its epochs and its
    training time, so no run's result is left scrolled away above another's epochs."""
    rows = []
    for d in run_dirs:
        try:
            m = RunFolder(d).metrics()
        except (OSError, Damaged):
            m = {}
        rows.append({**m, "test_accuracy_95ci": interval_cell(d), "run": Path(d).name})
    columns = ["test_accuracy", "test_accuracy_95ci", "test_loss", "epochs_completed"]
    headers = ["test acc", "95% CI", "test loss", "epochs", "train s", "run"]
    return tables.as_text(rows, [*columns, "train_seconds", "run"], headers)
