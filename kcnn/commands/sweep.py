"""`kcnn sweep FILE`: a hyperparameter search on Optuna, every trial a normal run folder.

A sweep file is an experiment file with one `[[run]]` table (the settings every trial shares,
checked by the same schema as `kcnn run`) and a `[sweep]` table:

    [sweep]
    metric = "val_accuracy"        # or val_loss; the last epoch's value is the trial's score
    trials = 20
    sampler = "tpe"                # tpe (default), random, grid
    pruner = "median"              # median (default), halving, none
    [sweep.space]
    lr = { low = 1e-4, high = 1e-2, log = true }     # a float range (log scale)
    batch_size = [32, 64, 128]                        # a choice
    warmup = { low = 0, high = 3 }                    # an integer range (step 1)

    [[run]]
    command = "train"
    arch = "lenet5"
    dataset = "mnist-5k"
    epochs = 30

The study lives in an SQLite database in the sweep folder (`<out>/sweep-<file>/study.db`), so
the same command after a Ctrl-C or a crash finishes the trials still to do and repeats none: a
trial stopped by a signal is marked failed and queued again with the same settings; one whose
process died is found by its stale heartbeat and queued again the same way. `--jobs N` runs N
worker processes on that study; `--storage URL` puts the study in any database Optuna takes, so
workers on several machines share it. Pruning: each epoch's validation metric is reported to
Optuna; a trial the pruner stops ends its run cleanly after that epoch (a complete run folder,
`pruned_at_epoch` in its metrics.json) and is recorded as pruned.
"""

from __future__ import annotations

import math
import shutil
import signal
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kcnn.commands import experiments
from kcnn.engine import hooks, interrupts
from kcnn.engine.config import (
    COMMAND_LINE,
    COMMANDS,
    RunConfig,
    Setting,
    check_value,
    safe_label,
)
from kcnn.errors import KcnnError, closest

SWEEP_KEYS = (
    "space",
    "metric",
    "direction",
    "trials",
    "sampler",
    "pruner",
    "prune_after",
    "seed",
    "name",
)
FILE_KEYS = ("description", "sweep", "run")
METRICS = {"val_accuracy": "maximize", "val_loss": "minimize"}
SAMPLERS = ("tpe", "random", "grid")
PRUNERS = ("median", "halving", "none")
RANGE_KEYS = ("low", "high", "log", "step")
PLACED = ("out", "name")  # a sweep names and places its trials itself
MAX_TRIALS = 10_000
STUDY_DB = "study.db"
SWEEP_JSON = "sweep.json"
INSTALL = "pip install 'kcnn[sweep]'"
HEARTBEAT_SECONDS = 10  # a worker's trial is alive while its heartbeat is this recent ...
GRACE_SECONDS = 30  # ... and is failed, then queued again, once it is this old


def import_optuna():
    """Optuna, the optional extra `sweep`, imported only when a sweep is asked for."""
    try:
        import optuna
    except ImportError:
        raise KcnnError(f"kcnn sweep needs Optuna, an optional extra: {INSTALL}") from None
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # kcnn says what each trial did
    # heartbeats and stale-trial retries are marked experimental; kcnn relies on them knowingly
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    return optuna


# --- the search space ------------------------------------------------------------------------


@dataclass(frozen=True)
class Choice:
    """One of a list of values (Optuna's categorical distribution)."""

    values: tuple[Any, ...]

    def suggest(self, trial, key: str) -> Any:
        return trial.suggest_categorical(key, list(self.values))

    def grid(self) -> list[Any]:
        return list(self.values)

    def extremes(self) -> list[Any]:
        return list(self.values)

    def describe(self) -> str:
        return "one of " + ", ".join(map(str, self.values))


