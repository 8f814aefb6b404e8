"""report.html: one self-contained page per run or comparison folder.

Built purely from the folder's files (so any command can rebuild it after adding pictures):
images are embedded as base64 data URIs and the CSS is inline, so the page can be mailed or
opened offline. No scripts at all. The folder may be anyone's: every text is escaped, and a
picture is embedded only if it is a PNG kcnn checked, read from a regular file inside the folder
(`RunFolder.png`): a planted link to a private file is shown as missing, never embedded.
"""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path
from typing import Any
from urllib.parse import quote

from kcnn import text
from kcnn.engine import interrupts
from kcnn.runs import exports, folders, inspected, tables
from kcnn.runs.browse import COMPARISON_MD, RunInfo, interval_cell
from kcnn.runs.readable import value as readable  # how a setting or figure reads
from kcnn.runs.records import Damaged
from kcnn.runs.run import RunFolder
from kcnn.runs.tables import Markup

REPORT = folders.REPORT_HTML
VISUALIZE = "visualize"  # where `kcnn visualize` puts its pictures by default
SHOWN = "visualize.json"  # beside them: which image they show and what the model took it for

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2em auto;max-width:1100px;
padding:0 1em;color:#222;overflow-wrap:break-word}
h1{font-size:1.5em}h2{font-size:1.2em;border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:2em}
h1,h2,h3,p,summary,code{overflow-wrap:anywhere}
.table{max-width:100%;overflow-x:auto;margin:.5em 0}
table{border-collapse:collapse;font-size:.9em}
td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left;vertical-align:top}
th{background:#f3f3f3;overflow-wrap:normal}td.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
img{max-width:100%;height:auto;border:1px solid #eee;margin:.5em 0}
pre{background:#f7f7f7;padding:.8em;overflow-x:auto;font-size:.8em}
.status{display:inline-block;padding:.1em .6em;border-radius:.8em;background:#eee}
.completed{background:#d7f5dd}.diverged,.failed{background:#fbd5d5}.interrupted{background:#fdf0c8}
"""


def _image(folder: Path, name: str, alt: str) -> str:
    """The picture `name` of `folder` embedded, or a note saying why it is not."""
    try:
        data = base64.b64encode(RunFolder(folder).png(name)).decode("ascii")
    except FileNotFoundError:
        return ""
    except (Damaged, ValueError) as e:
        why = e.reason if isinstance(e, Damaged) else "not a name inside the folder"
        return f"<p><em>{html.escape(name)} not shown: {html.escape(why)}</em></p>"
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _pairs(record: dict[str, Any], name: str = "setting") -> str:
    rows = [{name: k, "value": Markup(text.html(readable(v, str(k))))} for k, v in record.items()]
    return tables.as_html(rows, [name, "value"])


def _shown_caption(folder: Path) -> str:
    """Which image `kcnn visualize` looked at, and what the model took it for (visualize.json)."""
    try:
        record = RunFolder(folder).json(f"{VISUALIZE}/{SHOWN}")
    except (FileNotFoundError, Damaged):
        return ""
    image, cam = record.get("image"), record.get("grad_cam")
    if not isinstance(image, str) or not image:
        return ""
    caption = f"The pictures below show {text.html(image)}"
    if isinstance(cam, dict) and isinstance(cam.get("class"), str):
        chance = cam.get("probability")
        sure = f" ({chance:.2f})" if isinstance(chance, (int, float)) else ""
        caption += f"; the model took it for <b>{text.html(cam['class'])}</b>{sure}"
    return f"<p>{caption}.</p>"


def _pictures(folder: Path) -> list[str]:
    try:
        shown = RunFolder(folder).pictures(VISUALIZE)
    except Damaged:
        return []
    titles = [Path(name).stem for name in shown]
    pictures = [
        f"<h3>{html.escape(title.replace('_', ' '))}</h3>{_image(folder, name, title)}"
        for name, title in zip(shown, titles, strict=True)
    ]
    return [_shown_caption(folder), *pictures] if pictures else []


def _exports_section(folder: Path) -> list[str]:
    """What `kcnn export` measured (RUN/export.json): one row per exported format."""
    recorded = exports.read(folder)
    if not recorded:
        return []
    rows = [dict(zip(exports.TABLE_COLUMNS, row, strict=True)) for row in exports.rows(recorded)]
    note = (
        "<p>Each exported file reloaded in its own runtime and run on the run's test split; "
        "speed measured on the machine that exported it.</p>"
    )
    return ["<h2>Exported models</h2>", note, tables.as_html(rows, list(exports.TABLE_COLUMNS))]


def _page(title: str, parts: list[str]) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{text.html(title)}</title><style>{_CSS}</style></head><body>"
        + "\n".join(p for p in parts if p)
        + "</body></html>\n"
    )


_RESULT_KEYS = (
    "status",
    "epochs_completed",
    "epochs_planned",
    "test_accuracy",
    "test_loss",
    "best_val_accuracy",
    "wall_seconds",
    "seconds_per_epoch",
    "train_images_per_second",
)


def _run_page(info: RunInfo) -> str:
    folder, metrics = info.folder, info.metrics or {}
    title = f"{info.model_label or info.folder.name} on {info.dataset_text}"
    settings = {k: v for k, v in info.settings.items() if k not in ("versions", "classes")}
    results = {k: metrics[k] for k in _RESULT_KEYS if k in metrics}
    interval = info.accuracy_interval
    if interval is not None:  # right after the accuracy: how sure it is, from the test-set size
        shown = f"{interval.ci_low:.4f}–{interval.ci_high:.4f} (Wilson, {interval.n:,} test images)"
        items = list(results.items())
        at = [k for k, _ in items].index("test_accuracy") + 1
        results = dict([*items[:at], ("test_accuracy_95ci", shown), *items[at:]])
    results.update(recipe_results(metrics))
    if info.params is not None:
        results["parameters"] = info.params
    parts = [
        f"<h1>{text.html(title)}</h1>",
        f'<p><span class="status {html.escape(info.status)}">{html.escape(info.status)}</span> '
        f"<code>{text.html(folder)}</code></p>",
        "<h2>Results</h2>",
        _pairs(results, "result"),
    ]
    curves = _image(folder, folders.CURVES, "learning curves")
    if curves:
        parts += ["<h2>Learning curves</h2>", curves]
    confusion = _image(folder, folders.CONFUSION, "confusion matrix")
    if confusion:
        parts += ["<h2>Confusion matrix (test set)</h2>", confusion]
    if info.per_class:
        rows = [{"class": name, **scores} for name, scores in info.per_class.items()]
        for avg in ("macro_avg", "weighted_avg"):
            if isinstance(metrics.get(avg), dict):
                rows.append({"class": avg.replace("_", " "), **metrics[avg]})
        parts += ["<h2>Per class (test set)</h2>"]
        parts += [tables.as_html(rows, ["class", "precision", "recall", "f1", "support"])]
    pictures = _pictures(folder)
    if pictures:
        parts += ["<h2>Inside the network</h2>", *pictures]
    parts += _inspected(folder)
    parts += _exports_section(folder)
    parts += ["<h2>Settings</h2>", _pairs(settings)]
    summary = _text(folder, folders.SUMMARY)
    if summary:
        parts += ["<h2>Model</h2>", f"<pre>{html.escape(summary)}</pre>"]
    if (folder / "tensorboard").is_dir():
        parts += [f"<p>TensorBoard logs: <code>tensorboard --logdir {html.escape(str(folder))}"]
        parts[-1] += "/tensorboard</code></p>"
    versions = info.settings.get("versions")
    if versions:
        parts += ["<h2>Versions</h2>", _pairs(versions, "package")]
    return _page(title, parts)


def _figure(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, int | float) and not isinstance(value, bool) else "?"


def recipe_results(metrics: dict[str, Any]) -> dict[str, str]:
    """What the practitioners' recipes add to a run's results: the test accuracy without
    test-time augmentation beside the one with it, which weights EMA kept, what averaging the
    last epochs gave, why a run stopped early."""
    found: dict[str, str] = {}
    tta = metrics.get("tta")
    if isinstance(tta, dict):
        mode = text.terminal(str(tta.get("mode")))
        found["test_accuracy"] = f"{_figure(metrics.get('test_accuracy'))} (with TTA {mode})"
        found["test_accuracy_without_tta"] = _figure(tta.get("test_accuracy_without"))
        found["test_loss_without_tta"] = _figure(tta.get("test_loss_without"))
    ema = metrics.get("ema")
    if isinstance(ema, dict) and isinstance(ema.get("val_accuracy"), dict):
        val = ema["val_accuracy"]
        found["ema_kept"] = (
            f"{text.terminal(str(ema.get('kept')))} weights (validation accuracy: raw "
            f"{_figure(val.get('raw'))}, EMA {_figure(val.get('ema'))}; decay {ema.get('decay')})"
        )
    average = metrics.get("average_last")
    if isinstance(average, dict) and isinstance(average.get("val_accuracy"), dict):
        val, epochs = average["val_accuracy"], average.get("epochs") or ["?", "?"]
        found["weights_averaged"] = (
            f"epochs {epochs[0]}–{epochs[-1]} (validation accuracy: last epoch "
            f"{_figure(val.get('last_epoch'))}, averaged {_figure(val.get('averaged'))})"
        )
    if isinstance(metrics.get("stop_reason"), str):
        found["stopped"] = text.terminal(metrics["stop_reason"])
    return found


# --- the sections of `kcnn inspect` / `kcnn calibrate` (their records in RUN/inspect/) -----------


def _inspected(folder: Path) -> list[str]:
    """The errors, calibration and robustness sections, each where its record exists; a record
    that cannot be read (damaged, a link, from another version) leaves a note, never the page."""
    parts: list[str] = []
    for name, section in (
        (inspected.ERRORS_JSON, _errors_section),
        (inspected.CALIBRATION_JSON, _calibration_section),
        (inspected.ROBUSTNESS_JSON, _robustness_section),
    ):
        try:
            record = RunFolder(folder).json(f"{inspected.INSPECT}/{name}")
        except FileNotFoundError:
            continue
        except Damaged as e:
            parts.append(f"<p><em>{html.escape(name)} not shown: {html.escape(e.reason)}</em></p>")
            continue
        try:
            parts += section(record, folder)
            if isinstance(record.get("tta"), str):  # predictions averaged over views
                mode = html.escape(text.terminal(record["tta"]))
                parts.append(f"<p>With test-time augmentation ({mode}).</p>")
        except (ValueError, KeyError, TypeError, AttributeError, IndexError):
            parts.append(f"<p><em>{html.escape(name)} not shown: not a kcnn record</em></p>")
    return parts


def _picture(folder: Path, name: str, alt: str) -> list[str]:
    return [_image(folder, f"{inspected.INSPECT}/{name}", alt)]


def _errors_section(e: dict[str, Any], folder: Path) -> list[str]:
    pairs = [
        {
            "true": p["true_name"],
            "taken for": p["predicted_name"],
            "images": p["count"],
            "share of true class": f"{p['share_of_true']:.1%}",
        }
        for p in e["confused_pairs"]
    ]
    classes = [
        {"class": r["name"], "accuracy": r["accuracy"], "images": r["images"]}
        for r in e["per_class_accuracy"]
    ]
    parts = [
        "<h2>Errors (test set)</h2>",
        f"<p>{e['misclassified']:,} of {e['images']:,} test images misclassified "
        f"(accuracy {e['accuracy']:.4f}).</p>",
    ]
    if pairs:
        parts += ["<h3>Most-confused pairs</h3>"]
        parts += [tables.as_html(pairs, ["true", "taken for", "images", "share of true class"])]
    parts += ["<h3>Per-class accuracy, worst first</h3>"]
    parts += [tables.as_html(classes, ["class", "accuracy", "images"])]
    parts += ["<h3>Highest-loss test images, with Grad-CAM</h3>"]
    parts += _picture(folder, inspected.TOP_LOSSES_PNG, "highest-loss test images")
    if e.get("misclassified_csv"):
        parts += [
            f"<p>Misclassified files: <code>{html.escape(inspected.INSPECT)}/"
            f"{html.escape(e['misclassified_csv'])}</code></p>"
        ]
    return parts


def _calibration_section(c: dict[str, Any], folder: Path) -> list[str]:
    keys = ["images", "accuracy", "ece", "mce", "brier", "nll"]
    rows = [{"probabilities": "model", **{k: c["before"][k] for k in keys}}]
    if "after" in c:
        label = f"temperature {c['temperature']:.3f}"
        rows.append({"probabilities": label, **{k: c["after"][k] for k in keys}})
    parts = [
        "<h2>Calibration (test set)</h2>",
        f"<p>ECE and MCE over {int(c['bins'])} equal-width confidence bins; Brier score; NLL.",
    ]
    fit = c.get("fit")
    if fit:
        parts[-1] += (
            f" Temperature fitted on {int(fit['validation_images']):,} validation images "
            f"(Guo et al. 2017): validation NLL {fit['validation_nll_before']:.4f} → "
            f"{fit['validation_nll_after']:.4f}; <code>kcnn predict</code> uses it."
        )
    parts[-1] += "</p>"
    parts += [tables.as_html(rows, ["probabilities", *keys])]
    return parts + _picture(folder, inspected.RELIABILITY_PNG, "reliability diagram")


def _robustness_section(r: dict[str, Any], folder: Path) -> list[str]:
    severities = int(r["severities"])
    columns = ["corruption", "source", *(str(s) for s in range(severities + 1)), "error"]
    about, sds = r.get("corruptions", {}), r.get("accuracy_sd", {})

    def shown(name: str, s: int, a: float):
        sd = sds.get(name, [0.0] * severities)[s]
        return f"{a:.4f} ± {sd:.4f}" if about.get(name, {}).get("draws", 1) > 1 else a

    rows = [
        {
            "corruption": name,
            "source": about.get(name, {}).get("source", ""),
            "0": r["clean_accuracy"],
            **{str(s + 1): shown(name, s, a) for s, a in enumerate(accs)},
            "error": r["corruption_error"][name],
        }
        for name, accs in r["accuracy"].items()
    ]
    draws = (
        f" A random corruption's accuracy is the mean ± standard deviation of "
        f"{int(r['draws'])} draws."
        if "draws" in r
        else ""
    )
    return [
        "<h2>Robustness (test set)</h2>",
        f"<p>Accuracy of {int(r['images']):,} test images under each corruption at severities 1 to "
        f"{severities} (0: clean): CIFAR-10-C's as Hendrycks &amp; Dietterich (2019) define "
        f"them, and kcnn's own.{draws} Mean corruption error "
        f"{r['mean_corruption_error']:.4f}; relative to the clean error "
        f"{r['relative_mean_corruption_error']:+.4f}.</p>",
        tables.as_html(rows, columns),
        *_picture(folder, inspected.ROBUSTNESS_PNG, "accuracy against severity"),
        *_picture(folder, inspected.CORRUPTIONS_PNG, "one test image under every corruption"),
    ]


# A backslash-escaped character in markdown (kcnn.text.markdown_cell writes them for names)
# stands for itself: it is set aside as a private-use character before any markdown is read, and
# put back, HTML-escaped, at the end.
_ESCAPED = re.compile(r"\\([!-/:-@\[-`{-~])")
_PRIVATE = 0xF0000  # a plane of private-use characters: one per ASCII punctuation mark


def _protect(text: str) -> str:
    return _ESCAPED.sub(lambda m: chr(_PRIVATE + ord(m.group(1))), text)


def _restore(text: str) -> str:
    return re.sub(
        "[\U000f0000-\U000f007f]", lambda m: html.escape(chr(ord(m.group(0)) - _PRIVATE)), text
    )


def _inline(text: str, folder: Path) -> str:
    """The markdown kcnn's comparison.md uses inside a line: images, `code`, **bold**, and
    backslash escapes (a protected text: see `_protect`)."""

    def image(m):
        return _image(folder, m.group(2), m.group(1)) or html.escape(m.group(0))

    parts = re.split(r"(!\[[^\]]*\]\([^)]*\))", text)
    out = []
    for part in parts:
        m = re.fullmatch(r"!\[([^\]]*)\]\(([^)]*)\)", part)
        if m:
            out.append(image(m))
            continue
        part = html.escape(part)
        part = re.sub(r"`([^`]+)`", r"<code>\1</code>", part)
        out.append(re.sub(r"\*\*([^*]+)\*\*", r"<b>\1</b>", part))
    return _restore("".join(out))


_NUMBER = re.compile(r"[-+]?[\d,]*\.?\d+(e[-+]?\d+)?%?")


def _wrappable(cell_html: str) -> str:
    """A header that may break after its underscores; text inside tags is left alone."""
    return re.sub(r"_(?![^<]*>)", "_<wbr>", cell_html)


def _markdown_cell(cell: str, folder: Path) -> str:
    """A pipe-table cell: figures right-aligned and unbroken, text free to wrap."""
    number = _NUMBER.fullmatch(cell.strip()) is not None
    opening = '<td class="n">' if number else "<td>"
    return f"{opening}{_inline(cell, folder)}</td>"


def markdown_html(text: str, folder: Path) -> str:
    """comparison.md as HTML: headings, pipe tables, images and paragraphs (all it contains)."""
    out: list[str] = []
    for block in re.split(r"\n\s*\n", _protect(text).strip()):
        lines = block.splitlines()
        if lines and lines[0].startswith("#"):
            level = min(len(lines[0]) - len(lines[0].lstrip("#")), 3)
            out.append(f"<h{level}>{_inline(lines[0].lstrip('#').strip(), folder)}</h{level}>")
            lines = lines[1:]
        if lines and all(line.startswith("|") for line in lines):
            rows = [[c.strip() for c in line.strip().strip("|").split("|")] for line in lines]
            rows = [r for r in rows if not all(re.fullmatch(r"-+:?|:?-+", c) for c in r)]
            head = "".join(f"<th>{_wrappable(_inline(c, folder))}</th>" for c in rows[0])
            body = "".join(
                "<tr>" + "".join(_markdown_cell(c, folder) for c in r) + "</tr>" for r in rows[1:]
            )
            out.append(f'<div class="table"><table><tr>{head}</tr>{body}</table></div>')
        elif lines and all(line.startswith("- ") for line in lines):  # one sentence an item
            items = "".join(f"<li>{_inline(line[2:], folder)}</li>" for line in lines)
            out.append(f"<ul>{items}</ul>")
        elif lines:
            out.append(f"<p>{_inline(' '.join(lines), folder)}</p>")
    return "\n".join(out)


def folders_inside(folder: Path) -> set[str]:
    """The names of the real folders (never links) inside `folder`, as RunFolder lists them."""
    try:
        return {p.name for p in RunFolder(folder).subfolders()}
    except Damaged:
        return set()


def report_link(comparison: RunInfo, run: RunInfo, inside: set[str]) -> str | Markup:
    """A relative link to a run's own report.html when the run is a real folder inside the
    comparison's (RunFolder lists no links) and its report is a regular file there; else the
    report's path as text, or "" when it has none."""
    try:
        relative = run.folder.relative_to(comparison.folder)
    except ValueError:
        relative = None
    if not RunFolder(run.folder).has(REPORT):
        return ""
    if relative is not None and relative.parts and relative.parts[0] in inside:
        href = "/".join(quote(part) for part in (*relative.parts, REPORT))
        return Markup(f'<a href="{html.escape(href)}">report</a>')
    return str(run.folder / REPORT)


def _comparison_page(info: RunInfo) -> str:
    folder = info.folder
    markdown = _text(folder, COMPARISON_MD) or f"# {folder.name}"
    title = markdown.splitlines()[0].lstrip("#").strip() if markdown else folder.name
    parts = [markdown_html(markdown, folder)]
    inside = folders_inside(folder)
    rows = [{**s.row(), "report": report_link(info, s, inside)} for s in info.members]
    if rows:
        parts += ["<h2>Runs in this comparison</h2>"]
        for row, s in zip(rows, info.members, strict=True):
            row["test_accuracy_95ci"] = interval_cell(s.folder)
        columns = ["name", "model", "dataset", "status", "test_accuracy", "test_accuracy_95ci"]
        parts += [tables.as_html(rows, [*columns, "report"])]
        parts += [
            "<p>Each run's own report.html: the last column. 95% intervals: Wilson's, "
            "from each run's test-set size.</p>"
        ]
    return _page(title, parts)


def _text(folder: Path, name: str) -> str:
    """A text file of the folder, or "" when it is missing or cannot be trusted."""
    try:
        return RunFolder(folder).text(name)
    except (FileNotFoundError, Damaged):
        return ""


def write_report(folder: str | Path) -> Path:
    """Write `folder/report.html` from the files in the run or comparison folder; returns its path."""
    info = RunInfo.load(folder)
    page = _comparison_page(info) if info.is_comparison else _run_page(info)
    RunFolder(info.folder).write_text(REPORT, page)
    return info.folder / REPORT


def write_report_after(folder: str | Path) -> Path | None:
    """write_report for the end of a run or comparison: the records are already complete, so a
    report that cannot be written is a warning on stderr, never a failed run (a stop request
    still stops)."""
    with interrupts.only_a_warning(f"{Path(folder) / REPORT} not written"):
        return write_report(folder)
    return None
