"""Experiment tracking on MLflow: `--mlflow [URI]` on every training command and on `kcnn sweep`.

Each run folder becomes one MLflow run: its settings as parameters, each epoch's metrics (the
columns of history.csv, logged as the epoch ends), the test results, and as artifacts its pictures,
records, report.html and model.keras. A watcher (`kcnn.engine.hooks`) follows every trainer of
the command, so `compare-apis` logs one MLflow run per API form and a sweep one per trial.

Where: `--mlflow` alone uses the local store `./mlruns` (an SQLite database `mlruns/mlflow.db`
with the artifacts beside it; `mlflow ui --backend-store-uri sqlite:///mlruns/mlflow.db` shows
it), or MLFLOW_TRACKING_URI when that is set; `--mlflow URI` a server (`http://host:5000`), a
database (`sqlite:///path.db`, `postgresql://...`), a `file:` store or a folder for a local store.

MLflow is the optional extra `tracking`, imported only when `--mlflow` is given.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from kcnn.engine import hooks, interrupts
from kcnn.errors import KcnnError
from kcnn.progress import warn
from kcnn.runs.run import RunFolder

LOCAL = "local"  # what `--mlflow` alone stands for
LOCAL_STORE = "mlruns"
DATABASE = "mlflow.db"
EXPERIMENT = "kcnn"
INSTALL = "pip install 'kcnn[tracking]'"
SCHEMES = ("http", "https", "file", "sqlite", "postgresql", "mysql", "mssql", "databricks")
# What a finished run folder logs as artifacts (missing ones are skipped), and where.
ARTIFACTS = {
    "curves.png": "pictures",
    "confusion_matrix.png": "pictures",
    "report.html": "",
    "config.json": "records",
    "metrics.json": "records",
    "history.csv": "records",
    "summary.txt": "records",
    "test_predictions.npz": "records",  # each test image's answer (kcnn.runs.predictions)
    "fold_predictions.npz": "records",  # --folds: each held-out image's answer (kcnn.runs.out_of_fold)
    "training_images.json": "records",  # what predict checks new images against
    "training_features.npz": "records",  # and in the model's feature space (kcnn.data.nearest)
    "model.keras": "model",
}


def _import():
    try:
        from mlflow.tracking import MlflowClient
    except ImportError:
        raise KcnnError(f"--mlflow needs MLflow, an optional extra: {INSTALL}") from None
    return MlflowClient


def store_uri(uri: str | None) -> str:
    """The tracking URI `--mlflow [URI]` means (see the module docstring); refuses a URI whose
    scheme MLflow cannot track to, before anything trains."""
    if uri is None or uri == LOCAL:
        if os.environ.get("MLFLOW_TRACKING_URI"):
            return os.environ["MLFLOW_TRACKING_URI"]
        uri = LOCAL_STORE
    scheme, sep, _ = uri.partition(":")
    if not sep or len(scheme) == 1:  # a folder (a Windows drive letter is no scheme)
        folder = Path(uri).expanduser().resolve()
        if folder.exists() and not folder.is_dir():
            raise KcnnError(f"--mlflow {uri}: not a folder; give a folder or a tracking URI")
        return f"sqlite:///{folder / DATABASE}"
    base = scheme.split("+", 1)[0].lower()
    if base not in SCHEMES:
        raise KcnnError(
            f"--mlflow {uri}: unknown tracking URI scheme '{scheme}'; use a folder, or one of "
            + ", ".join(f"{s}:" for s in SCHEMES)
        )
    if base == "file":  # the user asked for MLflow's file store, which it now only maintains
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    return uri


def _check_store(uri: str) -> list[Path]:
    """Refuse at once a store that cannot work (`kcnn.runs.databases`): an SQLite file that is a
    FIFO, a folder or a link; a server that does not answer. A local store's folder is made
    here; returns the folders made, removed again if the store is refused."""
    from kcnn.runs import databases, folders

    if uri.split(":", 1)[0].lower() in ("http", "https"):
        databases.check_server(uri, "--mlflow")
    path = databases.sqlite_path(uri, "--mlflow")
    if path is None:
        return []
    try:
        made = folders.make(path.parent)
    except OSError as e:
        raise KcnnError(f"--mlflow {uri}: cannot make {path.parent}: {e.strerror or e}") from None
    try:
        databases.check_sqlite(path, "--mlflow", links=True)
    except KcnnError:
        folders.unmake(made)
        raise
    return made


def _artifact_root(uri: str) -> str | None:
    """Artifacts of a local SQLite store go beside its database (MLflow's default is ./mlruns)."""
    if uri.startswith("sqlite:///"):
        return (Path(uri.removeprefix("sqlite:///")).parent / "artifacts").resolve().as_uri()
    return None


def _param(value: Any) -> str:
    if isinstance(value, list | tuple):
        return ",".join(map(str, value))
    return str(value)[:6000]  # MLflow's limit on a parameter's value


def _numbers(record: dict[str, Any]) -> dict[str, float]:
    """The finite numbers of a metrics record (MLflow metrics are numbers only)."""
    return {
        k: float(v)
        for k, v in record.items()
        if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
    }


class MlflowTracker:
    """A watcher that logs every run of a command to one MLflow experiment."""

    def __init__(self, uri: str | None, experiment: str = EXPERIMENT, tags: dict | None = None):
        client_class = _import()
        for name in ("mlflow", "alembic"):  # their set-up notes are not kcnn's output
            logging.getLogger(name).setLevel(logging.WARNING)
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")  # a dead server fails fast
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")
        self.asked = LOCAL if uri is None else uri  # as given, for a child process's --mlflow
        self.uri = store_uri(uri)
        self.tags = {k: str(v) for k, v in (tags or {}).items()}
        self.runs: dict[int, str] = {}  # id(trainer) -> MLflow run id
        self.done: set[str] = set()
        self._warned = False
        self._made = _check_store(self.uri)
        try:
            self.client = client_class(tracking_uri=self.uri)
            found = self.client.get_experiment_by_name(experiment)
            self.experiment_id = (
                found.experiment_id
                if found is not None
                else self.client.create_experiment(
                    experiment, artifact_location=_artifact_root(self.uri)
                )
            )
        except BaseException as e:
            from kcnn.runs import folders

            folders.unmake(self._made)  # a store that cannot be used leaves no folder made for it
            if isinstance(e, KcnnError | KeyboardInterrupt) or not isinstance(e, Exception):
                raise  # a signal while connecting
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise KcnnError(
                f"--mlflow: cannot use the tracking store {self.uri}: {first}"
            ) from None

    def _warn(self, e: Exception) -> None:
        """Tracking is a side record: a store that fails mid-run is a warning, not a lost run;
        a stop request (even one MLflow's client turned into its own error) is never a warning.
        After a failure, nothing more is sent for the rest of the command: a store that stopped
        answering would otherwise cost each epoch its timeouts and retries."""
        if isinstance(e, interrupts.Interrupted):
            raise e
        interrupts.check_stop()
        if not self._warned:
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            warn(
                f"MLflow logging to {self.uri} failed ({first}); the rest of this command is not "
                "logged there (its run folders hold everything)"
            )
            self._warned = True

    def run_id(self, trainer) -> str | None:
        """The MLflow run of `trainer`'s run folder, made when its first fit phase starts."""
        key = id(trainer)
        if key not in self.runs and self._warned:
            self.runs[key] = None  # the store failed earlier in this command: not tried again
        if key not in self.runs:
            try:
                config = trainer.config
                tags = {
                    **self.tags,
                    "kcnn.command": config.command,
                    "kcnn.run_dir": str(trainer.run_dir),
                    **{f"kcnn.{k}": str(v) for k, v in trainer.records.identity.items()},
                }
                run = self.client.create_run(
                    self.experiment_id, run_name=Path(trainer.run_dir).name, tags=tags
                )
                from mlflow.entities import Param

                params = [
                    Param(k, _param(v))
                    for k, v in config.settings_dict().items()
                    if v is not None and k not in ("out", "name")
                ]
                for start in range(0, len(params), 100):  # MLflow takes 100 per batch
                    self.client.log_batch(run.info.run_id, params=params[start : start + 100])
                self.runs[key] = run.info.run_id
            except Exception as e:  # noqa: BLE001
                self._warn(e)
                self.runs[key] = None
        return self.runs[key]

    def log_epoch(self, run_id: str, epoch: int, logs: dict[str, Any]) -> None:
        from mlflow.entities import Metric

        if self._warned:
            return
        stamp = int(time.time() * 1000)
        metrics = [Metric(k, v, stamp, epoch) for k, v in _numbers(logs).items()]
        try:
            self.client.log_batch(run_id, metrics=metrics)
        except Exception as e:  # noqa: BLE001
            self._warn(e)

    def train_begin(self, trainer) -> None:
        """The MLflow run of a run folder starts with its first fit phase."""
        self.run_id(trainer)

    def epoch_end(self, trainer, epoch: int, logs: dict[str, Any]) -> None:
        """Each epoch's metrics (loss, accuracy, validation, learning rate) at that step."""
        run_id = self.run_id(trainer)
        if run_id is not None:
            self.log_epoch(run_id, epoch, logs)

    def child_args(self) -> list[str]:
        """How a run in a child process (a seed of a group, a sweep's worker) is tracked too."""
        return [f"--mlflow={self.asked}"]

    def finished(self, trainer, result) -> None:
        """The run's results, pictures, records, report and model; then the run is FINISHED."""
        run_id = self.run_id(trainer)
        if run_id is None or self._warned:
            return
        from mlflow.entities import Metric

        stamp = int(time.time() * 1000)
        final = {k: v for k, v in _numbers(result.metrics).items() if k != "epochs_planned"}
        try:
            self.client.log_batch(
                run_id, metrics=[Metric(k, v, stamp, 0) for k, v in final.items()]
            )
            for name, where in ARTIFACTS.items():
                if RunFolder(result.run_dir).has(name):  # a regular file: never a link's target
                    self.client.log_artifact(
                        run_id, str(Path(result.run_dir) / name), where or None
                    )
            self.client.set_terminated(run_id, "FINISHED")
            self.done.add(run_id)
        except Exception as e:  # noqa: BLE001
            self._warn(e)

    def close(self, error: BaseException | None) -> None:
        """End the MLflow runs whose kcnn run did not finish: KILLED by a signal, else FAILED."""
        from kcnn.engine.interrupts import Interrupted

        status = "KILLED" if isinstance(error, Interrupted | KeyboardInterrupt) else "FAILED"
        if self._warned:  # the store failed: asking it again would only wait on it again
            return
        for run_id in self.runs.values():
            if run_id is not None and run_id not in self.done:
                with contextlib.suppress(Exception):
                    self.client.set_terminated(run_id, status)
                self.done.add(run_id)


@contextlib.contextmanager
def tracking(
    uri: str | None, experiment: str = EXPERIMENT, tags: dict | None = None
) -> Iterator[MlflowTracker]:
    """Log every run trained inside this block to MLflow at `uri` (see `store_uri`)."""
    tracker = MlflowTracker(uri, experiment, tags)
    error: BaseException | None = None
    try:
        with hooks.watching(tracker):
            yield tracker
    except BaseException as e:
        error = e
        raise
    finally:
        tracker.close(error)


def log_folder(tracker: MlflowTracker, folder: Path, run_name: str, files: list[str]) -> str | None:
    """One more MLflow run holding a folder's report files (a sweep's report, its trial table);
    a store that fails is a warning, as for a run (None)."""
    if tracker._warned:
        return None
    try:
        run = tracker.client.create_run(tracker.experiment_id, run_name=run_name, tags=tracker.tags)
        for name in files:
            if RunFolder(folder).has(name):  # a regular file: never what a link points to
                tracker.client.log_artifact(run.info.run_id, str(Path(folder) / name))
        tracker.client.set_terminated(run.info.run_id, "FINISHED")
    except Exception as e:  # noqa: BLE001
        tracker._warn(e)
        return None
    return run.info.run_id
