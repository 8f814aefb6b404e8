"""Finding, reading and listing run folders: what `kcnn runs`, `show`, `compare`, `predict` and
the reports see of a run.

Every record is read through the run folder's owner (`kcnn.runs.run.RunFolder`): regular files
inside the folder only, size-capped and schema-checked. A folder that fails is listed as damaged
with the reason, never a traceback; a comparison lists its runs one level deep, never itself or
another comparison's runs. Old and new spellings are both understood (`arch`/`api` or
`backbone`/`head`). No TensorFlow.
"""

from __future__ import annotations

import json
import os
import stat
import time
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from kcnn import progress
from kcnn.errors import KcnnError, did_you_mean
from kcnn.runs import folders
from kcnn.runs.folders import COMPARISON_JSON, COMPARISON_MD  # noqa: F401  (re-exported)
from kcnn.runs.records import Damaged
from kcnn.runs.run import RunFolder

DEFAULT_DIR = Path("runs")

# What a folder is, when it is not a run with a readable status of its own.
NOT_A_RUN, INCOMPLETE, COMPARISON, DAMAGED = "not a run", "incomplete", "comparison", "damaged"
SWEEP = "sweep"  # a comparison folder that `kcnn sweep` made (kcnn.runs.sweep_report)


def _read(read) -> tuple[dict[str, Any] | None, str | None]:
    """A record (None if missing) and what is wrong with it (None if nothing)."""
    try:
        return read(), None
    except FileNotFoundError:
        return None, None
    except Damaged as e:
        return None, f"{e.path.name}: {e.reason}"