@dataclass(frozen=True)
class Range:
    """A whole-number or real range, optionally on a log scale or in steps."""

    low: float
    high: float
    integer: bool
    log: bool = False
    step: float | None = None

    def suggest(self, trial, key: str) -> Any:
        if self.integer:
            return trial.suggest_int(
                key, int(self.low), int(self.high), step=int(self.step or 1), log=self.log
            )
        return trial.suggest_float(key, self.low, self.high, step=self.step, log=self.log)

    def grid(self) -> list[Any]:
        step = self.step or 1
        count = int(math.floor((self.high - self.low) / step + 1e-9)) + 1
        values = [self.low + i * step for i in range(count)]
        return [int(v) for v in values] if self.integer else [round(v, 12) for v in values]

    def extremes(self) -> list[Any]:
        return [self.low, self.high]

    def describe(self) -> str:
        kind = "whole numbers" if self.integer else "numbers"
        scale = ", log scale" if self.log else (f", step {self.step:g}" if self.step else "")
        return f"{kind} {self.low:g} … {self.high:g}{scale}"


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def parse_dimension(key: str, value: Any, spec: Setting, where: str) -> Choice | Range:
    """One entry of [sweep.space], checked against the setting it varies."""
    at = f"{where}: [sweep.space] {key}"
    if isinstance(value, list):
        if not value:
            raise KcnnError(f"{at} is an empty choice: list at least one value")
        if len(value) > 1000:
            raise KcnnError(f"{at} lists {len(value):,} values; at most 1,000 are allowed")
        checked = []
        for item in value:
            if isinstance(item, dict | list):
                raise KcnnError(f"{at}: a choice holds plain values, got {item!r}")
            checked.append(_checked(key, spec, item, at))
        if len({repr(v) for v in checked}) < len(checked):
            raise KcnnError(f"{at} lists a value twice")
        return Choice(tuple(checked))
    if not isinstance(value, dict):
        raise KcnnError(
            f"{at} must be a list of choices or a range {{ low = ..., high = ... }}, got {value!r}"
        )
    for name in value:
        if name not in RANGE_KEYS:
            hint = closest(str(name), RANGE_KEYS)
            tip = f"did you mean '{hint}'? " if hint else ""
            raise KcnnError(
                f"{at}: unknown range key '{name}': {tip}a range takes low, high, log, step"
            )
    if spec.kind not in (int, float):
        raise KcnnError(f"{at}: {key} is not a number setting; give a list of choices instead")
    if "low" not in value or "high" not in value:
        raise KcnnError(f"{at}: a range needs both low and high")
    low, high, log, step = value["low"], value["high"], value.get("log", False), value.get("step")
    if not _number(low) or not _number(high) or not all(map(math.isfinite, (low, high))):
        raise KcnnError(f"{at}: low and high must be numbers, got {low!r} and {high!r}")
    if not isinstance(log, bool):
        raise KcnnError(f"{at}: log must be true or false, got {log!r}")
    integer = spec.kind is int
    if integer and not (float(low).is_integer() and float(high).is_integer()):
        raise KcnnError(f"{at}: {key} is a whole number; low and high must be too")
    if low > high:
        raise KcnnError(f"{at}: low ({low:g}) is above high ({high:g})")
    if log and low <= 0:
        raise KcnnError(f"{at}: a log range must lie above zero, got low = {low:g}")
    if step is not None:
        if log:
            raise KcnnError(f"{at}: a log range takes no step")
        if not _number(step) or not step > 0 or (integer and not float(step).is_integer()):
            kind = "a whole number" if integer else "a number"
            raise KcnnError(f"{at}: step must be {kind} above zero, got {step!r}")
    for bound in (low, high):
        _checked(key, spec, int(bound) if integer else float(bound), at)
    return Range(float(low), float(high), integer, log, float(step) if step else None)


def _checked(key: str, spec: Setting, value: Any, at: str) -> Any:
    try:
        return check_value(key, spec, value, at)
    except KcnnError as e:
        raise KcnnError(f"{at}: {e}") from None


# --- the sweep file ----------------------------------------------------------------------------


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


def _sweep_value(table: dict, key: str, kind: type, default: Any, where: str) -> Any:
    value = table.get(key, default)
    if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise KcnnError(f"{where}: [sweep] {key} must be a whole number, got {value!r}")
    if kind is str and not isinstance(value, str):
        raise KcnnError(f"{where}: [sweep] {key} must be text, got {value!r}")
    return value


