"""One configuration model for every training command, and the schema that checks it.

Each setting is declared once, as a dataclass field carrying a `Setting` (its type, range, allowed
values and help). From that one declaration come:

- the command-line options of `kcnn train`, `kcnn compare-apis` and `kcnn transfer`
  (`kcnn.cli.options`), so an option and an experiment-file key can never drift apart;
- the check of every value from every source — command line, experiment file, `--set`, a run's
  own config.json — for type, range and allowed values (`RunConfig.validate`), before any work;
- the TOML that `--print-config` prints and `kcnn run` replays.

`RunConfig` holds the settings all training commands share; `TrainConfig`, `CompareConfig` and
`TransferConfig` extend it with their own. Nothing here imports TensorFlow.
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

from kcnn import defaults
from kcnn.data.augment import POLICIES as AUGMENT_POLICIES
from kcnn.data.augment import SWITCHES
from kcnn.data.image_cache import CHOICES as CACHE_CHOICES
from kcnn.data.prepared import check_batch_memory
from kcnn.engine.distribute import STRATEGIES
from kcnn.engine.recipes import SCHEDULES
from kcnn.errors import KcnnError, closest

AUGMENT_SWITCHES = tuple(f"augment_{name}" for name in SWITCHES)

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
                hint = closest(item, allowed)
                tip = f"did you mean '{hint}'? " if hint else ""
                raise KcnnError(
                    f"{name}: unknown {spec.noun} '{item}': {tip}choose one of: {', '.join(allowed)}"
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


def _is_folder(dataset: str) -> bool:
    from kcnn.data.datasets import DATASETS

    return dataset not in DATASETS and not dataset.endswith(".npz")


def _service_url(name: str, value: Any) -> str:
    """A tf.data service dispatcher's address: grpc://HOST:PORT (or HOST:PORT)."""
    text = value if isinstance(value, str) else ""
    host, _, port = text.removeprefix("grpc://").rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536 or len(text) > 512:
        raise KcnnError(
            f"{name} takes a tf.data service dispatcher's address, grpc://HOST:PORT, got {value!r}"
        )
    return text if text.startswith("grpc://") else f"grpc://{text}"


def _sgd(config) -> bool:
    return config.optimizer == "sgd"


def _fine_tuned(config) -> bool:
    return config.fine_tune > 0


def _architectures() -> list[str]:
    from kcnn.models.architectures import ARCHITECTURES

    return sorted(ARCHITECTURES)


def _datasets() -> list[str]:
    from kcnn.data.datasets import DATASETS

    return sorted(DATASETS)


def _backbones() -> list[str]:
    from kcnn.models.backbones import ALL, BACKBONES

    return [*BACKBONES, ALL]


