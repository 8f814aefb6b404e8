"""Command-line options made from the configuration model: each setting is declared once, in
`kcnn.engine.config`, and becomes an option (or argument) here.

A command made by `training_command` takes its config class's settings as options plus
`--config FILE` (a run's config.json, or an experiment file with one run of this command),
`--print-config` (the resolved settings as TOML, nothing run) and `--json`. Values given on the
command line override those of `--config`; everything is then checked by the config's schema.
"""

from __future__ import annotations

import dataclasses
import enum
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from kcnn.cli.app import app
from kcnn.engine.config import RunConfig, Setting, check_value, option_name

_PYTHON_TYPES = {int: int, float: float, str: str, list: str, bool: bool}


def _help(spec: Setting) -> str:
    return spec.help.replace("[", "\\[")  # rich markup would take [default: …] for a tag


def _default(cls: type[RunConfig], key: str) -> Any:
    field = next(f for f in dataclasses.fields(cls) if f.name == key)
    if field.default is dataclasses.MISSING:
        return None
    value = field.default
    return ",".join(value) if isinstance(value, list | tuple) else value


def _completion(spec: Setting) -> Callable[[], list[str]] | None:
    choices = spec.choices
    source = spec.completion or (
        choices if callable(choices) else (lambda: choices) if choices else None
    )
    if source is None:
        return None

    def complete(incomplete: str) -> list[str]:
        return [name for name in source() if name.startswith(incomplete)]

    return complete


def setting_parameter(cls: type[RunConfig], key: str, spec: Setting) -> inspect.Parameter:
    """One setting as a Typer parameter: its flag, type, choices, help, default and completion."""
    default = _default(cls, key)
    python_type = _PYTHON_TYPES[spec.kind]
    static_choices = spec.choices if isinstance(spec.choices, tuple) else None
    extra: dict[str, Any] = {}
    if static_choices:
        # --help lists the values and completion offers them; the schema checks the value, so the
        # command line and a file get the same error, with the closest valid name suggested.
        extra["metavar"] = "|".join(static_choices)
    if spec.metavar or spec.argument:
        extra.setdefault("metavar", spec.metavar or key.upper())
    completion = _completion(spec)
    if completion is not None:
        extra["autocompletion"] = completion
    if spec.argument:
        required = default is None and not spec.optional
        if spec.kind is list:
            annotation = Annotated[
                list[str] | None, typer.Argument(help=_help(spec), show_default=False, **extra)
            ]
        else:
            annotation = Annotated[
                python_type | None,
                typer.Argument(help=_help(spec), show_default=default is not None, **extra),
            ]
        del required  # the command checks it: --config or --resume may supply the value
        return inspect.Parameter(
            key, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=default, annotation=annotation
        )
    if spec.kind is bool:
        flags = spec.flags or f"{option_name(key)}/--no-{option_name(key)[2:]}"
        option = typer.Option(flags, help=_help(spec), show_default=default is not None)
        annotation = Annotated[bool | None if spec.optional else bool, option]
    else:
        show = default is not None
        option = typer.Option(option_name(key), help=_help(spec), show_default=show, **extra)
        annotation = Annotated[python_type | None if default is None else python_type, option]
    return inspect.Parameter(
        key, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation
    )


