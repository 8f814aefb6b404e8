"""The schema of kcnn's settings: what a setting is, how every value is checked, and the base of
every config class.

A setting is declared once, as a dataclass field carrying a `Setting` (`setting(...)`): its type
(read off the field's annotation), range, allowed values, help and --help panel. `Configured` is
a dataclass whose fields are settings: it lists them (`settings()`), makes one from a mapping of
names (`from_settings`, an unknown name refused with the closest valid one), checks every value
from every source — command line, experiment file, `--set`, a run's own config.json — for type,
range and allowed values (`check_value`), and writes it back as TOML (`to_toml`).

What the settings *mean* — which ones each training command takes, their defaults, the rules
across them — lives in `kcnn.engine.config`. Nothing here imports TensorFlow or any of kcnn's
packages but `kcnn.errors`.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from kcnn.errors import KcnnError, did_you_mean

# Whole numbers TensorFlow takes as int32 (steps, sizes) and seeds scikit-learn takes (< 2**32).
INT32_MAX = 2**31 - 1
SEED_MAX = 2**32 - 1


@dataclass(frozen=True)
class Setting:
    """What one setting may hold. `kind` (int, float, bool, str or list of str) and `optional`
    (None allowed) come from the field's type annotation, so the type is written once."""

    help: str
    kind: type = str
    optional: bool = False
    low: float | None = None
    high: float | None = None
    low_open: bool = False  # the lower bound itself is not allowed
    high_open: bool = False
    choices: tuple[str, ...] | Callable[[], Iterable[str]] | None = None
    flags: str | None = (
        None  # the option's spelling when not --name (e.g. "--same-init/--independent-init")
    )
    argument: bool = False  # a positional argument on the command line
    metavar: str | None = None
    completion: Callable[[], Iterable[str]] | None = None  # shell completion of free-form values
    noun: str = "value"  # what one of the choices is called in an error ("architecture")
    panel: str = ""  # the --help panel (one of PANELS); empty: `panel_of` picks one from the name
    # A setting whose values are not one plain kind (`seeds`: a count or a list) checks and
    # canonicalises them itself: convert(name, value) -> value, or KcnnError.
    convert: Callable[[str, Any], Any] | None = None
    # When the setting changes nothing in a run (shapes_count with another data set, momentum
    # with adam): applies(config) is False, and `kcnn run --check` leaves it out. None: always.
    applies: Callable[[Any], bool] | None = None

    def help_panel(self, key: str) -> str:
        return self.panel or panel_of(key)

    def allowed(self) -> tuple[str, ...] | None:
        if self.choices is None:
            return None
        return tuple(self.choices() if callable(self.choices) else self.choices)


DATA, MODEL, OPTIMISATION, RECIPE = "Data", "Model", "Optimisation", "Recipe"
AUGMENTATION, DISTRIBUTION, OUTPUT, CONFIGURATION = (
    "Augmentation",
    "Distribution",
    "Output and tracking",
    "Configuration",
)
PANELS = (DATA, MODEL, OPTIMISATION, RECIPE, AUGMENTATION, DISTRIBUTION, OUTPUT, CONFIGURATION)


def panel_of(key: str) -> str:
    """The --help panel of a setting declared without one: guessed from its name, so a new setting
    still lands among its kind (augment_* with the augmentation, mlflow with the tracking)."""
    if key.startswith("augment"):
        return AUGMENTATION
    words = set(key.split("_"))
    if words & {"mlflow", "tensorboard", "log", "out", "name", "calibrate", "calibration"}:
        return OUTPUT
    if words & {"seed", "seeds"}:
        return OPTIMISATION
    return RECIPE


def setting(default: Any = dataclasses.MISSING, help: str = "", **kwargs) -> Any:
    """A dataclass field that is a setting: its default and its `Setting`."""
    if default is dataclasses.MISSING:
        return dataclasses.field(metadata={"setting": Setting(help=help, **kwargs)})
    return dataclasses.field(default=default, metadata={"setting": Setting(help=help, **kwargs)})


_KINDS = {"int": int, "float": float, "bool": bool, "str": str, "list[str]": list}


def _typed(spec: Setting, annotation: str) -> Setting:
    """The setting with its kind and optionality read off the field's annotation (`int | None`)."""
    parts = [p.strip() for p in str(annotation).split("|")]
    return dataclasses.replace(spec, kind=_KINDS[parts[0]], optional="None" in parts[1:])


def option_name(key: str) -> str:
    return "--" + key.replace("_", "-")


COMMAND_LINE = "the command line"  # the `source` of settings typed as options


def where(key: str, spec: Setting, source: str = "") -> str:
    """How an error names a setting, as the user wrote it: the key when it came from a file (the
    error then starts with the file's name), else the option (or argument) as typed. Only a
    config made from a file knows a file name, so no other error speaks of one."""
    if source and source != COMMAND_LINE:
        return f"`{key}`"
    return key.upper() if spec.argument else option_name(key)


