"""After training: `runs`, `show`, `compare`, `predict`, `visualize`, `export`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from kcnn.cli.app import AsJson, Tta, app, print_json, say
from kcnn.errors import KcnnError
from kcnn.runs import readable, tables
from kcnn.runs.records import read_json
from kcnn.text import terminal

Run = Annotated[str, typer.Argument(help="A run folder (or its name under runs/).")]


@app.command("runs")
def runs(
    folder: Annotated[
        Path, typer.Argument(help="Folder holding run folders.", show_default=True)
    ] = Path("runs"),
    status: Annotated[
        str | None,
        typer.Option(
            help="Only runs with this status: running, completed, interrupted, diverged, failed, "
            'incomplete, comparison, sweep, damaged or "not a run".',
            show_default=False,
        ),
    ] = None,
    model: Annotated[
        str | None, typer.Option(help="Only runs whose model contains this text.")
    ] = None,
    dataset: Annotated[str | None, typer.Option(help="Only runs on this data set.")] = None,
    sort: Annotated[
        str,
        typer.Option(
            help="time (newest first), name, command, model, dataset, status, accuracy "
            "(best first), duration (shortest first), epochs. A comparison's runs follow it."
        ),
    ] = "time",
    as_json: AsJson = False,
) -> None:
    """List the runs under FOLDER, newest first: comparisons, their runs, and stray folders."""
    from kcnn.runs import (
        browse,  # not for `kcnn --help` (its start-up)
        groups,  # NumPy: not for `kcnn --help`
    )

    browse.check_sort(sort)
    browse.check_status(status)
    rows = browse.listing(folder, status, model, dataset, sort)
    if as_json:
        print_json(rows)
        return
    if not rows:
        say(f"no runs in {folder}" + (" match" if status or model or dataset else ""))
        return
    names = {r["name"] for r in rows}
    # under another folder than runs/, each name is shown as the path `kcnn show` takes
    other = Path(folder).expanduser().resolve() != browse.DEFAULT_DIR.resolve()
    shown = [
        {
            **r,
            # a comparison's run is indented under it (named in full when it is filtered out)
            "name": ("  " + r["name"].split("/", 1)[1])
            if "/" in r["name"] and r["name"].split("/", 1)[0] in names and not other
            else ("  " if "/" in r["name"] and other else "") + str(folder / r["name"])
            if other
            else r["name"],
            "epochs": ""
            if r["epochs_done"] is None
            else f"{r['epochs_done']}/{r['epochs_planned'] or '?'}",
            "accuracy": groups.accuracy_text(r)  # a group: mean ± 95% interval of its seeds
            if r["kind"] == "group"  # a run: its 95% Wilson interval on its test images
            else readable.accuracy_ci(r["test_accuracy"], r.get("test_accuracy_ci")),
            "time": readable.duration(r["duration_seconds"]),
            "command": r["command"] or "",
            "model": r["model"] or "",
            "dataset": r["dataset"] or "",
        }
        for r in rows
    ]
    columns = [
        ("name", "name"),
        ("command", "command"),
        ("model", "model"),
        ("dataset", "data set"),
        ("epochs", "epochs"),
        ("accuracy", "test acc"),
        ("test_balanced_accuracy", "bal acc"),
        ("test_macro_f1", "macro-F1"),
        ("status", "status"),
        ("time", "duration"),
    ]
    typer.echo(tables.as_text(shown, *zip(*columns, strict=True)))


@app.command("show")
def show(run: Run, as_json: AsJson = False) -> None:
    """One run's settings and results, rounded (--json: the records at full precision)."""
    from kcnn.runs import (
        browse,  # not for `kcnn --help` (its start-up)
        groups,  # NumPy: not for `kcnn --help`
    )

    info = browse.find(run)

    if info.damage is not None:
        raise KcnnError(f"{run} cannot be shown: {info.damage}")
    if groups.is_group(info.folder):
        return _show_group(info, as_json)
    if not info.is_run and not info.is_comparison:
        raise KcnnError(f"{run} is not a run folder (no config.json); see `kcnn runs`")
    if as_json:
        print_json({"run": info.row(), "config": info.settings, "metrics": info.metrics})
        return
    lines = _show_head(info)
    settings = {k: v for k, v in info.settings.items() if k not in _SHOWN_ABOVE | _NOT_SHOWN}
    lines += _section("settings", "setting", settings)
    metrics = info.metrics or {}
    results = {k: v for k, v in metrics.items() if k not in _SHOWN_ABOVE | _NOT_SHOWN}
    lines += _section("results", "result", results)
    if info.per_class:
        rows = [
            {"class": name, **{k: _score(v) for k, v in s.items()}}
            for name, s in info.per_class.items()
        ]
        columns = [(k, k) for k in ("class", "precision", "recall", "f1", "support")]
        lines += [
            "",
            "per class (test set)",
            *tables.as_text(rows, *zip(*columns, strict=True), indent="  ").splitlines(),
        ]
    if info.members:
        rows = [_member_row(sub) for sub in info.members]
        lines += [
            "",
            "runs",
            *tables.as_text(rows, *zip(*_MEMBER_COLUMNS, strict=True), indent="  ").splitlines(),
        ]
    typer.echo("\n".join(lines))  # every cell and value escaped on its way in


