"""Every published figure of the experiment library, regenerated from kept records (`make results`).

    python experiments/results.py record OUT --file experiments/FILE.toml   # keep a file's runs
    python experiments/results.py                                            # rewrite the tables
    python experiments/results.py --check                                    # exit 1 if stale

`record` reads the run folders `kcnn run experiments/FILE.toml --set out=OUT` left (groups of seed
runs and plain runs alike) and keeps one small JSON file per run in experiments/records/FILE/:
its settings, its final metrics, its seed and data fingerprint (what pairs it with another recipe's
run), and when, where and with which versions it was measured. The tables are then written from
those records alone, between `<!-- results:NAME -->` and `<!-- /results:NAME -->` markers, in
experiments/RESULTS.md (a table per file, with each group's mean ± 95% interval and the tests
between groups), experiments/README.md (the library table) and README.md (the recipe figures).
A file without records says so, with the command that makes them.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
FOLDER = ROOT / "experiments"
RECORDS = FOLDER / "records"
DOCUMENTS = (FOLDER / "RESULTS.md", FOLDER / "README.md", ROOT / "README.md")
METRICS = ("test_accuracy", "test_loss", "best_val_accuracy", "epochs_completed", "wall_seconds")
NOT_KEPT = ("out", "name", "seeds", "versions", "classes", "data_dir")
SETTINGS_KEPT = (
    "command",
    "arch",
    "api",
    "backbone",
    "head",
    "weights",
    "dataset",
    "limit",
    "shapes_count",
    "image_size",
    "epochs",
    "batch_size",
    "optimizer",
    "lr",
    "weight_decay",
    "schedule",
    "warmup",
    "augment",
    "label_smoothing",
    # the practitioners' recipes (recipe-effect-*.toml): what each run switched on
    "ema",
    "average_last",
    "tta",
    "teacher_weight",
    "teacher_temperature",
    "augment_randaugment",
    "augment_magnitude",
    "augment_augmix",
    "augment_erasing",
    "augment_mixup",
    "augment_cutmix",
    "same_init",
    "seed",
    "data_fingerprint",
)


# --- keeping records ------------------------------------------------------------------------------


def _leaves(out: Path) -> list[tuple[str, Any]]:
    """(the [[run]]'s name, leaf run) for every training run under `out`: a group's seeds, a
    comparison's runs, a plain run."""
    from kcnn.errors import KcnnError
    from kcnn.runs import groups
    from kcnn.runs.browse import RunInfo

    found = []
    for folder in sorted(p for p in out.iterdir() if p.is_dir() and not p.is_symlink()):
        info = RunInfo.load(folder)
        if info.damage is not None:
            raise KcnnError(f"{folder} cannot be recorded: {info.damage}")
        if groups.is_group(folder):
            name = (groups.read(folder) or {}).get("name") or folder.name
            found += [(name, leaf) for leaf in info.sub_runs]
        elif info.is_run:
            found.append((groups.label(info), info))
    return found


def record(out: Path, file: Path) -> list[Path]:
    """Keep one record per completed run under `out`, made by `kcnn run FILE`."""
    from kcnn.engine.config import safe_label
    from kcnn.errors import KcnnError
    from kcnn.runs import groups
    from kcnn.runs.records import write_json

    if not out.is_dir():
        raise KcnnError(f"{out} is not a folder of runs: give the --set out=OUT folder of the file")
    target = RECORDS / safe_label(file.stem)
    target.mkdir(parents=True, exist_ok=True)
    written = []
    for order, (run, leaf) in enumerate(_leaves(out)):
        if leaf.status != "completed":
            continue
        settings = leaf.settings
        kept = {k: leaf._get(k) for k in SETTINGS_KEPT if leaf._get(k) is not None}
        data = {
            "file": file.name,
            "run": run,
            "group": groups.label(leaf),
            "seed": settings.get("seed"),
            "order": order,  # where the run came in the file's output: tables keep that order
            "settings": kept,
            "metrics": {k: (leaf.metrics or {}).get(k) for k in METRICS},
            "recorded": time.strftime("%Y-%m-%d", time.localtime(leaf.created)),
            "machine": f"{os.cpu_count()} CPU cores, {platform.machine()}",
            "devices": settings.get("device_names") or "the default device (not recorded)",
            "versions": {
                k: v
                for k, v in (settings.get("versions") or {}).items()
                if k in ("kcnn", "tensorflow", "keras", "python")
            },
        }
        label = groups.label(leaf)
        stem = label if label == run else f"{run}--{label}"  # a name, never a path: safe_label
        path = target / f"{safe_label(stem)}-seed{safe_label(str(data['seed']))}.json"
        write_json(path, data)
        written.append(path)
    return written


# --- reading them back ------------------------------------------------------------------------------


class Damaged(Exception):
    """A kept record that cannot be trusted: `make results` names it and stops (exit 2)."""


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _checked(path: Path) -> dict[str, Any]:
    """A kept record, read as untrusted (records are committed by hand, and may be edited): a
    regular file of at most 64 KB holding a JSON object with every field a table needs, of its
    type; else Damaged naming the file and what is wrong."""
    from kcnn.runs.records import Damaged as Unreadable
    from kcnn.runs.records import read_json_record

    try:
        data = read_json_record(path.parent, path.name, 64 * 1024)
    except (Unreadable, OSError) as e:
        raise Damaged(f"{path}: {getattr(e, 'reason', None) or e}") from None
    problems = [
        f"{key} is not {kind}"
        for key, kind, ok in (
            ("file", "text", isinstance(data.get("file"), str)),
            ("run", "text", isinstance(data.get("run"), str)),
            ("group", "text", isinstance(data.get("group"), str)),
            ("seed", "a whole number", isinstance(data.get("seed"), int)),
            ("order", "a whole number", isinstance(data.get("order", 0), int)),
            ("settings", "a table", isinstance(data.get("settings"), dict)),
            ("metrics", "a table", isinstance(data.get("metrics"), dict)),
            ("recorded", "text", isinstance(data.get("recorded"), str)),
        )
        if not ok or isinstance(data.get(key), bool)
    ]
    metrics = data.get("metrics") if isinstance(data.get("metrics"), dict) else {}
    problems += [
        f"metrics.{key} is not a finite number"
        for key in ("test_accuracy", "test_loss", "wall_seconds")
        if not _number(metrics.get(key))
    ]
    if problems:
        raise Damaged(f"{path}: {problems[0]}")
    return data


def records() -> dict[str, list[dict[str, Any]]]:
    """Every kept record, by experiment file name, in a stable order (Damaged for one that
    cannot be trusted)."""
    found: dict[str, list[dict[str, Any]]] = {}
    for path in sorted(RECORDS.glob("*/*.json")):
        data = _checked(path)
        found.setdefault(data["file"], []).append(data)
    return {k: sorted(v, key=lambda r: (r.get("order", 0), r["seed"])) for k, v in found.items()}


_PLAIN = re.compile(r"[\w .:+=@,()/-]+")


def _name(name: str, code: bool = True) -> str:
    """A group's name in a markdown table or sentence: as code when it is plain, else escaped
    (`text.markdown_cell`), so a name holding `|`, a backtick or a newline never ends its cell,
    row or list item."""
    from kcnn.text import markdown_cell

    if _PLAIN.fullmatch(name):
        return f"`{name}`" if code else name
    return markdown_cell(name)


def _groups(kept: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Records by group (the run, or the form or backbone inside it), in file order."""
    out: dict[str, list[dict[str, Any]]] = {}
    for r in kept:
        name = r["group"] if r["group"] == r["run"] else f"{r['run']}: {r['group']}"
        out.setdefault(name, []).append(r)
    return {k: sorted(v, key=lambda r: r["seed"]) for k, v in out.items()}


def _summary(values: list[float]) -> str:
    from kcnn.runs import stats

    return stats.summarize(values).text(digits=4).replace(" (n=", " (n = ")


def _data(kept: dict[str, Any]) -> str:
    """Which data a record's run saw (data set, drawn shapes, limit): groups are tested against
    each other only on the same data."""
    settings = kept["settings"]
    shapes = settings.get("shapes_count") if settings.get("dataset") == "shapes" else None
    return json.dumps([settings.get("dataset"), shapes, settings.get("limit")])


def _file_table(name: str, kept: list[dict[str, Any]]) -> str:
    """One file's groups: seeds, test accuracy mean ± 95% interval, sd, time per run; then the
    tests between its groups, each with its sentence."""
    from kcnn.runs import stats

    if not kept:
        return (
            f"No records of `{name}` yet. Make them with\n`kcnn run experiments/{name} --set "
            f"out=/tmp/lib-runs/{Path(name).stem}` then\n`python experiments/results.py record "
            f"/tmp/lib-runs/{Path(name).stem} --file experiments/{name}` and `make results`."
        )
    grouped = _groups(kept)
    lines = [
        "| group | seeds | test accuracy (mean ± 95% CI) | sd | test loss (mean ± 95% CI) | "
        "run time per seed | recorded on |",
        "|---|---|---|---|---|---|---|",
    ]
    for group, rows in grouped.items():
        accuracy = [r["metrics"]["test_accuracy"] for r in rows]
        loss = [r["metrics"]["test_loss"] for r in rows]
        seconds = [r["metrics"]["wall_seconds"] for r in rows]
        s = stats.summarize(accuracy)
        sd = "" if s.sd is None else f"{s.sd:.4f}"
        lines.append(
            f"| {_name(group)} | {', '.join(str(r['seed']) for r in rows)} | {_summary(accuracy)} "
            f"| {sd} | {_summary(loss)} | {sum(seconds) / len(seconds):.0f} s "
            f"| {_name(rows[0]['recorded'], False)}, {_name(str(rows[0].get('machine', '')), False)} |"
        )
    by_data: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for group, rows in grouped.items():  # tests only between groups trained on the same data
        by_data.setdefault(_data(rows[0]), {})[group] = rows
    for same in by_data.values():
        if len(same) < 2:
            continue
        values = {
            _name(group, code=False): {
                (r["seed"], r["settings"].get("data_fingerprint")): r["metrics"]["test_accuracy"]
                for r in rows
            }
            for group, rows in same.items()
        }
        lines.append("")
        lines += [f"- {d.sentence()}" for d in stats.compare_groups(values)]
    return "\n".join(lines)


def _offline(kept_or_runs: list[dict[str, Any]]) -> bool:
    from kcnn.data.datasets import DATASETS

    for run in kept_or_runs:
        default = "cifar10" if run.get("command") == "transfer" else "mnist"
        dataset = run.get("dataset", default)
        if dataset not in DATASETS or not DATASETS[dataset].offline:
            return False
        if run.get("command") == "transfer" and run.get("weights", "imagenet") == "imagenet":
            return False
    return True


def _library_table(found: dict[str, list[dict[str, Any]]]) -> str:
    """experiments/README.md's table: every file, its purpose (its description's first clause),
    whether it needs a network, and per group the test accuracy its records give."""
    lines = [
        "| file | purpose | network | test accuracy, mean ± 95% CI over the seeds (records) |",
        "|---|---|---|---|",
    ]
    for path in sorted(FOLDER.glob("*.toml")):
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        purpose = str(data.get("description", "")).split(":", 1)[0]
        network = "no" if _offline(data["run"]) else "yes"
        kept = found.get(path.name) or []
        if kept:
            cells = "; ".join(
                f"{_name(g)} {_summary([r['metrics']['test_accuracy'] for r in rows])}"
                for g, rows in _groups(kept).items()
            )
        elif network == "yes":
            cells = "not run here (needs a network); see RESULTS.md for the post's own figure"
        else:
            cells = "no records yet (see RESULTS.md for the command)"
        lines.append(f"| `{path.name}` | {purpose} | {network} | {cells} |")
    return "\n".join(lines)


def _recipe_sentence(found: dict[str, list[dict[str, Any]]]) -> str:
    """README.md's recipe figures: the mnist5k recipe file's groups, from its records."""
    kept = found.get("recipe-mnist5k.toml") or []
    if not kept:
        return (
            "Its figures over 3 seeds are not recorded yet: `experiments/RESULTS.md` says how to "
            "make them (`make results` then writes them here)."
        )
    parts = [
        f"{_name(g)} {_summary([r['metrics']['test_accuracy'] for r in rows])}"
        for g, rows in _groups(kept).items()
    ]
    return (
        "Test accuracy on mnist-5k, mean ± 95% CI over the seeds (records): "
        + "; ".join(parts)
        + "."
    )


EFFECTS = "recipe-effect-"  # one file per practitioners' recipe, each against the same base
BASE_GROUP = "digits-base"


def _recipe_options(path: Path) -> str:
    """What a recipe-effect file's last run switches on beside the base, as options."""
    runs = tomllib.loads(path.read_text(encoding="utf-8"))["run"]
    base = next(r for r in runs if r.get("name") == BASE_GROUP)
    extra = {k: v for k, v in runs[-1].items() if k != "name" and base.get(k) != v}
    shown = []
    for key, value in extra.items():
        if key == "teacher":
            value = "(a mnist-cnn group)"
        shown.append(f"--{key.replace('_', '-')} {value}")
    return " ".join(shown)


def _paired(rows: list[dict[str, Any]]) -> dict[tuple, float]:
    """A group's test accuracies keyed by what pairs runs: seed and data fingerprint."""
    return {
        (r["seed"], r["settings"].get("data_fingerprint")): r["metrics"]["test_accuracy"]
        for r in rows
    }


def _effects_table(found: dict[str, list[dict[str, Any]]]) -> str:
    """README.md's table of the recipes' measured effects: each recipe-effect file's recipe
    group against the shared base, the difference paired by seed with its 95% interval, and the
    verdict Holm-corrected over every recipe measured."""
    from dataclasses import replace

    from kcnn.runs import stats

    rows, tested = [], []
    for path in sorted(FOLDER.glob(f"{EFFECTS}*.toml")):
        grouped = _groups(found.get(path.name) or [])
        if BASE_GROUP not in grouped or len(grouped) < 2:
            rows.append((path, None, None, None))
            continue
        recipe = list(grouped)[-1]
        d = stats.difference(
            _paired(grouped[BASE_GROUP]), _paired(grouped[recipe]), "test_accuracy",
            (BASE_GROUP, recipe),
        )  # fmt: skip
        rows.append((path, grouped[BASE_GROUP], grouped[recipe], d))
        tested.append(d)
    corrected = stats.holm([d.p for d in tested]) if len(tested) > 1 else [None] * len(tested)
    family = f"the {len(tested)} recipes measured"
    holm = {id(d): p for d, p in zip(tested, corrected, strict=True)}
    lines = [
        "| recipe | file | base: test accuracy | with the recipe | difference (95% CI) | verdict |",
        "|---|---|---|---|---|---|",
    ]
    for path, base, recipe, d in rows:
        options = _name(_recipe_options(path))
        if d is None:
            lines.append(f"| {options} | `{path.name}` | no records yet | | | |")
            continue
        p = holm.get(id(d))
        d = replace(d, p_holm=p, family=family if p is not None else None)
        interval = (
            f"{d.difference * 100:+.1f} points ({d.ci_low * 100:+.1f} to {d.ci_high * 100:+.1f})"
            if d.ci_low is not None
            else f"{d.difference * 100:+.1f} points"
        )
        accuracy = [r["metrics"]["test_accuracy"] for r in recipe]
        lines.append(
            f"| {options} | `{path.name}` "
            f"| {_summary([r['metrics']['test_accuracy'] for r in base])} "
            f"| {_summary(accuracy)} | {interval} | {d.sentence()} |"
        )
    return "\n".join(lines)


def blocks() -> dict[str, str]:
    """Every marked block's text, by marker name."""
    found = records()
    out = {
        "library": _library_table(found),
        "recipe-mnist5k": _recipe_sentence(found),
        "recipe-effects": _effects_table(found),
    }
    for path in sorted(FOLDER.glob("*.toml")):
        out[f"file:{path.name}"] = _file_table(path.name, found.get(path.name) or [])
    return out


_BLOCK = re.compile(
    r"(<!-- results:(?P<name>[^ ]+) -->\n)(?P<body>.*?)(\n<!-- /results:(?P=name) -->)", re.S
)


def rewrite(text: str, generated: dict[str, str]) -> str:
    """`text` with every marked block replaced by what the records give."""

    def body(m: re.Match) -> str:
        name = m.group("name")
        if name not in generated:
            raise SystemExit(f"unknown results block {name!r}")
        return m.group(1) + generated[name] + m.group(4)

    return _BLOCK.sub(body, text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="action")
    keep = sub.add_parser("record", help="keep the runs `kcnn run FILE --set out=OUT` left")
    keep.add_argument("out", type=Path)
    keep.add_argument("--file", type=Path, required=True)
    parser.add_argument("--check", action="store_true", help="exit 1 when a table is stale")
    args = parser.parse_args(argv)
    if args.action == "record":
        written = record(args.out, args.file)
        print(f"{len(written)} records in {RECORDS / args.file.stem}")
        return 0
    generated = blocks()
    stale = []
    for path in DOCUMENTS:
        text = path.read_text(encoding="utf-8")
        new = rewrite(text, generated)
        if new != text:
            stale.append(path)
            if not args.check:
                path.write_text(new, encoding="utf-8")
    if args.check and stale:
        print(
            "stale: " + ", ".join(str(p.relative_to(ROOT)) for p in stale) + "; run `make results`"
        )
        return 1
    return 0


def _main() -> int:
    """main, with a damaged record or run folder one `error:` line and exit 2, as kcnn's own."""
    from kcnn.errors import KcnnError

    try:
        return main()
    except (Damaged, KcnnError, OSError) as e:
        from kcnn.text import terminal

        reason = getattr(e, "strerror", None) or e
        print(f"error: {terminal(reason)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(_main())
