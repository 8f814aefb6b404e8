"""What each record of a run folder may hold: the checks its values pass when read back.

A check takes a value and returns an error phrase, or None when the value is fine. Every key is
optional (records of interrupted runs hold fewer), and null is always allowed. `RunFolder`
(kcnn.runs.run) reads every record through `check_record` with its schema; `RUN_FACTS` is what
config.json may hold besides the settings.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from kcnn import defaults
from kcnn.errors import KcnnError
from kcnn.runs import folders
from kcnn.runs.records import Damaged

# Entries read from one folder: a sweep of 10,000 trials (each retried one a folder more) is
# ordinary; beyond this it is not a folder kcnn made, and reading it would only cost memory.
MAX_ENTRIES = 100_000

Check = Callable[[Any], str | None]


def _number(low: float = -math.inf, high: float = math.inf) -> Check:
    def check(v):
        if isinstance(v, bool) or not isinstance(v, int | float):
            return "not a number"
        if not math.isfinite(v) or not low <= v <= high:
            return f"not a number from {low:g} to {high:g}"
        return None

    return check


def count(v) -> str | None:
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        return "not a whole number ≥ 0"
    return None


def _text(v) -> str | None:
    return None if isinstance(v, str) and len(v) <= 4096 else "not text (or over 4096 characters)"


def _flag(v) -> str | None:
    return None if isinstance(v, bool) else "not true or false"


def _choice(*allowed: str) -> Check:
    return lambda v: None if v in allowed else f"not one of {', '.join(allowed)}"


def _list_of(item: Check, most: int = defaults.MAX_CLASSES) -> Check:
    def check(v):
        if not isinstance(v, list) or len(v) > most:
            return f"not a list of at most {most:,} items"
        return next((f"item {i}: {e}" for i, x in enumerate(v) if (e := item(x))), None)

    return check


def _mapping_of(item: Check, most: int = defaults.MAX_CLASSES + 2) -> Check:
    def check(v):
        if not isinstance(v, dict) or len(v) > most:
            return f"not a table of at most {most:,} entries"
        return next((f"{k!r}: {e}" for k, x in v.items() if x is not None and (e := item(x))), None)

    return check


def _shape(v) -> str | None:
    if (
        not isinstance(v, list)
        or len(v) != 3
        or any(isinstance(d, bool) or not isinstance(d, int) for d in v)
        or not all(1 <= d <= defaults.IMAGE_SIZE_MAX for d in v[:2])
        or not 1 <= v[2] <= 4
    ):
        return "not an image shape [height, width, channels]"
    return None


def _anything(v) -> str | None:
    return None  # bounded already: size cap and nesting depth


_unit, _seconds = _number(0.0, 1.0), _number(0.0)
_scores = _mapping_of(_number(0.0, 1e12), most=8)

METRICS_SCHEMA: dict[str, Check] = {
    "command": _text,
    "status": _choice(*folders.STATUSES),
    "epochs_completed": count,
    "epochs_planned": count,
    "dataset": _text,
    "dataset_fallback": _flag,
    "arch": _text,
    "api": _text,
    "backbone": _text,
    "head": _text,
    "test_loss": _number(0.0),
    "test_accuracy": _unit,
    "test_balanced_accuracy": _unit,
    "test_macro_f1": _unit,
    "best_val_accuracy": _unit,
    "wall_seconds": _seconds,
    "train_seconds": _seconds,
    "seconds_per_epoch": _seconds,
    "train_images_per_second": _seconds,
    "build_seconds": _seconds,
    "feature_seconds": _seconds,
    "params": _mapping_of(count, most=8),
    "total_params": count,
    "trainable_params": count,
    "frozen_params": count,
    "per_class": _mapping_of(_scores),
    "macro_avg": _scores,
    "weighted_avg": _scores,
    "confusion_matrix": _list_of(_list_of(count)),
    "run_dir": _text,
    "signal": _text,
}

_LEAKAGE = {"test_images_copied_from_training": count, "test_images": count}
FACTS_SCHEMA: dict[str, Check] = {
    "command": _text,
    "input_shape": _shape,
    "image_shape": _shape,
    "classes": _list_of(_text),
    "fit": _choice("none", "pad", "resize"),
    "split_sizes": _mapping_of(count, most=8),
    "data_fingerprint": _text,
    "test_leakage": lambda v: _table(_LEAKAGE)(v),  # _table is defined below
    "versions": _mapping_of(_text, most=64),
    "replicas": count,
    "device_names": _list_of(_text, most=4096),
    "runs": _list_of(_text, most=MAX_ENTRIES),  # kcnn compare: the runs it compared
}


def _optional(check: Check) -> Check:
    return lambda v: None if v is None else check(v)


def _table(schema: Mapping[str, Check]) -> Check:
    """A table whose keys, where present and not null, pass their checks (others are free)."""

    def check(v):
        if not isinstance(v, dict):
            return "not a table"
        return next(
            (f"{k}: {e}" for k, c in schema.items() if v.get(k) is not None and (e := c(v[k]))),
            None,
        )

    return check


# What a folds group's out-of-fold answers score (kcnn.runs.out_of_fold).
_OOF_SCORES = ("accuracy", "balanced_accuracy", "macro_f1")
MAX_SEEDS = 10_000  # seed runs in one group: far more than anyone trains
_SUMMARY = _table(
    {
        "n": count,
        **{k: _number() for k in ("mean", "sd", "ci_low", "ci_high", "half_width")},
        "values": _list_of(_number(), most=MAX_SEEDS),
    }
)
_GROUP = _table(
    {
        "n": count,
        "seeds": _list_of(_optional(count), most=MAX_SEEDS),
        "runs": _list_of(_text, most=MAX_SEEDS),
        "metrics": _mapping_of(_SUMMARY, most=1000),
        "per_class": _mapping_of(_mapping_of(_SUMMARY, most=8)),
    }
)
GROUP_SCHEMA: dict[str, Check] = {
    "command": _text,
    "name": _text,
    "kind": _text,
    "config": _table({}),  # its settings checked by `_check_settings`
    "seeds": _list_of(_optional(count), most=MAX_SEEDS),
    "status": _text,
    "wall_seconds": _seconds,
    "groups": _mapping_of(_GROUP, most=1000),
    "tests": _list_of(_table({"metric": _text, "sentence": _text}), most=100_000),
    "identical": _flag,
    "folds": count,
    "cross_validation": _table({k: _number(0.0) for k in ("folds", "images", *_OOF_SCORES)}),
}


def check_settings(record: dict[str, Any], where: Path) -> None:
    """The settings in a config.json, each checked by kcnn's own schema for that setting."""
    from kcnn.engine.config import COMMANDS, check_value

    command = COMMANDS.get(record.get("command"))
    if command is None:
        return
    for key, spec in command.settings().items():
        if record.get(key) is not None:
            try:
                check_value(key, spec, record[key])
            except KcnnError as e:
                raise Damaged(where, f"setting {key}: {str(e)[:160]}") from None