def _one_of(value: str, allowed: tuple[str, ...], key: str, where: str) -> str:
    if value not in allowed:
        hint = closest(value, allowed)
        tip = f"did you mean '{hint}'? " if hint else ""
        raise KcnnError(
            f"{where}: [sweep] {key} '{value}': {tip}choose one of: {', '.join(allowed)}"
        )
    return value


def load(path: str | Path, out: str | Path | None = None) -> Sweep:
    """Read and check a sweep file: the base run by the settings schema, every dimension of the
    space against its setting, the study's settings; and every value a dimension can take put in
    the base run and validated, so no trial fails for a value the space allows. Nothing runs."""
    path = Path(path).expanduser()
    data = experiments._read(path)
    where = str(path)
    experiments.check_top_keys(
        where,
        data,
        FILE_KEYS,
        "a sweep file holds `description`, a [sweep] table and one [[run]] table",
    )
    table = data.get("sweep")
    if not isinstance(table, dict):
        raise KcnnError(
            f"{where} has no [sweep] table: add one naming the space (see `kcnn sweep --help`)"
        )
    runs = data.get("run")
    if not isinstance(runs, list) or len(runs) != 1 or not isinstance(runs[0], dict):
        found = len(runs) if isinstance(runs, list) else 0
        raise KcnnError(f"{where} holds {found} [[run]] tables; a sweep file holds exactly one")
    for key in table:
        if key not in SWEEP_KEYS:
            hint = closest(str(key), SWEEP_KEYS)
            tip = f"did you mean '{hint}'? " if hint else ""
            raise KcnnError(
                f"{where}: unknown [sweep] key '{key}': {tip}valid: {', '.join(SWEEP_KEYS)}"
            )
    settings = dict(runs[0])
    command = settings.pop("command", None)
    if not isinstance(command, str) or command not in COMMANDS:
        raise KcnnError(
            f"{where}: the [[run]] table needs a `command`: one of {', '.join(COMMANDS)}"
        )
    cls = COMMANDS[command]
    if "name" in settings:
        raise KcnnError(
            f"{where}: drop `name` from the [[run]] table: a sweep names its trials itself "
            "(the sweep's own folder is [sweep] name)"
        )
    base_config = cls.from_settings(dict(settings), source=f"{where} run").validate()
    settings.pop("out", None)  # where the sweep folder goes; each trial's out is that folder
    if out is not None:
        base_config.out = check_value("out", cls.settings()["out"], str(out), COMMAND_LINE)
    space_table = table.get("space")
    if not isinstance(space_table, dict) or not space_table:
        raise KcnnError(f"{where}: [sweep.space] names nothing to search: add at least one setting")
    known = cls.settings()
    space: dict[str, Choice | Range] = {}
    for key, value in space_table.items():
        if key not in known:
            hint = closest(str(key), known)
            tip = f"did you mean '{hint}'? " if hint else ""
            raise KcnnError(
                f"{where}: [sweep.space] unknown setting '{key}' for {command}: {tip}see `kcnn {command} --help`"
            )
        if key in PLACED:
            raise KcnnError(
                f"{where}: [sweep.space] {key}: a sweep names and places its trials itself"
            )
        space[key] = parse_dimension(key, value, known[key], where)
    metric = _one_of(
        _sweep_value(table, "metric", str, "val_accuracy", where), tuple(METRICS), "metric", where
    )
    direction = _one_of(
        _sweep_value(table, "direction", str, METRICS[metric], where),
        ("maximize", "minimize"),
        "direction",
        where,
    )
    sampler = _one_of(_sweep_value(table, "sampler", str, "tpe", where), SAMPLERS, "sampler", where)
    pruner = _one_of(_sweep_value(table, "pruner", str, "median", where), PRUNERS, "pruner", where)
    size = 0  # points of a grid
    if sampler == "grid":
        coarse = [
            k for k, d in space.items() if isinstance(d, Range) and not d.integer and not d.step
        ]
        if coarse:
            raise KcnnError(
                f"{where}: sampler 'grid' needs choices or ranges with a step; give {coarse[0]} a step or a list"
            )
        if any(isinstance(d, Range) and d.log for d in space.values()):
            raise KcnnError(f"{where}: sampler 'grid' takes no log range; list the values instead")
        size = math.prod(len(d.grid()) for d in space.values())
    trials = _sweep_value(table, "trials", int, size if sampler == "grid" else 20, where)
    if not 1 <= trials <= MAX_TRIALS:
        raise KcnnError(f"{where}: [sweep] trials must be 1 … {MAX_TRIALS:,}, got {trials}")
    if sampler == "grid":
        trials = min(trials, size)
    prune_after = _sweep_value(table, "prune_after", int, 1, where)
    seed = _sweep_value(table, "seed", int, 0, where)
    if prune_after < 0 or not 0 <= seed < 2**32:
        raise KcnnError(f"{where}: [sweep] prune_after must be 0 or more and seed 0 … 2³²−1")
    stem = safe_label(path.stem)
    name = _sweep_value(
        table, "name", str, stem if stem.startswith("sweep") else f"sweep-{stem}", where
    )
    from kcnn.runs import folders

    folders.check_name(name)
    description = data.get("description", "")
    if not isinstance(description, str):
        raise KcnnError(f"{where}: `description` must be text")
    sweep = Sweep(
        path,
        description,
        command,
        settings,
        space,
        metric,
        direction,
        trials,
        sampler,
        pruner,
        prune_after,
        seed,
        name,
        Path(base_config.out).expanduser(),
        dict(table),
    )
    for key, dimension in space.items():  # every value a trial can draw, tried in the base run
        for value in dimension.extremes():
            value = int(value) if isinstance(dimension, Range) and dimension.integer else value
            try:
                sweep.config({key: value}, "check", f"{where} run")
            except KcnnError as e:
                raise KcnnError(
                    f"{where}: [sweep.space] {key} = {value!r} fails in the run: {e}"
                ) from None
    return sweep


