"""Untrusted text made safe for its destination (kcnn.text), and names drawn literally in
figures (kcnn.runs.plots): the nasty strings a shared run folder or a user's data can hold."""

from __future__ import annotations

import csv
import io
import re
import warnings

import numpy as np
import pytest

from kcnn import text

NASTY = [
    "\x1b[2J\x1b]0;owned\x07",  # clear screen, retitle the terminal, bell
    "ok\rforged",  # carriage return: overwrite the line
    "two\nlines\r\n",
    "\x9b31m c1 CSI \x85 NEL \x7f",  # C1 controls, DEL
    "abc\u202edcba\u2066x\u2069",  # bidi overrides (Trojan Source)
    "line\u2028sep",
    "bad byte \udcff",  # a file name that was not UTF-8
    "tab\there",
]


def _raw_controls(s: str) -> list[str]:
    return [
        c
        for c in s
        if ord(c) < 0x20
        or 0x7F <= ord(c) <= 0x9F
        or c in "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c"
        or c in "\u2028\u2029"
        or 0xD800 <= ord(c) <= 0xDFFF
    ]


@pytest.mark.parametrize("s", NASTY)
def test_terminal_shows_every_control_visibly(s):
    shown = text.terminal(s)
    assert not _raw_controls(shown)
    shown.encode("utf-8")  # even an undecodable file-name byte can be printed
    assert "\\" in shown  # something was made visible, not dropped


def test_terminal_escapes_read_as_what_they_stand_for():
    assert text.terminal("a\x1b[31mb") == "a\\x1b[31mb"
    assert text.terminal("x\x07\r\n\t") == "x\\x07\\r\\n\\t"
    assert text.terminal("\u202eevil") == "\\u202eevil"
    assert text.terminal("\x9b") == "\\x9b"
    assert text.terminal("bad\udcff") == "bad\\xff"  # the byte itself
    # printable text, any script, is left as it is
    for fine in ("$5 bills", "a|b", "한국어 🙂", "naïve café", "x\\y", ""):
        assert text.terminal(fine) == fine
    assert text.terminal(3.5) == "3.5"


def _cells(row: str) -> list[str]:
    """A pipe-table row split as GitHub does: a `|` after a backslash escape is text."""
    tokens = re.findall(r"\\.|\||[^\\|]+", row.strip())
    cells, current = [], ""
    for token in tokens:
        if token == "|":
            cells.append(current)
            current = ""
        else:
            current += token
    return cells[1:]  # before the leading pipe


@pytest.mark.parametrize(
    "s", [*NASTY, "a|b", "a\\|b", "trailing\\", "|", "\\\\|", "<img src=x onerror=alert(1)>"]
)
def test_markdown_cell_never_breaks_a_pipe_table(s):
    from kcnn.runs.tables import as_markdown

    table = as_markdown([{"name": s, "n": 1}, {"name": "plain", "n": 2}], ["name", "n"])
    lines = table.split("\n")
    assert len(lines) == 4  # header, rule, two rows: no newline escaped a row
    assert all(len(_cells(line)) == 2 for line in lines if not line.startswith("|---"))
    assert _cells(lines[3]) == [" plain ", " 2 "]
    assert not _raw_controls(table.replace("\n", ""))


def test_markdown_cell_escapes_markup_but_not_words():
    assert text.markdown_cell("a|b") == "a\\|b"
    assert text.markdown_cell("a\\b") == "a\\\\b"
    assert text.markdown_cell("<script>") == "\\<script\\>"
    assert text.markdown_cell("[x](http://e)") == "\\[x\\](http://e)"
    assert text.markdown_cell("$5 or $10") == "\\$5 or \\$10"  # GitHub math
    assert text.markdown_cell("*b* `c` _d_") == "\\*b\\* \\`c\\` \\_d\\_"
    assert (
        text.markdown_cell("best_val_accuracy") == "best_val_accuracy"
    )  # no emphasis inside words
    assert text.markdown_cell("a\nb") == "a\\nb"


@pytest.mark.parametrize("s", [*NASTY, "<b>&amp;</b>", "\"'><script>alert(1)</script>"])
def test_html_escapes_markup_quotes_and_controls(s):
    shown = text.html(s)
    assert not re.search(r"[<>\"']", shown)
    assert not [c for c in _raw_controls(shown) if c not in "\n\t"]
    assert text.html("a & b") == "a &amp; b"
    assert text.html('say "hi"') == "say &quot;hi&quot;"