@dataclass(kw_only=True)
class RunConfig:
    """The settings every training command shares."""

    command: ClassVar[str] = ""

    dataset: str = setting(
        "mnist",
        "A registered data set (see `kcnn list datasets`), an image folder, or an .npz file.",
        completion=_datasets,
        panel=DATA,
    )
    data_dir: str | None = setting(
        None,
        "Folder holding the data set's original files (e.g. mnist.npz, IDX files, cifar-10-batches-py/).",
        metavar="PATH",
        panel=DATA,
    )
    epochs: int = setting(
        defaults.EPOCHS, "Training epochs.", low=1, high=100_000, panel=OPTIMISATION
    )
    batch_size: int = setting(
        defaults.BATCH_SIZE,
        "Images per batch: the global batch, split evenly over the replicas of a distribution strategy.",
        low=1,
        high=65_536,
        panel=OPTIMISATION,
    )
    optimizer: str = setting(
        defaults.OPTIMIZER,
        "The optimizer.",
        choices=defaults.OPTIMIZERS,
        noun="optimizer",
        panel=OPTIMISATION,
    )
    lr: float | None = setting(
        None,
        "Learning rate [default: the optimizer's usual rate].",
        low=0.0,
        low_open=True,
        panel=OPTIMISATION,
    )
    seed: int = setting(
        defaults.SEED,
        "Seed for the split, weight initialisation and shuffling.",
        low=0,
        high=SEED_MAX,
        panel=OPTIMISATION,
    )
    seeds: int | list[int] | None = setting(
        None,
        "Train once per seed and keep the runs as one group with mean, sd and 95% intervals: a "
        "count (5: --seed, --seed+1, ...) or a list (83,84,85). Seeds run in parallel processes "
        "where the machine has room; the same command again finishes an interrupted group.",
        convert=parse_seeds,
        metavar="N|SEED,SEED,...",
    )
    val_split: float = setting(
        defaults.VAL_SPLIT,
        "Fraction of the training images held out for validation (stratified).",
        low=0.0,
        high=1.0,
        low_open=True,
        high_open=True,
        panel=DATA,
    )
    test_split: float = setting(
        defaults.TEST_SPLIT,
        "Fraction held out as the test set when the data set has no test split of its own.",
        low=0.0,
        high=1.0,
        low_open=True,
        high_open=True,
        panel=DATA,
    )
    limit: int | None = setting(
        None,
        "Use at most N training (and N test) images, stratified: for quick runs.",
        low=1,
        high=INT32_MAX,
        panel=DATA,
    )
    image_size: int | None = setting(
        None,
        "Resize (or pad) images to N×N inside the input pipeline.",
        low=1,
        high=defaults.IMAGE_SIZE_MAX,
        panel=DATA,
    )
    shapes_count: int = setting(
        defaults.SHAPES_COUNT,
        "Images the generated `shapes` data set draws (ignored by other data sets).",
        low=12,
        high=defaults.SHAPES_COUNT_MAX,
        panel=DATA,
        applies=lambda c: c.dataset == "shapes",
    )
    cache: str = setting(
        "auto",
        "Where an image folder's images, decoded at the model's size, are kept between reads: "
        "memory, disk (a file in $KCNN_CACHE_DIR, default ~/.cache/kcnn, reused by later runs), "
        "none, or auto (memory up to 64 MB, else disk). Arrays are in memory already.",
        choices=CACHE_CHOICES,
        noun="cache",
        panel=DATA,
        applies=lambda c: _is_folder(c.dataset),
    )
    data_service: str | None = setting(
        None,
        "A tf.data service dispatcher (grpc://HOST:PORT) whose workers read and decode an image "
        "folder's training batches (they must see the folder at the same path).",
        metavar="URL",
        panel=DISTRIBUTION,
        convert=_service_url,
        applies=lambda c: _is_folder(c.dataset),
    )
    strategy: str = setting(
        "default",
        "tf.distribute strategy: default (one device), mirrored (the GPUs of this machine, or its "
        "CPU split in --devices parts), multi-worker (the machines TF_CONFIG lists). --batch-size "
        "stays the global batch.",
        choices=STRATEGIES,
        noun="strategy",
        panel=DISTRIBUTION,
    )
    devices: int | None = setting(
        None,
        "Devices --strategy mirrored trains on [default: every GPU; 1 CPU device without GPUs].",
        low=1,
        high=4096,
        panel=DISTRIBUTION,
        applies=lambda c: c.strategy == "mirrored",
    )
    mixed_precision: bool = setting(
        False,
        "Compute in float16 (GPU) or bfloat16 (CPU) with float32 weights, softmax and loss.",
        panel=DISTRIBUTION,
    )
    jit_compile: bool = setting(False, "Compile the training step with XLA.", panel=DISTRIBUTION)
    out: str = setting(
        defaults.OUT_DIR, "Folder that receives the run folders.", metavar="PATH", panel=OUTPUT
    )
    name: str | None = setting(
        None, "Run name [default: made from the model and the data set].", panel=OUTPUT
    )
    # --- the recipe: optimizer, schedule, regularisation, augmentation (kcnn.engine.recipes) -----
    weight_decay: float = setting(
        0.0,
        "Decoupled weight decay (AdamW-style; any optimizer).",
        low=0.0,
        high=1.0,
        panel=OPTIMISATION,
    )
    momentum: float = setting(
        0.0,
        "Momentum of the sgd optimizer.",
        low=0.0,
        high=1.0,
        high_open=True,
        panel=OPTIMISATION,
        applies=_sgd,
    )
    nesterov: bool = setting(
        False, "Nesterov momentum (sgd with --momentum).", panel=OPTIMISATION, applies=_sgd
    )
    schedule: str = setting(
        "constant",
        "Learning-rate schedule, one rate per epoch (recorded in history.csv).",
        choices=SCHEDULES,
        noun="schedule",
        panel=OPTIMISATION,
    )
    warmup: int = setting(
        0, "Epochs of linear learning-rate warm-up.", low=0, high=100_000, panel=OPTIMISATION
    )
    min_lr: float = setting(
        0.0,
        "The rate cosine and one-cycle decay towards.",
        low=0.0,
        panel=OPTIMISATION,
        applies=lambda c: c.schedule in ("cosine", "one-cycle"),
    )
    label_smoothing: float = setting(
        0.0,
        "Label smoothing of the cross-entropy loss.",
        low=0.0,
        high=1.0,
        high_open=True,
        panel=RECIPE,
    )
    early_stopping: int | None = setting(
        None,
        "Stop after N epochs without a lower validation loss, restoring the best epoch's weights.",
        low=1,
        high=100_000,
        metavar="PATIENCE",
        panel=RECIPE,
    )
    reduce_lr_on_plateau: int | None = setting(
        None,
        "Multiply the rate by --plateau-factor after N epochs without a lower validation loss.",
        low=1,
        high=100_000,
        metavar="PATIENCE",
        panel=RECIPE,
    )
    plateau_factor: float = setting(
        0.1,
        "Factor of --reduce-lr-on-plateau.",
        low=0.0,
        low_open=True,
        high=1.0,
        high_open=True,
        panel=RECIPE,
        applies=lambda c: c.reduce_lr_on_plateau is not None,
    )
    augment: str = setting(
        "none",
        "Augment training images: light (random crop, flips where classes survive them), standard "
        "(light + small rotations + colour jitter on colour images). Never validation or test.",
        choices=AUGMENT_POLICIES,
        noun="augmentation policy",
        panel=AUGMENTATION,
    )
    augment_crop: float | None = setting(
        None,
        "Random-crop margin as a fraction of the side [default: the policy's].",
        low=0.0,
        high=0.5,
        panel=AUGMENTATION,
    )
    augment_flip: bool | None = setting(
        None, "Random left-right flips [default: the policy's].", panel=AUGMENTATION
    )
    augment_rotate: float | None = setting(
        None,
        "Random rotation, up to this many degrees [default: the policy's].",
        low=0.0,
        high=180.0,
        panel=AUGMENTATION,
    )
    augment_translate: float | None = setting(
        None,
        "Random shift, up to this fraction of the side [default: the policy's].",
        low=0.0,
        high=0.5,
        panel=AUGMENTATION,
    )
    augment_color: float | None = setting(
        None,
        "Brightness/contrast jitter, up to this fraction (colour images) [default: the policy's].",
        low=0.0,
        high=1.0,
        panel=AUGMENTATION,
    )
    tensorboard: bool = setting(
        False,
        "Write TensorBoard logs (scalars per epoch, the graph) into RUN/tensorboard/.",
        panel=OUTPUT,
    )
    tensorboard_histograms: bool = setting(
        False,
        "With --tensorboard, also log weight histograms every epoch (slower, bigger files).",
        panel=OUTPUT,
        applies=lambda c: c.tensorboard,
    )
    calibrate: bool = setting(
        False,
        "After training, fit temperature scaling on the validation split (as `kcnn calibrate`): "
        "`kcnn predict` then gives calibrated probabilities.",
    )

    # --- the schema ----------------------------------------------------------------------------

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
    def from_settings(cls, values: dict[str, Any], source: str = "") -> RunConfig:
        """A config from a mapping of setting names (a file's table, a run's config.json, --set);
        an unknown key is an error naming the closest valid one. Not yet validated."""
        known = cls.settings()
        for key in values:
            if key not in known:
                hint = closest(str(key), known)
                tip = f"did you mean '{hint}'? " if hint else ""
                at = f"{source}: " if source else ""
                raise KcnnError(
                    f"{at}unknown setting '{key}' for {cls.command}: {tip}valid settings: {', '.join(known)}"
                )
        missing = [
            f.name
            for f in dataclasses.fields(cls)
            if f.name not in values
            and f.default is dataclasses.MISSING
            and f.default_factory is dataclasses.MISSING
        ]
        if missing:
            at = f"{source}: " if source else ""
            raise KcnnError(f"{at}{cls.command} needs the setting(s) {', '.join(missing)}")
        config = cls(**values)
        config._source = source  # validate() names the file a bad value came from
        return config

    def validate(self) -> RunConfig:
        """Check every setting (type, range, allowed values), then the command's own rules, and
        fill in what is derived (the optimizer's usual rate, the run name). Idempotent.
        An error names the file the settings came from (an experiment file, a run's config.json)."""
        source = getattr(self, "_source", "")
        try:
            return self._validate()
        except KcnnError as e:
            if not source or source == COMMAND_LINE or str(e).startswith(source):
                raise
            raise KcnnError(f"{source}: {e}") from None

    def _validate(self) -> RunConfig:
        source = getattr(self, "_source", "")
        for key, spec in self.settings().items():
            setattr(self, key, check_value(key, spec, getattr(self, key), source))
        if self.lr is None:
            self.lr = defaults.LEARNING_RATES[self.optimizer]
        if isinstance(self.seeds, int) and self.seed + self.seeds - 1 > SEED_MAX:
            raise KcnnError(
                f"--seeds {self.seeds} from --seed {self.seed} passes the largest seed {SEED_MAX:,}"
            )
        if self.image_size is not None:
            check_batch_memory(self.batch_size, self.image_size, self.image_size, 3)
        from kcnn.data import datasets

        datasets.check(self.dataset, self.data_dir)  # names data at all? (loads nothing)
        self.check_recipe()
        self.check()
        if self.name is None:
            self.name = self.default_name()
            self._derived_name = True  # --print-config leaves it out: it follows the settings
        check_name(self.name)
        return self

    def check(self) -> None:
        """The command's own rules across settings (subclasses add theirs)."""

    def check_recipe(self) -> None:
        """The recipe's rules across settings: momentum is SGD's, warm-up fits in the epochs, and
        no flip where a mirrored image is another class."""
        from kcnn.data import augment
        from kcnn.engine import recipes

        recipes.check_optimizer(self.optimizer, self.weight_decay, self.momentum, self.nesterov)
        recipes.check_schedule(self.schedule, self.epochs, self.warmup, self.min_lr)
        if self.augment_flip and self.dataset in augment.MIRROR_SENSITIVE:
            raise KcnnError(
                f"--augment-flip on {self.dataset}: a mirrored digit or slash is another class; drop it"
            )

    def seed_list(self) -> list[int]:
        """The seeds of a group (`seeds`), or this run's one seed."""
        if self.seeds is None:
            return [self.seed]
        if isinstance(self.seeds, int):
            return [self.seed + i for i in range(self.seeds)]
        return list(self.seeds)

    def augment_switches(self) -> dict[str, Any]:
        """The augmentation switches given explicitly (None: the policy's)."""
        return {key: getattr(self, key) for key in AUGMENT_SWITCHES}

    def default_name(self) -> str:
        raise NotImplementedError

    def settings_dict(self) -> dict[str, Any]:
        """The settings as plain values, as config.json records them and --print-config prints them."""
        return {key: getattr(self, key) for key in self.settings()}

    def applies(self, key: str) -> bool:
        """Whether setting `key` changes anything in this run (`shapes_count` only with the
        shapes data, `momentum` only with sgd...)."""
        rule = self.settings()[key].applies
        return rule is None or bool(rule(self))

    def to_toml(self, only_applicable: bool = False) -> str:
        """This config as an experiment file `kcnn run` replays; `only_applicable` leaves out
        the settings that change nothing in this run (what `kcnn run --check` shows). A run name
        made from the model and the data set is left out (shown as a comment): it is derived
        again from the settings the file ends up with, so `--config FILE --dataset other` is
        named for the other data."""
        lines = [
            f"# kcnn {self.command}: resolved settings",
            "",
            "[[run]]",
            f"command = {_toml(self.command)}",
        ]
        for key, value in self.settings_dict().items():
            if only_applicable and not self.applies(key):
                continue
            if key == "name" and self.name_is_derived():
                lines.append(f"# name = {_toml(value)}  (made from the model and the data set)")
            elif value is not None:  # TOML has no null: an absent key means the default
                lines.append(f"{key} = {_toml(value)}")
        return "\n".join(lines) + "\n"

    def name_is_derived(self) -> bool:
        """Whether the run name is the one made from the settings (no name was given)."""
        return getattr(self, "_derived_name", False)

    def use_dataset(self, used: str) -> bool:
        """Record the data set that stood in for the one asked for (an offline fallback, such as
        mnist -> mnist-5k) as this run's: a run is named and described by the data it trained on
        (what was asked for stays in its data provenance). A name made from the settings follows
        the data; a name given (by the user, or a seed group for its members) is kept. Returns
        whether the name changed."""
        if used == self.dataset:
            return False
        self.dataset = used
        if not self.name_is_derived():
            return False
        before, self.name = self.name, self.default_name()
        return self.name != before


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


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    text = str(value)
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def safe_label(text: str) -> str:
    """Part of a default run name: letters, digits and . _ - only (a folder named `my data` -> `my-data`)."""
    label = re.sub(r"[^\w.+=@,-]+", "-", text, flags=re.UNICODE).strip("-.")
    return label or "data"