def _range_text(spec: Setting) -> str:
    def bound(value):
        return (
            f"{int(value):,}" if float(value).is_integer() and abs(value) >= 1e4 else f"{value:g}"
        )

    low, high = spec.low, spec.high
    if low is not None and high is not None:
        left = "above" if spec.low_open else "from"
        right = "below" if spec.high_open else "to"
        return f"{left} {bound(low)} {right} {bound(high)}"
    if low is not None:
        return f"{'above' if spec.low_open else 'at least'} {bound(low)}"
    if high is not None:
        return f"{'below' if spec.high_open else 'at most'} {bound(high)}"
    return ""


def check_value(key: str, spec: Setting, value: Any, source: str = "") -> Any:
    """`value` checked against its setting; returns it in its canonical form (tuples as lists).
    `source` (COMMAND_LINE, a file's name, or "") decides how the error names the setting."""
    name = where(key, spec, source)
    if value is None:
        if spec.optional:
            return None
        raise KcnnError(f"{name} needs a value")
    if spec.convert is not None:
        return spec.convert(name, value)
    kind = spec.kind
    if kind is bool:
        if not isinstance(value, bool):
            raise KcnnError(f"{name} must be true or false, got {value!r}")
        return value
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise KcnnError(f"{name} must be a whole number {_range_text(spec)}, got {value!r}")
    elif kind is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise KcnnError(f"{name} must be a number {_range_text(spec)}, got {value!r}")
        value = float(value)
        if not math.isfinite(value):
            raise KcnnError(f"{name} must be a finite number {_range_text(spec)}, got {value!r}")
    elif kind is str:
        if not isinstance(value, str):
            raise KcnnError(f"{name} must be text, got {value!r}")
        if not value.strip():
            raise KcnnError(f"{name} must not be empty")
        if "\x00" in value or len(value) > 4096:
            raise KcnnError(f"{name} must be a name or path of at most 4096 characters")
    elif kind is list:
        if isinstance(value, str):  # "vgg16" or "vgg16,mobilenetv2" on a command line or in --set
            value = [part.strip() for part in value.split(",") if part.strip()]
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
            raise KcnnError(f"{name} must be a list of names, got {value!r}")
        # `transfer vgg16,mobilenetv2` and `transfer vgg16 mobilenetv2` name the same backbones
        value = [part.strip() for v in value for part in v.split(",") if part.strip()]
        if not value:
            raise KcnnError(f"{name} needs at least one name")
        if len(value) > 64:
            raise KcnnError(f"{name} holds {len(value)} names; at most 64 are allowed")
        value = list(value)
    if kind in (int, float) and (spec.low is not None or spec.high is not None):
        too_low = spec.low is not None and (
            value <= spec.low if spec.low_open else value < spec.low
        )
        too_high = spec.high is not None and (
            value >= spec.high if spec.high_open else value > spec.high
        )
        if too_low or too_high:
            what = "a whole number" if kind is int else "a number"
            raise KcnnError(f"{name} must be {what} {_range_text(spec)}, got {value!r}")
    allowed = spec.allowed()
    if allowed is not None:
        for item in value if kind is list else [value]:
            if item not in allowed:
                raise KcnnError(
                    f"{name}: unknown {spec.noun} '{item}': {did_you_mean(item, allowed)}"
                    f"choose one of: {', '.join(allowed)}"
                )
    return value


SEEDS_MAX = 1000  # runs of one group: more is a typing slip, not an experiment


def parse_seeds(name: str, value: Any) -> int | list[int]:
    """`--seeds 5` (a count: seed, seed+1, ...) or `--seeds 83,84,85` (a list), from the command
    line, a file (`seeds = 5`, `seeds = [83, 84, 85]`, `seeds = "83,84,85"`) or a record."""
    what = f"{name} takes a count of at least 2 (--seeds 5) or a list of distinct seeds (--seeds 83,84,85)"
    if isinstance(value, str):
        parts = [p.strip() for p in value.split(",") if p.strip()]
        if not parts or not all(re.fullmatch(r"\d+", p) for p in parts):
            raise KcnnError(f"{what}, got {value!r}")
        value = int(parts[0]) if len(parts) == 1 and "," not in value else [int(p) for p in parts]
    if isinstance(value, bool):
        raise KcnnError(f"{what}, got {value!r}")
    if isinstance(value, int):
        if not 2 <= value <= SEEDS_MAX:
            raise KcnnError(f"{what} (at most {SEEDS_MAX}), got {value!r}")
        return value
    if not isinstance(value, list | tuple) or not all(
        isinstance(v, int) and not isinstance(v, bool) for v in value
    ):
        raise KcnnError(f"{what}, got {value!r}")
    seeds = list(value)
    if len(seeds) < 2 or len(seeds) > SEEDS_MAX or len(set(seeds)) != len(seeds):
        raise KcnnError(f"{what} (2 to {SEEDS_MAX}, none twice), got {value!r}")
    bad = [s for s in seeds if not 0 <= s <= SEED_MAX]
    if bad:
        raise KcnnError(f"{name}: seed {bad[0]} is outside 0 to {SEED_MAX:,}")
    return seeds


# A run folder's name: a timestamp is added, and file systems stop at 255 bytes.
NAME_MAX = 200