CONFIG_FILE = inspect.Parameter(
    "config_file",
    inspect.Parameter.KEYWORD_ONLY,
    default=None,
    annotation=Annotated[
        Path | None,
        typer.Option(
            "--config",
            help="Take the settings from a run's config.json or an experiment file with one run; "
            "options given here override them.",
            show_default=False,
            metavar="FILE",
        ),
    ],
)
PRINT_CONFIG = inspect.Parameter(
    "print_config",
    inspect.Parameter.KEYWORD_ONLY,
    default=False,
    annotation=Annotated[
        bool,
        typer.Option(
            "--print-config",
            help="Print the resolved settings as TOML (an experiment file) and stop.",
        ),
    ],
)
AS_JSON = inspect.Parameter(
    "as_json",
    inspect.Parameter.KEYWORD_ONLY,
    default=False,
    annotation=Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.")],
)
MLFLOW_HELP = (
    "Log settings, each epoch's metrics, pictures, report and model to MLflow: alone, the local "
    "store ./mlruns (or MLFLOW_TRACKING_URI); or a tracking URI (http://host:5000, sqlite:///f.db, "
    "file:...) or folder. Needs: pip install 'kcnn[tracking]'."
)
MLFLOW = inspect.Parameter(
    "mlflow",
    inspect.Parameter.KEYWORD_ONLY,
    default=None,
    annotation=Annotated[
        str | None,
        typer.Option("--mlflow", help=MLFLOW_HELP, show_default=False, metavar="[URI]"),
    ],
)


def mlflow_args(args: list[str]) -> list[str]:
    """`--mlflow` takes an optional value, which Click cannot parse: it takes the next word only
    when that is a URI (`scheme:...`) or a folder path (`./x`, `/x`, `~/x`, not a .toml/.json
    file); otherwise `--mlflow` alone becomes `--mlflow=local` (`--mlflow=PATH` is always a value)."""
    import re

    def is_uri(word: str | None) -> bool:
        if word is None or word.startswith("-"):
            return False
        if re.match(r"^[A-Za-z][\w+.-]+:", word):
            return True
        return word.startswith(("./", "../", "/", "~")) and not word.endswith((".toml", ".json"))

    out = []
    for i, arg in enumerate(args):
        if arg == "--mlflow" and not is_uri(args[i + 1] if i + 1 < len(args) else None):
            arg = "--mlflow=local"
        out.append(arg)
    return out


def tracked(uri: str | None, **where: Any):
    """The block a command trains in: logged to MLflow under `--mlflow`, else as it is."""
    import contextlib

    if uri is None:
        return contextlib.nullcontext()
    from kcnn.runs import mlflow_log

    return mlflow_log.tracking(uri, **where)


CONTEXT = inspect.Parameter(
    "ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context
)


def given(ctx: typer.Context, key: str) -> bool:
    """Whether the user typed this option (rather than leaving its default)."""
    source = ctx.get_parameter_source(key)
    return source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP")


def resolve(
    cls: type[RunConfig], ctx: typer.Context, values: dict[str, Any], config_file: Path | None
) -> RunConfig:
    """The validated config: the settings of `--config` (if any), overridden by the options typed."""
    from kcnn.commands import experiments

    typed = {
        k: v.value if isinstance(v, enum.Enum) else v
        for k, v in values.items()
        if k in cls.settings() and given(ctx, k) and v is not None
    }
    specs = cls.settings()
    for key, value in typed.items():  # a bad typed value is the command line's, not the file's
        typed[key] = check_value(key, specs[key], value)
    base = experiments.settings_of(config_file, cls.command) if config_file is not None else {}
    merged = {**base, **typed}
    source = str(config_file) if config_file is not None else "the command line"
    return cls.from_settings(merged, source=source).validate()


def training_command(
    cls: type[RunConfig],
    run: Callable[..., None],
    *,
    help: str,
    extra: list[inspect.Parameter] = (),
) -> None:
    """Register `kcnn COMMAND` for the config class `cls`: its settings as options, plus --config,
    --print-config, --json and `extra`. `run(ctx, config_or_None, **values)` does the work."""
    settings = [setting_parameter(cls, key, spec) for key, spec in cls.settings().items()]
    parameters = [CONTEXT, *settings, *extra, CONFIG_FILE, PRINT_CONFIG, MLFLOW, AS_JSON]

    def command(ctx: typer.Context, **values: Any) -> None:
        uri = values.pop("mlflow")
        with tracked(None if values.get("print_config") else uri):
            run(ctx, **values)

    command.__signature__ = inspect.Signature(parameters)
    command.__annotations__ = {p.name: p.annotation for p in parameters}
    command.__doc__ = help
    app.command(cls.command, help=help)(command)
