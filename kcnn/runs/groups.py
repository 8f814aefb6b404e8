"""Groups of seed runs: runs whose settings differ only in their seed, read and summarised as one.

A group folder (`kcnn train ... --seeds 5`) holds one normal run folder per seed — or, for
`compare-apis` and `transfer`, one comparison folder per seed — and `group.json`: the group's
settings, its seeds, its status, and per label (the one recipe of `train`; each API form or
backbone) the mean, sd and 95% interval of every final metric, with the tests between labels
(`kcnn.runs.stats`). `curves_band.png` draws each label's learning curves as a mean with a band,
`per_class.png` each class's F1 with its interval; `group.md` and `report.html` say it in words.

Runs anywhere (`kcnn compare a b c ...`) form groups the same way: same settings but the seed.
No TensorFlow.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from kcnn.runs import stats

GROUP_JSON, GROUP_MD = "group.json", "group.md"
BAND, PER_CLASS = "curves_band.png", "per_class.png"

# Settings that place or name a run, or pick its seed: runs equal in everything else are one group.
NOT_RECIPE = ("seed", "seeds", "name", "out")
# What a run is, besides its settings (a transfer run records its backbone and head as facts).
IDENTITY = ("command", "arch", "api", "backbone", "head")
# Final metrics summarised over seeds: every number metrics.json holds at its top level, but these
# (which do not vary with the seed, or only count epochs).
_NOT_METRICS = ("epochs_planned", "total_params", "trainable_params", "non_trainable_params")
TESTED = ("test_accuracy", "test_loss")  # the metrics groups are tested on

_SEED_SUFFIX = re.compile(r"-seed\d+$")
_STAMP = re.compile(r"^\d{8}-\d{6}-")


def read(folder: str | Path) -> dict[str, Any] | None:
    """A folder's group.json, or None when it is not a group (or the record is unreadable)."""
    try:
        data = json.loads((Path(folder) / GROUP_JSON).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def is_group(folder: str | Path) -> bool:
    return (Path(folder) / GROUP_JSON).is_file()


def members(folder: str | Path, parent=None) -> list:
    """The seed folders of a group folder (runs or comparisons), as RunInfo, in name order."""
    from kcnn.runs.browse import RunInfo

    found = [RunInfo.load(p, parent) for p in sorted(Path(folder).iterdir()) if p.is_dir()]
    return [m for m in found if m.is_run or m.is_comparison]


def leaves(infos: Iterable) -> list:
    """The training runs in runs and comparisons (a comparison's own runs)."""
    out = []
    for info in infos:
        out += info.sub_runs if info.is_comparison else [info] if info.is_run else []
    return out


def recipe(info) -> str:
    """Everything that says how a run was trained, but its seed: equal recipes make a group."""
    from kcnn.engine.config import COMMANDS

    settings = info.settings
    cls = COMMANDS.get(settings.get("command") or "")
    keys = cls.settings() if cls is not None else settings
    kept = {k: settings.get(k) for k in keys if k not in NOT_RECIPE}
    kept.update({k: info._get(k) for k in IDENTITY})
    return json.dumps(kept, sort_keys=True, default=str)


def label(info) -> str:
    """A run's group label: its name without the seed (`lenet5-digits-sequential`)."""
    name = str(info.settings.get("name") or _STAMP.sub("", info.folder.name))
    return _SEED_SUFFIX.sub("", name)


def pair_key(info) -> tuple[Any, Any]:
    """What pairs two runs of different groups: the same seed on the same split of the same data."""
    return (info.settings.get("seed"), info.settings.get("data_fingerprint"))


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
    return {
        "n": len(runs),
        "seeds": [r.settings.get("seed") for r in runs],
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
    """Summaries of each group and the tests between them (what group.json and compare record)."""
    summaries = {name: summarise(runs) for name, runs in grouped.items()}
    return {
        "groups": summaries,
        "tests": tests(grouped) if len(grouped) > 1 else [],
        "identical": identical(grouped),
    }


# --- the group folder's own files ---------------------------------------------------------------


def markdown(title: str, described: dict[str, Any], level: int = 1) -> str:
    """group.md (and the groups section of a comparison): each group's mean ± 95% interval, each
    test, and one sentence per pair."""
    from kcnn.runs.report import markdown_table

    rows = []
    for name, g in described["groups"].items():
        row = {"group": name, "seeds": g["n"]}
        for metric in ("test_accuracy", "test_loss", "best_val_accuracy"):
            s = g["metrics"].get(metric)
            if s is not None:
                row[metric] = stats.Summary(
                    s["n"], s["mean"], s["sd"], s["ci_low"], s["ci_high"]
                ).text()
                row[f"{metric} sd"] = "" if s["sd"] is None else f"{s['sd']:.4f}"
        rows.append(row)
    columns = list(dict.fromkeys(k for r in rows for k in r))
    head = "#" * level
    parts = [
        f"{head} {title}",
        "Mean ± half-width of the 95% confidence interval (Student's t) over the seeds; sd with "
        "ddof=1. Differences are the second group's mean minus the first's: a paired t-test where "
        "the seeds pair (same seed, same split), Welch's otherwise; Holm-corrected when more than "
        "one pair is compared.",
        f"{head}# Groups",
        markdown_table(rows, columns),
    ]
    if described["tests"]:
        table = [
            {
                "metric": t["metric"],
                "pair": f"{t['b']} − {t['a']}",
                "difference": f"{t['difference']:+.4f}",
                "95% CI": ""
                if t["ci_low"] is None
                else f"[{t['ci_low']:+.4f}, {t['ci_high']:+.4f}]",
                "test": t["test"],
                "p": "" if t["p"] is None else f"{t['p']:.4g}",
                "p (Holm)": "" if t["p_holm"] is None else f"{t['p_holm']:.4g}",
                "effect": ""
                if t["effect_size"] is None
                else f"{t['effect']} = {t['effect_size']:.2f}",
            }
            for t in described["tests"]
        ]
        parts += [f"{head}# Differences", markdown_table(table, list(table[0]))]
        parts += ["\n".join(f"- {t['sentence']}" for t in described["tests"])]
    if described["identical"]:
        parts += ["**Identical:** every group gave the same test accuracy at every seed."]
    return "\n\n".join(parts) + "\n"


def write(folder: str | Path, record: dict[str, Any]) -> dict[str, Any]:
    """Summarise a group folder's finished seeds into group.json (keeping `record`'s settings and
    status), group.md, curves_band.png, per_class.png and report.html. Returns group.json."""
    from kcnn.runs import plots
    from kcnn.runs.records import write_atomic, write_json

    folder = Path(folder)
    done = [r for r in leaves(members(folder)) if r.status == "completed"]
    grouped = group_runs(done)
    described = describe(grouped) if done else {"groups": {}, "tests": [], "identical": False}
    for g in described["groups"].values():
        g["runs"] = [str(Path(p).relative_to(folder)) for p in g["runs"]]
    data = {**record, "kind": "group", **described}
    write_json(folder / GROUP_JSON, data)
    title = f"{record.get('name') or folder.name}: {len(record.get('seeds') or [])} seeds"
    if done:
        plots.band_curves(
            {name: [r.history() for r in runs] for name, runs in grouped.items()},
            folder / BAND,
            title=f"{title} (mean and 95% interval over seeds)",
        )
        per_class = {n: g["per_class"] for n, g in described["groups"].items() if g["per_class"]}
        if per_class:
            plots.per_class_intervals(per_class, folder / PER_CLASS, title=title)
    text = markdown(title, described)
    for name, picture in (("learning curves", BAND), ("per-class F1", PER_CLASS)):
        if (folder / picture).is_file():
            text += f"\n![{name}]({picture})\n"
    write_atomic(folder / GROUP_MD, text)
    write_report(folder)
    return data


def write_report(folder: str | Path) -> Path:
    """report.html of a group: group.md, then each group as one line (mean ± CI) that opens onto
    its seeds (HTML <details>: no script)."""
    from kcnn.runs import html as pages
    from kcnn.runs.browse import RunInfo
    from kcnn.runs.records import write_atomic

    folder = Path(folder)
    data = read(folder) or {}
    md = folder / GROUP_MD
    text = md.read_text(encoding="utf-8") if md.is_file() else f"# {folder.name}"
    parts = [pages.markdown_html(text, folder), "<h2>Seeds</h2>"]
    for name, g in (data.get("groups") or {}).items():
        s = (g.get("metrics") or {}).get("test_accuracy")
        line = (
            stats.Summary(s["n"], s["mean"], s["sd"], s["ci_low"], s["ci_high"]).text() if s else ""
        )
        rows = [RunInfo.load(folder / p).row() for p in g.get("runs") or []]
        for row, seed in zip(rows, g.get("seeds") or [], strict=False):
            row["seed"] = seed
        table = pages._table(rows, ["seed", "name", "status", "test_accuracy", "path"])
        parts.append(
            f"<details><summary><b>{pages.html.escape(name)}</b>: test accuracy "
            f"{pages.html.escape(line)}</summary>{table}</details>"
        )
    path = folder / pages.REPORT
    write_atomic(path, pages._page(text.splitlines()[0].lstrip("# "), parts))
    return path


def as_experiment(folder: Path) -> dict[str, Any]:
    """A group folder as an experiment file of one run: its settings, seeds included, writing
    where the group is, so `kcnn run GROUP` finishes the seeds it misses."""
    from kcnn.errors import KcnnError

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
    data = read(info.folder) or {}
    groups = data.get("groups") or {}
    first = next(iter(groups.values()), {})
    accuracy = (first.get("metrics") or {}).get("test_accuracy") or {}
    config = data.get("config") or {}
    return {
        "name": info.name,
        "kind": "group",
        "command": data.get("command"),
        "model": ", ".join(groups) or config.get("name"),
        "dataset": config.get("dataset"),
        "epochs_done": None,
        "epochs_planned": config.get("epochs"),
        "test_accuracy": accuracy.get("mean"),
        "test_accuracy_ci": [accuracy.get("ci_low"), accuracy.get("ci_high")] if accuracy else None,
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


def accuracy_text(row: dict[str, Any]) -> str:
    """`0.9512 ± 0.0071` for a group row (the interval's half-width), '' without one."""
    ci = row.get("test_accuracy_ci")
    if row.get("test_accuracy") is None:
        return ""
    if not ci or ci[0] is None:
        return f"{row['test_accuracy']:.4f}"
    return f"{row['test_accuracy']:.4f} ± {(ci[1] - ci[0]) / 2:.4f}"
