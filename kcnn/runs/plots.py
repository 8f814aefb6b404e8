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
import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no screen on servers and CI
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import FuncFormatter, MaxNLocator, ScalarFormatter  # noqa: E402

from kcnn import text  # noqa: E402
from kcnn.engine import interrupts  # noqa: E402
from kcnn.engine.recording import RATE  # noqa: E402

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


def literally(make):
    """`make` run inside literal_text(): the figure it returns has every text made literal."""

    @functools.wraps(make)
    def made(*args, **kwargs):
        with literal_text():
            return make(*args, **kwargs)

    return made


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
        path = signature.bind(*args, **kwargs).arguments.get("path", draw.__name__)
        done = False
        try:
            # a picture must never cost a finished run; a stop request is never a warning
            with interrupts.only_a_warning(f"{path} not drawn"), literal_text():
                draw(*args, **kwargs)
                done = True
        finally:
            if not done:  # its own half-made figure only
                for number in set(plt.get_fignums()) - before:
                    plt.close(number)
        return done

    return drawn


def _save(fig, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp.png")
    try:
        fig.savefig(tmp, dpi=110, bbox_inches="tight")
        tmp.replace(path)
    finally:
        plt.close(fig)
        tmp.unlink(missing_ok=True)


# --- learning curves -----------------------------------------------------------------------------

MARKERS = "osD^vP*X"
FEW_MARKERS = 12  # a long run marks about this many epochs per line: enough to tell lines apart


def _rate_is_constant(values: Sequence[float]) -> bool:
    """A rate logged as float32 every epoch: equal to a millionth is constant."""
    low, high = min(values), max(values)
    return high - low <= 1e-6 * max(abs(high), 1e-12)


def _number(value: float, _position: object = None) -> str:
    return f"{value:.3g}"


def short_names(names: Sequence[str]) -> list[str]:
    """Run names for a legend: the leading time stamp of folder names dropped when the names stay
    distinct without it (the comparison's table still names each folder in full)."""
    stamp = re.compile(r"^\d{8}-\d{6}-")
    shorter = [stamp.sub("", n) for n in names]
    return shorter if len(set(shorter)) == len(shorter) and all(shorter) else list(names)


def _epoch_axis(ax, epochs: int) -> None:
    """Whole epochs with room at both ends: one epoch is one tick in the middle (not an axis of
    0.945-1.050), sixty are sixty epochs."""
    ax.set_xlim(0.5, epochs + 0.5)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    ax.set_xlabel("epoch")


def _value_axis(ax, metric: str, values: Sequence[float]) -> None:
    """Limits around what is drawn, with room for the markers; an accuracy stays within 0..1 (a
    little over, so a marker at 1.0 is whole) and a loss above 0. One value (one epoch) gets an
    axis a few hundredths wide, not one of a millionth."""
    finite = [v for v in values if np.isfinite(v)]
    ax.set_ylabel(metric.replace("_", " "))
    if metric == RATE:
        ax.yaxis.set_major_formatter(FuncFormatter(_number))  # 0.001, not an offset of 1e-3
    else:
        ax.yaxis.set_major_formatter(ScalarFormatter(useOffset=False))
    if not finite:
        return
    low, high = min(finite), max(finite)
    floor = 0.02 if metric == "accuracy" else 0.05 * max(abs(high), 1e-6)
    pad = max(0.08 * (high - low), floor)
    bottom = max(0.0, low - pad) if low >= 0 else low - pad
    top = min(1.02, high + pad) if metric == "accuracy" and high <= 1 else high + pad
    ax.set_ylim(bottom, top)


def _legend(fig, entries: list[tuple[object, str]], width_inches: float) -> None:
    """One legend for the figure, below the panels: never over a curve, however long the names."""
    if not entries:
        return
    longest = max(len(name) for _, name in entries)
    columns = max(1, min(len(entries), int(width_inches * 11) // (longest + 6)))
    handles, names = zip(*entries, strict=True)
    fig.legend(
        handles,
        names,
        loc="outside lower center",
        ncols=columns,
        fontsize=8,
        frameon=False,
        handlelength=3,  # long enough to show a dashed line as dashed
    )


@literally
def curves_figure(histories: Mapping[str, History], title: str = ""):
    """Loss and accuracy per epoch, train (solid) and validation (dashed), one colour per run.

    The learning rate gets a panel of its own only when it changed during a run; a constant rate
    is said in the title (or, when runs differ, in each run's legend entry). Runs get different
    markers and shrinking line widths, so curves that coincide exactly (three API forms from the
    same initial weights) all stay visible. The figure is the caller's to save and close.
    """
    from matplotlib.lines import Line2D

    rates = {run: list(h.get(RATE) or ()) for run, h in histories.items()}
    varying = any(r and not _rate_is_constant(r) for r in rates.values())
    constant = {} if varying else {run: r[0] for run, r in rates.items() if r}
    metrics = ("loss", "accuracy", RATE) if varying else ("loss", "accuracy")
    width = 5.0 * len(metrics)
    fig, axes = plt.subplots(1, len(metrics), figsize=(width, 4.2), layout="constrained")
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    names = dict(zip(histories, short_names([label(r) for r in histories]), strict=True))
    same_rate = len(set(constant.values())) == 1 and len(constant) == len(histories)
    entries: list[tuple[object, str]] = []
    dashed = False
    for ax, metric in zip(axes, metrics, strict=True):
        drawn: list[float] = []
        longest = 0
        for i, history in enumerate(histories.values()):
            for prefix, style in (("", "-"), ("val_", "--")):
                values = list(history.get(prefix + metric) or ())
                if not values or (prefix and metric == RATE):
                    continue
                dashed = dashed or bool(prefix)
                drawn += values
                longest = max(longest, len(values))
                ax.plot(
                    np.arange(1, len(values) + 1),
                    values,
                    style,
                    color=colours[i % len(colours)],
                    marker=MARKERS[i % len(MARKERS)],
                    markevery=max(1, round(len(values) / FEW_MARKERS)),
                    markersize=8 - 1.5 * min(i, 3),
                    linewidth=max(2.6 - 0.7 * i, 0.8),
                    alpha=0.9,
                )
        _epoch_axis(ax, max(longest, 1))
        _value_axis(ax, metric, drawn)
        ax.grid(alpha=0.3)
    for i, run in enumerate(histories):
        style = {"color": colours[i % len(colours)], "marker": MARKERS[i % len(MARKERS)]}
        name = names[run] or "train"
        if run in constant and not same_rate:
            name += f" (learning rate {_number(constant[run])})"
        entries.append((Line2D([], [], linestyle="-", **style), name))
    if len(histories) > 1:  # the line styles, once for every run
        entries.append((Line2D([], [], color="0.4", linestyle="-"), "train"))
    if dashed:
        style = {"color": "0.4"} if len(histories) > 1 else {"color": colours[0], "marker": "o"}
        entries.append((Line2D([], [], linestyle="--", **style), "validation"))
    _legend(fig, entries, width)
    rate = f"learning rate {_number(next(iter(constant.values())))}" if same_rate else ""
    heading = " · ".join(part for part in (label(title) if title else "", rate) if part)
    if heading:
        fig.suptitle(heading)
    return fig


@_never_fatal
def overlay_curves(histories: Mapping[str, History], path: str | Path, title: str = "") -> None:
    """curves_figure of several runs, saved to `path`. Returns whether it was drawn."""
    _save(curves_figure(histories, title), Path(path))


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


@literally
def band_figure(groups: Mapping[str, Sequence[History]], title: str = ""):
    """Loss and accuracy per epoch of each group of seed runs: the mean over seeds (train solid,
    validation dashed) with its 95% interval as a band. The figure is the caller's to save."""
    from matplotlib.lines import Line2D

    metrics = ("loss", "accuracy")
    fig, axes = plt.subplots(1, len(metrics), figsize=(10, 4.2), layout="constrained")
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    entries: list[tuple[object, str]] = []
    dashed = False
    for ax, metric in zip(axes, metrics, strict=True):
        drawn: list[float] = []
        longest = 0
        for i, histories in enumerate(groups.values()):
            colour = colours[i % len(colours)]
            for prefix, style in (("", "-"), ("val_", "--")):
                runs = [h.get(prefix + metric) for h in histories]
                if not runs or any(r is None or not len(r) for r in runs):
                    continue
                mean, low, high = _interval(runs)
                epochs = np.arange(1, len(mean) + 1)
                dashed = dashed or bool(prefix)
                drawn += [*low, *high]
                longest = max(longest, len(mean))
                ax.plot(  # shrinking widths and other markers: groups that coincide stay visible
                    epochs,
                    mean,
                    style,
                    color=colour,
                    marker=MARKERS[i % len(MARKERS)],
                    markevery=max(1, round(len(mean) / FEW_MARKERS)),
                    markersize=8 - 1.5 * min(i, 3),
                    linewidth=max(2.6 - 0.7 * i, 0.8),
                )
                ax.fill_between(epochs, low, high, color=colour, alpha=0.2, linewidth=0)
        _epoch_axis(ax, max(longest, 1))
        _value_axis(ax, metric, drawn)
        ax.grid(alpha=0.3)
    for i, (name, histories) in enumerate(groups.items()):
        style = {"color": colours[i % len(colours)], "marker": MARKERS[i % len(MARKERS)]}
        entries.append((Line2D([], [], **style), f"{label(name)} (n={len(histories)})"))
    entries.append((Line2D([], [], color="0.4", linestyle="-"), "train"))
    if dashed:
        entries.append((Line2D([], [], color="0.4", linestyle="--"), "validation"))
    _legend(fig, entries, 10)
    if title:
        fig.suptitle(label(title))
    return fig


@_never_fatal
def band_curves(groups: Mapping[str, Sequence[History]], path: str | Path, title: str = "") -> None:
    _save(band_figure(groups, title), Path(path))


@_never_fatal
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
    size = min(4 + 0.6 * len(names) * len(groups), 24)
    fig, ax = plt.subplots(figsize=(size, 4.4), layout="constrained")
    bars = []
    for i, (group, classes) in enumerate(groups.items()):
        means, errors = [], [[], []]
        for name in names:
            s = (classes.get(name) or {}).get(metric) or {}
            mean = s.get("mean", np.nan)
            means.append(mean)
            errors[0].append(0 if s.get("ci_low") is None else mean - s["ci_low"])
            errors[1].append(0 if s.get("ci_high") is None else s["ci_high"] - mean)
        x = np.arange(len(names)) + (i - (len(groups) - 1) / 2) * width
        bars.append((ax.bar(x, means, width, yerr=errors, capsize=3, alpha=0.85), label(group)))
    shown = [label(n) for n in names]
    ax.set_xticks(
        range(len(names)),
        shown,
        rotation=45 if len(names) > 8 else 0,
        ha="right" if len(names) > 8 else "center",
    )
    ax.set_ylabel(f"test {metric} (mean, 95% interval)")
    ax.set_ylim(0, 1.05)
    ax.grid(axis="y", alpha=0.3)
    _legend(fig, bars, size)  # below the bars: a legend inside would hide some
    ax.set_title(label(title) if title else f"per-class {metric}")
    _save(fig, Path(path))
