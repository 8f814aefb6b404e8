"""A run folder: the one owner of what it holds, how it is written and how it is read back.

Written by kcnn: made fresh (`RunFolder.create`), locked while a process works in it, every
record written atomically through a fresh temporary file (`kcnn.runs.records`), so a planted
link is replaced, never written through.

Read as untrusted: run folders are passed around (a classmate's results, a course's reference
runs), so every read takes a regular file inside the folder only, within a size cap for its
kind, and checks it against its record's schema (types, finite numbers, sane sizes). What fails
is `Damaged`, naming the file and the reason (each record's schema is `kcnn.runs.schemas`): `kcnn runs` lists such a folder as damaged, the
other commands refuse it in one line. Nothing here imports TensorFlow.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import math
import os
import stat
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kcnn import progress
from kcnn.engine import checkpoints
from kcnn.errors import KcnnError
from kcnn.runs import folders, schemas
from kcnn.runs.records import (
    Damaged,
    fresh_file,
    read_bytes,
    read_csv_record,
    read_json_record,
    read_text,
    write_atomic,
    write_csv,
    write_json,
)
from kcnn.runs.schemas import (  # noqa: F401  (re-exported: the records a run folder holds)
    FACTS_SCHEMA,
    GROUP_SCHEMA,
    MAX_ENTRIES,
    METRICS_SCHEMA,
    RUN_FACTS,
    Check,
    check_record,
)

MiB = 1024 * 1024
LOCK = ".lock"
# The most a record of each kind may hold: generous for anything kcnn writes (10,000 classes'
# confusion matrix is the biggest), small enough that a planted /dev/zero or a huge file costs
# nothing.
# training_features.npz: its arrays (dtype kinds, dimensions) and a cap on the file and on what it
# unpacks to (1,000 features of the widest kept width, 16,384, as float16 are 33 MB)
NEAREST_KINDS = {"features": ("f", 2), "threshold": ("f", 0), "k": ("iu", 0),
                 "percentile": ("f", 0), "version": ("iu", 0)}  # fmt: skip
NEAREST_CAP = 64 * 1024 * 1024
CAPS = {
    folders.CONFIG: 2 * MiB,
    folders.METRICS: 64 * MiB,
    folders.HISTORY: 16 * MiB,
    folders.SUMMARY: 8 * MiB,
    folders.COMPARISON_JSON: 64 * MiB,
    folders.COMPARISON_MD: 16 * MiB,
    folders.PROOF_JSON: 16 * MiB,
    folders.TYPICAL: 1 * MiB,  # 32×32×4 cells, two numbers each: about 100 KB
    folders.GROUP_JSON: 64 * MiB,  # per class, per metric, a summary of each group
    folders.GROUP_MD: 16 * MiB,
}
PNG_CAP = 32 * MiB
PNG_PIXELS = 64 * 1024 * 1024  # a picture kcnn draws is a few megapixels
JSON_CAP = 16 * MiB  # any other JSON record (export.json, a checkpoint note, ...)
LISTED = 10_000  # the runs `kcnn runs` lists of one folder: its newest
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


# --- the folder ---------------------------------------------------------------------------------


class RunFolder:
    """A run or comparison folder on disk: its records read as untrusted, written atomically."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._lock_fd: int | None = None

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    @classmethod
    def create(cls, out: str | Path, name: str) -> RunFolder:
        """A new, empty folder `<out>/<timestamp>-<name>` (never one that exists already)."""
        return cls(folders.create(out, name))

    # --- reads ---------------------------------------------------------------------------------

    def json(self, name: str, schema: Mapping[str, Check] | None = None) -> dict[str, Any]:
        """A JSON record; FileNotFoundError if missing, Damaged if it fails its checks."""
        record = read_json_record(self.path, name, CAPS.get(name, JSON_CAP))
        return check_record(record, schema or {}, self.path / name)

    def config(self) -> dict[str, Any]:
        record = self.json(folders.CONFIG, FACTS_SCHEMA)
        schemas.check_settings(record, self.path / folders.CONFIG)
        return record

    def metrics(self) -> dict[str, Any]:
        return self.json(folders.METRICS, METRICS_SCHEMA)

    def comparison(self) -> dict[str, Any]:
        record = self.json(folders.COMPARISON_JSON)
        config = record.get("config")
        if config is not None and not isinstance(config, dict):
            raise Damaged(self.path / folders.COMPARISON_JSON, "its config is not a table")
        check_record(config or {}, FACTS_SCHEMA, self.path / folders.COMPARISON_JSON)
        return record

    def group(self) -> dict[str, Any]:
        """A group's group.json (`kcnn.runs.groups`): its settings checked as a run's are, its
        seeds, status and every summary of its groups by `GROUP_SCHEMA`."""
        record = self.json(folders.GROUP_JSON, GROUP_SCHEMA)
        config = record.get("config")
        if isinstance(config, dict):
            where = self.path / folders.GROUP_JSON
            schemas.check_settings({**config, "command": record.get("command")}, where)
        return record

    def typical(self):
        """What the run's training images look like (`kcnn.data.typical.Typical`), every part
        checked; FileNotFoundError for a run that recorded none, Damaged if it fails."""
        from kcnn.data.typical import Typical

        record = self.json(folders.TYPICAL)
        try:
            return Typical.from_record(record)
        except ValueError as e:
            raise Damaged(self.path / folders.TYPICAL, str(e)) from None

    def nearest(self):
        """The training images' features and distance threshold (`kcnn.data.nearest.Nearest`),
        every part checked; FileNotFoundError for a run that recorded none, Damaged if it fails."""
        from kcnn.data import nearest
        from kcnn.runs import arrays

        where = self.path / folders.NEAREST
        data = read_bytes(self.path, folders.NEAREST, NEAREST_CAP)
        found = arrays.from_bytes(data, where, NEAREST_KINDS, tuple(NEAREST_KINDS), NEAREST_CAP)
        try:
            return nearest.Nearest.from_arrays(found)
        except ValueError as e:
            raise Damaged(where, str(e)) from None

    def test_predictions(self, name: str = ""):
        """The run's per-image test results (`kcnn.runs.predictions.ImageResults`), every part
        checked; FileNotFoundError for a run that recorded none, Damaged if they fail. `name`:
        another record of that form (a fold's answers on its validation images)."""
        from kcnn.runs import predictions

        name = name or predictions.NAME
        data = read_bytes(self.path, name, predictions.CAP)
        try:
            classes = self.config().get("classes")
        except (FileNotFoundError, Damaged):
            classes = None
        count = len(classes) if isinstance(classes, list) else None
        return predictions.ImageResults.from_bytes(data, self.path / name, count)

    def out_of_fold(self):
        """A folds group's out-of-fold answers (`oof_probabilities.npz`, read as the per-image
        test results are, every part checked): each training image's position (and file), its
        given label and the probabilities of the fold model that did not train on it.
        FileNotFoundError where there are none, Damaged if they fail or hold no probabilities."""
        results = self.test_predictions(folders.OUT_OF_FOLD)
        if results.probabilities is None:
            raise Damaged(self.path / folders.OUT_OF_FOLD, "it holds no probabilities")
        return results

    def has(self, name: str) -> bool:
        """Whether `name` is a regular file here (a link or a special file does not count)."""
        try:
            return stat.S_ISREG(os.lstat(self.path / name).st_mode)
        except OSError:
            return False

    def text(self, name: str) -> str:
        return read_text(self.path, name, CAPS.get(name, JSON_CAP))

    def history(self) -> list[dict[str, float]]:
        """history.csv's epochs, numbered 1, 2, ... with a number in every cell ([] if none)."""
        where = self.path / folders.HISTORY
        try:
            rows = read_csv_record(self.path, folders.HISTORY, CAPS[folders.HISTORY])
        except FileNotFoundError:
            return []
        parsed = []
        for number, row in enumerate(rows, 1):
            if None in row or None in row.values() or str(row.get("epoch")) != str(number):
                raise Damaged(where, f"row {number} is not epoch {number} with a value per column")
            try:
                values = {k: float(v) for k, v in row.items() if k != "epoch" and v != ""}
            except ValueError:
                raise Damaged(where, f"row {number} holds a value that is not a number") from None
            if not all(math.isfinite(v) for v in values.values()):
                raise Damaged(where, f"row {number} holds a value that is not finite")
            parsed.append({"epoch": number, **values})
        return parsed

    def png(self, name: str) -> bytes:
        """A picture to embed in a report: a regular file inside this folder that is a PNG of
        sane size (checked by decoding its header), never whatever a link points to."""
        data = read_bytes(self.path, name, PNG_CAP)
        if not data.startswith(PNG_SIGNATURE):
            raise Damaged(self.path / name, "not a PNG file")
        from PIL import Image

        try:
            with Image.open(io.BytesIO(data), formats=["PNG"]) as image:
                if image.width * image.height > PNG_PIXELS:
                    raise Damaged(self.path / name, f"{image.width}×{image.height} pixels")
                image.verify()
        except Damaged:
            raise
        except Exception as e:  # Pillow raises many kinds for a damaged PNG
            raise Damaged(self.path / name, f"not a valid PNG ({type(e).__name__})") from None
        return data

    def entries(self, sub: str | None = None) -> list[os.DirEntry]:
        """What the folder (or its subfolder `sub`, if a real folder) holds, links included as
        entries but never followed; at most MAX_ENTRIES."""
        where = self.path if sub is None else self.path / sub
        if sub is not None and not stat.S_ISDIR(_lstat_mode(where)):
            return []
        found: list[os.DirEntry] = []
        try:
            with os.scandir(where) as it:
                for entry in it:
                    found.append(entry)
                    if len(found) > MAX_ENTRIES:
                        raise Damaged(where, f"holds over {MAX_ENTRIES:,} entries")
        except OSError as e:
            raise Damaged(where, e.strerror or type(e).__name__) from None
        return sorted(found, key=lambda e: e.name)

    def newest(self, limit: int = LISTED) -> tuple[list[os.DirEntry], int]:
        """The `limit` newest entries of a folder of any size (by the time stamp kcnn puts in a
        run's name, else by modification time), sorted by name, links never followed; and how
        many entries it holds. Only `limit` entries are kept in memory while it is listed."""
        import heapq

        kept: list[tuple[float, str, int, os.DirEntry]] = []
        total = 0
        try:
            with os.scandir(self.path) as it:
                for total, entry in enumerate(it, 1):
                    key = (
                        folders.stamp_time(entry.name) or _mtime(entry),
                        entry.name,
                        total,
                        entry,
                    )
                    if len(kept) < limit:
                        heapq.heappush(kept, key)
                    else:
                        heapq.heappushpop(kept, key)
        except OSError as e:
            raise Damaged(self.path, e.strerror or type(e).__name__) from None
        return sorted((k[-1] for k in kept), key=lambda e: e.name), total

    def subfolders(self) -> list[Path]:
        """Real folders inside this one (not links), sorted by name."""
        return [Path(e.path) for e in self.entries() if e.is_dir(follow_symlinks=False)]

    def pictures(self, sub: str) -> list[str]:
        """The PNG files (regular files, not links) in subfolder `sub`, as names inside this folder."""
        return [
            f"{sub}/{e.name}"
            for e in self.entries(sub)
            if e.name.lower().endswith(".png") and e.is_file(follow_symlinks=False)
        ]

    def model_file(self, name: str = folders.MODEL) -> Path:
        """The path of a saved model that is a regular file here, for Keras to load."""
        path = self.path / name
        mode = _lstat_mode(path)
        if mode == 0:
            raise FileNotFoundError(2, "no such file", str(path))
        if not stat.S_ISREG(mode):
            raise Damaged(path, "not a regular file")
        return path

    # --- writes --------------------------------------------------------------------------------

    def write_json(self, name: str, record: Mapping[str, Any]) -> None:
        write_json(self.path / name, record)

    def write_text(self, name: str, text: str | bytes) -> None:
        write_atomic(self.path / name, text)

    def write_history(self, rows: list[dict[str, float]], columns: list[str] | None = None):
        write_csv(self.path / folders.HISTORY, rows, columns)

    @contextmanager
    def new_file(self, name: str, suffix: str) -> Iterator[Path]:
        """A fresh temporary path for a writer that wants a file name (a figure, a model),
        renamed to `name` when the writer is done."""
        with fresh_file(self.path / name, suffix) as tmp:
            yield tmp

    def save_model(self, model, name: str = folders.MODEL) -> None:
        with self.new_file(name, ".keras") as tmp:  # Keras insists on the .keras suffix
            model.save(tmp)

    def subfolder(self, name: str) -> Path:
        """`name` inside this folder as a real folder of its own, made if missing; a link or a
        file in its place is refused (writing there would write outside the run)."""
        path = self.path / name
        mode = _lstat_mode(path)
        if mode == 0:
            path.mkdir()
        elif not stat.S_ISDIR(mode):
            raise KcnnError(
                f"{path} is a link or a file, not a folder: remove it, or choose another --out"
            )
        return path

    def remove(self, *names: str) -> None:
        for name in names:
            (self.path / name).unlink(missing_ok=True)

    # --- the lock ------------------------------------------------------------------------------

    def lock(self) -> None:
        """An exclusive lock, held while a process works here. The kernel drops it when the
        process dies, however it dies, so a killed run never stays locked: its `.lock` file stays
        behind, and the next process takes the lock on it as on a fresh one. `unlock` removes
        the file, so a run that ended in any way kcnn saw leaves none."""
        if self._lock_fd is not None:
            return
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
        for _ in range(100):
            try:
                fd = os.open(self.path / LOCK, flags, 0o644)
            except OSError as e:
                raise KcnnError(
                    f"cannot lock {self.path} ({LOCK}: {e.strerror or e}); "
                    f"remove {self.path / LOCK}"
                ) from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                raise KcnnError(
                    f"another kcnn process is working in {self.path}; wait for it to end (or stop "
                    "it) first"
                ) from None
            if self._is_the_lock_file(fd):
                self._lock_fd = fd
                return
            os.close(fd)  # locked a file its holder removed as it finished: take the new one
        raise KcnnError(f"cannot lock {self.path}: its {LOCK} keeps changing; try again")

    def _is_the_lock_file(self, fd: int) -> bool:
        """Whether the open lock file is still the one at `.lock` (not one removed meanwhile)."""
        try:
            here, held = os.lstat(self.path / LOCK), os.fstat(fd)
        except OSError:
            return False
        return (here.st_dev, here.st_ino) == (held.st_dev, held.st_ino)

    def unlock(self) -> None:
        """Remove `.lock` while still holding it, then let go: a waiting process that opened the
        old file sees it is gone (`_is_the_lock_file`) and locks a new one."""
        if self._lock_fd is not None:
            if self._is_the_lock_file(self._lock_fd):
                with contextlib.suppress(OSError):
                    os.unlink(self.path / LOCK)
            os.close(self._lock_fd)
            self._lock_fd = None

    def rename(self, name: str) -> None:
        """Give the folder another name under its time stamp (`folders.rename`); the lock, held
        on the open file, goes with it."""
        self.path = folders.rename(self.path, name)


