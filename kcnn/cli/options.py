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
import re
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperCommand

from kcnn.cli.app import app
from kcnn.engine.config import (
    COMMAND_LINE,
    CONFIGURATION,
    OUTPUT,
    PANELS,
    RunConfig,
    Setting,
    check_value,
    option_name,
)
from kcnn.errors import KcnnError

_PYTHON_TYPES = {int: int, float: float, str: str, list: str, bool: bool}


# What --help shows after a value option: a plain word, never Typer's `<int>` or `<list[Path]>`.
_METAVARS = {int: "N", float: "NUMBER", str: "TEXT", list: "NAMES", bool: ""}


def _help(spec: Setting, key: str, default: Any) -> str:
    """The help text; a list of allowed values goes here (not into the metavar), written with
    spaces so a narrow terminal wraps it between words."""
    text = spec.help
    static_choices = spec.choices if isinstance(spec.choices, tuple) else None
    if static_choices and not spec.argument:
        text = f"{text} {'Any' if spec.kind is list else 'One'} of: {', '.join(static_choices)}."
    if spec.kind is bool and not spec.flags and (default is True or spec.optional):
        text = f"{text} {negative_flag(key)} turns it off."
    return text  # brackets are escaped for rich where help is drawn (kcnn.cli.app)


def negative_flag(key: str) -> str:
    return f"--no-{option_name(key)[2:]}"


def _negative_key(key: str) -> str:
    return f"{key}__off"


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


def setting_parameters(cls: type[RunConfig], key: str, spec: Setting) -> list[inspect.Parameter]:
    """One setting as Typer parameters: its flag, type, choices, help, panel, default and
    completion. A yes/no setting shows one flag (`--tensorboard`) so the help's columns stay
    narrow; its opposite (`--no-tensorboard`, to override a --config file) is a hidden twin."""
    default = _default(cls, key)
    python_type = str if spec.convert is not None else _PYTHON_TYPES[spec.kind]
    help_text = _help(spec, key, default)
    panel = spec.help_panel(key)
    # --help lists the values and completion offers them; the schema checks the value, so the
    # command line and a file get the same error, with the closest valid name suggested.
    extra: dict[str, Any] = {"metavar": spec.metavar or _METAVARS[spec.kind]}
    if spec.choices is not None and not spec.metavar:
        extra["metavar"] = "NAME" if spec.kind is str else "NAMES"
    if spec.argument:
        extra["metavar"] = spec.metavar or key.upper()
    completion = _completion(spec)
    if completion is not None:
        extra["autocompletion"] = completion
    if spec.argument:
        if spec.kind is list:
            annotation = Annotated[
                list[str] | None, typer.Argument(help=help_text, show_default=False, **extra)
            ]
        else:
            annotation = Annotated[
                python_type | None,
                typer.Argument(help=help_text, show_default=default is not None, **extra),
            ]
        # required or not, the command checks it: --config or --resume may supply the value
        return [
            inspect.Parameter(
                key, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=default, annotation=annotation
            )
        ]
    if spec.kind is bool:
        if spec.flags:  # two spellings that both mean something (--same-init/--independent-init)
            option = typer.Option(
                spec.flags, help=help_text, show_default=False, rich_help_panel=panel
            )
            annotation = Annotated[bool | None if spec.optional else bool, option]
            return [
                inspect.Parameter(
                    key, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation
                )
            ]
        shown = typer.Option(
            option_name(key), help=help_text, show_default=False, rich_help_panel=panel
        )
        hidden = typer.Option(negative_flag(key), hidden=True)
        return [
            inspect.Parameter(
                key,
                inspect.Parameter.KEYWORD_ONLY,
                default=default,
                annotation=Annotated[bool | None, shown],
            ),
            inspect.Parameter(
                _negative_key(key),
                inspect.Parameter.KEYWORD_ONLY,
                default=False,
                annotation=Annotated[bool, hidden],
            ),
        ]
    show = default is not None
    if spec.kind is list and default:  # written with spaces, so it wraps between names
        help_text = f"{help_text} [default: {default.replace(',', ', ')}]"
        show = False
    option = typer.Option(
        option_name(key), help=help_text, show_default=show, rich_help_panel=panel, **extra
    )
    annotation = Annotated[python_type | None if default is None else python_type, option]
    return [
        inspect.Parameter(
            key, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation
        )
    ]