@dataclass
class RunInfo:
    """One folder under a runs directory, read without trusting that it is complete or kcnn's."""

    folder: Path
    config: dict[str, Any] | None
    metrics: dict[str, Any] | None
    comparison: dict[str, Any] | None = None
    parent: RunInfo | None = field(default=None, repr=False)
    damage: str | None = None  # why a record could not be trusted
    member: bool = False  # loaded as a comparison's run: its own runs are never listed

    @classmethod
    def load(cls, folder: str | Path, parent: RunInfo | None = None, member: bool = False):
        run = RunFolder(folder)
        if (parent is not None or member) and _is_link(run.path):
            return cls(run.path, None, None, None, parent, "a link: not followed", member)
        config, bad_config = _read(run.config)
        metrics, bad_metrics = _read(run.metrics)
        comparison, bad_comparison = (None, None) if member or parent else _read(run.comparison)
        if comparison is None and not member and not parent and run.has(COMPARISON_MD):
            comparison = {}  # a comparison written before comparison.json existed (transfer)
        # a group of seed runs: its record checked here, so a damaged one is listed as damaged
        bad_group = _read(run.group)[1] if run.has(folders.GROUP_JSON) else None
        damage = bad_config or bad_metrics or bad_comparison or bad_group
        return cls(run.path, config, metrics, comparison, parent, damage, member)

    # --- what kind of folder -----------------------------------------------------------------
    @property
    def is_comparison(self) -> bool:
        return self.comparison is not None

    @property
    def is_run(self) -> bool:
        """A training run folder (complete or not), as opposed to a comparison or a stray folder."""
        return not self.is_comparison and (
            self.config is not None
            or self.damage is not None
            or os.path.lexists(self.folder / folders.METRICS)
        )

    @property
    def name(self) -> str:
        return f"{self.parent.name}/{self.folder.name}" if self.parent else self.folder.name

    @cached_property
    def sub_runs(self) -> list[RunInfo]:
        """A comparison's own run folders (real folders inside it, never links), one level deep."""
        from kcnn.runs import groups

        if groups.is_group(self.folder) and not self.member:  # a group of seed runs: its runs
            found = [RunInfo.load(p) for p in RunFolder(self.folder).subfolders()]
            for f in found:  # a seed's comparison: its runs are named group/comparison/run
                f.parent = self if f.is_comparison else None
            return groups.leaves(
                f if f.is_comparison else RunInfo.load(f.folder, self) for f in found
            )
        if not self.is_comparison or self.member:
            return []
        try:
            subs = [RunInfo.load(p, self) for p in RunFolder(self.folder).subfolders()]
        except Damaged:
            return []
        return [s for s in subs if s.is_run]

    @cached_property
    def members(self) -> list[RunInfo]:
        """The runs a comparison compares: its own sub-folders, or those `kcnn compare` named
        (read as plain runs: a comparison that names itself or another comparison never
        recurses)."""
        if self.member or not self.is_comparison:
            return []
        named = [Path(p) for p in self.settings.get("runs") or []]
        here = self.folder.resolve()
        return self.sub_runs or [
            RunInfo.load(p, member=True) for p in named if p.is_dir() and p.resolve() != here
        ]

    # --- settings (config.json) ---------------------------------------------------------------
    @property
    def settings(self) -> dict[str, Any]:
        if self.is_comparison:
            return dict(self.comparison.get("config") or {})
        return dict(self.config or {})

    def _get(self, key: str, default: Any = None) -> Any:
        """A key from config.json, else metrics.json (the two overlap for arch/api/dataset)."""
        for record in (self.settings, self.metrics or {}):
            if record.get(key) is not None:
                return record[key]
        return default

    @property
    def command(self) -> str | None:
        return self._get("command") or self._get("kind")

    @property
    def arch(self) -> str | None:
        return self._get("arch")

    @property
    def api(self) -> str | None:
        return self._get("api")

    @property
    def backbone(self) -> str | None:
        return self._get("backbone")

    @property
    def head(self) -> str | None:
        return self._get("head")

    @property
    def model_label(self) -> str:
        """`lenet5 (sequential)`, `vgg16 + seed head`, or for a comparison the forms it compares."""
        if self.backbone:
            return f"{self.backbone} + {self.head} head" if self.head else self.backbone
        if self.is_comparison and self.settings.get("apis"):
            return f"{self.arch} ({'/'.join(self.settings['apis'])})"
        if self.is_comparison and self.members:
            return " vs ".join(dict.fromkeys(s.model_label for s in self.members))
        if self.arch:
            return f"{self.arch} ({self.api})" if self.api else self.arch
        return ""

    @property
    def dataset(self) -> str | None:
        """The data set the run trained on: an offline stand-in's name when one was used (a run
        recorded before kcnn named runs by the stand-in says `mnist` in its settings)."""
        found = self._get("dataset")
        asked = self.dataset_asked
        if asked is not None and found == asked:
            found = _stand_in(asked) or found
        if found is None and self.is_comparison and self.members:
            found = ", ".join(dict.fromkeys(str(s.dataset) for s in self.members))
        return found

    @property
    def dataset_asked(self) -> str | None:
        """The data set asked for, when an offline stand-in was used instead (else None)."""
        provenance = self.settings.get("dataset_provenance")
        if not isinstance(provenance, dict) or provenance.get("fallback") is not True:
            return None
        asked = provenance.get("requested")
        return asked if isinstance(asked, str) else None

    @property
    def dataset_text(self) -> str | None:
        """The data set as `show` says it: `mnist-5k (asked: mnist, offline fallback)`."""
        asked = self.dataset_asked
        if self.dataset is None or asked is None or asked == self.dataset:
            return self.dataset
        return f"{self.dataset} (asked: {asked}, offline fallback)"

    @property
    def input_shape(self) -> tuple[int, int, int] | None:
        shape = self._get("input_shape")
        return tuple(int(v) for v in shape) if shape else None

    @property
    def data_image_shape(self) -> tuple[int, int, int] | None:
        """The data set's own image shape (before the pipeline pads or resizes it)."""
        shape = self._get("image_shape")  # the trainer records the data set's own image shape
        if shape:
            return tuple(int(v) for v in shape)
        from kcnn.data.datasets import DATASETS

        info = DATASETS.get(str(self.dataset))  # a stand-in's own shape, when one was used
        return tuple(info.image_shape) if info is not None else None

    @property
    def fit(self) -> str | None:
        return self._get("fit")

    @property
    def class_names(self) -> list[str]:
        return [str(c) for c in self._get("classes") or []]

    @property
    def epochs_planned(self) -> int | None:
        if self.is_comparison and self.members:
            found = [s.epochs_planned for s in self.members]
            return max(found) if None not in found else None
        planned = (self.metrics or {}).get("epochs_planned") or self._get("epochs")
        if planned and self.settings.get("fine_tune"):
            planned += self.settings.get("fine_tune_epochs") or 0
        return planned

    # --- results (metrics.json) ---------------------------------------------------------------
    @property
    def status(self) -> str:
        if self.damage is not None:
            return DAMAGED
        if self.is_comparison:
            return SWEEP if self.comparison.get("kind") == SWEEP else COMPARISON
        if not self.is_run:
            return NOT_A_RUN
        if self.metrics is None or "status" not in self.metrics:
            return INCOMPLETE
        return str(self.metrics["status"])

    @property
    def epochs_done(self) -> int | None:
        if self.is_comparison:
            done = [s.epochs_done for s in self.members]
            return min(done) if done and None not in done else None
        return (self.metrics or {}).get("epochs_completed")

    @property
    def test_accuracy(self) -> float | None:
        if self.is_comparison:
            found = [s.test_accuracy for s in self.members if s.test_accuracy is not None]
            return max(found) if found else None
        return (self.metrics or {}).get("test_accuracy")

    @property
    def test_images(self) -> int | None:
        """How many images the run was tested on (config.json's split sizes)."""
        sizes = self.settings.get("split_sizes")
        n = sizes.get("test") if isinstance(sizes, dict) else None
        return n if isinstance(n, int) and not isinstance(n, bool) and n > 0 else None

    @property
    def accuracy_interval(self):
        """The test accuracy with its 95% Wilson interval (`kcnn.runs.verdict.Interval`), or
        None for a comparison or a run without both figures."""
        from kcnn.runs import verdict

        if self.is_comparison:
            return None
        return verdict.accuracy_interval(self.test_accuracy, self.test_images)

    @property
    def test_loss(self) -> float | None:
        return (self.metrics or {}).get("test_loss")

    @property
    def duration(self) -> float | None:
        """Seconds from start to finish of the run (of the whole comparison)."""
        return self._get("wall_seconds")

    @property
    def params(self) -> int | None:
        p = (self.metrics or {}).get("params")
        if isinstance(p, dict):
            return p.get("total")
        return (self.metrics or {}).get("total_params")

    @property
    def per_class(self) -> dict[str, dict[str, float]]:
        return (self.metrics or {}).get("per_class") or {}

    @property
    def created(self) -> float:
        """When the run started: the folder name's time stamp, else the folder's mtime."""
        stamped = folders.stamp_time(self.folder.name)
        if stamped is not None:
            return stamped
        try:
            return self.folder.stat().st_mtime
        except OSError:
            return 0.0

    def history(self) -> dict[str, list[float]]:
        """history.csv as {metric: per-epoch values}; empty if the run recorded none (or a
        damaged one)."""
        try:
            rows = RunFolder(self.folder).history()
        except Damaged:
            return {}
        found: dict[str, list[float]] = {}
        for row in rows:
            for key, value in row.items():
                if key != "epoch":
                    found.setdefault(key, []).append(value)
        return found

    def row(self) -> dict[str, Any]:
        """The line `kcnn runs` prints (and `--json` gives) for this folder."""
        from kcnn.runs import groups

        if groups.is_group(self.folder):
            return groups.row(self)
        return {
            "name": self.name,
            "kind": "comparison" if self.is_comparison else ("run" if self.is_run else "other"),
            "command": self.command,
            "model": self.model_label,
            "dataset": self.dataset,
            "epochs_done": self.epochs_done,
            "epochs_planned": self.epochs_planned,
            "test_accuracy": self.test_accuracy,
            "test_accuracy_ci": _ci(self.accuracy_interval),
            **{k: (self.metrics or {}).get(k) for k in folders.CLASS_BALANCED},
            "status": self.status,
            "damage": self.damage,
            "duration_seconds": self.duration,
            "created": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.created)),
            "path": str(self.folder),
        }


