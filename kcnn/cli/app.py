"""The Typer application, its global options, and the JSON answer every command prints with --json."""

from __future__ import annotations

from typing import Annotated

import typer

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
    }
)


@app.callback()
def _options(
    ctx: typer.Context,
    debug: Annotated[
        bool, typer.Option("--debug", help="Show the full traceback when a command fails.")
    ] = False,
) -> None:
    # --debug is acted on by `kcnn.cli.main` before Click parses (TensorFlow may load first);
    # it is declared here so that Click accepts it and --help lists it.
    if ctx.invoked_subcommand in MODEL_COMMANDS:
        from kcnn.models import keras_version

        keras_version.require()


AsJson = Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.")]


def say(*lines: object) -> None:
    """Print lines that hold names from a run folder or the user's files: each line's control
    characters (ESC, BEL, CR, a newline inside a name...) shown as escapes, never sent raw."""
    from kcnn.runs.text import terminal

    typer.echo("\n".join(terminal(line) for line in lines))


def print_json(data) -> None:
    from kcnn.runs.records import json_text

    typer.echo(json_text(data))
