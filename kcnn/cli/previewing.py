"""`kcnn augment-preview`: a grid PNG of training images as a run's augmentation makes them, with
the data and augmentation options of `kcnn train` (or a run's config.json, or an experiment file,
through --config). The drawing is `kcnn.use.preview`'s."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Annotated, Any

import typer

from kcnn.cli.app import app, print_json, say
from kcnn.cli.options import (
    AS_JSON,
    CONFIG_FILE,
    CONTEXT,
    check_value,
    fold_negatives,
    given,
    setting_parameters,
)
from kcnn.engine.config import AUGMENTATION, COMMAND_LINE, DATA, TrainConfig

# The settings that decide which images are shown and how they are augmented.
SHOWN = ("seed",)
PLACEHOLDER_ARCH = "lenet5"  # no model is built: the settings' checks only need one named


def _keys() -> list[str]:
    return [
        key
        for key, spec in TrainConfig.settings().items()
        if not spec.argument and (spec.help_panel(key) in (DATA, AUGMENTATION) or key in SHOWN)
    ]


def _option(name: str, annotation, default) -> inspect.Parameter:
    return inspect.Parameter(
        name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation
    )


PREVIEW_OPTIONS = [
    _option(
        "out",
        Annotated[Path, typer.Option(help="The PNG file to draw into.", metavar="FILE.png")],
        Path("augment-preview.png"),
    ),
    _option("images", Annotated[int, typer.Option(help="Training images shown (rows).")], 8),
    _option(
        "epochs_shown",
        Annotated[int, typer.Option(help="Epochs of augmentation shown beside each (columns).")],
        4,
    ),
]


def _preview(ctx: typer.Context, out, images, epochs_shown, config_file, as_json, **values):
    from kcnn.commands import experiments  # the runs' commands: not for `kcnn --help`
    from kcnn.use import preview  # NumPy: not for `kcnn --help`

    specs = TrainConfig.settings()
    typed = {
        k: check_value(k, specs[k], v, COMMAND_LINE)
        for k, v in values.items()
        if given(ctx, k) and v is not None
    }
    base = experiments.settings_of(config_file, "train") if config_file is not None else {}
    source = str(config_file) if config_file is not None else COMMAND_LINE
    config = TrainConfig.from_settings(
        {"arch": PLACEHOLDER_ARCH, **base, **typed}, source=source
    ).validate()
    record = preview.preview(config, out, images, epochs_shown)
    if as_json:
        print_json(record)
        return
    say(f"{record['images']} training images of {record['dataset']} over {record['epochs']} "
        f"epochs of augmentation: {record['file']}")  # fmt: skip


def _register() -> None:
    specs = TrainConfig.settings()
    settings = [p for k in _keys() for p in setting_parameters(TrainConfig, k, specs[k])]
    parameters = [CONTEXT, *settings, *PREVIEW_OPTIONS, CONFIG_FILE, AS_JSON]

    def command(ctx: typer.Context, **values: Any) -> None:
        _preview(ctx, **fold_negatives(ctx, values))

    command.__signature__ = inspect.Signature(parameters)
    command.__annotations__ = {p.name: p.annotation for p in parameters}
    help_text = (
        "Draw a grid of training images as the augmentation options make them (each image, then "
        "what the first epochs of training see of it), with `kcnn train`'s data and augmentation "
        "options or a run's config.json."
    )
    command.__doc__ = help_text
    app.command("augment-preview", help=help_text)(command)


_register()
