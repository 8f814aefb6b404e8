"""`kcnn diff A B`: why two runs (or two groups of seed runs) differ.

Everything their records say that is not the same, ordered by how much it can move the numbers:
the settings (the recipe first, the seed after it); the data (its fingerprint, the split, an
offline stand-in); the package versions; the CPU kernels, device and precision; whether either
was resumed; kcnn's own version; last, what cannot move a number at all (a name, a folder).
Then the size of the difference against the noise the records show — the paired (or unpaired)
verdict for two single runs (`kcnn.runs.pairing`), the seed spread for groups
(`kcnn.runs.stats`) — and whether the two were built to be bit-identical, and are: the same
metrics, history and per-image test answers to the last bit. No TensorFlow.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kcnn.errors import KcnnError
from kcnn.runs import folders, groups, pairing, stats

# The categories, most able to move the numbers first (README, "kcnn diff").
CATEGORIES = ("settings", "data", "packages", "machine", "resumed", "kcnn", "naming")
CATEGORY_TEXT = {
    "settings": "setting",
    "data": "data",
    "packages": "package",
    "machine": "kernels/device",
    "resumed": "resumed",
    "kcnn": "kcnn",
    "naming": "no effect",
}
# The recipe in rough order of how far it moves a result; settings not named here follow them.
RECIPE = (
    "command",
    "arch",
    "backbone",
    "backbones",
    "api",
    "apis",
    "head",
    "weights",
    "dataset",
    "limit",
    "epochs",
    "lr",
    "optimizer",
    "batch_size",
    "schedule",
    "warmup",
    "min_lr",
    "weight_decay",
    "momentum",
    "nesterov",
    "label_smoothing",
    "augment",
    "image_size",
    "fine_tune",
    "fine_tune_lr",
    "fine_tune_epochs",
    "dropout",
    "early_stopping",
    "reduce_lr_on_plateau",
    "plateau_factor",
)
LAST_SETTINGS = ("same_init", "seed", "seeds")  # the draw, after the recipe
DATA = (
    "data_fingerprint",
    "split_sizes",
    "dataset_provenance",
    "image_shape",
    "input_shape",
    "fit",
    "classes",
    "augmentation",
    "weights_kind",
    "weights_file",
    "weights_source",
    "weights_md5_verified",
    "backbone_paper",
    "preprocess_input",
    "init",
    "init_seed",
    "initial_weights_from",
)
MACHINE = (
    "strategy",
    "devices",
    "mixed_precision",
    "jit_compile",
    "precision_policy",
    "device_names",
    "replicas",
    "workers",
    f"versions.{folders.KERNELS}",
    "versions.platform",
)
RESUMED = ("resumed",)
KCNN = ("versions.kcnn",)
NAMING = (
    "name",
    "out",
    "data_dir",
    "tensorboard",
    "tensorboard_histograms",
    "calibrate",
    "feature_cache",
    "feature_cache_note",
    "cache_features",
    "part_of",
    "run_dir",
)


def category(key: str) -> str:
    top = key.split(".", 1)[0]
    if key in MACHINE or top in MACHINE:
        return "machine"
    if key in KCNN:
        return "kcnn"
    if top == "versions":
        return "packages"
    if top in RESUMED:
        return "resumed"
    if top in DATA:
        return "data"
    if top in NAMING:
        return "naming"
    return "settings"


def _rank(key: str) -> tuple[int, int, str]:
    """Where a difference is listed: its category, then (settings) the recipe's order."""
    where = CATEGORIES.index(category(key))
    if category(key) != "settings":
        return where, 0, key
    top = key.split(".", 1)[0]
    if top in RECIPE:
        return where, RECIPE.index(top), key
    if top in LAST_SETTINGS:
        return where, len(RECIPE) + 1 + LAST_SETTINGS.index(top), key
    return where, len(RECIPE), key