def interval_cell(run_dir: str | Path) -> str:
    """The 95% interval of a finished run's test accuracy as a table cell ('' without one)."""
    interval = RunInfo.load(run_dir).accuracy_interval
    return "" if interval is None else interval.cell()


def _ci(interval) -> list[float] | None:
    return None if interval is None else [interval.ci_low, interval.ci_high]


def find(run: str | Path, runs_dir: Path = DEFAULT_DIR) -> RunInfo:
    """The run a user named: a folder path, or a name `kcnn runs` shows — a folder under `runs/`,
    a comparison's (or group's) run as `comparison/run`, or such a run's own folder name alone
    when no other folder under `runs/` has it. A name is followed through real folders only,
    inside `runs/` (never `..`, never a link). Refuses anything else."""
    path = Path(run).expanduser()
    if not path.exists() and not path.is_absolute():
        path = _named(str(run), Path(runs_dir)) or path
    if not path.exists():
        raise KcnnError(f"no run folder {run}: give the path of a run folder (see `kcnn runs`)")
    if not path.is_dir():
        raise KcnnError(f"{run} is a file, not a run folder; give the run's folder")
    return RunInfo.load(path)


_NAME_DEPTH = 3  # group / comparison / run: the deepest `kcnn runs` lists


def _named(name: str, runs_dir: Path) -> Path | None:
    """The folder under `runs_dir` a name of `kcnn runs` stands for, or None."""
    parts = Path(name).parts
    if not parts or len(parts) > _NAME_DEPTH or any(p in ("..", ".", "/") for p in parts):
        return None
    path = _walk(runs_dir, parts)
    if path is not None or len(parts) > 1:
        return path
    found = _inside(runs_dir, parts[0], _NAME_DEPTH - 1)
    if len(found) > 1:
        shown = ", ".join(str(p.relative_to(runs_dir)) for p in found[:5])
        raise KcnnError(f"several runs are named {name} ({shown}); name one of them")
    return found[0] if found else None


