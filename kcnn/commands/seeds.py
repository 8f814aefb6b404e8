"""`--seeds`: one training command run once per seed, the runs kept as one group folder.

    group = run_group(TrainConfig("lenet5", dataset="digits", seeds=5))
    group.record["groups"]["lenet5-digits-sequential"]["metrics"]["test_accuracy"]  # mean, sd, CI

Each seed is a normal run of the command (`train`, `compare-apis`, `transfer`: its run or
comparison folder, named `NAME-seedS`) inside the group folder `<out>/<stamp>-NAME-seeds/`, whose
`group.json` (`kcnn.runs.groups`) summarises them. Where the machine has room (`os.cpu_count() // 2`
workers, or `KCNN_SEED_WORKERS`), seeds run in parallel processes, each `kcnn run SEED.toml`
(TensorFlow and fork do not mix: fresh interpreters, never forked ones, told of this command's
watchers such as MLflow); with one worker they run in this process, one after the other. Either way
each seed is a run with its own steps (`kcnn.commands.steps`: calibration when asked), and no seed
begins after a stop request. A group the same command started before and did not finish
(interrupted, killed, a seed that failed) is found by its settings and only its missing seeds run.

`--folds K` (train) is a group the same way: one run per fold, `NAME-foldI`, each validated on
fold I of the training images (`kcnn.data.splits.fold_rows`), in `<out>/<stamp>-NAME-folds/`;
once all are done their answers on their folds are gathered into the group's out-of-fold
probabilities (`kcnn.runs.out_of_fold`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kcnn.commands import steps
from kcnn.commands.command import Outcome, runs_table
from kcnn.engine import hooks, interrupts
from kcnn.engine.config import RunConfig
from kcnn.errors import KcnnError
from kcnn.progress import heading
from kcnn.runs import folders
from kcnn.runs.browse import RunInfo
from kcnn.runs.run import RunFolder

WORKERS_ENV = "KCNN_SEED_WORKERS"
# The final metrics a group's answer states, each as a mean with its 95% interval.
SUMMARISED = (
    ("test_accuracy", "test accuracy"),
    ("test_balanced_accuracy", "test balanced accuracy"),
    ("test_macro_f1", "test macro-F1"),
)


@dataclass
class GroupResult:
    folder: Path
    record: dict[str, Any]  # group.json

    def run_dirs(self) -> list[Path]:
        return [self.folder / p for g in self.record.get("groups", {}).values() for p in g["runs"]]


def workers(missing: int) -> int:
    """Processes to run seeds in: KCNN_SEED_WORKERS, else half the cores (TensorFlow already uses
    several threads per process), never more than there are seeds to run."""
    raw = os.environ.get(WORKERS_ENV)
    if raw is not None:
        if not raw.strip().isdigit() or int(raw) < 1:
            raise KcnnError(f"{WORKERS_ENV}={raw!r}: give a whole number of processes, 1 or more")
        count = int(raw)
    else:
        count = max(1, (os.cpu_count() or 2) // 2)
    return max(1, min(count, missing))


def _settings(config: RunConfig) -> dict[str, Any]:
    """The group's identity: its settings as config.json would record them, but where it goes."""
    values = json.loads(json.dumps(config.settings_dict(), default=str))
    values.pop("out", None)
    return values


def find_unfinished(config: RunConfig, completed: bool = False) -> Path | None:
    """The newest group folder under `out` made by the same settings and not completed (or,
    with `completed`, whatever its status: `kcnn run FILE --resume` keeps a finished group)."""
    from kcnn.runs import groups  # NumPy: not for `kcnn --help`

    out = Path(config.out).expanduser()
    if not out.is_dir():
        return None
    wanted = _settings(config)
    found = []
    for folder in out.iterdir():
        data = groups.read(folder) if folder.is_dir() else None
        if data is None or (data.get("status") == "completed" and not completed):
            continue
        settings = dict(data.get("config") or {})
        settings.pop("out", None)
        if data.get("command") == config.command and settings == wanted:
            found.append(folder)
    return max(found, key=lambda p: p.name) if found else None


def seed_config(config: RunConfig, seed: int, folder: Path) -> RunConfig:
    """One seed's run: the group's settings with this seed, in the group folder (an error still
    names the file the group's settings came from, if any)."""
    return _member_config(config, folder, f"seed{seed}", seed=seed)