def check_name(name: str) -> str:
    """A run name that makes one folder name: no path separators, no "..", a safe alphabet."""
    if not name or name in (".", "..") or "/" in name or "\\" in name or ".." in name:
        raise KcnnError(f"run name {name!r} must be a plain name without path separators or '..'")
    if len(name.encode()) > NAME_MAX:
        raise KcnnError(
            f"run name {name[:40]!r}... is too long: pass a --name of at most {NAME_MAX} bytes"
        )
    if not re.fullmatch(r"[\w.+=@,-]+", name):
        raise KcnnError(f"run name {name!r} may hold only letters, digits and . _ - + = @ ,")
    return name


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    text = str(value)
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def safe_label(text: str) -> str:
    """Part of a default run name: letters, digits and . _ - only (a folder named `my data` -> `my-data`)."""
    label = re.sub(r"[^\w.+=@,-]+", "-", text, flags=re.UNICODE).strip("-.")
    return label or "data"


def dataset_label(dataset: str) -> str:
    """The part of a default run name that says which data: a registered name, or a file/folder's name."""
    return safe_label(Path(dataset.rstrip("/\\")).name.removesuffix(".npz"))


def override(cls: type, key: str, default: Any) -> Any:
    """The field `key` of `cls` with another default: a command's own default for a shared setting."""
    spec = next(f for f in dataclasses.fields(cls) if f.name == key).metadata["setting"]
    return dataclasses.field(default=default, kw_only=True, metadata={"setting": spec})


@dataclass(kw_only=True)
class Configured:
    """A dataclass whose fields are settings (`setting(...)`), and where they came from."""

    command: ClassVar[str] = ""

    # Where the settings came from (an experiment file, a run's config.json, COMMAND_LINE):
    # an error names it. Not a setting: no file or record holds it.
    source: str = dataclasses.field(default="", repr=False, compare=False)

    @classmethod
    @functools.cache
    def settings(cls) -> dict[str, Setting]:
        """Every setting of this command, in declaration order (arguments first)."""
        found = {
            f.name: _typed(f.metadata["setting"], f.type)
            for f in dataclasses.fields(cls)
            if "setting" in f.metadata
        }
        return dict(sorted(found.items(), key=lambda kv: not kv[1].argument))

    @classmethod
    def from_settings(cls, values: dict[str, Any], source: str = ""):
        """A config from a mapping of setting names (a file's table, a run's config.json, --set);
        an unknown key is an error naming the closest valid one. Not yet checked."""
        known = cls.settings()
        at = f"{source}: " if source else ""
        for key in values:
            if key not in known:
                raise KcnnError(
                    f"{at}unknown setting '{key}' for {cls.command}: "
                    f"{did_you_mean(key, known)}valid settings: {', '.join(known)}"
                )
        missing = [
            f.name
            for f in dataclasses.fields(cls)
            if f.name not in values
            and f.default is dataclasses.MISSING
            and f.default_factory is dataclasses.MISSING
        ]
        if missing:
            raise KcnnError(f"{at}{cls.command} needs the setting(s) {', '.join(missing)}")
        return cls(**values, source=source)

    def check_settings(self) -> None:
        """Every setting checked (type, range, allowed values) and made canonical in place."""
        for key, spec in self.settings().items():
            setattr(self, key, check_value(key, spec, getattr(self, key), self.source))

    def in_source(self, error: KcnnError) -> KcnnError:
        """`error`, naming the file the settings came from (unless it already does)."""
        source = self.source
        if not source or source == COMMAND_LINE or str(error).startswith(source):
            return error
        named = KcnnError(f"{source}: {error}")
        named.exit_code = error.exit_code
        return named

    def settings_dict(self) -> dict[str, Any]:
        """The settings as plain values, as config.json records them and --print-config prints them."""
        return {key: getattr(self, key) for key in self.settings()}

    def applies(self, key: str) -> bool:
        """Whether setting `key` changes anything in this run (`shapes_count` only with the
        shapes data, `momentum` only with sgd...)."""
        rule = self.settings()[key].applies
        return rule is None or bool(rule(self))

    def derived(self, key: str) -> str | None:
        """Why setting `key` is left out of a file written from this config (it is made from the
        other settings again when the file is read), or None: written as it is."""
        return None

    def to_toml(self, only_applicable: bool = False) -> str:
        """This config as an experiment file `kcnn run` replays; `only_applicable` leaves out
        the settings that change nothing in this run (what `kcnn run --check` shows). A value
        derived from the others (`derived`) is shown as a comment."""
        lines = [
            f"# kcnn {self.command}: resolved settings",
            "",
            "[[run]]",
            f"command = {toml_value(self.command)}",
        ]
        for key, value in self.settings_dict().items():
            if only_applicable and not self.applies(key):
                continue
            why = self.derived(key)
            if why is not None:
                lines.append(f"# {key} = {toml_value(value)}  ({why})")
            elif value is not None:  # TOML has no null: an absent key means the default
                lines.append(f"{key} = {toml_value(value)}")
        return "\n".join(lines) + "\n"