@dataclass
class Side:
    """One of the two things compared: a run, or a group folder and its seed runs."""

    label: str
    folder: Path
    kind: str  # "run" or "group"
    record: dict[str, Any]  # every fact, nested keys dotted
    runs: list = field(default_factory=list)  # its finished runs (RunInfo)


def _flat(record: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in record.items():
        if isinstance(value, dict) and value:
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def side(name: str) -> Side:
    """What `kcnn diff` compares for the folder a user named: a run, or a group of seed runs."""
    from kcnn.runs import browse

    info = browse.find(name)
    if groups.is_group(info.folder):
        data = groups.read(info.folder)
        if not isinstance(data, dict) or not isinstance(data.get("config"), dict):
            raise KcnnError(f"{name} is a group folder whose group.json is damaged or missing")
        done = [r for r in info.sub_runs if r.status == "completed"]
        by_recipe = groups.counted_once(groups.group_runs(done))[0]  # a seed redone counts once
        runs = sorted((r for rs in by_recipe.values() for r in rs), key=lambda r: r.folder.name)
        if not runs:
            raise KcnnError(f"{name} is a group with no finished seed yet: nothing to compare")
        # the facts its runs share (data, versions, device); each run's own (its seed, its
        # name, the form or backbone it trained) are no fact of the group
        first = runs[0].settings
        facts = {
            k: v
            for k, v in first.items()
            if k not in data["config"] and all(r.settings.get(k) == v for r in runs[1:])
        }
        facts.pop("name", None)
        record = {**facts, **data["config"], "command": data.get("command")}
        record["resumed"] = any(bool(r.settings.get("resumed")) for r in runs)
        return Side(name, info.folder, "group", _flat(record), runs)
    run = browse.find_run(name)
    if run.metrics is None or run.status != "completed":
        raise KcnnError(f"{name} is {run.status}: diff compares finished runs (see `kcnn runs`)")
    record = {k: v for k, v in run.settings.items() if k != "resumed"}
    record["resumed"] = bool(run.settings.get("resumed"))
    return Side(name, run.folder, "run", _flat(record), [run])


def differences(a: Side, b: Side) -> list[dict[str, Any]]:
    """Every fact whose value is not the same on both sides, most able to move the numbers
    first (a key missing on one side is a difference: an older kcnn did not record it)."""
    keys = dict.fromkeys([*a.record, *b.record])
    found = []
    for key in keys:
        x, y = a.record.get(key), b.record.get(key)
        if json.dumps(x, sort_keys=True) != json.dumps(y, sort_keys=True):
            found.append({"category": category(key), "key": key, "a": x, "b": y})
    return sorted(found, key=lambda d: _rank(d["key"]))


def noise(a: Side, b: Side) -> dict[str, Any]:
    """The size of the difference against the noise the records show."""
    if a.kind == "run" and b.kind == "run":
        judged = pairing.judge(a.runs[0], b.runs[0], (a.label, b.label))
        if isinstance(judged, str):
            return {"kind": "none", "sentences": [judged]}
        return {
            "kind": "single runs",
            "verdict": judged.as_dict(),
            "sentences": [judged.sentence()],
        }
    tests = [
        stats.difference(_values(runs_a, metric), _values(runs_b, metric), metric, names)
        for names, runs_a, runs_b in _matched(a, b)
        for metric in groups.TESTED
        if all((r.metrics or {}).get(metric) is not None for r in [*runs_a, *runs_b])
    ]
    return {
        "kind": "seeds",
        "tests": [t.as_dict() for t in tests],
        "sentences": [t.sentence() for t in tests],
    }


def _values(runs: list, metric: str):
    """A metric's values keyed by what pairs them (seed and data), or — several runs of one seed,
    such as the forms of a compare-apis group against a train group — a plain list (Welch)."""
    keys = [groups.pair_key(r) for r in runs]
    values = [(r.metrics or {}).get(metric) for r in runs]
    return dict(zip(keys, values, strict=True)) if len(set(keys)) == len(keys) else values


def _matched(a: Side, b: Side) -> list[tuple[tuple[str, str], list, list]]:
    """The runs to test against each other: all of each side, or — a group of several models
    (compare-apis' forms, transfer's backbones) — each model's seeds against the same model's."""
    by_a, by_b = _by_model(a.runs), _by_model(b.runs)
    if len(by_a) == 1 or len(by_b) == 1:
        return [((a.label, b.label), a.runs, b.runs)]
    return [((f"{a.label} {m}", f"{b.label} {m}"), by_a[m], by_b[m]) for m in by_a if m in by_b]


def _by_model(runs: list) -> dict[str, list]:
    found: dict[str, list] = {}
    for r in runs:
        found.setdefault(r.model_label, []).append(r)
    return found


# Figures that say what a run computed (not how long it took): equal to the bit in identical runs.
_COMPUTED = ("test_accuracy", "test_loss", "best_val_accuracy", "confusion_matrix", "per_class")


def _same_run(a, b) -> str | None:
    """Where two runs' results first differ (None: metrics, history and per-image test
    answers are the same to the last bit)."""
    from kcnn.runs.run import RunFolder

    for key in _COMPUTED:
        if (a.metrics or {}).get(key) != (b.metrics or {}).get(key):
            return key
    if a.history() != b.history():
        return "history"
    try:
        x, y = RunFolder(a.folder).test_predictions(), RunFolder(b.folder).test_predictions()
    except (FileNotFoundError, KcnnError):
        return None  # nothing more to compare: the figures above agree
    for part in ("index", "true", "predicted", "probabilities"):
        p, q = getattr(x, part), getattr(y, part)
        if (p is None) != (q is None) or (p is not None and (p.shape != q.shape or (p != q).any())):
            return f"per-image test {part}"
    return None


def identity(a: Side, b: Side, found: list[dict[str, Any]]) -> dict[str, Any]:
    """Whether the two were built to be bit-identical (everything that computes the same:
    only names, folders — and an exact resume — differ), and whether they are."""
    moving = [d for d in found if d["category"] not in ("naming", "resumed")]
    built = not moving
    if a.kind != b.kind:
        return {"built": False, "are": None, "where": "a run and a group"}
    pairs = list(zip(a.runs, b.runs, strict=False))
    if a.kind == "group":  # seed for seed, model for model
        keyed = {(r.model_label, *groups.pair_key(r)): r for r in b.runs}
        pairs = [(r, keyed.get((r.model_label, *groups.pair_key(r)))) for r in a.runs]
        if len(a.runs) != len(b.runs) or any(y is None for _, y in pairs):
            return {"built": built, "are": False, "where": "their seeds"}
    where = next((w for x, y in pairs if (w := _same_run(x, y)) is not None), None)
    return {"built": built, "are": where is None, "where": where}


def identity_sentence(same: dict[str, Any], found: list[dict[str, Any]]) -> str:
    if same["built"] and same["are"]:
        return (
            "built to be identical and are: the same metrics, history and per-image test "
            "answers, to the last bit"
        )
    if same["built"]:
        return (
            f"built to be identical but are not: they first differ in {same['where']} "
            "(nondeterminism kcnn did not expect; please report it)"
        )
    first = next((d["key"] for d in found if d["category"] not in ("naming", "resumed")), None)
    if first is None:  # nothing in their records differs, but what they are: a run, a group
        return f"not built to be identical: {same['where']}"
    are = " (yet their results are the same to the last bit)" if same["are"] else ""
    return f"not built to be identical: {first} differs{are}"


def diff(first: str, second: str) -> dict[str, Any]:
    """Everything `kcnn diff A B` says, as its --json prints it."""
    a, b = side(first), side(second)
    a.label, b.label = "A", "B"  # as the answer names them: A is the first folder, B the second
    found = differences(a, b)
    same = identity(a, b, found)
    return {
        "a": {"folder": str(a.folder), "kind": a.kind},
        "b": {"folder": str(b.folder), "kind": b.kind},
        "differences": found,
        "noise": noise(a, b),
        "identical": {**same, "sentence": identity_sentence(same, found)},
    }