def _mtime(entry: os.DirEntry) -> float:
    try:
        return entry.stat(follow_symlinks=False).st_mtime
    except OSError:
        return 0.0


def _lstat_mode(path: Path) -> int:
    try:
        return os.lstat(path).st_mode
    except OSError:
        return 0


# --- reading a run back to resume it --------------------------------------------------------------

RESUMABLE = ("interrupted", "running", "failed")  # "running" with no live process: killed outright
# Settings a resume may change: they do not alter what the checkpoint's epochs computed.
FREE_SETTINGS = ("epochs", "out", "name", "data_dir", "time_limit", "cache")


@dataclass
class Resume:
    """Where a resumed run picks up: its folder, the epochs already done and their history."""

    run_dir: Path
    epoch: int  # epochs finished in the checkpoint (0: start again from the beginning)
    rows: list[dict[str, float]]
    train_seconds: float = 0.0
    fingerprint: str | None = None  # the digest of the data it trained on
    phase: int = 1  # the fit phase the checkpoint was taken in


def read_record(run: RunFolder, read, what: str) -> dict:
    """A record of a run to resume (`read` is one of RunFolder's readers), or a clear error."""
    try:
        return read()
    except FileNotFoundError as e:
        name = Path(e.filename or "").name
        raise KcnnError(f"{run.path} has no {name}: it is not a kcnn run folder") from None
    except Damaged as e:
        raise KcnnError(
            f"the {what} {e.path} is damaged ({e.reason[:120]}); this run cannot be resumed"
        ) from None


