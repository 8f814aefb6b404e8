"""Groups of seed runs: runs whose settings differ only in their seed, read and summarised as one.

A group folder (`kcnn train ... --seeds 5`) holds one normal run folder per seed — or, for
`compare-apis` and `transfer`, one comparison folder per seed — and `group.json`: the group's
settings, its seeds, its status, and per label (the one recipe of `train`; each API form or
backbone) the mean, sd and 95% interval of every final metric, with the tests between labels
(`kcnn.runs.stats`). `curves_band.png` draws each label's learning curves as a mean with a band,
`per_class.png` each class's F1 with its interval; `group.md` and `report.html` say it in words.

Runs anywhere (`kcnn compare a b c ...`) form groups the same way: same settings but the seed;
a group folder named to `kcnn compare` is a group of its own whatever its settings (the same
recipe on two machines is two groups: `named_groups`). A seed that appears twice in one group
counts once, and the record says so (`counted_once`). No TensorFlow.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from kcnn.engine.config import COMMANDS
from kcnn.errors import KcnnError
from kcnn.runs import folders, stats
from kcnn.runs.folders import CLASS_BALANCED, GROUP_JSON, GROUP_MD
from kcnn.runs.records import Damaged
from kcnn.runs.run import RunFolder

BAND, PER_CLASS = "curves_band.png", "per_class.png"

# Settings that place or name a run, or pick its seed: runs equal in everything else are one group.
NOT_RECIPE = ("seed", "seeds", "fold", "name", "out")
# What a run is, besides its settings (a transfer run records its backbone and head as facts).
IDENTITY = ("command", "arch", "api", "backbone", "head")
# Final metrics summarised over seeds: every number metrics.json holds at its top level, but these
# (which do not vary with the seed, or only count epochs).
_NOT_METRICS = ("epochs_planned", "total_params", "trainable_params", "non_trainable_params")
TESTED = ("test_accuracy", "test_loss")  # the metrics groups are tested on

_SEED_SUFFIX = re.compile(r"-(seed|fold)\d+$")


def read(folder: str | Path) -> dict[str, Any] | None:
    """A folder's group.json, or None when it is not a group or the record is damaged (read as
    `RunFolder.group` reads it: `RunInfo.damage` says what is wrong, and `kcnn runs` lists the
    folder as damaged)."""
    try:  # a regular file inside the folder, size-capped, schema-checked: never a planted link
        return RunFolder(folder).group()
    except (FileNotFoundError, Damaged):
        return None


def text(folder: str | Path) -> str:
    """A group's group.md, through its folder's owner (a regular file inside, size-capped); ""
    when it has none or it cannot be read."""
    try:
        return RunFolder(folder).text(GROUP_MD)
    except (FileNotFoundError, Damaged):
        return ""


def is_group(folder: str | Path) -> bool:
    return RunFolder(folder).has(GROUP_JSON)


def made_by(folder: str | Path, command: str) -> bool:
    """Whether `folder` is a group (`--seeds`, `--folds`) that `command` made."""
    return is_group(folder) and (read(folder) or {}).get("command") == command


def leaves(infos: Iterable) -> list:
    """The training runs in runs and comparisons (a comparison's own runs)."""
    out = []
    for info in infos:
        out += info.sub_runs if info.is_comparison else [info] if info.is_run else []
    return out


def recipe(info) -> str:
    """Everything that says how a run was trained, but its seed: equal recipes make a group."""
    settings = info.settings
    cls = COMMANDS.get(settings.get("command") or "")
    keys = cls.settings() if cls is not None else settings
    kept = {k: settings.get(k) for k in keys if k not in NOT_RECIPE}
    kept.update({k: info._get(k) for k in IDENTITY})
    if "dataset" in kept:  # the data set used: an offline stand-in's, not the name asked for
        kept["dataset"] = info.dataset
    return json.dumps(kept, sort_keys=True, default=str)


def label(info) -> str:
    """A run's group label: its name without the seed (`lenet5-digits-sequential`)."""
    name = str(info.settings.get("name") or folders.STAMP.sub("", info.folder.name))
    return _SEED_SUFFIX.sub("", name)


def pair_key(info) -> tuple[Any, ...]:
    """What pairs two runs of different groups: the same seed on the same split (the same fold,
    for the runs of `--folds`) of the same data."""
    settings = info.settings
    return (settings.get("seed"), settings.get("fold"), settings.get("data_fingerprint"))


def group_runs(runs: Sequence) -> dict[str, list]:
    """Runs gathered by recipe (settings but the seed), in first-seen order, each under a unique
    label (a second recipe with the same name gets its number)."""
    by_recipe: dict[str, list] = {}
    for run in runs:
        by_recipe.setdefault(recipe(run), []).append(run)
    names = [label(found[0]) for found in by_recipe.values()]
    recipes = [json.loads(key) for key in by_recipe]
    labelled: dict[str, list] = {}
    for name, settings, found in zip(names, recipes, by_recipe.values(), strict=True):
        if names.count(name) > 1:  # same name, other settings: say which
            differ = [k for k in settings if any(r.get(k) != settings[k] for r in recipes)]
            name = f"{name} ({', '.join(f'{k}={settings[k]}' for k in differ)})"
        labelled[name if name not in labelled else f"{name} ({len(labelled) + 1})"] = found
    return labelled


def named_groups(named: Sequence[tuple[str, Sequence]], loose: Sequence) -> dict[str, list]:
    """The groups of a comparison: each group folder the user named is a group of its own
    (`named`: its name and its runs; a folder of several forms or backbones gives one group per
    label, named `FOLDER: LABEL`), whatever its settings, so two folders of the same recipe stay
    two groups; `loose` runs group by recipe. Names that clash get the folder's time stamp, then
    a number."""
    grouped: dict[str, list] = {}

    def put(name: str, runs: list, stamped: str) -> None:
        if name in grouped:
            name = stamped
        while name in grouped:
            name = f"{name} ({len(grouped) + 1})"
        grouped[name] = runs

    alone = len(named) == 1 and not loose  # one folder: its labels say enough
    for folder_name, runs in named:
        short = folders.STAMP.sub("", folder_name)
        inside = group_runs(list(runs))
        for label_name, found in inside.items():
            if alone:
                put(label_name, found, f"{folder_name}: {label_name}")
            elif len(inside) == 1:
                put(short, found, folder_name)
            else:
                put(f"{short}: {label_name}", found, f"{folder_name}: {label_name}")
    for name, found in group_runs(list(loose)).items():
        put(name, found, name)
    return grouped


def counted_once(grouped: dict[str, list]) -> tuple[dict[str, list], list[str]]:
    """Each group with one run per seed and data split (the newest: a seed redone counts once),
    and a note for every seed that appeared more than once, naming the run kept."""
    kept: dict[str, list] = {}
    notes = []
    for name, runs in grouped.items():
        newest: dict[tuple[Any, ...], Any] = {}
        times: dict[tuple[Any, ...], int] = {}
        for run in sorted(runs, key=lambda r: r.folder.name):
            key = pair_key(run)
            newest[key] = run
            times[key] = times.get(key, 0) + 1
        kept[name] = sorted(newest.values(), key=_in_order)
        notes += [
            f"seed {key[0]} appears {n} times in {name}: counted once "
            f"(the newest run, {newest[key].folder.name})"
            for key, n in times.items()
            if n > 1
        ]
    return kept, notes


def _in_order(info) -> tuple[int, str]:
    """A group's runs as they were made, the folds of `--folds` by their number (a fold trained
    again keeps its place)."""
    return (info.settings.get("fold") or 0, info.folder.name)


def final_metrics(info) -> dict[str, float]:
    """Every final number of a run: metrics.json's top-level numbers and its macro/weighted F1s."""
    metrics = info.metrics or {}
    found = {
        k: float(v)
        for k, v in metrics.items()
        if isinstance(v, int | float) and not isinstance(v, bool) and k not in _NOT_METRICS
    }
    for avg in ("macro_avg", "weighted_avg"):
        for k, v in (metrics.get(avg) or {}).items():
            if k != "support" and isinstance(v, int | float) and not isinstance(v, bool):
                found[f"{avg}.{k}"] = float(v)
    return found


def summarise(runs: Sequence) -> dict[str, Any]:
    """One group's record: its runs and seeds, and per metric (and per class) the summary."""
    values: dict[str, list[float]] = {}
    each = [final_metrics(r) for r in runs]
    for key in dict.fromkeys(k for m in each for k in m):
        if all(key in m for m in each):
            values[key] = [m[key] for m in each]
    per_class: dict[str, dict[str, Any]] = {}
    classes = list(dict.fromkeys(c for r in runs for c in r.per_class))
    for name in classes:
        scores = [r.per_class.get(name) or {} for r in runs]
        per_class[name] = {
            key: stats.summarize([s[key] for s in scores]).as_dict()
            for key in ("precision", "recall", "f1")
            if all(isinstance(s.get(key), int | float) for s in scores)
        }
    folds = [r.settings.get("fold") for r in runs]
    return {
        "n": len(runs),
        "seeds": [r.settings.get("seed") for r in runs],
        **({"folds": folds} if any(f is not None for f in folds) else {}),
        "runs": [str(r.folder) for r in runs],
        "metrics": {
            k: {**stats.summarize(v).as_dict(), "values": v}
            for k, v in values.items()
            if all(x == x for x in v)  # NaN (a diverged run's loss) leaves the metric out
        },
        "per_class": per_class,
    }


def tests(grouped: dict[str, list], metrics: Sequence[str] = TESTED) -> list[dict[str, Any]]:
    """Every pair of groups on each tested metric: paired where seeds pair, else Welch, Holm-
    corrected within each metric when more than one pair is compared."""
    found = []
    for metric in metrics:
        values = {
            name: {pair_key(r): (r.metrics or {}).get(metric) for r in runs}
            for name, runs in grouped.items()
        }
        if any(v is None for g in values.values() for v in g.values()):
            continue
        found += [d.as_dict() for d in stats.compare_groups(values, metric)]
    return found


def identical(grouped: dict[str, list]) -> bool:
    """Whether every group's runs give exactly the same numbers seed for seed (the forms of
    compare-apis from the same initial weights)."""
    keyed = [
        {pair_key(r): (r.metrics or {}).get("test_accuracy") for r in runs}
        for runs in grouped.values()
    ]
    return len(keyed) > 1 and all(k == keyed[0] for k in keyed[1:])


def describe(grouped: dict[str, list]) -> dict[str, Any]:
    """Summaries of each group and the tests between them (what group.json and compare record),
    each seed counted once (`duplicates` says which appeared more often)."""
    grouped, notes = counted_once(grouped)
    summaries = {name: summarise(runs) for name, runs in grouped.items()}
    return {
        "groups": summaries,
        "tests": tests(grouped) if len(grouped) > 1 else [],
        "identical": identical(grouped),
        "duplicates": notes,
    }


def as_experiment(folder: Path) -> dict[str, Any]:
    """A group folder as an experiment file of one run: its settings, seeds included, writing
    where the group is, so `kcnn run GROUP` finishes the seeds it misses."""
    data = read(folder)
    config = (data or {}).get("config")
    if not isinstance(config, dict) or not isinstance(data.get("command"), str):
        raise KcnnError(f"{folder / GROUP_JSON} is damaged: it records no command and settings")
    settings = {**config, "out": str(folder.parent)}
    return {
        "description": f"seeds of {folder.name}",
        "run": [{"command": data["command"], **settings}],
    }


# --- reading groups back (kcnn runs, kcnn show) --------------------------------------------------


def row(info) -> dict[str, Any]:
    """The line `kcnn runs` prints for a group folder: the test accuracy's mean ± CI of its (first)
    group, its seeds, and under `group` every group's summary."""
    if info.damage is not None:  # listed as damaged, with what is wrong (never a traceback)
        return {
            "name": info.name,
            "kind": "group",
            "status": "damaged",
            "damage": info.damage,
            "path": str(info.folder),
            "created": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info.created)),
            **dict.fromkeys(("command", "model", "dataset", "epochs_done", "epochs_planned")),
            **dict.fromkeys(("test_accuracy", "test_accuracy_ci", "seeds", "duration_seconds")),
            **dict.fromkeys(CLASS_BALANCED),
            "group": {},
        }
    data = read(info.folder) or {}
    groups = data.get("groups") or {}
    first = next(iter(groups.values()), {})
    accuracy = (first.get("metrics") or {}).get("test_accuracy") or {}
    config = data.get("config") or {}
    # the data set its runs used (an offline stand-in's), else the one the group was asked for
    used = next((s.dataset for s in info.sub_runs if s.dataset), None)
    return {
        "name": info.name,
        "kind": "group",
        "command": data.get("command"),
        "model": ", ".join(groups) or config.get("name"),
        "dataset": used or config.get("dataset"),
        "epochs_done": None,
        "epochs_planned": config.get("epochs"),
        "test_accuracy": accuracy.get("mean"),
        "test_accuracy_ci": [accuracy.get("ci_low"), accuracy.get("ci_high")] if accuracy else None,
        **{k: ((first.get("metrics") or {}).get(k) or {}).get("mean") for k in CLASS_BALANCED},
        "seeds": data.get("seeds"),
        "status": data.get("status", "incomplete"),
        "duration_seconds": data.get("wall_seconds"),
        "created": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info.created)),
        "path": str(info.folder),
        "group": {
            name: {
                "n": g.get("n"),
                "seeds": g.get("seeds"),
                "test_accuracy": (g.get("metrics") or {}).get("test_accuracy"),
            }
            for name, g in groups.items()
        },
    }


def summary_row(group: dict[str, Any]) -> dict[str, Any]:
    """A group's test accuracy as `accuracy_text` reads it, from its summary in a record."""
    s = (group.get("metrics") or {}).get("test_accuracy") or {}
    return {"test_accuracy": s.get("mean"), "test_accuracy_ci": [s.get("ci_low"), s.get("ci_high")]}


def accuracy_text(row: dict[str, Any]) -> str:
    """`0.9512 ± 0.0071` for a group row (the interval's half-width), '' without one."""
    ci = row.get("test_accuracy_ci")
    if row.get("test_accuracy") is None:
        return ""
    if not ci or ci[0] is None:
        return f"{row['test_accuracy']:.4f}"
    return f"{row['test_accuracy']:.4f} ± {(ci[1] - ci[0]) / 2:.4f}"