def preflight(sweep: Sweep) -> None:
    """What `kcnn run --check` does for the base run (data, output folder, weights)."""
    experiments.preflight(sweep.config({}, "check", f"{sweep.path} run"))


# --- the study ---------------------------------------------------------------------------------


def storage_url(sweep: Sweep, storage: str | None) -> str:
    return storage or f"sqlite:///{(sweep.folder / STUDY_DB).resolve()}"


def open_study(sweep: Sweep, storage: str | None, worker: int = 0):
    """The sweep's study (made on first use), its sampler seeded by the sweep's seed, the worker
    and the trials already in it (a resumed or second worker draws new points, not the same)."""
    optuna = import_optuna()
    from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

    url = storage_url(sweep, storage)
    engine = {"connect_args": {"timeout": 120}} if url.startswith("sqlite") else {}
    try:
        rdb = RDBStorage(
            url,
            engine_kwargs=engine,
            heartbeat_interval=HEARTBEAT_SECONDS,
            grace_period=GRACE_SECONDS,
            heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=None),
        )
        study = optuna.create_study(
            study_name=sweep.name, storage=rdb, direction=sweep.direction, load_if_exists=True
        )
    except KcnnError:  # a signal while connecting
        raise
    except Exception as e:  # noqa: BLE001  (a database that cannot be reached: one line)
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise KcnnError(f"cannot open the study in {url}: {first}") from None
    if study.direction.name.lower() != sweep.direction:
        raise KcnnError(
            f"the study {sweep.name} in {url} was made to {study.direction.name.lower()}; this file asks to {sweep.direction}"
        )
    seed = (sweep.seed + 1000 * worker + 7919 * len(study.get_trials(deepcopy=False))) % 2**32
    study.sampler = _sampler(optuna, sweep, seed)
    study.pruner = _pruner(optuna, sweep)
    return study