def fold_config(config: RunConfig, fold: int, folder: Path) -> RunConfig:
    """One fold's run of a folds group: the group's settings, fold `fold` its validation."""
    return _member_config(config, folder, f"fold{fold}", fold=fold)


def _member_config(config: RunConfig, folder: Path, suffix: str, **changes) -> RunConfig:
    one = dataclasses.replace(
        config,
        seeds=None,
        out=str(folder),
        name=f"{config.name}-{suffix}",
        derived_name=False,
        **changes,
    )
    return one.validate()


def members(config: RunConfig, folder: Path) -> list[RunConfig]:
    """The runs of a group: one per seed of --seeds, or one per fold of --folds."""
    if config.fold_list():
        return [fold_config(config, f, folder) for f in config.fold_list()]
    return [seed_config(config, s, folder) for s in config.seed_list()]


def _member(folder: Path, name: str) -> Path | None:
    found = [p for p in folder.iterdir() if p.is_dir() and folders.made_for(p.name, name)]
    return max(found, key=lambda p: p.name) if found else None


def _finished(member: Path) -> bool:
    from kcnn.runs import groups  # NumPy: not for `kcnn --help`

    runs = groups.leaves([RunInfo.load(member)])
    return bool(runs) and all(r.status == "completed" for r in runs)


def _what(one: RunConfig) -> str:
    """A member of a group in words: `fold 2`, `seed 84`."""
    return f"fold {one.fold}" if one.fold is not None else f"seed {one.seed}"


def run_group(
    config: RunConfig, quiet: bool = False, resume: bool = False, folder: Path | None = None
) -> GroupResult:
    """Run every seed of `config.seeds` (or fold of `config.folds`) not yet finished in its group
    folder, then summarise. `resume`: an earlier group of these settings is finished even if it
    completed (its summary drawn again: a stop may have come while it was drawn); `folder`:
    that group folder rather than the newest of these settings."""
    from kcnn.runs.report import write_group  # matplotlib: only once there is a group to draw

    config.validate()
    if not config.is_group():
        raise KcnnError("run_group needs --seeds (a count or a list of seeds) or --folds K")
    folds = config.fold_list()
    if folds:
        check_folds(config)  # a class too small for K folds: refused before any folder is made
    workers(len(folds or config.seed_list()))  # a bad KCNN_SEED_WORKERS: refused before a folder
    interrupts.check_stop()
    kind = "folds" if folds else "seeds"
    folder = (
        folder
        or find_unfinished(config, completed=resume)
        or folders.create(config.out, f"{config.name}-{kind}")
    )
    record = {
        "command": config.command,
        "name": config.name,
        "config": config.settings_dict(),
        "seeds": [config.seed] if folds else config.seed_list(),
        **({"folds": len(folds)} if folds else {}),
        "status": "running",
    }
    write_group(folder, record)
    missing = _missing(folder, members(config, folder))
    start = time.perf_counter()
    failures: dict[str, str] = {}
    try:
        count = workers(len(missing))
        if count == 1:
            for number, one in enumerate(missing, 1):
                heading(number, len(missing), f"{_what(one)} — {config.name}", quiet)
                steps.train_one(one, quiet)
        else:
            failures = _in_processes(missing, count)
        interrupts.check_stop()  # the runs are done: the summary waits for the resume
    except BaseException as e:
        stopped = isinstance(e, interrupts.Interrupted | KeyboardInterrupt | SystemExit)
        write_group(folder, {**record, "status": "interrupted" if stopped else "failed"})
        raise
    record["wall_seconds"] = time.perf_counter() - start
    record["status"] = "failed" if failures else "completed"
    if failures:
        record["failures"] = dict(failures)
    elif folds:
        from kcnn.runs import out_of_fold  # NumPy: not for `kcnn --help`

        runs = [_member(folder, one.name) for one in members(config, folder)]
        record["cross_validation"] = out_of_fold.gather(folder, runs)
    data = write_group(folder, record)
    if failures:
        which, why = next(iter(failures.items()))
        raise KcnnError(
            f"{which} of {folder} failed: {why}; the same command runs only the missing {kind}"
        )
    return GroupResult(folder, data)