# What the head of `kcnn show` says, and records it leaves out: each fact is printed once.
_SHOWN_ABOVE = {
    "command",
    "kind",
    "arch",
    "api",
    "backbone",
    "head",
    "dataset",
    "status",
    "epochs_completed",
    "epochs_planned",
    "test_accuracy",
    "test_loss",
    "wall_seconds",
    "params",
    "total_params",
}
_NOT_SHOWN = {
    "versions",
    "classes",
    "run_dir",
    "per_class",
    "confusion_matrix",
    "macro_avg",
    "weighted_avg",
}
_MEMBER_COLUMNS = [
    ("name", "run"),
    ("model", "model"),
    ("status", "status"),
    ("accuracy", "test acc"),
    ("time", "duration"),
]


def _show_head(info) -> list[str]:
    """The run's name and status, then what it is and how it did, one fact a line."""
    row = info.row()
    epochs = (
        None
        if row["epochs_done"] is None
        else f"{row['epochs_done']} of {row['epochs_planned'] or '?'}"
    )
    params = info.params
    facts = [
        ("folder", str(info.folder)),
        ("command", f"kcnn {row['command']}" if row["command"] else None),
        ("model", row["model"] or None),
        ("data set", info.dataset_text),  # a stand-in says what was asked for
        ("classes", _classes(info.class_names)),
        ("epochs", epochs),
        (
            "best test accuracy" if info.is_comparison else "test accuracy",  # of its runs
            _accuracy_fact(info, row["test_accuracy"]),
        ),
        ("test loss", readable.loss(info.test_loss) or None),
        ("duration", readable.duration(row["duration_seconds"]) or None),
        ("parameters", None if params is None else readable.count(params)),
    ]
    shown = [(k, v) for k, v in facts if v is not None]
    width = max(len(k) for k, _ in shown)
    return [terminal(f"{row['name']}  ({row['status']})")] + [
        terminal(f"  {k.ljust(width)}  {v}") for k, v in shown
    ]


def _accuracy_fact(info, accuracy: float | None) -> str | None:
    """`0.9080 (90.8 %), 95% CI 0.8790–0.9311 of 360 test images (Wilson)`."""
    from kcnn.runs import readable

    interval = info.accuracy_interval
    if interval is None:
        return readable.accuracy_percent(accuracy) or None
    return (
        f"{readable.accuracy_percent(accuracy)}, 95% CI {interval.ci_low:.4f}–"
        f"{interval.ci_high:.4f} of {interval.n:,} test images (Wilson)"
    )


def _classes(names: list[str]) -> str | None:
    """`0, 1, 2, ... 9 (10)`: a few names and how many."""
    if not names:
        return None
    shown = ", ".join(names[:6]) + (", ..." if len(names) > 6 else "")
    return f"{shown} ({len(names)})"


def _section(title: str, header: str, record: dict) -> list[str]:
    if not record:
        return []
    rows = [{header: k, "value": readable.figure(k, v)} for k, v in record.items()]
    return [
        "",
        title,
        *tables.as_text(rows, [header, "value"], [header, "value"], indent="  ").splitlines(),
    ]


def _score(v):
    return f"{v:.3f}" if isinstance(v, float) else v


def _member_row(sub) -> dict:
    interval = sub.accuracy_interval
    return {
        "name": sub.folder.name,
        "model": sub.model_label,
        "status": sub.status,
        "accuracy": interval.short() if interval else readable.accuracy(sub.test_accuracy),
        "time": readable.duration(sub.duration),
    }


def _show_group(info, as_json: bool) -> None:
    """A group of seed runs: each group's mean ± 95% interval, the tests between them, its seeds."""
    from kcnn.runs import groups  # NumPy: not for `kcnn --help`

    record = groups.read(info.folder) or {}
    if as_json:
        print_json({"group": info.row(), **record, "runs": [s.row() for s in info.sub_runs]})
        return
    text = groups.text(info.folder)  # through the folder's owner: never a planted link
    seeds = readable.value(record.get("seeds"))
    folds = f", {record['folds']} folds" if record.get("folds") else ""
    lines = [f"{info.name}  ({record.get('status', 'incomplete')}, seeds {seeds}{folds})"]
    lines += [f"  folder: {info.folder}"]
    lines += [line for line in text.splitlines() if line and not line.startswith("![")]
    lines = [terminal(line) for line in lines]
    rows = [_member_row(s) for s in info.sub_runs]
    lines += [
        "",
        "runs",
        *tables.as_text(rows, *zip(*_MEMBER_COLUMNS, strict=True), indent="  ").splitlines(),
    ]
    typer.echo("\n".join(lines))


