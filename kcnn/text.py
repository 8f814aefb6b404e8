"""Untrusted text made safe for where it goes: the terminal, markdown, HTML, CSV.

Names in a run folder (its folder name, class names, a data set's path, settings) come from
whoever made the folder. Printed raw, an ESC or BEL drives the terminal, a carriage return
overwrites the line it is on, a bidi override reorders what is read; in a pipe table a `|` or a
newline breaks the table; in HTML a `<` is markup; in a spreadsheet a cell beginning with `=` is a
formula. Each destination has one function here, and every place kcnn prints or writes such text
goes through it. No dependencies beyond the standard library.
"""

from __future__ import annotations

import html as _html
import numbers
import re
import unicodedata
from typing import Any

# Unicode's invisible direction controls: they reorder the text around them on screen
# (CVE-2021-42574, "Trojan Source"), so a name could display as something it is not.
_BIDI = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


_SHORT = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _shown(ch: str) -> str:
    """One character that must not reach its destination raw, as a visible escape."""
    if ch in _SHORT:
        return _SHORT[ch]
    code = ord(ch)
    if 0xDC80 <= code <= 0xDCFF:  # a byte that was not UTF-8 (a file name's surrogate escape)
        return f"\\x{code - 0xDC00:02x}"
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}"


def _hidden(ch: str, keep: str) -> bool:
    if ch in keep:
        return False
    if ch in _BIDI:
        return True
    # Cc: C0 and C1 controls and DEL; Zl/Zp: line and paragraph separators; Cs: lone surrogates
    # (undecodable bytes of a file name), which cannot even be encoded for output.
    return unicodedata.category(ch) in ("Cc", "Zl", "Zp", "Cs")


def _visible(s: str, keep: str = "") -> str:
    if s.isprintable() and not any(ch in _BIDI for ch in s):
        return s  # the common case, at C speed
    return "".join(_shown(ch) if _hidden(ch, keep) else ch for ch in s)


def terminal(s: Any) -> str:
    """Text for a terminal line: every control character (C0 incl. ESC, BEL, CR, LF and TAB; DEL;
    C1), line separators, bidi overrides and undecodable file-name bytes shown as `\\x1b`-style
    escapes, so nothing in it can move the cursor, recolour, retitle or reorder the screen."""
    return _visible(str(s))


# Markdown punctuation that makes markup (CommonMark backslash escapes are defined for all ASCII
# punctuation); `$` is GitHub's math, `~` its strikethrough, `&` starts an entity. `_` only where
# it could start or end emphasis: inside a word it cannot.
_MARKDOWN = re.compile(r"[\\|`*\[\]<>$~&]|(?<![0-9A-Za-z])_|_(?![0-9A-Za-z])")


def markdown_cell(s: Any) -> str:
    """Text for a markdown pipe-table cell (or a heading): `|`, backslashes and markup characters
    escaped with a backslash, newlines and other control characters shown as `\\n`-style escapes,
    so a name never ends its cell or row, nor turns into a link, code, emphasis or HTML."""
    return _visible(_MARKDOWN.sub(lambda m: "\\" + m.group(0), str(s)))


def html(s: Any) -> str:
    """Text for HTML content or a quoted attribute: `& < > " '` as entities, control characters
    and bidi overrides as visible escapes (newlines and tabs, which HTML reads as spaces, kept)."""
    return _html.escape(_visible(str(s), keep="\n\t"), quote=True)


# OWASP's CSV injection rule: a cell starting with one of these is read as a formula by
# spreadsheets (=1+1, +cmd|..., -2+3, @SUM(...)), a tab or CR can hide such a start.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(v: Any) -> Any:
    """A CSV cell: numbers (and None, an empty cell) stay as they are, for scripts to read back;
    text beginning with `=`, `+`, `-`, `@`, tab or CR gets a leading `'` so no spreadsheet runs it
    as a formula."""
    if v is None or isinstance(v, numbers.Number):  # bool, int, float, NumPy scalars
        return v
    s = str(v)
    return "'" + s if s.startswith(_FORMULA_START) else s