def read_resume(run_dir: str | Path, commands: tuple[str, ...] = ("train",)):
    """Check that `run_dir` is a run of one of `commands` that can be resumed; its config.json
    record and where it picks up (`Resume`)."""
    run_dir = Path(run_dir).expanduser()
    if not run_dir.is_dir():
        raise KcnnError(
            f"run folder {run_dir} does not exist; pass the folder of an interrupted run to --resume"
        )
    run = RunFolder(run_dir)
    record = read_record(run, run.config, "run configuration")
    metrics = read_record(run, run.metrics, "run metrics")
    status = metrics.get("status")
    if record.get("command") not in commands:
        raise KcnnError(
            f"{run_dir} is a `kcnn {record.get('command')}` run; this --resume continues "
            f"`kcnn {commands[0]}` runs: use `kcnn {record.get('command')} --resume`"
        )
    if status == "completed":
        raise KcnnError(
            f"{run_dir} already completed its {metrics.get('epochs_completed')} epochs; "
            "start a new run to train longer"
        )
    if status == "diverged":
        raise KcnnError(
            f"{run_dir} diverged; resuming would diverge again: start a new run with a lower --lr"
        )
    if status not in RESUMABLE:
        raise KcnnError(f"{run_dir} has status {status!r}; it cannot be resumed")
    epoch, phase = 0, 1
    if run.has(checkpoints.CHECKPOINT_INFO):
        info = read_record(run, lambda: run.json(checkpoints.CHECKPOINT_INFO), "checkpoint note")
        epoch, phase = info.get("epoch"), info.get("phase", 1)
        if schemas.count(epoch) or schemas.count(phase) or not 1 <= phase <= 2:
            raise KcnnError(
                f"the checkpoint note {run_dir / checkpoints.CHECKPOINT_INFO} is damaged (epoch "
                f"{schemas.short(epoch)}, phase {schemas.short(phase)}); this run cannot be resumed"
            )
        if not run.has(checkpoints.CHECKPOINT):
            raise KcnnError(
                f"{run_dir} has no {checkpoints.CHECKPOINT} beside its checkpoint note; this run "
                "cannot be resumed"
            )
        _check_same_settings(run_dir, record, info.get("settings"))
    rows = read_history(run) if epoch else []
    if not epoch:  # stopped in its first epoch: nothing kept to resume from (README, Resuming)
        progress.note(
            f"{run_dir} stopped before its first checkpoint; it is trained again from epoch 1 in "
            "the same folder"
        )
    _warn_other_kernels(run_dir, record, epoch)
    if len(rows) < epoch:
        raise KcnnError(
            f"{run_dir / folders.HISTORY} holds {len(rows)} epochs but the checkpoint is of epoch "
            f"{epoch}; this run cannot be resumed"
        )
    seconds = metrics.get("train_seconds", 0.0)
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not seconds >= 0:
        raise KcnnError(
            f"the run metrics {run_dir / folders.METRICS} are damaged (train_seconds {seconds!r}); "
            "this run cannot be resumed"
        )
    fingerprint = record.get("data_fingerprint")
    if fingerprint is not None and not isinstance(fingerprint, str):
        raise KcnnError(
            f"the run configuration {run_dir / folders.CONFIG} is damaged (data_fingerprint "
            f"{fingerprint!r}); this run cannot be resumed"
        )
    return record, Resume(
        run_dir, epoch, rows[:epoch], float(seconds) if epoch else 0.0, fingerprint, phase
    )


