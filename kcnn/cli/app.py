"""The Typer application, its global options, and the JSON answer every command prints with --json."""

from __future__ import annotations

import re
from typing import Annotated

import typer

from kcnn.models import keras_version
from kcnn.runs.records import json_text
from kcnn.text import terminal

app = typer.Typer(
    help="Build, train, compare and understand convolutional networks (Keras 3).",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
    add_completion=True,  # kcnn --install-completion: names of models, data sets, backbones, choices
)

# The commands that load or build a Keras model: each first checks the installed Keras is one
# kcnn supports (kcnn/models/keras_version.py), from package metadata, without importing it.
MODEL_COMMANDS = frozenset(
    {
        "train",
        "compare-apis",
        "transfer",
        "run",
        "summary",
        "predict",
        "visualize",
        "export",
        "inspect",
        "calibrate",
        "lr-find",
        "sweep",
    }
)


def _plain_type(shown: str | None) -> str | None:
    """`<int>` -> `INT`, `<list[Path]>` -> `PATH...`: a plain word for what the option takes."""
    if not shown or not (shown.startswith("<") and shown.endswith(">")):
        return shown
    inner = shown[1:-1]
    if inner.startswith("list[") and inner.endswith("]"):
        return inner[5:-1].upper() + "..."
    return {"str": "TEXT", "float": "NUMBER"}.get(inner, inner.upper())


def _plain_flags() -> None:
    """--help shows a flag (--json, --help) as just its name, an argument by its name alone, and
    a value as a plain word: Typer writes `<bool>` after a flag, as if it took a value, and
    `<str>`, `<list[Path]>` after the rest. Kept to the method that draws the type column; a
    Typer without it is left alone."""
    core = getattr(typer, "core", None)
    for cls_name in ("TyperOption", "TyperArgument"):
        cls = getattr(core, cls_name, None)
        original = getattr(cls, "display_type_rich", None)
        if original is None or getattr(original, "_kcnn_plain", False):
            continue

        def display_type_rich(self, ctx, _original=original, _argument=cls_name == "TyperArgument"):
            if getattr(self, "is_flag", False) and self.metavar is None:
                return None
            shown = _original(self, ctx)
            if _argument and (self.metavar is not None or (shown or "").startswith("<")):
                return None  # the name column already says ARCH
            return _plain_type(shown)

        display_type_rich._kcnn_plain = True
        cls.display_type_rich = display_type_rich


_plain_flags()

# What rich reads as a style tag: `[` then a lower-case letter, #, / or @, up to the next `]`
# (rich.markup.RE_TAGS); one with a backslash before it is already escaped.
_TAG = re.compile(r"(?<!\\)\[(?=[a-z#/@][^\[]*?\])")


def literal_markup(text: str) -> str:
    """`text` as rich prints it verbatim: `[[run]]`, `kcnn[tracking]`, `[default: …]` kept
    whole rather than taken for style tags and dropped. An escaped `\\[` is left as it is."""
    return _TAG.sub(r"\\[", text)


def _literal_help() -> None:
    """Every help text reads as written: kcnn writes no rich markup, so each text Typer hands to
    rich (a command's help, an option's or an argument's, the list of commands) has its `[`
    escaped first — one place for the whole class, not a backslash in each string. Typer
    imports its rich helpers only to draw a help page: the wrap is made then, once."""
    core = getattr(typer, "core", None)
    for cls in (getattr(core, "TyperCommand", None), getattr(core, "TyperGroup", None)):
        original = getattr(cls, "format_help", None)
        if original is None or getattr(original, "_kcnn_literal", False):
            continue

        def format_help(self, ctx, formatter, _original=original):
            _escape_rich_text()
            return _original(self, ctx, formatter)

        format_help._kcnn_literal = True
        cls.format_help = format_help


def _escape_rich_text() -> None:
    from typer import rich_utils

    make = getattr(rich_utils, "_make_rich_text", None)
    if make is None or getattr(make, "_kcnn_literal", False):
        return

    def _make_rich_text(*, text: str, markup_mode, **kwargs):
        if markup_mode == "rich":
            text = literal_markup(text)
        return make(text=text, markup_mode=markup_mode, **kwargs)

    _make_rich_text._kcnn_literal = True
    rich_utils._make_rich_text = _make_rich_text


_literal_help()


def version() -> str:
    """kcnn's version as installed (its package metadata): cheap, no TensorFlow."""
    from importlib import metadata

    try:
        return metadata.version("kcnn")
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"kcnn {version()}")
        raise typer.Exit(0)


@app.callback()
def _options(
    ctx: typer.Context,
    debug: Annotated[
        bool, typer.Option("--debug", help="Show the full traceback when a command fails.")
    ] = False,
    show_version: Annotated[
        bool,
        typer.Option(
            "--version",
            help="Print kcnn's version and stop.",
            is_eager=True,
            callback=_show_version,
        ),
    ] = False,
) -> None:
    # --debug is acted on by `kcnn.cli.main` before Click parses (TensorFlow may load first);
    # it is declared here so that Click accepts it and --help lists it.
    if ctx.invoked_subcommand in MODEL_COMMANDS:
        keras_version.require()


AsJson = Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.")]
Tta = Annotated[
    str | None,
    typer.Option(
        "--tta",
        help="Test-time augmentation: none, flip (the image and its mirror) or crops (the image "
        "and four shifted crops), probabilities averaged [default: the run's own --tta].",
        metavar="none|flip|crops",
        show_default=False,
    ),
]


def say(*lines: object) -> None:
    """Print lines that hold names from a run folder or the user's files: each line's control
    characters (ESC, BEL, CR, a newline inside a name...) shown as escapes, never sent raw."""
    typer.echo("\n".join(terminal(line) for line in lines))


def print_json(data) -> None:
    typer.echo(json_text(data))
