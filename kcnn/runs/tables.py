"""One table writer: the same rows as aligned text (the terminal), a Markdown pipe table (reports)
or an HTML table (report.html), with the column names a person reads ("test accuracy",
"s / epoch") and every cell escaped for where it goes by `kcnn.text`.

A row is a mapping of column keys to values. A value is written as `kcnn.runs.readable.figure`
writes it (accuracies to 4 decimals, losses to 4 significant digits, seconds as durations,
whole numbers with thousands separators, `—` for none); text is written as it is, escaped.
`Markup` is HTML kcnn made itself (a link), put into an HTML cell as it is.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from kcnn import text
from kcnn.runs import readable

# Column keys as a person reads them; a key not named here is shown as it is (a run's label).
HEADINGS = {
    "test_accuracy": "test accuracy",
    "test_loss": "test loss",
    "test_balanced_accuracy": "test balanced accuracy",
    "test_macro_f1": "test macro-F1",
    "best_val_accuracy": "best val accuracy",
    "val_accuracy": "val accuracy",
    "seconds_per_epoch": "s / epoch",
    "build_seconds": "build s",
    "train_seconds": "train s",
    "wall_seconds": "wall s",
    "images_per_second": "images / s",
    "max_abs_output_diff": "largest output difference",
    "total_params": "total params",
    "trainable_params": "trainable params",
    "frozen_params": "frozen params",
    "weights_source": "weights",
    "feature_cache": "feature cache",
    "run_dir": "run folder",
    "epochs_completed": "epochs",
}

Rows = Sequence[Mapping[str, Any]]


class Markup(str):
    """HTML kcnn made itself (a link to a run's report): put into an HTML cell as it is."""


def heading(column: str) -> str:
    """The name a person reads for a column (`seconds_per_epoch` -> `s / epoch`)."""
    return HEADINGS.get(column, column.removeprefix("param:"))


def cell(value: Any, key: str) -> str:
    """One cell's text, unescaped: a figure as a person writes it (`key` says what it is)."""
    if isinstance(value, str):
        return value
    return readable.figure(key, value)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _key(row: Mapping[str, Any], column: str, keyed_by: str | None) -> str:
    """What a cell's value is: its column, or (a table of settings) the row's setting name."""
    return str(row.get(keyed_by, column)) if keyed_by else column


def as_text(
    rows: Rows, columns: Sequence[str], headers: Sequence[str] | None = None, indent: str = ""
) -> str:
    """Aligned columns for a terminal, numbers to the right; every cell's control characters
    shown as escapes (`text.terminal`), so a name never moves the cursor or breaks a line."""
    head = [text.terminal(h) for h in (headers or [heading(c) for c in columns])]
    body = [[text.terminal(cell(r.get(c), c)) for c in columns] for r in rows]
    right = [any(_number(r.get(c)) for r in rows) for c in columns]
    widths = [max(len(line[i]) for line in [head, *body]) for i in range(len(columns))]
    lines = [
        "  ".join(
            v.rjust(w) if r else v.ljust(w) for v, w, r in zip(line, widths, right, strict=True)
        ).rstrip()
        for line in [head, *body]
    ]
    return "\n".join(indent + line for line in lines)


def as_markdown(
    rows: Rows,
    columns: Sequence[str],
    headers: Sequence[str] | None = None,
    keyed_by: str | None = None,
) -> str:
    """A pipe table; every cell and header escaped (`text.markdown_cell`), so names (a run's, a
    class's, a setting's value) stay in their cell whatever characters they hold. `keyed_by`: the
    column naming what each row's values are (a table of settings)."""
    head = " | ".join(text.markdown_cell(h) for h in (headers or [heading(c) for c in columns]))
    lines = [f"| {head} |", "|" + "---|" * len(columns)]
    lines += [
        "| "
        + " | ".join(text.markdown_cell(cell(r.get(c), _key(r, c, keyed_by))) for c in columns)
        + " |"
        for r in rows
    ]
    return "\n".join(lines)


def as_html(
    rows: Rows,
    columns: Sequence[str],
    headers: Sequence[str] | None = None,
    keyed_by: str | None = None,
) -> str:
    """A table in a box of its own: when it is wider than the page it scrolls, the page does not.
    Every cell escaped (`text.html`) but `Markup`; numbers carry the class `n` (set right)."""
    head = "".join(f"<th>{text.html(h)}</th>" for h in (headers or [heading(c) for c in columns]))

    def html_cell(row: Mapping[str, Any], column: str) -> str:
        v = row.get(column)
        if isinstance(v, Markup):
            return f"<td>{v}</td>"
        number = ' class="n"' if _number(v) else ""
        return f"<td{number}>{text.html(cell(v, _key(row, column, keyed_by)))}</td>"

    body = "".join("<tr>" + "".join(html_cell(r, c) for c in columns) + "</tr>" for r in rows)
    return f'<div class="table"><table><tr>{head}</tr>{body}</table></div>'