@app.command("compare")
def compare(
    run_folders: Annotated[
        list[str],
        typer.Argument(
            help="Two or more run folders; a sweep folder stands for its best 5 trials."
        ),
    ],
    out: Annotated[Path, typer.Option(help="Folder that receives the comparison folder.")] = Path(
        "runs"
    ),
    as_json: AsJson = False,
) -> None:
    """Compare any finished runs: results, overlaid curves and the settings that differ. A
    group folder (`--seeds`) is a group of its own, whatever its settings; other runs that
    differ only in their seed form a group."""
    from kcnn.runs import (
        browse,  # not for `kcnn --help` (its start-up)
        groups,  # NumPy: not for `kcnn --help`
        sweep_report,  # not for `kcnn --help` (its start-up)
    )
    from kcnn.runs.report import compare_runs  # matplotlib: only once there is a comparison

    infos, named, loose = [], [], []
    for r in run_folders:  # a group folder stands for its seed runs, as one group
        found = browse.find(r)
        if groups.is_group(found.folder):
            named.append((found.folder.name, found.sub_runs))
            infos += found.sub_runs
            continue
        runs = sweep_report.best_runs(found.folder) or [browse.find_run(r)]
        loose += runs
        infos += runs
    folder = compare_runs(infos, out, grouped=groups.named_groups(named, loose) if named else None)
    if as_json:
        print_json(read_json(folder / browse.COMPARISON_JSON))
        return
    record = read_json(folder / browse.COMPARISON_JSON)
    described = record.get("groups") or {}
    for name, g in (described.get("groups") or {}).items():  # groups: named, or same but seed
        say(f"{name}: test accuracy {groups.accuracy_text(groups.summary_row(g))}")
    for t in described.get("tests") or []:  # every tested metric, not only accuracy
        say(f"- {t['sentence']}")
    for v in record.get("verdicts") or []:  # single runs, pair by pair
        say(f"- {v['sentence']}")
    for note in record.get("verdict_notes") or []:
        say(f"- {note}")
    for note in described.get("duplicates") or []:
        say(f"note: {note}")
    say(f"report: {folder / 'comparison.md'}  (and report.html)")


@app.command("predict")
def predict(
    run: Run,
    images: Annotated[list[Path], typer.Argument(help="Image files (PNG/JPEG) or folders.")],
    top: Annotated[int, typer.Option(help="How many classes to show per image.")] = 3,
    model: Annotated[
        Path | None,
        typer.Option(
            "--model",
            help="An exported model to classify with instead of the run's model.keras: a .onnx "
            "or .tflite file or a SavedModel folder (as `kcnn export` writes them), fed the "
            "run's preprocessing.",
            show_default=False,
        ),
    ] = None,
    tta: Tta = None,
    as_json: AsJson = False,
) -> None:
    """Classify images with a run's model, preprocessed exactly as the run's data was."""
    from kcnn.use import predict as use  # NumPy: not for `kcnn --help`

    if top < 1:
        raise KcnnError(f"--top {top}: give at least 1")
    loaded = use.load(run, model, tta)
    refused: list[str] = []  # images that could not be read: each said on stderr as met
    results = use.predict_files(loaded, images, top, refused)  # a batch at a time
    if as_json:
        print_json(list(results))  # small dicts: the images themselves are long gone
    else:
        _print_predictions(results, _class_width(loaded.info.class_names))
    if refused:
        raise typer.Exit(2)  # the readable ones are predicted; the status says not all were


def _class_width(names: list[str]) -> int:
    """A class column wide enough for the run's class names (within reason: a long one just
    pushes its row on)."""
    return min(max([len(terminal(n)) for n in names] + [5]), 24)


def _print_predictions(results, width: int) -> None:
    """A row per image as its batch is predicted: the best classes and their probabilities, the
    image last (a path of any length needs no padding). Printed with `print`, which looks up
    sys.stdout each time: while a progress bar holds the terminal, rows go above it."""
    for n, r in enumerate(results):
        if n == 0:
            temperature = r.get("calibration_temperature")
            if temperature is not None:
                print(f"calibrated probabilities (temperature scaling, T = {temperature:.3f})")
            heads = [(f"top {i + 1}", "p") for i in range(len(r["top"]))]
            print(_prediction_row([h for pair in heads for h in pair], "image", width))
        cells = [c for t in r["top"] for c in (terminal(t["class"]), f"{t['probability']:.3f}")]
        print(_prediction_row(cells, terminal(r["image"]), width), flush=True)


