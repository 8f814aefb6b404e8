"""--teacher RUN: knowledge distillation from a finished run (Hinton et al., 2015).

The teacher is a run folder kcnn made, read as untrusted through its owners: found and checked by
`kcnn.runs.browse.find_run`, its model loaded in Keras's safe mode by `kcnn.models.saved` (through
`kcnn.use.predict.load`, which also rebuilds its own preprocessing). It must have completed, on
the very same data (its data fingerprint) and classes (in the same order), and never have
trained on an image this run tests on: where a data set has no test split of its own, the test
images are drawn with the seed, so a teacher of another seed would have trained on some of this
run's test images and its soft labels would leak them. A seed group may be named as the teacher:
each seed distils from the group's run of its own seed.

`RUN` is a folder, a name `kcnn runs` shows, or the name of a run or group in this run's --out
(its newest folder `<time stamp>-RUN`), so an experiment file can train a teacher and then its
students. The teacher's probabilities for every training image (unaugmented, through its own
preprocessing) are computed once per run and go into the pipeline after the one-hot labels
(`Trainer.soft_labels`); the loss is `kcnn.models.losses`' TargetCrossentropy. The run records
which teacher it used, by folder and by the digest of its model.keras: a resumed run uses that
very folder, and refuses one whose model changed.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np

from kcnn.engine.trainer import Trainer
from kcnn.errors import KcnnError
from kcnn.runs import folders, groups
from kcnn.runs.browse import find_run
from kcnn.runs.records import Damaged
from kcnn.runs.run import RunFolder


def attach(trainer: Trainer) -> None:
    """Give the trainer its teacher's soft labels, when its settings name a teacher; records
    the teacher among the run's facts."""
    config = trainer.config
    if config.teacher is None:
        return
    recorded = trainer.records.facts.get("teacher_run") if trainer.resume is not None else None
    if isinstance(recorded, dict) and isinstance(recorded.get("run"), str):
        folder = Path(recorded["run"])
    else:
        folder = resolve(config.teacher, config.out, config.seed)
    soft, facts = soft_labels(folder, trainer.prepared, config.teacher)
    if isinstance(recorded, dict) and recorded.get("model_sha256") != facts["model_sha256"]:
        raise KcnnError(
            f"the teacher {folder} holds another model.keras than this run distilled from; "
            "it cannot be resumed exactly: start a new run"
        )
    trainer.soft_labels = soft
    trainer.records.add_facts(teacher_run=facts)


def locate(config) -> None:
    """A teacher named in --out becomes its folder's path, before a group's seeds are made (each
    seed's run writes inside the group's folder, where the name would not be found)."""
    if config.teacher is None or Path(config.teacher).expanduser().exists():
        return
    named = _newest_named(Path(config.out).expanduser(), config.teacher)
    if named is not None:
        config.teacher = str(named.resolve())


def resolve(teacher: str, out: str, seed: int) -> Path:
    """The teacher's run folder (see the module docstring)."""
    path = Path(teacher).expanduser()
    if not path.exists():
        named = _newest_named(Path(out).expanduser(), teacher)
        if named is not None:
            path = named
    if path.is_dir() and not path.is_symlink() and groups.is_group(path):
        return _member_of_seed(path, seed, teacher)
    return find_run(path if path.exists() else teacher).folder


def _newest_named(out: Path, name: str) -> Path | None:
    """The newest folder made for a run or seed group named `name` directly in `out`
    (`<time stamp>-NAME`, `<time stamp>-NAME-seeds`), or None."""
    if "/" in name or name in (".", "..") or not out.is_dir():
        return None
    try:
        found = [
            p
            for p in RunFolder(out).subfolders()
            if folders.made_for(p.name, name) or folders.made_for(p.name, f"{name}-seeds")
        ]
    except Damaged:
        return None
    return max(found, key=lambda p: (folders.stamp_time(p.name) or 0.0, p.name), default=None)


def _member_of_seed(group: Path, seed: int, teacher: str) -> Path:
    for member in RunFolder(group).subfolders():
        try:
            settings = RunFolder(member).config()
        except (FileNotFoundError, Damaged):
            continue
        if settings.get("seed") == seed:
            return member
    raise KcnnError(
        f"the teacher group {teacher} has no run of seed {seed}; train the teacher with this "
        "seed too (each seed distils from the teacher of its own seed)"
    )


def soft_labels(folder: Path, prepared, named: str) -> tuple[np.ndarray, dict[str, Any]]:
    """The teacher's probabilities for each training image, and what the run records of it.
    Every refusal is one line naming what is wrong."""
    from kcnn.use import predict  # TensorFlow: only once a run trains

    info = find_run(folder)
    if info.status != "completed":
        raise KcnnError(
            f"the teacher {named} ({info.folder}) is {info.status}, not completed: finish it first"
        )
    parts = prepared.parts
    mine, theirs = list(parts.class_names), list(info.class_names)
    if theirs != mine:
        raise KcnnError(
            f"the teacher {named} knows the classes {_few(theirs)}, this run {_few(mine)}: a "
            "teacher must have the same classes in the same order"
        )
    fingerprint = info.settings.get("data_fingerprint")
    if fingerprint != prepared.fingerprint:
        raise KcnnError(
            f"the teacher {named} was trained on other data ({info.dataset}) than this run "
            f"({prepared.data.name}): distil from a run of the same data"
        )
    loaded = predict.load(info.folder)
    if tuple(loaded.data_shape) != tuple(prepared.data.image_shape):
        raise KcnnError(
            f"the teacher {named} takes {_shape(loaded.data_shape)} images, this run's data is "
            f"{_shape(prepared.data.image_shape)}: distil from a run of the same data"
        )
    _check_no_leak(loaded, parts, named)
    probabilities = loaded.predict(parts.x_train)
    model = RunFolder(info.folder).model_file()
    facts = {
        "run": str(info.folder.resolve()),
        "model_sha256": _digest(model),
        "seed": info.settings.get("seed"),
        "test_accuracy": info.test_accuracy,
    }
    return probabilities.astype(np.float32), facts


def _check_no_leak(loaded, parts, named: str) -> None:
    """Refuse a teacher that trained on any of this run's test images."""
    if not parts.test_held_out:
        return  # the data set's own test split: no run trains on it
    theirs = loaded.splits()
    if theirs is None:
        raise KcnnError(
            f"the teacher {named}'s splits cannot be rebuilt here, so whether it trained on this "
            "run's test images cannot be checked: distil from a teacher whose data is here"
        )
    tested = set(np.asarray(theirs.test_index).tolist()) if theirs.test_held_out else set()
    leaked = [i for i in np.asarray(parts.test_index).tolist() if i not in tested]
    if leaked:
        raise KcnnError(
            f"the teacher {named} trained on {len(leaked)} of this run's {len(parts.test_index)} "
            "test images (its test split was drawn with another seed or split): its soft labels "
            "would leak them; use a teacher of this --seed, --test-split and --limit"
        )


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _few(names: list[str]) -> str:
    shown = ", ".join(names[:5])
    return f"{shown}, ... ({len(names)})" if len(names) > 5 else shown


def _shape(shape) -> str:
    return "×".join(str(d) for d in shape)