def _sampler(optuna, sweep: Sweep, seed: int):
    if sweep.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if sweep.sampler == "grid":
        return optuna.samplers.GridSampler({k: d.grid() for k, d in sweep.space.items()}, seed=seed)
    # constant_liar: a worker treats the others' running trials as bad results, so that parallel
    # workers spread out rather than all sample the same promising point.
    return optuna.samplers.TPESampler(
        seed=seed, constant_liar=True, n_startup_trials=min(10, max(2, sweep.trials // 3))
    )


def _pruner(optuna, sweep: Sweep):
    if sweep.pruner == "none":
        return optuna.pruners.NopPruner()
    if sweep.pruner == "halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=max(1, sweep.prune_after))
    return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=sweep.prune_after)


@dataclass
class Tally:
    done: int  # complete, pruned, or failed for its own settings
    running: int
    waiting: int  # queued again after an interrupt or crash, or enqueued


def retried(trials) -> set[int]:
    """Numbers of failed trials already queued again (by kcnn or by Optuna's stale-trial retry)."""
    found = set()
    for t in trials:
        if t.user_attrs.get("retry_of") is not None:
            found.add(int(t.user_attrs["retry_of"]))
        found.update(int(n) for n in t.system_attrs.get("retry_history") or [])
    return found


def tally(study) -> Tally:
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    again = retried(trials)

    def counts(t) -> bool:
        if t.state in (TrialState.COMPLETE, TrialState.PRUNED):
            return True
        return (
            t.state == TrialState.FAIL
            and t.number not in again
            and "failed_because" in t.user_attrs
        )

    return Tally(
        sum(map(counts, trials)),
        sum(t.state == TrialState.RUNNING for t in trials),
        sum(t.state == TrialState.WAITING for t in trials),
    )


def requeue_lost(study) -> list[int]:
    """Queue again, with their own settings, the failed trials that failed for no fault of their
    settings (a signal, a crash) and are not queued yet; returns their numbers."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    again = retried(trials)
    lost = [
        t
        for t in trials
        if t.state == TrialState.FAIL
        and "failed_because" not in t.user_attrs
        and t.number not in again
    ]
    for t in lost:
        study.enqueue_trial(t.params, user_attrs={"retry_of": t.number}, skip_if_exists=False)
    return [t.number for t in lost]


class TrialFailed(Exception):
    """The trial's own settings failed (refused, or diverged): recorded, the sweep goes on."""


class TrialInterrupted(Exception):
    """A signal stopped the trial: Optuna records it failed; the worker queues it again."""

    def __init__(self, error: interrupts.Interrupted):
        super().__init__(str(error))
        self.error = error


class Pruning:
    """A watcher (kcnn.engine.hooks) that reports each epoch's validation metric to Optuna and
    ends the run after an epoch the pruner rejects: Keras stops, the trainer finishes the run
    folder as usual (test set, pictures, model), and metrics.json records `pruned_at_epoch`."""

    def __init__(self, trial, metric: str):
        self.trial, self.metric = trial, metric
        self.pruned_at: int | None = None
        self.reported: set[int] = set()

    def train_begin(self, trainer) -> bool:
        return self.pruned_at is not None  # a later phase or form of a pruned trial

    def epoch_end(self, trainer, step: int, logs: dict[str, Any]) -> bool:
        value = logs.get(self.metric)
        if self.pruned_at is None and value is not None and step not in self.reported:
            self.reported.add(step)
            self.trial.report(float(value), step)
            if self.trial.should_prune():
                self.pruned_at = step
        if self.pruned_at is not None:
            trainer.records.results["pruned_at_epoch"] = self.pruned_at
        return self.pruned_at is not None


def score(history: dict[str, list[float]], metric: str) -> float | None:
    """A run's score: its metric at the last epoch (the weights its run folder keeps)."""
    values = [v for v in history.get(metric, []) if math.isfinite(v)]
    return values[-1] if values else None


def objective(sweep: Sweep, trial, echo) -> float:
    """One trial: the base run with the trial's settings, as a normal run folder in the sweep."""
    try:
        return _objective(sweep, trial, echo)
    except interrupts.Interrupted as e:  # a signal, whatever the trial was doing
        raise TrialInterrupted(e) from None


def _objective(sweep: Sweep, trial, echo) -> float:
    optuna = import_optuna()
    params = {k: d.suggest(trial, k) for k, d in sweep.space.items()}
    name = f"trial-{trial.number:04d}"
    started = time.perf_counter()
    try:
        config = sweep.config(params, name, f"{sweep.path} trial {trial.number}")
    except KcnnError as e:
        trial.set_user_attr("failed_because", str(e))
        echo(f"trial {trial.number}: refused: {e}")
        raise TrialFailed(str(e)) from None
    # which trial the epoch lines that follow belong to (workers run side by side)
    echo(f"trial {trial.number}: {_shown(params)}: training")
    watcher = Pruning(trial, sweep.metric)
    try:
        with hooks.watching(watcher):
            summaries = experiments.run_each(
                experiments.Experiment(sweep.path, "", [config]), quiet=True
            )
    except interrupts.Interrupted:
        raise
    except KcnnError as e:  # diverged, or input only training could find wrong
        trial.set_user_attr("failed_because", str(e))
        echo(f"trial {trial.number}: failed: {e}")
        raise TrialFailed(str(e)) from None
    from kcnn.runs.browse import RunInfo

    run_dirs = [Path(d) for s in summaries for d in s["run_dirs"]]
    infos = [RunInfo.load(d) for d in run_dirs]
    scores = [score(i.history(), sweep.metric) for i in infos]
    scores = [s for s in scores if s is not None]
    tests = [i.test_accuracy for i in infos if i.test_accuracy is not None]
    trial.set_user_attr("run_dirs", [str(d.resolve()) for d in run_dirs])
    trial.set_user_attr("folder", summaries[0].get("comparison") or str(run_dirs[0].resolve()))
    if tests:
        trial.set_user_attr("test_accuracy", max(tests))
    trial.set_user_attr("epochs", max((i.epochs_done or 0) for i in infos))
    trial.set_user_attr("seconds", time.perf_counter() - started)
    if not scores:
        trial.set_user_attr("failed_because", f"no {sweep.metric} recorded")
        raise TrialFailed(f"no {sweep.metric} recorded")
    value = max(scores) if sweep.direction == "maximize" else min(scores)
    shown = _shown(params)
    if watcher.pruned_at is not None:
        trial.set_user_attr("pruned_at_epoch", watcher.pruned_at)
        echo(
            f"trial {trial.number}: {shown}: pruned after epoch {watcher.pruned_at} ({sweep.metric} {value:.4f})"
        )
        raise optuna.TrialPruned(f"pruned after epoch {watcher.pruned_at}")
    test = f", test accuracy {max(tests):.4f}" if tests else ""
    echo(f"trial {trial.number}: {shown}: {sweep.metric} {value:.4f}{test}")
    return value


def _shown(params: dict[str, Any]) -> str:
    return ", ".join(f"{k}={_short(v)}" for k, v in params.items())


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def work(sweep: Sweep, storage: str | None = None, worker: int = 0, echo=print) -> None:
    """One worker: trials until the study has `sweep.trials` done, then waits for the other
    workers' trials, which may yet be queued again (a crashed worker), before it returns."""
    optuna = import_optuna()
    study = open_study(sweep, storage, worker)
    while True:
        interrupts.check_stop()  # no trial begins after a stop request
        optuna.storages.fail_stale_trials(study)  # a dead worker's trial, queued again
        count = tally(study)
        if count.waiting == 0 and count.done + count.running >= sweep.trials:
            if count.running == 0 or count.done >= sweep.trials:
                return
            time.sleep(2)  # another worker's trial may end, fail, or be queued again
            continue
        try:
            study.optimize(
                lambda trial: objective(sweep, trial, echo),
                n_trials=1,
                catch=(TrialFailed,),
                gc_after_trial=True,
            )
        except TrialInterrupted as e:
            queued = requeue_lost(study)  # this worker's trial, its own settings, for the next run
            name = signal.Signals(e.error.signum).name
            raise interrupts.Interrupted(
                e.error.signum,
                f"interrupted by {name} in trial {', '.join(map(str, queued)) or '?'}; it is "
                f"queued again: run the same `kcnn sweep {sweep.path}` to finish the sweep",
            ) from None
        except (interrupts.Interrupted, KeyboardInterrupt):
            requeue_lost(study)
            raise


def run(
    sweep: Sweep,
    storage: str | None = None,
    jobs: int = 1,
    echo=print,
    worker_args: tuple[str, ...] = (),
) -> dict[str, Any]:
    """The sweep: the folder and study (continued if they exist), `jobs` worker processes, then
    the report (`kcnn.runs.sweep_report`). Returns the report's summary."""
    from kcnn.runs import sweep_report
    from kcnn.runs.records import read_json, write_json

    import_optuna()
    if not 1 <= jobs <= 64:
        raise KcnnError(f"--jobs must be 1 … 64, got {jobs}")
    folder = sweep.folder
    record = folder / SWEEP_JSON
    identity = sweep.identity()
    if record.is_file():
        before = read_json(record)
        if before.get("identity") != identity:
            raise KcnnError(
                f"{folder} holds a sweep of other settings or another space; set another "
                "[sweep] name (or --out), or remove that folder to start again"
            )
    elif folder.exists() and any(folder.iterdir()):
        raise KcnnError(
            f"{folder} exists and is not a sweep folder; set another [sweep] name or --out"
        )
    made = not folder.exists()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        study = open_study(sweep, storage)
    except OSError as e:
        raise KcnnError(f"cannot create the sweep folder {folder}: {e.strerror or e}") from None
    except KcnnError:  # a database that cannot be opened: leave nothing behind
        if made:
            shutil.rmtree(folder, ignore_errors=True)
        raise
    write_json(
        record,
        {
            "command": "sweep",
            "file": str(sweep.path),
            "description": sweep.description,
            "sweep": sweep.table,
            "run": {"command": sweep.command, **sweep.base},
            "storage": storage or STUDY_DB,
            "identity": identity,
        },
    )
    sweep_report.index(folder, sweep)
    requeued = requeue_lost(study)
    if requeued:
        echo(
            f"queued again: trial(s) {', '.join(map(str, requeued))} (stopped before they finished)"
        )
    count = tally(study)
    if count.done:
        echo(f"{sweep.name}: {count.done} of {sweep.trials} trials done; continuing")
    workers = [_spawn(sweep, storage, w, worker_args) for w in range(1, jobs)]
    try:
        work(sweep, storage, 0, echo)
    except interrupts.Interrupted as e:
        if e.signum != signal.SIGINT:  # Ctrl-C reached the workers' process group already
            for p in workers:
                if p.poll() is None:
                    p.send_signal(e.signum)
        raise
    finally:
        codes = [_wait(p) for p in workers]
    failed = [c for c in codes if c not in (0, None)]
    if failed:
        raise KcnnError(
            f"{len(failed)} worker process(es) failed (exit {failed[0]}); run the same command again to finish"
        )
    return sweep_report.write(folder, study, sweep)


def _spawn(
    sweep: Sweep, storage: str | None, worker: int, extra: tuple[str, ...]
) -> subprocess.Popen:
    """A worker in a new process (TensorFlow does not survive fork): `kcnn sweep --worker N`,
    with `extra` options (such as --mlflow URI)."""
    command = [sys.executable, "-m", "kcnn.cli", "sweep", str(sweep.path), "--worker", str(worker)]
    command += ["--out", str(sweep.out)] + (["--storage", storage] if storage else [])
    command += list(extra)
    return subprocess.Popen(command)


def _wait(process: subprocess.Popen) -> int | None:
    try:
        return process.wait()
    except KeyboardInterrupt:  # Ctrl-C reached the workers too: let them record their trials
        return process.wait()


# --- confirming the best trials over seeds -----------------------------------------------------


def confirm(
    sweep: Sweep, record: dict[str, Any], best: int, seeds: int | list[int], echo=print
) -> dict:
    """Re-run the `best` best complete trials over `seeds` — as the `seeds` setting reads it: a
    count (the trial's seed, seed+1, ...) or a list of seeds — and compare them all with `kcnn.runs.report.compare_runs`. A run depends only on its
    settings and seed, so each trial's own run stands for its first seed; runs done by an
    earlier `--confirm` are reused. Writes confirm.json in the sweep folder.

    When seed groups and their statistics (kcnn.runs.stats) exist, the per-trial mean and
    spread below become those groups' intervals and the pairwise tests between them."""
    import statistics

    from kcnn.runs.browse import RunInfo
    from kcnn.runs.records import write_json
    from kcnn.runs.report import compare_runs

    count = seeds if isinstance(seeds, int) else len(seeds)
    if not 1 <= best <= 100 or not 1 <= count <= 100:
        raise KcnnError(f"--confirm and --seeds take 1 … 100, got {best} and {count}")
    rows = [r for r in record["trials"] if r["state"] == "complete" and r["score"] is not None]
    rows.sort(key=lambda r: r["score"], reverse=sweep.direction == "maximize")
    chosen = rows[:best]
    if not chosen:
        raise KcnnError(f"{sweep.folder} has no complete trial to confirm yet")
    folder = sweep.folder
    groups, every = [], []
    for row in chosen:
        params = {k.removeprefix("param:"): v for k, v in row.items() if k.startswith("param:")}
        first = int(params.get("seed", sweep.config({}, "check", "seed").seed))
        chosen_seeds = [first + i for i in range(seeds)] if isinstance(seeds, int) else seeds
        runs: list[RunInfo] = []
        for seed in chosen_seeds:
            interrupts.check_stop(f"run the same `kcnn sweep {sweep.path} --confirm` to finish")
            if seed == first and row["run"] and (folder / row["run"]).is_dir():
                runs.append(RunInfo.load(folder / row["run"]))
                continue
            name = f"confirm-{row['trial']:04d}-seed{seed}"
            done = [
                RunInfo.load(d)
                for d in sorted(folder.glob(f"*-{name}"))
                if RunInfo.load(d).status == "completed"
            ]
            if done:
                runs.append(done[-1])
                continue
            config = sweep.config({**params, "seed": seed}, name, f"{sweep.path} confirm")
            summaries = experiments.run_each(
                experiments.Experiment(sweep.path, "", [config]), quiet=True
            )
            runs += [RunInfo.load(d) for s in summaries for d in s["run_dirs"]]
            echo(
                f"confirm trial {row['trial']} seed {seed}: test accuracy {runs[-1].test_accuracy:.4f}"
            )
        accuracies = [r.test_accuracy for r in runs if r.test_accuracy is not None]
        groups.append(
            {
                "trial": row["trial"],
                "seeds": ", ".join(map(str, chosen_seeds)),
                "mean_test_accuracy": statistics.fmean(accuracies),
                "sd_test_accuracy": statistics.stdev(accuracies) if len(accuracies) > 1 else None,
                "test_accuracies": accuracies,
                "min": min(accuracies),
                "max": max(accuracies),
                "runs": [str(r.folder.resolve()) for r in runs],
            }
        )
        every += runs
    comparison = _earlier_comparison(folder, every)
    if comparison is None and len(every) > 1:
        comparison = compare_runs(every, folder, name="confirm")
    result = {
        "best": best,
        "seeds": seeds,
        "rows": groups,
        "comparison": str(comparison) if comparison else None,
        "note": f"the best {len(chosen)} trial(s) by {sweep.metric}, each over {count} seed(s); "
        "test accuracy mean, sample standard deviation, min and max",
    }
    write_json(folder / "confirm.json", result)
    return result


def _earlier_comparison(folder: Path, runs) -> Path | None:
    """The comparison an earlier `--confirm` wrote of these very runs, if it is still there."""
    from kcnn.runs.records import read_json

    try:
        before = read_json(folder / "confirm.json")
    except (OSError, ValueError):
        return None
    named = before.get("comparison")
    ran = sorted(d for row in before.get("rows", []) for d in row.get("runs", []))
    if named and Path(named).is_dir() and ran == sorted(str(r.folder.resolve()) for r in runs):
        return Path(named)
    return None
