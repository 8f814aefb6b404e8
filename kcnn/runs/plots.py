"""Pictures of a run: learning curves, the confusion matrix, and overlaid curves for comparisons.

Names in a picture (class names, run labels, titles) come from a user's data or a run folder, so
they are drawn as plain text: every figure is made and saved inside `literal_text()`, where
matplotlib reads no `$...$` as mathtext (a class named `$5 bills` would otherwise be parsed as
TeX, and crash the drawing), and control characters are shown as escapes. A picture is a by-product
of a run: one that cannot be drawn is a warning on stderr, never a lost run.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no screen on servers and CI
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from kcnn import text  # noqa: E402

History = Mapping[str, Sequence[float]]  # "loss", "val_loss", "accuracy", "val_accuracy" per epoch

# matplotlib's own switches for text drawn as given: no mathtext (`text.parse_math`, read by every
# Text object when it is made, tick labels made while saving included), no LaTeX, and no mathtext
# in the axes' number formatting either.
LITERAL_TEXT = {
    "text.parse_math": False,
    "text.usetex": False,
    "axes.formatter.use_mathtext": False,
}


@contextlib.contextmanager
def literal_text() -> Iterator[None]:
    """Make and save figures in here: every text in them is drawn literally."""
    with matplotlib.rc_context(LITERAL_TEXT):
        yield


def label(name: object) -> str:
    """A name as figure text: control characters and bidi overrides as visible escapes."""
    return text.terminal(name)


def _never_fatal(draw):
    """A drawing function whose failure (any error, a font, a full disk) is one warning line and
    no file, leaving the run or comparison that asked for it whole."""

    signature = inspect.signature(draw)

    @functools.wraps(draw)
    def drawn(*args, **kwargs) -> bool:
        before = set(plt.get_fignums())
        try:
            with literal_text():
                draw(*args, **kwargs)
            return True
        except Exception as e:  # noqa: BLE001  (a picture must never cost a finished run)
            for number in set(plt.get_fignums()) - before:  # its own half-made figure only
                plt.close(number)
            path = signature.bind(*args, **kwargs).arguments.get("path", draw.__name__)
            print(f"warning: {label(path)} not drawn: {label(e)}", file=sys.stderr)
            return False

    return drawn


def _save(fig, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp.png")
    try:
        fig.savefig(tmp, dpi=110, bbox_inches="tight")
        tmp.replace(path)
    finally:
        plt.close(fig)
        tmp.unlink(missing_ok=True)


@_never_fatal
def overlay_curves(histories: Mapping[str, History], path: str | Path, title: str = "") -> None:
    """Loss and accuracy per epoch, train (solid) and validation (dashed), one colour per run.

    Runs get different markers and shrinking line widths, so curves that coincide exactly (three
    API forms from the same initial weights) all stay visible. Returns whether it was drawn.
    """
    rates = any(len(h.get("learning_rate", ())) for h in histories.values())
    metrics = ("loss", "accuracy", "learning_rate") if rates else ("loss", "accuracy")
    fig, axes = plt.subplots(1, len(metrics), figsize=(5.5 * len(metrics), 4))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    markers = "osD^vP*X"
    for i, (run, history) in enumerate(histories.items()):
        colour, marker, width = (
            colours[i % len(colours)],
            markers[i % len(markers)],
            max(2.6 - 0.7 * i, 0.8),
        )
        for ax, metric in zip(axes, metrics, strict=True):
            for prefix, style in (("", "-"), ("val_", "--")):
                values = history.get(prefix + metric)
                if values is not None and len(values):
                    epochs = np.arange(1, len(values) + 1)
                    part = "validation" if prefix else "train"
                    name = f"{label(run)} {part if metric != 'learning_rate' else ''}".strip()
                    ax.plot(
                        epochs,
                        values,
                        style,
                        color=colour,
                        marker=marker,
                        markersize=7 - 1.5 * min(i, 3),
                        linewidth=width,
                        label=name,
                        alpha=0.9,
                    )
    for ax, metric in zip(axes, metrics, strict=True):
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(metric.replace("_", " "))
        ax.grid(alpha=0.3)
        lines = [line for line in ax.get_lines() if line.get_label()]
        if lines:  # handed over explicitly: a label starting with "_" is still shown
            ax.legend(lines, [line.get_label() for line in lines], fontsize=7)
    if title:
        fig.suptitle(label(title))
    _save(fig, Path(path))


def curves(history: History, path: str | Path, title: str = "") -> bool:
    return overlay_curves({"": history}, path, title)


@_never_fatal
def confusion_matrix(
    matrix: np.ndarray, class_names: Sequence[str], path: str | Path, title: str = ""
) -> None:
    n = len(class_names)
    size = min(4 + 0.45 * n, 24)
    fig, ax = plt.subplots(figsize=(size, size * 0.85))
    image = ax.imshow(matrix, cmap="Blues")
    fig.colorbar(image, ax=ax, fraction=0.046)
    if n <= 30:
        names = [label(c) for c in class_names]
        ax.set_xticks(range(n), names, rotation=45, ha="right", fontsize=8)
        ax.set_yticks(range(n), names, fontsize=8)
        threshold = matrix.max() / 2 if matrix.size else 0
        for i in range(n):
            for j in range(n):
                ax.text(
                    j,
                    i,
                    int(matrix[i, j]),
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if matrix[i, j] > threshold else "black",
                )
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(label(title) if title else "confusion matrix (test set)")
    _save(fig, Path(path))


def _interval(runs: Sequence[Sequence[float]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per epoch, over runs cut to the shortest: the mean and its 95% Student-t interval."""
    from scipy import stats

    length = min(len(r) for r in runs)
    values = np.asarray([list(r)[:length] for r in runs], dtype=float)
    mean = values.mean(axis=0)
    if len(runs) < 2:
        return mean, mean, mean
    half = stats.t.ppf(0.975, len(runs) - 1) * values.std(axis=0, ddof=1) / np.sqrt(len(runs))
    return mean, mean - half, mean + half


