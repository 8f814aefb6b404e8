"""Every command's --help reads as written: rich markup takes nothing away.

Typer draws help with rich, which takes `[word]` for a style tag and drops it; kcnn escapes every
help text in one place (kcnn.cli.app.literal_markup). Each command's help is drawn here as a user
sees it and checked for what the loss looked like — an empty `[]`, an extra cut to a bare
'kcnn', a left-over backslash — for every bracketed span of the source texts being there whole,
and for every path into this repository naming something that exists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import typer

from kcnn.cli.app import literal_markup

ROOT = Path(__file__).resolve().parent.parent
# A path into the repository: a top-level folder of it, then a name (a glob is allowed).
PATH = re.compile(r"(?<![\w/.])((?:experiments|docs|benchmarks|kcnn|tests|\.ci)/[\w*.\-/]*\w\*?)")


def _commands():
    from kcnn.cli import app

    group = typer.main.get_command(app)
    return group, sorted(group.commands)


def _render(cli, monkeypatch, *args) -> str:
    monkeypatch.setenv("COLUMNS", "2000")  # one line per text: nothing split by wrapping
    monkeypatch.setenv("TERMINAL_WIDTH", "2000")
    result = cli(*args, "--help")
    assert result.code == 0, result.err
    return " ".join(result.out.split())


def _sources(command) -> list[str]:
    texts = [command.help or ""]
    texts += [getattr(p, "help", None) or "" for p in command.params]
    return [t for t in texts if t]


@pytest.mark.parametrize("name", [None, *_commands()[1]])
def test_help_keeps_every_bracket_and_names_only_real_paths(cli, monkeypatch, name):
    group, _ = _commands()
    command = group if name is None else group.commands[name]
    shown = _render(cli, monkeypatch, *([] if name is None else [name]))
    assert "[]" not in shown
    assert "'kcnn'" not in shown  # pip install 'kcnn[extra]' keeps its extra
    assert "\\[" not in shown and "\\]" not in shown  # no escape left showing
    texts = _sources(command) if name else [group.commands[c].help or "" for c in group.commands]
    for text in texts:
        plain = " ".join(text.replace("\\[", "[").split())
        for span in re.findall(r"\[[^\[\]]*\]", plain):
            assert span in shown, (name, span)
    for path in PATH.findall(shown):
        assert list(ROOT.glob(path)), f"kcnn {name} --help names {path}, which does not exist"


def test_the_escape_is_the_one_rich_needs():
    from rich.text import Text

    for written in [
        "one [[run]] table and a [sweep] table",
        "pip install 'kcnn[tracking]'",
        "[default: SWEEP/study.db]",
        "already escaped \\[default: x]",
        "not a tag: [1, 2] [] [X] a[0]",
        "[/path] [#fff] [@click]",
    ]:
        shown = Text.from_markup(literal_markup(written)).plain
        assert shown == written.replace("\\[", "["), written
    assert literal_markup(literal_markup("[a]")) == literal_markup("[a]")  # escaped once only