def _subfolders(folder: Path) -> dict[str, Path]:
    """The real folders (never links) inside `folder`, by name; none when it cannot be listed."""
    try:
        return {p.name: p for p in RunFolder(folder).subfolders()}
    except Damaged:
        return {}


def _walk(root: Path, parts: tuple[str, ...]) -> Path | None:
    here = root
    for part in parts:
        here = _subfolders(here).get(part)
        if here is None:
            return None
    return here


def _inside(root: Path, name: str, depth: int) -> list[Path]:
    """Folders called `name` inside the folders under `root`, at most `depth` levels down."""
    found: list[Path] = []
    level = [p for n, p in sorted(_subfolders(root).items()) if not n.startswith(".")]
    for _ in range(depth):
        found += [p / name for p in level if name in _subfolders(p)]
        level = [sub for p in level for sub in _subfolders(p).values()]
    return found


def _is_link(path: Path) -> bool:
    try:
        return stat.S_ISLNK(os.lstat(path).st_mode)
    except OSError:
        return False


def find_run(run: str | Path) -> RunInfo:
    """A single training run (not a comparison) that finished well enough to have a model."""
    info = find(run)
    if info.is_comparison:
        # each run named as `find` takes it: the comparison as given, then the run
        where = str(run).rstrip("/")
        subs = ", ".join(f"{where}/{s.folder.name}" for s in info.sub_runs) or "none"
        raise KcnnError(f"{run} is a comparison folder; name one of its runs: {subs}")
    if info.damage is not None:
        raise KcnnError(f"{run} cannot be used: {info.damage}")
    if not info.is_run:
        raise KcnnError(f"{run} is not a run folder (no config.json); see `kcnn runs` for runs")
    if info.config is None:
        raise KcnnError(f"{run} is an incomplete run: its config.json is missing or corrupt")
    return info


def scan(runs_dir: str | Path = DEFAULT_DIR) -> list[RunInfo]:
    """Every folder directly under `runs_dir` (hidden ones aside), newest first."""
    runs_dir = Path(runs_dir).expanduser()
    if not runs_dir.is_dir():
        raise KcnnError(f"no runs folder {runs_dir}; train something first or name a folder")
    try:  # a folder of any size: its newest 10,000 (a sweep of 10,000 trials is ordinary)
        entries, total = RunFolder(runs_dir).newest()
    except Damaged as e:
        raise KcnnError(f"cannot list {runs_dir}: {e.reason}") from None
    if total > len(entries):
        progress.warn(f"{runs_dir} holds {total:,} entries; the newest {len(entries):,} are listed")
    found = []
    for entry in entries:
        if entry.name[0] == ".":
            continue
        if entry.is_symlink():  # never followed: it may lead anywhere
            found.append(RunInfo(Path(entry.path), None, None, damage="a link: not followed"))
        elif entry.is_dir(follow_symlinks=False):
            found.append(RunInfo.load(entry.path))
    return sorted(found, key=lambda r: (r.created, r.folder.name), reverse=True)