@pytest.mark.parametrize(
    "s",
    ["=1+1", "+cmd|' /C calc'!A0", "-2+3", "@SUM(A1:A9)", "\t=1", "\r=1", '=HYPERLINK("x")'],
)
def test_csv_cell_defuses_formulas(s):
    cell = text.csv_cell(s)
    assert cell == "'" + s
    buffer = io.StringIO()
    csv.writer(buffer).writerow([cell])
    (back,) = csv.reader(io.StringIO(buffer.getvalue()))
    assert back == [cell] and not back[0].startswith(("=", "+", "-", "@", "\t", "\r"))


def test_csv_cell_keeps_numbers_and_plain_text():
    for v in (-0.5, -3, 0, 2.5e-7, float("nan"), np.float32(-1.5), np.int64(-2), True, None):
        assert text.csv_cell(v) is v
    assert text.csv_cell("lenet5 (sequential)") == "lenet5 (sequential)"
    assert text.csv_cell("a=b") == "a=b"  # only the first character makes a formula


def test_comparison_csv_and_md_hold_hostile_names(tmp_path):
    from kcnn.runs.records import read_csv
    from kcnn.runs.report import write_comparison

    rows = [
        {"run": "=1+1|x\x1b", "dataset": "-data\n|$5$", "test_accuracy": -0.5},
        {"run": "@run", "dataset": "plain", "test_accuracy": 0.75},
    ]
    histories = {"=1+1|x\x1b": {"loss": [1.0, 0.5]}, "@run": {"loss": [2.0, 1.0]}}
    write_comparison(tmp_path, "$5 or $10 | title", rows, histories)
    back = read_csv(tmp_path / "comparison.csv")
    assert [r["run"] for r in back] == ["'=1+1|x\x1b", "'@run"]
    assert back[0]["dataset"] == "'-data\n|$5$" and back[0]["test_accuracy"] == "-0.5"
    md = (tmp_path / "comparison.md").read_text()
    assert md.startswith("# \\$5 or \\$10 \\| title\n")
    table = [line for line in md.splitlines() if line.startswith("|")]
    assert len(table) == 4 and all(len(_cells(line)) == 3 for line in table if "---" not in line)
    assert "\x1b" not in md
    assert (tmp_path / "curves_overlay.png").stat().st_size > 0


# --- figures --------------------------------------------------------------------------------

# Labels matplotlib would parse as mathtext, several of which it cannot parse at all.
MATH = ["$5 or $10 bills", "$x^$", "a_$b$_c", "$\\frac{$", "_hidden", "esc\x1b"]


def test_figures_draw_names_literally(tmp_path):
    import matplotlib.pyplot as plt

    from kcnn.runs import plots

    open_before = plt.get_fignums()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # not even a missing-glyph warning for a control character
        assert plots.confusion_matrix(
            np.eye(len(MATH), dtype=int), MATH, tmp_path / "cm.png", title="$a$ on $b"
        )
        histories = {name: {"loss": [1.0, 0.5], "val_loss": [1.1, 0.6]} for name in MATH}
        assert plots.overlay_curves(histories, tmp_path / "ov.png", title="$5 or $10")
    assert plt.get_fignums() == open_before
    assert (tmp_path / "cm.png").stat().st_size > 0 and (tmp_path / "ov.png").stat().st_size > 0


def test_literal_text_is_matplotlibs_own_switch():
    import matplotlib
    import matplotlib.pyplot as plt

    from kcnn.runs import plots

    with plots.literal_text():
        fig, ax = plt.subplots()
        label = ax.set_title("$5 or $10 bills")
        assert label.get_parse_math() is False and not matplotlib.rcParams["text.usetex"]
        fig.canvas.draw()  # it draws (mathtext would raise on this text)
        plt.close(fig)
    assert matplotlib.rcParams["text.parse_math"] is True  # put back after


def test_a_figure_that_cannot_be_drawn_is_a_warning_not_an_error(tmp_path, capsys):
    import matplotlib.pyplot as plt

    from kcnn.runs import plots

    before = plt.get_fignums()
    missing = tmp_path / "no-such-folder" / "cm.png"
    assert plots.confusion_matrix(np.eye(2, dtype=int), ["a", "b"], missing) is False
    assert plots.curves({"loss": [1.0]}, missing) is False
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(line.startswith("warning: ") for line in err)
    assert plt.get_fignums() == before and not missing.parent.exists()


def test_visualize_pictures_draw_names_literally(tmp_path):
    from kcnn.use import visualize

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        visualize._grid([np.zeros((4, 4))] * 2, MATH[:2], tmp_path / "grid.png", "$5 or $10 bills")
    assert (tmp_path / "grid.png").stat().st_size > 0