def _prediction_row(cells: list[str], image: str, width: int) -> str:
    pairs = zip(cells[::2], cells[1::2], strict=True)
    return "".join(f"{c.ljust(width)}  {p.ljust(5)}  " for c, p in pairs) + image


@app.command("visualize")
def visualize(
    run: Run,
    image: Annotated[
        Path | None,
        typer.Option(
            help="Image to look at [default: the first test image of the run's data].",
            show_default=False,
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(help="Folder for the pictures [default: RUN/visualize].", show_default=False),
    ] = None,
    as_json: AsJson = False,
) -> None:
    """First-layer filters, feature maps and a Grad-CAM heatmap of a run's model (PNG files)."""
    from kcnn.runs import html  # not for `kcnn --help` (its start-up)
    from kcnn.runs.run import RunFolder  # not for `kcnn --help` (its start-up)
    from kcnn.use import predict as use  # NumPy: not for `kcnn --help`
    from kcnn.use import visualize as vis  # NumPy: not for `kcnn --help`

    loaded = use.load(run)
    if image is not None:
        picture = use.read_image(image, loaded.data_shape)
        shows = f"image {image.name}"
    else:
        test = loaded.test_images(1)
        if test is None:
            raise KcnnError("the run's data set is not available here; pass an image with --image")
        picture = test[0]
        shows = f"test image 0 of {loaded.info.dataset}"

    vis.check_drawable(loaded)  # before the run's picture folder is made
    # the run's own picture folder must be a real folder inside it: a planted link is refused
    target = out if out is not None else RunFolder(loaded.info.folder).subfolder(html.VISUALIZE)
    try:
        shown = vis.visualize(loaded, picture, target, shows)
    except OSError as e:
        raise KcnnError(f"cannot write pictures to {target}: {e.strerror or e}") from None
    if target.resolve() == (loaded.info.folder / html.VISUALIZE).resolve():
        html.write_report(loaded.info.folder)  # the report now shows the pictures
    if as_json:
        print_json(shown)
        return
    g = shown["grad_cam"]
    say(
        f"pictures in {target}: {', '.join(shown['files'])}",
        f"predicted {g['class']} ({g['probability']:.3f}); Grad-CAM on {g['layer']}",
    )


@app.command("export")
def export(
    run: Run,
    format: Annotated[
        str,
        typer.Option(
            "--format", help="The format to export to.", metavar="saved-model|tflite|onnx"
        ),
    ] = "saved-model",
    quantize: Annotated[
        str | None,
        typer.Option(
            help="TFLite only: float16 weights, dynamic-range int8 weights, or int8 full-integer "
            "quantisation calibrated on a sample of the run's training images.",
            metavar="float16|dynamic|int8",
            show_default=False,
        ),
    ] = None,
    int8_io: Annotated[
        bool,
        typer.Option("--int8-io", help="With --quantize int8: integer input and output too."),
    ] = False,
    max_accuracy_drop: Annotated[
        float | None,
        typer.Option(
            help="Exit 1 (and keep no file) when the exported model's test accuracy is more than "
            "this below the run's model's (a fraction: 0.01 is one percentage point).",
            show_default=False,
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            help="Folder for the exported model [default: RUN/export].", show_default=False
        ),
    ] = None,
    tta: Tta = None,
    as_json: AsJson = False,
) -> None:
    """Export a run's model (SavedModel, TFLite, ONNX), reload it in its own runtime and measure
    it on the run's test split against the run's model: size, accuracy, difference, speed."""
    from kcnn.runs import browse  # not for `kcnn --help` (its start-up)
    from kcnn.use import export as exporting  # NumPy: not for `kcnn --help`
    from kcnn.use import predict as use  # NumPy: not for `kcnn --help`

    target = exporting.target(format, quantize, int8_io)
    exporting.check_max_drop(max_accuracy_drop)
    exporting.check_paths(browse.find_run(run).folder, out, target)  # before loading anything
    record = exporting.export(use.load(run, tta=tta), target, out, max_accuracy_drop, quiet=as_json)
    if as_json:
        print_json(record)
        return
    accuracy = (
        ""
        if record["accuracy"] is None
        else f"test accuracy {record['accuracy']:.4f} (the run's model: "
        f"{record['run_accuracy']:.4f})" + (f", with TTA {record['tta']}" if record["tta"] else "")
    )
    say(
        f"{target.key}: {record['path']}  ({record['file_bytes']:,} bytes)",
        f"check: {record['message']}",
        *([accuracy] if accuracy else []),
        f"speed ({record['runtime']}): {record['latency_ms_batch1']:.3f} ms per image at batch 1, "
        f"{record['throughput_batch32']:,.0f} images/s at batch 32",
    )