def check_folds(config: RunConfig) -> None:
    """Whether the training images part into `config.folds` stratified folds (every class has
    at least K images), checked on the data's labels before any fold trains."""
    from kcnn.data import datasets, splits  # NumPy: not for `kcnn --help`

    data = datasets.load(config.dataset, config.data_dir, config.seed, config.shapes_count)
    splits.make_splits(
        data, config.val_split, config.seed, config.limit, config.test_split, (1, config.folds)
    )


def _missing(folder: Path, runs: list[RunConfig]) -> list[RunConfig]:
    """The runs not finished in the group folder (a killed or interrupted one is removed: that
    seed or fold starts again from its beginning, which gives the same numbers)."""
    missing = []
    for one in runs:
        member = _member(folder, one.name)
        if member is not None and _finished(member):
            continue
        if member is not None:
            shutil.rmtree(member)
        missing.append(one)
    return missing


def outcome(group: GroupResult, config: RunConfig) -> Outcome:
    """A group as the answer of its command: every seed's metrics.json, the group's statistics,
    their calibration (when asked), and what a person reads."""
    from kcnn.runs import stats  # NumPy: not for `kcnn --help`

    record, run_dirs = group.record, group.run_dirs()
    metrics = [RunFolder(d).metrics() for d in run_dirs]
    found = Outcome(config.command, run_dirs, metrics, group=group.folder)
    keys = ("seeds", "folds", "cross_validation", "status", "groups", "tests", "identical")
    found.details = {k: record[k] for k in keys if k in record}
    if config.calibrate:
        found.calibration = steps.calibrations(run_dirs)
    found.lines = ["", *runs_table(run_dirs).splitlines()]
    for name, g in record["groups"].items():
        over = f"folds {g['folds']}" if g.get("folds") else f"seeds {g['seeds']}"
        for key, words in SUMMARISED:
            m = g["metrics"].get(key)
            if m is None:
                continue
            line = stats.Summary(m["n"], m["mean"], m["sd"], m["ci_low"], m["ci_high"]).text()
            sd = "" if m["sd"] is None else f", sd {m['sd']:.4f}"
            found.lines.append(f"{name}: {words} {line}{sd}  (95% interval over {over})")
    cv = record.get("cross_validation")
    if cv:
        found.lines.append(
            f"out of fold ({cv['images']} training images, each answered by the fold model "
            f"that did not train on it): accuracy {cv['accuracy']:.4f}, balanced accuracy "
            f"{cv['balanced_accuracy']:.4f}, macro-F1 {cv['macro_f1']:.4f}"
        )
    found.lines += [f"- {t['sentence']}" for t in record["tests"]]  # every tested metric's
    if record.get("identical"):
        found.lines.append("the groups gave identical test accuracy at every seed")
    found.lines.append(f"group folder: {group.folder}")
    return found


def _in_processes(configs: list[RunConfig], count: int) -> dict[str, str]:
    """Each seed (or fold) as `kcnn run SEED.toml` in its own interpreter, `count` at a time.
    Returns those that failed (`seed 84`, `fold 2`), with the error line each printed."""
    children: list[subprocess.Popen] = []

    watched = hooks.child_args()  # MLflow follows every seed, in whichever process it runs

    def one(config: RunConfig) -> tuple[str, str | None]:
        interrupts.check_stop()  # no seed begins after a stop request
        toml = Path(config.out) / f".{config.name}.toml"
        toml.write_text(config.to_toml(), encoding="utf-8")
        command = [sys.executable, "-m", "kcnn.cli", "run", str(toml), "--json", *watched]
        child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        children.append(child)
        _, err = child.communicate()
        toml.unlink(missing_ok=True)
        if child.returncode == 0:
            return _what(config), None
        lines = [line for line in err.splitlines() if line.startswith("error:")]
        return _what(config), (lines[-1] if lines else f"exit status {child.returncode}")

    failures: dict[str, str] = {}
    pool = ThreadPoolExecutor(count)
    try:
        for done, (which, why) in enumerate(pool.map(one, configs), 1):
            if why is not None:
                failures[which] = why
            state = "done" if why is None else f"failed: {why}"
            print(f"{which} {state} ({done}/{len(configs)})", file=sys.stderr, flush=True)
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        for child in list(children):
            if child.poll() is None:
                child.terminate()  # SIGTERM: the run stops after its batch, as `interrupted`
        for child in list(children):
            try:
                child.wait(timeout=60)
            except subprocess.TimeoutExpired:
                child.kill()
        raise
    pool.shutdown()
    return failures