def fold_negatives(ctx: typer.Context, values: dict[str, Any]) -> dict[str, Any]:
    """`--no-X` (a hidden twin) sets X to false; `--X --no-X` together is refused."""
    for key in [k for k in values if k.endswith("__off")]:
        off = values.pop(key)
        if off:
            name = key.removesuffix("__off")
            source = ctx.get_parameter_source(name)  # the flag typed, not its default of true
            if values.get(name) and source is not None and source.name == "COMMANDLINE":
                raise KcnnError(
                    f"{option_name(name)} and {negative_flag(name)} contradict each other; give one"
                )
            values[name] = False
    return values


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
            rich_help_panel=CONFIGURATION,
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
            rich_help_panel=CONFIGURATION,
        ),
    ],
)
AS_JSON = inspect.Parameter(
    "as_json",
    inspect.Parameter.KEYWORD_ONLY,
    default=False,
    annotation=Annotated[
        bool,
        typer.Option("--json", help="Print the result as JSON on stdout.", rich_help_panel=OUTPUT),
    ],
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


def _is_uri(word: str | None) -> bool:
    """Whether the word after `--mlflow` is its value: a URI (`scheme:...`) or a folder path
    (`./x`, `/x`, `~/x`, not a .toml/.json file)."""
    if word is None or word.startswith("-"):
        return False
    if re.match(r"^[A-Za-z][\w+.-]+:", word):
        return True
    return word.startswith(("./", "../", "/", "~")) and not word.endswith((".toml", ".json"))


class Tracked(TyperCommand):
    """A command with `--mlflow [URI]`: the option takes the next word only when that is a URI
    or a folder path, else it stands alone for the local store. Click has no option whose value
    may be left out, so this command reads its own arguments so before Click parses them,
    knowing which of its options take a value (the word after `--name` is never taken for
    `--mlflow`, nor anything after `--`). `--mlflow=URI` is always a value."""

    def parse_args(self, ctx, args: list[str]) -> list[str]:
        takes_value = {
            name
            for p in self.params
            if p.name != "mlflow" and getattr(p, "opts", None) and not getattr(p, "is_flag", True)
            for name in p.opts
        }
        read, i = [], 0
        while i < len(args):
            arg = args[i]
            if arg == "--":
                read += args[i:]
                break
            if arg in takes_value:
                read += args[i : i + 2]
                i += 2
                continue
            if arg == "--mlflow" and not _is_uri(args[i + 1] if i + 1 < len(args) else None):
                arg = "--mlflow=local"
            read.append(arg)
            i += 1
        return super().parse_args(ctx, read)


def tracked(uri: str | None, **where: Any):
    """The block a command trains in: logged to MLflow under `--mlflow`, else as it is."""
    import contextlib

    from kcnn.runs import mlflow_log  # not for `kcnn --help` (its start-up)

    if uri is None:
        return contextlib.nullcontext()

    return mlflow_log.tracking(uri, **where)


CONTEXT = inspect.Parameter(
    "ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context
)


def given(ctx: typer.Context, key: str) -> bool:
    """Whether the user typed this option, or its `--no-` twin (rather than leaving its default)."""
    for name in (key, _negative_key(key)):
        source = ctx.get_parameter_source(name)
        if source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP"):
            return True
    return False


def resolve(
    cls: type[RunConfig], ctx: typer.Context, values: dict[str, Any], config_file: Path | None
) -> RunConfig:
    """The validated config: the settings of `--config` (if any), overridden by the options typed."""
    from kcnn.commands import experiments  # the runs' commands: not for `kcnn --help`

    typed = {
        k: v.value if isinstance(v, enum.Enum) else v
        for k, v in values.items()
        if k in cls.settings() and given(ctx, k) and v is not None
    }
    specs = cls.settings()
    for key, value in typed.items():  # a bad typed value is the command line's, not the file's
        typed[key] = check_value(key, specs[key], value, COMMAND_LINE)
    base = experiments.settings_of(config_file, cls.command) if config_file is not None else {}
    merged = {**base, **typed}
    source = str(config_file) if config_file is not None else COMMAND_LINE
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
    # in the order of the --help panels (Data, Model, ...); arguments stay first
    ordered = sorted(
        cls.settings().items(),
        key=lambda kv: (not kv[1].argument, PANELS.index(kv[1].help_panel(kv[0]))),
    )
    settings = [p for key, spec in ordered for p in setting_parameters(cls, key, spec)]
    parameters = [CONTEXT, *settings, *extra, CONFIG_FILE, PRINT_CONFIG, MLFLOW, AS_JSON]

    def command(ctx: typer.Context, **values: Any) -> None:
        uri = values.pop("mlflow")
        with tracked(None if values.get("print_config") else uri):
            run(ctx, **fold_negatives(ctx, values))

    command.__signature__ = inspect.Signature(parameters)
    command.__annotations__ = {p.name: p.annotation for p in parameters}
    command.__doc__ = help
    app.command(cls.command, help=help, cls=Tracked)(command)