# --sort keys: the row field each sorts on, and whether the biggest value comes first.
SORT_KEYS: dict[str, tuple[str, bool]] = {
    "time": ("created", True),
    "name": ("name", False),
    "command": ("command", False),
    "model": ("model", False),
    "dataset": ("dataset", False),
    "status": ("status", False),
    "accuracy": ("test_accuracy", True),
    "duration": ("duration_seconds", False),
    "epochs": ("epochs_done", True),
}


def check_sort(key: str) -> str:
    if key not in SORT_KEYS:
        tip = did_you_mean(key, SORT_KEYS)
        raise KcnnError(f"cannot sort by '{key}': {tip}choose one of {', '.join(SORT_KEYS)}")
    return key


# What `kcnn runs --status` can match: a run's status, or what a folder is when it has none.
STATUS_CHOICES = (*folders.STATUSES, INCOMPLETE, COMPARISON, SWEEP, DAMAGED, NOT_A_RUN)


def check_status(status: str | None) -> str | None:
    if status is not None and status not in STATUS_CHOICES:
        tip = did_you_mean(status, STATUS_CHOICES)
        raise KcnnError(f"no status '{status}': {tip}choose one of {', '.join(STATUS_CHOICES)}")
    return status


def listing(
    runs_dir: str | Path = DEFAULT_DIR,
    status: str | None = None,
    model: str | None = None,
    dataset: str | None = None,
    sort: str = "time",
) -> list[dict[str, Any]]:
    """The rows of `kcnn runs`: each folder, a comparison followed by its own runs, filtered, sorted.

    Missing values sort last whichever the direction.
    """
    field_name, biggest_first = SORT_KEYS[check_sort(sort)]

    def keep(row: dict[str, Any]) -> bool:
        return (
            (status is None or row["status"] == status)
            and (model is None or model.lower() in (row["model"] or "").lower())
            and (dataset is None or dataset == row["dataset"])
        )

    def ordered(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        present = [r for r in rows if r[field_name] is not None]
        missing = [r for r in rows if r[field_name] is None]
        return sorted(present, key=lambda r: r[field_name], reverse=biggest_first) + missing

    rows: list[dict[str, Any]] = []
    top = [(info, info.row()) for info in scan(runs_dir)]
    by_name = {row["name"]: info for info, row in top}
    for row in ordered([row for _, row in top]):
        info = by_name[row["name"]]
        subs = ordered([s.row() for s in info.sub_runs])
        if keep(row):
            rows.append(row)
        rows += [s for s in subs if keep(s)]
    return rows


# Settings that name or place a run rather than say how it was trained.
_NOT_SETTINGS = {"versions", "out", "name", "classes", "run_dir"}


def _flat(record: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in record.items():
        if key in _NOT_SETTINGS and not prefix:
            continue
        if isinstance(value, dict):
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def settings_differences(runs: list[RunInfo]) -> list[dict[str, Any]]:
    """One row per config key whose value is not the same in every run (nested keys dotted).
    The data set is the one each run used (an offline stand-in's, not the name asked for), and
    runs whose data fingerprints are equal trained on the same data: how each came by it (its
    provenance, a fallback or not) is no difference between them."""
    flats = [{**_flat(r.settings), "dataset": r.dataset} for r in runs]
    fingerprints = {f.get("data_fingerprint") for f in flats}
    if len(fingerprints) == 1 and None not in fingerprints:
        flats = [
            {k: v for k, v in f.items() if not k.startswith("dataset_provenance.")} for f in flats
        ]
    keys = list(dict.fromkeys(k for f in flats for k in f))
    labels = _labels(runs)
    rows = []
    for key in keys:
        values = [f.get(key) for f in flats]
        if any(json.dumps(v) != json.dumps(values[0]) for v in values[1:]):
            rows.append({"setting": key, **dict(zip(labels, values, strict=True))})
    return rows


def _labels(runs: list[RunInfo]) -> list[str]:
    """Unique short labels for runs: the folder name (the same name twice gets a number)."""
    labels: list[str] = []
    for r in runs:
        label = r.folder.name
        labels.append(label if label not in labels else f"{label} ({len(labels) + 1})")
    return labels


def _stand_in(asked: str) -> str | None:
    """The registered data set that stands in for `asked` when it is unavailable (mnist-5k)."""
    from kcnn.data.datasets import DATASETS

    entry = DATASETS.get(asked)
    return entry.fallback if entry is not None else None
