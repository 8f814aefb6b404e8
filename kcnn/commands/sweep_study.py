"""A sweep's Optuna study: where it lives (checked before Optuna opens it), which sweep it
belongs to, its sampler and pruner, and the count of its trials done, running and queued again.
Part of `kcnn sweep` (kcnn.commands.sweep)."""

from __future__ import annotations

import json
import os
import stat
import warnings
from dataclasses import dataclass
from pathlib import Path

from kcnn.commands.sweep_plan import Sweep
from kcnn.errors import KcnnError

STUDY_DB = "study.db"
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


def storage_url(sweep: Sweep, storage: str | None) -> str:
    return storage or f"sqlite:///{(sweep.folder / STUDY_DB).resolve()}"


def open_study(sweep: Sweep, storage: str | None, worker: int = 0):
    """The sweep's study (made on first use), its sampler seeded by the sweep's seed, the worker
    and the trials already in it (a resumed or second worker draws new points, not the same)."""
    optuna = import_optuna()
    from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

    check_store(sweep, storage)
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
    _claim(study, sweep, storage, url)
    seed = (sweep.seed + 1000 * worker + 7919 * len(study.get_trials(deepcopy=False))) % 2**32
    study.sampler = _sampler(optuna, sweep, seed)
    study.pruner = _pruner(optuna, sweep)
    return study


IDENTITY_ATTR = "kcnn.identity"  # the study's own record of the sweep it belongs to


def _claim(study, sweep: Sweep, storage: str | None, url: str) -> None:
    """The study is this sweep's: it records the sweep's identity (command, settings, space,
    metric) when made, and a study of the same name made by another sweep file on a shared
    `--storage` is refused before any trial, never continued with another space."""
    mine = json.dumps(sweep.identity(), sort_keys=True, default=str)
    recorded = study.user_attrs.get(IDENTITY_ATTR)
    if recorded is None:
        trials = len(study.get_trials(deepcopy=False))
        if trials and storage is not None:  # in SWEEP/study.db sweep.json vouched for it
            raise KcnnError(
                f"the study {sweep.name} in {url} holds {trials} trial(s) that no sweep file "
                "recorded as its own: set another [sweep] name to start a study of this file"
            )
        study.set_user_attr(IDENTITY_ATTR, mine)
    elif recorded != mine:
        raise KcnnError(
            f"the study {sweep.name} in {url} belongs to a sweep of other settings or another "
            "space: set another [sweep] name (each sweep file its own study)"
        )


def check_store(sweep: Sweep, storage: str | None) -> None:
    """The database the study lives in, checked before Optuna opens it (`kcnn.runs.databases`):
    `--storage` as the user named it; the sweep folder's own study.db, and the folder itself,
    never a link (a planted one would write the study, or the whole sweep, elsewhere)."""
    from kcnn.runs import databases

    if storage is not None:
        databases.check_url(storage, "--storage")
        return
    check_folder_itself(sweep.folder)
    databases.check_sqlite(sweep.folder / STUDY_DB, f"the sweep folder {sweep.folder}")


def check_folder_itself(folder: Path) -> None:
    """A sweep folder is a real folder, or nothing yet: never a link, a file or a FIFO."""
    try:
        mode = os.lstat(folder).st_mode
    except FileNotFoundError:
        return
    except OSError as e:
        raise KcnnError(f"cannot use the sweep folder {folder}: {e.strerror or e}") from None
    if not stat.S_ISDIR(mode):
        kind = "a symbolic link" if stat.S_ISLNK(mode) else "not a folder"
        raise KcnnError(
            f"{folder} is {kind}: kcnn writes a sweep only into a real folder of its own; remove "
            "it, or set another [sweep] name or --out"
        )


def check_options(
    jobs: int = 1, confirm: int = 0, seeds: int | list[int] = 3, storage: str | None = None
) -> None:
    """Every option of `kcnn sweep`, checked before anything is made or trained (and by
    `--check`): a refused option never costs a trial."""
    if not 1 <= jobs <= 64:
        raise KcnnError(f"--jobs must be 1 … 64, got {jobs}")
    count = seeds if isinstance(seeds, int) else len(seeds)  # as the `seeds` setting reads it
    if not 0 <= confirm <= 100 or (confirm and not 1 <= count <= 100):
        raise KcnnError(f"--confirm and --seeds take 1 … 100, got {confirm} and {count}")
    if storage is None:
        return
    from kcnn.runs import databases

    if not storage.strip() or len(storage) > 4096 or "\x00" in storage:
        raise KcnnError("--storage needs a database URL such as sqlite:///study.db")
    try:
        from sqlalchemy.engine import make_url

        make_url(storage)
    except ImportError:
        pass  # Optuna (which brings SQLAlchemy) is missing: `kcnn sweep` says how to install it
    except Exception as e:  # noqa: BLE001  (SQLAlchemy's ArgumentError, ValueError)
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise KcnnError(f"--storage {storage}: not a database URL ({first})") from None
    databases.check_url(storage, "--storage")


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