def dataset_label(dataset: str) -> str:
    """The part of a default run name that says which data: a registered name, or a file/folder's name."""
    return safe_label(Path(dataset.rstrip("/\\")).name.removesuffix(".npz"))


@dataclass
class TrainConfig(RunConfig):
    """`kcnn train`: one architecture in one API form."""

    command: ClassVar[str] = "train"

    arch: str = setting(
        help="Architecture name (see `kcnn list models`).",
        argument=True,
        choices=_architectures,
        noun="architecture",
        panel=MODEL,
    )
    api: str = setting(
        defaults.API, "Model-building style.", choices=defaults.APIS, noun="API form", panel=MODEL
    )

    def default_name(self) -> str:
        return f"{self.arch}-{dataset_label(self.dataset)}-{self.api}"


def override(cls: type, key: str, default: Any) -> Any:
    """The field `key` of `cls` with another default: a command's own default for a shared setting."""
    spec = next(f for f in dataclasses.fields(cls) if f.name == key).metadata["setting"]
    return dataclasses.field(default=default, kw_only=True, metadata={"setting": spec})


@dataclass
class CompareConfig(RunConfig):
    """`kcnn compare-apis`: one architecture in several API forms, proven equal, trained side by side.
    Seed 003's experiment by default: simple-cnn on CIFAR-10 for 20 epochs."""

    command: ClassVar[str] = "compare-apis"

    arch: str = setting(
        defaults.COMPARE_ARCH,
        "Architecture name (see `kcnn list models`).",
        argument=True,
        choices=_architectures,
        noun="architecture",
        panel=MODEL,
    )
    dataset: str = override(RunConfig, "dataset", defaults.COMPARE_DATASET)
    epochs: int = override(RunConfig, "epochs", defaults.COMPARE_EPOCHS)
    apis: list[str] = setting(
        defaults.APIS,  # a tuple: dataclasses refuse a mutable default; validate() makes it a list
        "The API forms to compare, comma-separated.",
        choices=defaults.APIS,
        noun="API form",
        metavar="FORMS",
        panel=MODEL,
    )
    same_init: bool = setting(
        True,
        "Start all forms from the same weights (curves coincide), or initialise each on its own "
        "(seed-to-seed spread).",
        flags="--same-init/--independent-init",
        panel=MODEL,
    )
    tolerance: float = setting(
        defaults.COMPARE_TOLERANCE,
        "Largest output difference between forms holding the same weights that still counts as equal.",
        low=0.0,
        low_open=True,
        high=1.0,
        panel=MODEL,
    )

    def check(self) -> None:
        if len(set(self.apis)) < 2:
            name = where("apis", self.settings()["apis"], getattr(self, "_source", ""))
            raise KcnnError(
                f"{name} needs at least two different API forms, got {', '.join(self.apis)}"
            )

    def default_name(self) -> str:
        return f"compare-{self.arch}-{dataset_label(self.dataset)}"

    def form_config(self, api: str) -> TrainConfig:
        """The settings of one form's training run."""
        shared = {k: v for k, v in self.settings_dict().items() if k in RunConfig.settings()}
        return TrainConfig(arch=self.arch, api=api, **{**shared, "name": None})