def band_curves(groups: Mapping[str, Sequence[History]], path: str | Path, title: str = "") -> None:
    """Loss and accuracy per epoch of each group of seed runs: the mean over seeds (train solid,
    validation dashed) with its 95% interval as a band."""
    metrics = ("loss", "accuracy")
    fig, axes = plt.subplots(1, len(metrics), figsize=(11, 4))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (label, histories) in enumerate(groups.items()):
        colour = colours[i % len(colours)]
        for ax, metric in zip(axes, metrics, strict=True):
            for prefix, style in (("", "-"), ("val_", "--")):
                runs = [h.get(prefix + metric) for h in histories]
                if not runs or any(r is None or not len(r) for r in runs):
                    continue
                mean, low, high = _interval(runs)
                epochs = np.arange(1, len(mean) + 1)
                part = "validation" if prefix else "train"
                ax.plot(  # shrinking widths and other markers: groups that coincide stay visible
                    epochs,
                    mean,
                    style,
                    color=colour,
                    marker="osD^vP*X"[i % 8],
                    markersize=7 - 1.5 * min(i, 3),
                    linewidth=max(2.6 - 0.7 * i, 0.8),
                    label=f"{label} {part} (n={len(runs)})",
                )
                ax.fill_between(epochs, low, high, color=colour, alpha=0.2, linewidth=0)
    for ax, metric in zip(axes, metrics, strict=True):
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[1]:
            ax.legend(fontsize=7)
    if title:
        fig.suptitle(title)
    _save(fig, Path(path))


def per_class_intervals(
    groups: Mapping[str, Mapping[str, Mapping[str, Mapping[str, float]]]],
    path: str | Path,
    title: str = "",
    metric: str = "f1",
) -> None:
    """Each class's test `metric` per group: the mean over seeds with its 95% interval as an
    error bar. `groups` maps a group to {class: {metric: summary}} (kcnn.runs.groups)."""
    names = list(dict.fromkeys(c for g in groups.values() for c in g))
    width = 0.8 / max(len(groups), 1)
    fig, ax = plt.subplots(figsize=(min(4 + 0.6 * len(names) * len(groups), 24), 4))
    for i, (label, classes) in enumerate(groups.items()):
        means, errors = [], [[], []]
        for name in names:
            s = (classes.get(name) or {}).get(metric) or {}
            mean = s.get("mean", np.nan)
            means.append(mean)
            errors[0].append(0 if s.get("ci_low") is None else mean - s["ci_low"])
            errors[1].append(0 if s.get("ci_high") is None else s["ci_high"] - mean)
        x = np.arange(len(names)) + (i - (len(groups) - 1) / 2) * width
        ax.bar(x, means, width, yerr=errors, capsize=3, label=label, alpha=0.85)
    ax.set_xticks(range(len(names)), names, rotation=45 if len(names) > 8 else 0, ha="right")
    ax.set_ylabel(f"test {metric} (mean, 95% interval)")
    ax.set_ylim(0, 1.05)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title(title or f"per-class {metric}")
    _save(fig, Path(path))