def check_record(record: dict[str, Any], schema: Mapping[str, Check], where: Path) -> dict:
    for key, check in schema.items():
        value = record.get(key)
        if value is not None and (problem := check(value)):
            raise Damaged(where, f"{key} is {short(value)}: {problem}")
    return record


def short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


# --- what one run records -----------------------------------------------------------------------

# What config.json records besides the command, its settings and the versions: the facts of the
# run (what the model is, what the data turned out to be, how it was fed). Replaying a run
# recomputes them; `kcnn run config.json` refuses any other key, so an edited record is caught.
RUN_FACTS = frozenset(
    {
        "arch",  # train: also settings; transfer: backbone and head are what the model is
        "api",
        "backbone",
        "head",
        "backbone_paper",
        "preprocess_input",
        "weights_kind",
        "weights_file",
        "weights_source",
        "weights_md5_verified",
        "feature_cache",
        "feature_cache_note",
        "input_shape",
        "fit",
        "image_shape",
        "classes",
        "split_sizes",
        "dataset_provenance",
        "data_fingerprint",
        "test_leakage",  # test images that are exact copies of training ones (kcnn.data.prepared)
        "augmentation",
        "teacher_run",  # --teacher: the run distilled from, resolved, and its model's digest
        "batch_size_search",  # --batch-size auto: how the batch recorded was found
        "class_weights",  # --class-weight balanced: the weight of each class, by number
        "resumed",
        "part_of",
        "init",
        "init_seed",
        "initial_weights_from",
        "replicas",
        "device_names",
        "precision_policy",
        "workers",
        "input_service",  # --data-service: the dispatcher and the decoder its workers run
    }
)