def _warn_other_kernels(run_dir: Path, record: dict, epoch: int) -> None:
    versions = record.get("versions")
    trained = versions.get(folders.KERNELS) if isinstance(versions, dict) else None
    if epoch and isinstance(trained, str) and trained != folders.kernels():
        progress.warn(
            f"{run_dir} was trained with {folders.KERNELS}={trained} and resumes with "
            f"{folders.kernels()}: its figures will match an uninterrupted run's only to float "
            f"rounding (set {folders.KERNELS}={trained} for bit-for-bit)"
        )


def _check_same_settings(run_dir: Path, record: dict, trained: Any) -> None:
    """Refuse a config.json whose settings differ from those the checkpoint was trained with."""
    if trained is None:  # a checkpoint from before notes kept settings
        return
    if not isinstance(trained, dict):
        raise KcnnError(
            f"the checkpoint note {run_dir / checkpoints.CHECKPOINT_INFO} is damaged (settings {trained!r}); "
            "this run cannot be resumed"
        )
    changed = [k for k, v in trained.items() if k not in FREE_SETTINGS and record.get(k) != v]
    if changed:
        key = changed[0]
        raise KcnnError(
            f"{run_dir / folders.CONFIG} says {key} = {record.get(key)!r} but the checkpoint was "
            f"trained with {key} = {trained[key]!r}; put it back, or start a new run with the "
            "new settings"
        )


def read_history(run: RunFolder) -> list[dict[str, float]]:
    """The epochs history.csv records: numbered 1, 2, ... each with its loss."""
    rows = read_record(run, lambda: {"rows": run.history()}, "history")["rows"]
    for number, row in enumerate(rows, 1):
        if "loss" not in row:
            raise KcnnError(
                f"the history {run.path / folders.HISTORY} is damaged (row {number} has no "
                "loss); this run cannot be resumed"
            )
    return rows