@dataclass
class TransferConfig(RunConfig):
    """`kcnn transfer`: frozen ImageNet backbones with a small head. Seed 003's second experiment
    by default: CIFAR-10, the seed's head."""

    command: ClassVar[str] = "transfer"

    backbones: list[str] = setting(
        help="vgg16, mobilenetv2, resnet50v2, or all (see `kcnn list backbones`); several give a "
        "comparison report.",
        argument=True,
        choices=_backbones,
        noun="backbone",
        panel=MODEL,
    )
    dataset: str = override(RunConfig, "dataset", defaults.TRANSFER_DATASET)
    image_size: int | None = override(RunConfig, "image_size", None)
    weights: str = setting(
        defaults.TRANSFER_WEIGHTS,
        "imagenet (Keras cache or download), none (random initialisation), or the path of a weights file.",
        metavar="imagenet|none|PATH",
        panel=MODEL,
    )
    head: str = setting(
        defaults.TRANSFER_HEAD,
        "seed: Flatten, Dense 128, Dense 64, softmax (seed 003); gap: global average pooling, dropout, softmax.",
        choices=defaults.TRANSFER_HEADS,
        noun="head",
        panel=MODEL,
    )
    dropout: float = setting(
        defaults.GAP_DROPOUT,
        "Dropout rate of the gap head.",
        low=0.0,
        high=1.0,
        high_open=True,
        panel=MODEL,
        applies=lambda c: c.head == "gap",
    )
    fine_tune: int = setting(
        0,
        "After the frozen phase, unfreeze the top N backbone layers (BatchNorm stays frozen) and train again.",
        low=0,
        high=10_000,
        panel=RECIPE,
    )
    fine_tune_lr: float = setting(
        defaults.FINE_TUNE_LR,
        "Learning rate of the fine-tune phase.",
        low=0.0,
        low_open=True,
        panel=RECIPE,
        applies=_fine_tuned,
    )
    fine_tune_epochs: int | None = setting(
        None,
        "Epochs of the fine-tune phase [default: as many as --epochs].",
        low=1,
        high=100_000,
        panel=RECIPE,
        applies=_fine_tuned,
    )
    cache_features: bool = setting(
        True,
        "Compute the frozen backbone's features once and train the head on them (same result, much faster).",
        panel=RECIPE,
    )

    def check(self) -> None:
        from kcnn.models import backbones

        self.backbones = backbones.expand(list(self.backbones))
        self.weights = _check_weights(self.weights)
        if self.fine_tune_epochs is None:
            self.fine_tune_epochs = self.epochs
        smallest = max(backbones.get(b).min_size for b in self.backbones)
        if self.image_size is not None and self.image_size < smallest:
            raise KcnnError(
                f"--image-size {self.image_size} is too small for {', '.join(self.backbones)}: "
                f"the smallest input that works is {smallest}×{smallest}"
            )

    def default_name(self) -> str:
        what = self.backbones[0] if len(self.backbones) == 1 else "transfer"
        return f"{what}-{dataset_label(self.dataset)}-{self.head}"


WEIGHT_CHOICES = ("imagenet", "none")


def _check_weights(weights: str) -> str:
    """`imagenet`, `none`, or an existing file; anything else is refused before any work."""
    if weights.lower() in WEIGHT_CHOICES:
        return weights.lower()
    path = Path(weights).expanduser()
    if path.is_file():
        return str(path)
    hint = closest(weights, WEIGHT_CHOICES)
    tip = f"did you mean '{hint}'? " if hint else ""
    raise KcnnError(
        f"--weights {weights}: no such file; {tip}pass --weights imagenet, --weights none, "
        "or the path of a weights file saved from the same backbone"
    )


COMMANDS: dict[str, type[RunConfig]] = {
    c.command: c for c in (TrainConfig, CompareConfig, TransferConfig)
}
