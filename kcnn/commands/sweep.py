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

The space is `kcnn.commands.sweep_space`, the study `kcnn.commands.sweep_study`, `--confirm`
`kcnn.commands.sweep_confirm`; their names are all reachable from here.
"""

from __future__ import annotations

import math
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from kcnn.commands import experiments
from kcnn.commands.sweep_confirm import confirm  # noqa: F401  (re-exported)
from kcnn.commands.sweep_plan import Sweep
from kcnn.commands.sweep_space import (  # noqa: F401  (re-exported: kcnn sweep's one module)
    MAX_GRID,
    Choice,
    Range,
    check_distributions,
    grid_size,
    parse_dimension,
)
from kcnn.commands.sweep_study import (  # noqa: F401  (re-exported)
    GRACE_SECONDS,
    HEARTBEAT_SECONDS,
    INSTALL,
    STUDY_DB,
    Tally,
    _sampler,
    check_folder_itself,
    check_options,
    check_store,
    import_optuna,
    open_study,
    requeue_lost,
    retried,
    storage_url,
    tally,
)
from kcnn.engine import hooks, interrupts
from kcnn.engine.config import (
    COMMAND_LINE,
    COMMANDS,
    check_value,
    safe_label,
)
from kcnn.errors import KcnnError, did_you_mean
from kcnn.runs import folders

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
PLACED = ("out", "name")  # a sweep names and places its trials itself
MAX_TRIALS = 10_000
SWEEP_JSON = "sweep.json"


# --- the sweep file ----------------------------------------------------------------------------


def _sweep_value(table: dict, key: str, kind: type, default: Any, where: str) -> Any:
    value = table.get(key, default)
    if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise KcnnError(f"{where}: [sweep] {key} must be a whole number, got {value!r}")
    if kind is str and not isinstance(value, str):
        raise KcnnError(f"{where}: [sweep] {key} must be text, got {value!r}")
    return value


def _one_of(value: str, allowed: tuple[str, ...], key: str, where: str) -> str:
    if value not in allowed:
        raise KcnnError(
            f"{where}: [sweep] {key} '{value}': {did_you_mean(value, allowed)}"
            f"choose one of: {', '.join(allowed)}"
        )
    return value


def load(path: str | Path, out: str | Path | None = None) -> Sweep:
    """Read and check a sweep file: the base run by the settings schema, every dimension of the
    space against its setting, the study's settings; and every value a dimension can take put in
    the base run and validated, so no trial fails for a value the space allows. Nothing runs."""
    path = Path(path).expanduser()
    data = experiments._read(path)
    where = str(path)
    table, settings = _tables(data, where)
    command = settings.pop("command", None)
    if not isinstance(command, str) or command not in COMMANDS:
        raise KcnnError(
            f"{where}: the [[run]] table needs a `command`: one of {', '.join(COMMANDS)}"
        )
    base_out = _base_out(command, settings, out, where)
    space = _space(table.get("space"), command, where)
    metric, direction, sampler, pruner = _study_choices(table, where)
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
        _trials(table, space, sampler, where),
        sampler,
        pruner,
        *_prune_after_and_seed(table, where),
        _name(table, path, where),
        base_out,
        dict(table),
    )
    _try_every_extreme(sweep, where)
    return sweep


def _tables(data: dict, where: str) -> tuple[dict, dict]:
    """The file's [sweep] table (its keys checked) and its one [[run]] table's settings."""
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
            raise KcnnError(
                f"{where}: unknown [sweep] key '{key}': {did_you_mean(str(key), SWEEP_KEYS)}"
                f"valid: {', '.join(SWEEP_KEYS)}"
            )
    return table, dict(runs[0])


def _base_out(command: str, settings: dict, out: str | Path | None, where: str) -> Path:
    """Where the sweep folder goes: the base run's `out` (checked with the whole base run by the
    schema), or the command line's --out. `settings` loses `out`: each trial's is the sweep's."""
    cls = COMMANDS[command]
    if "name" in settings:
        raise KcnnError(
            f"{where}: drop `name` from the [[run]] table: a sweep names its trials itself "
            "(the sweep's own folder is [sweep] name)"
        )
    base_config = cls.from_settings(dict(settings), source=f"{where} run").validate()
    settings.pop("out", None)
    if out is not None:
        base_config.out = check_value("out", cls.settings()["out"], str(out), COMMAND_LINE)
    return Path(base_config.out).expanduser()


def _space(space_table: Any, command: str, where: str) -> dict[str, Choice | Range]:
    """[sweep.space]: each key a setting of the command, each value a dimension it can take."""
    if not isinstance(space_table, dict) or not space_table:
        raise KcnnError(f"{where}: [sweep.space] names nothing to search: add at least one setting")
    known = COMMANDS[command].settings()
    space: dict[str, Choice | Range] = {}
    for key, value in space_table.items():
        if key not in known:
            raise KcnnError(
                f"{where}: [sweep.space] unknown setting '{key}' for {command}: "
                f"{did_you_mean(str(key), known)}see `kcnn {command} --help`"
            )
        if key in PLACED:
            raise KcnnError(
                f"{where}: [sweep.space] {key}: a sweep names and places its trials itself"
            )
        space[key] = parse_dimension(key, value, known[key], where)
    check_distributions(space, where)
    return space


def _study_choices(table: dict, where: str) -> tuple[str, str, str, str]:
    """The metric, its direction, the sampler and the pruner, each one of its kind."""
    metric = _sweep_value(table, "metric", str, "val_accuracy", where)
    metric = _one_of(metric, tuple(METRICS), "metric", where)
    direction = _sweep_value(table, "direction", str, METRICS[metric], where)
    direction = _one_of(direction, ("maximize", "minimize"), "direction", where)
    sampler = _one_of(_sweep_value(table, "sampler", str, "tpe", where), SAMPLERS, "sampler", where)
    pruner = _one_of(_sweep_value(table, "pruner", str, "median", where), PRUNERS, "pruner", where)
    return metric, direction, sampler, pruner


def _trials(table: dict, space: dict[str, Choice | Range], sampler: str, where: str) -> int:
    """How many trials: 20 by default; a grid's size by default and at most."""
    size = _grid_points(space, where) if sampler == "grid" else 0
    trials = _sweep_value(table, "trials", int, size if sampler == "grid" else 20, where)
    if not 1 <= trials <= MAX_TRIALS:
        raise KcnnError(f"{where}: [sweep] trials must be 1 … {MAX_TRIALS:,}, got {trials}")
    return min(trials, size) if sampler == "grid" else trials


def _grid_points(space: dict[str, Choice | Range], where: str) -> int:
    """The points of a grid over `space`, which must list its values or step its ranges."""
    coarse = [k for k, d in space.items() if isinstance(d, Range) and not d.integer and not d.step]
    if coarse:
        raise KcnnError(
            f"{where}: sampler 'grid' needs choices or ranges with a step; give {coarse[0]} a step or a list"
        )
    if any(isinstance(d, Range) and d.log for d in space.values()):
        raise KcnnError(f"{where}: sampler 'grid' takes no log range; list the values instead")
    return grid_size(space, where)


def _prune_after_and_seed(table: dict, where: str) -> tuple[int, int]:
    prune_after = _sweep_value(table, "prune_after", int, 1, where)
    seed = _sweep_value(table, "seed", int, 0, where)
    if prune_after < 0 or not 0 <= seed < 2**32:
        raise KcnnError(f"{where}: [sweep] prune_after must be 0 or more and seed 0 … 2³²−1")
    return prune_after, seed


def _name(table: dict, path: Path, where: str) -> str:
    """The sweep folder's name: [sweep] name, else `sweep-<file stem>`."""
    stem = safe_label(path.stem)
    default = stem if stem.startswith("sweep") else f"sweep-{stem}"
    name = _sweep_value(table, "name", str, default, where)
    folders.check_name(name)
    return name


def _try_every_extreme(sweep: Sweep, where: str) -> None:
    """Put every value a trial can draw in the base run and validate it, before any trial runs."""
    for key, dimension in sweep.space.items():
        for value in dimension.extremes():
            value = int(value) if isinstance(dimension, Range) and dimension.integer else value
            try:
                sweep.config({key: value}, "check", f"{where} run")
            except KcnnError as e:
                raise KcnnError(
                    f"{where}: [sweep.space] {key} = {value!r} fails in the run: {e}"
                ) from None


def preflight(sweep: Sweep) -> None:
    """What `kcnn run --check` does for the base run (data, output folder, weights), and the
    sweep folder's own check (`check_folder`: a link, another sweep's folder)."""
    check_folder(sweep)
    experiments.preflight(sweep.config({}, "check", f"{sweep.path} run"))


# --- trials ------------------------------------------------------------------------------------


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
    # inside the sweep folder, as paths from it: the study (shared by machines on one --storage)
    # and trials.json never name a place on one machine's disk
    trial.set_user_attr("run_dirs", [folders.inside(sweep.folder, d) for d in run_dirs])
    trial.set_user_attr(
        "folder", folders.inside(sweep.folder, summaries[0].get("comparison") or run_dirs[0])
    )
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
    from kcnn.runs.records import write_json

    import_optuna()
    check_options(jobs, storage=storage)
    folder = sweep.folder
    record = folder / SWEEP_JSON
    check_folder(sweep)
    # a --storage that cannot be opened is refused before any folder is made for the sweep
    study = open_study(sweep, storage) if storage is not None else None
    try:
        made = folders.make(folder)
    except OSError as e:
        raise KcnnError(f"cannot create the sweep folder {folder}: {e.strerror or e}") from None
    try:
        study = study or open_study(sweep, storage)
    except BaseException:  # a database that cannot be opened: leave nothing behind
        if made:
            shutil.rmtree(made[0], ignore_errors=True)  # all of it made just now, by this call
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
            "identity": sweep.identity(),
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


def check_folder(sweep: Sweep) -> None:
    """The sweep folder, if it exists, must be this file's sweep: a real folder (never a link)
    whose sweep.json records the same settings and space, or an empty one."""
    from kcnn.runs.records import Damaged
    from kcnn.runs.run import RunFolder

    folder = sweep.folder
    check_folder_itself(folder)
    if not folder.exists():
        return
    try:
        before = RunFolder(folder).json(SWEEP_JSON)  # a regular file of sane size, or Damaged
    except FileNotFoundError:
        if RunFolder(folder).entries():
            raise KcnnError(
                f"{folder} exists and is not a sweep folder; set another [sweep] name or --out"
            ) from None
        return
    except Damaged as e:
        raise KcnnError(
            f"{folder / SWEEP_JSON} is damaged ({e.reason}); remove that folder to start again"
        ) from None
    if before.get("identity") != sweep.identity():
        raise KcnnError(
            f"{folder} holds a sweep of other settings or another space; set another "
            "[sweep] name (or --out), or remove that folder to start again"
        )


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
