"""What the settings of every training command mean: which ones each command takes, their
defaults and help, and the rules across them (`RunConfig.validate`).

Each setting is declared once, as a dataclass field carrying a `Setting` (`kcnn.engine.schema`:
its type, range, allowed values and help). From that one declaration come the command-line
options (`kcnn.cli.options`), the check of every value from every source before any work, and
the TOML that `--print-config` prints and `kcnn run` replays. `RunConfig` holds the settings all
training commands share; `TrainConfig`, `CompareConfig` and `TransferConfig` add their own.
Nothing here imports TensorFlow. Longer than 600 lines for a stated reason: it is the one list
of every setting (some 60 fields, each with its help and bounds), kept together so that a
setting's declaration is found in one place.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from kcnn import defaults
from kcnn.data import augment, limits
from kcnn.data.augment import POLICIES as AUGMENT_POLICIES
from kcnn.data.augment import SWITCHES
from kcnn.engine import budget, recipes
from kcnn.engine.distribute import STRATEGIES
from kcnn.engine.recipes import SCHEDULES, TTA_MODES

# The schema, named here too for the modules that take it with the settings' meaning.
from kcnn.engine.schema import (  # noqa: F401
    AUGMENTATION,
    COMMAND_LINE,
    CONFIGURATION,
    DATA,
    DISTRIBUTION,
    INT32_MAX,
    MODEL,
    OPTIMISATION,
    OUTPUT,
    PANELS,
    RECIPE,
    SEED_MAX,
    Configured,
    Setting,
    check_name,
    check_value,
    dataset_label,
    option_name,
    override,
    parse_seeds,
    safe_label,
    setting,
    where,
)
from kcnn.errors import KcnnError, did_you_mean

AUGMENT_SWITCHES = tuple(f"augment_{name}" for name in SWITCHES)
# The augmentation recipes on Keras's layers (kcnn.data.keras_augment), by setting.
RECIPE_AUGMENTATION = (
    "augment_randaugment",
    "augment_augmix",
    "augment_erasing",
    "augment_mixup",
    "augment_cutmix",
)


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
    from kcnn.models.architectures import ARCHITECTURES  # the zoo: not for `kcnn --help`

    return sorted(ARCHITECTURES)


def _datasets() -> list[str]:
    from kcnn.data.datasets import DATASETS  # NumPy: not for `kcnn --help`

    return sorted(DATASETS)


def _backbones() -> list[str]:
    from kcnn.models.backbones import ALL, BACKBONES  # not for `kcnn --help`

    return [*BACKBONES, ALL]


@dataclass(kw_only=True)
class RunConfig(Configured):
    """The settings every training command shares."""

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
    batch_size: int | str = setting(
        defaults.BATCH_SIZE,
        "Images per batch: the global batch, split evenly over the replicas of a distribution "
        "strategy; auto: the largest that fits the device's memory, found once and recorded.",
        convert=budget.parse_batch_size,
        metavar="N|auto",
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
    folds: int | None = setting(
        None,
        "K-fold cross-validation: train K times, each fold of the training images (stratified, "
        "from --seed) the validation split of one run, kept as one group with mean and 95% "
        "intervals and every image's out-of-fold probabilities (for `kcnn audit --labels`). The "
        "test split stays apart. The same command again finishes an interrupted group.",
        low=2,
        high=100,
        metavar="K",
        panel=DATA,
    )
    fold: int | None = setting(
        None,
        "Train one fold of --folds K: fold I (1..K) is the validation split (what each run of a "
        "folds group is).",
        low=1,
        high=100,
        metavar="I",
        panel=DATA,
        applies=lambda c: c.folds is not None,
    )
    class_weight: str = setting(
        "none",
        "Weigh each class's loss: balanced gives class c the weight n/(classes × count of c) over "
        "the training images, so rare classes count as much as common ones; none: every image 1.",
        choices=("none", "balanced"),
        noun="class weighting",
        panel=RECIPE,
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
        choices=defaults.IMAGE_CACHE_CHOICES,
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
    # --- the recipes of the practitioners' list (EMA, Keras's augmentation layers, TTA, budgets,
    # distillation, averaging): each changes what a run computes only when switched on ------------
    ema: float | None = setting(
        None,
        "Keep an exponential moving average of the weights with this decay per step (e.g. 0.999), "
        "evaluated beside the raw weights every epoch; the better on validation is kept.",
        low=0.0,
        high=1.0,
        low_open=True,
        high_open=True,
        metavar="DECAY",
        panel=RECIPE,
    )
    average_last: int | None = setting(
        None,
        "Average the weights of the last K epochs (SWA-style), BatchNorm statistics recomputed "
        "on the training images.",
        low=2,
        high=100_000,
        metavar="K",
        panel=RECIPE,
    )
    teacher: str | None = setting(
        None,
        "Distil from this finished run (a folder, a run name in --out, or a seed group: each seed "
        "takes the teacher of its own seed): train on its soft labels beside the true ones.",
        metavar="RUN",
        panel=RECIPE,
    )
    teacher_temperature: float = setting(
        4.0,
        "Temperature of --teacher's soft labels (and the student's, in the distillation loss).",
        low=0.0,
        low_open=True,
        high=100.0,
        panel=RECIPE,
        applies=lambda c: c.teacher is not None,
    )
    teacher_weight: float = setting(
        0.5,
        "Weight of the distillation loss; the true labels' cross-entropy takes the rest.",
        low=0.0,
        high=1.0,
        low_open=True,
        panel=RECIPE,
        applies=lambda c: c.teacher is not None,
    )
    tta: str | None = setting(
        None,
        "Test-time augmentation of the test evaluation: flip (the image and its mirror) or "
        "crops (the image and four shifted crops), their probabilities averaged.",
        choices=TTA_MODES,
        noun="test-time augmentation",
        panel=RECIPE,
    )
    time_limit: float | None = setting(
        None,
        "Stop cleanly at this wall-clock budget of training (90, 30m, 2h, 1h30m): the run is left "
        "interrupted at its last finished epoch, for --resume.",
        convert=budget.parse_duration,
        metavar="DURATION",
        panel=OPTIMISATION,
    )
    augment_randaugment: int | None = setting(
        None,
        "RandAugment (Keras's layer): this many random ops per image.",
        low=1,
        high=14,
        metavar="OPS",
        panel=AUGMENTATION,
    )
    augment_magnitude: float = setting(
        0.5,
        "Strength of RandAugment's ops, 0 to 1 (Keras's factor).",
        low=0.0,
        high=1.0,
        low_open=True,
        panel=AUGMENTATION,
        applies=lambda c: c.augment_randaugment is not None,
    )
    augment_augmix: float | None = setting(
        None,
        "AugMix (Keras's layer): three chains of random ops of up to this strength (0 to 1), mixed "
        "with the image.",
        low=0.0,
        high=1.0,
        low_open=True,
        metavar="STRENGTH",
        panel=AUGMENTATION,
    )
    augment_erasing: float | None = setting(
        None,
        "Random erasing (Keras's layer): the probability an image has a patch replaced by noise.",
        low=0.0,
        high=1.0,
        low_open=True,
        metavar="PROBABILITY",
        panel=AUGMENTATION,
    )
    augment_mixup: float | None = setting(
        None,
        "MixUp (Keras's layer): mix image pairs and their labels, weights from Beta(α, α).",
        low=0.0,
        high=10.0,
        low_open=True,
        metavar="ALPHA",
        panel=AUGMENTATION,
    )
    augment_cutmix: float | None = setting(
        None,
        "CutMix (Keras's layer): paste a patch of another image and mix the labels by its area, "
        "Beta(α, α); with --augment-mixup, one of the two per batch.",
        low=0.0,
        high=10.0,
        low_open=True,
        metavar="ALPHA",
        panel=AUGMENTATION,
    )

    # Whether the run name was made from the settings (no name given): --print-config leaves it
    # out, and an offline stand-in's data set renames the run. Not a setting.
    derived_name: bool = dataclasses.field(default=False, repr=False, compare=False)
    # How `--batch-size auto` found the batch this config now holds (kcnn.commands.autobatch),
    # recorded with the run. Not a setting.
    batch_size_search: dict | None = dataclasses.field(default=None, repr=False, compare=False)

    # --- what the settings mean together ---------------------------------------------------------

    def validate(self) -> RunConfig:
        """Check every setting (type, range, allowed values), then the command's own rules, and
        fill in what is derived (the optimizer's usual rate, the run name). Idempotent.
        An error names the file the settings came from (an experiment file, a run's config.json)."""
        try:
            return self._validate()
        except KcnnError as e:
            named = self.in_source(e)
            if named is e:
                raise
            raise named from None

    def _validate(self) -> RunConfig:
        self.check_settings()
        if self.lr is None:
            self.lr = defaults.LEARNING_RATES[self.optimizer]
        if isinstance(self.seeds, int) and self.seed + self.seeds - 1 > SEED_MAX:
            raise KcnnError(
                f"--seeds {self.seeds} from --seed {self.seed} passes the largest seed {SEED_MAX:,}"
            )
        if self.image_size is not None and self.batch_size != budget.AUTO:
            limits.check_batch_memory(self.batch_size, self.image_size, self.image_size, 3)
        from kcnn.data import datasets  # NumPy: not for `kcnn --help`

        datasets.check(self.dataset, self.data_dir)  # names data at all? (loads nothing)
        self.check_recipe()
        self.check()
        if self.name is None:
            self.name = self.default_name()
            self.derived_name = True
        check_name(self.name)
        return self

    def check(self) -> None:
        """The command's own rules across settings (subclasses add theirs)."""

    def check_recipe(self) -> None:
        """The recipe's rules across settings: momentum is SGD's, warm-up fits in the epochs, and
        no flip where a mirrored image is another class."""
        recipes.check_optimizer(self.optimizer, self.weight_decay, self.momentum, self.nesterov)
        recipes.check_schedule(self.schedule, self.epochs, self.warmup, self.min_lr)
        if self.augment_flip and self.dataset in augment.MIRROR_SENSITIVE:
            raise KcnnError(
                f"--augment-flip on {self.dataset}: a mirrored digit or slash is another class; drop it"
            )
        self.check_practices()

    def check_practices(self) -> None:
        """The rules of the practitioners' recipes: no flip where a mirror image is another
        class, averaging within the epochs, one way of choosing the final weights."""
        if self.tta == "flip" and self.dataset in augment.MIRROR_SENSITIVE:
            raise KcnnError(
                f"--tta flip on {self.dataset}: a mirrored digit or slash is another class; "
                "use --tta crops"
            )
        if self.average_last is not None and self.average_last > self.epochs:
            raise KcnnError(
                f"--average-last {self.average_last} averages more epochs than the {self.epochs} "
                "trained; give at most --epochs"
            )
        chooses = [
            option_name(key)
            for key in ("ema", "average_last", "early_stopping")
            if getattr(self, key) is not None
        ]
        if len(chooses) > 1:
            raise KcnnError(
                f"{' and '.join(chooses)} each choose the final weights; use one of them"
            )
        self.check_folds()
        self.check_class_weight()
        if self.time_limit is not None and self.seeds is not None:
            raise KcnnError(
                "--time-limit stops one run; a seed group restarts a stopped seed from its "
                "beginning: give the limit to single runs, not with --seeds"
            )
        if self.batch_size == budget.AUTO and self.strategy != "default":
            raise KcnnError(
                f"--batch-size auto finds the batch of one device; give --strategy "
                f"{self.strategy} a number (the global batch)"
            )

    def check_folds(self) -> None:
        """--folds makes the validation splits itself: one group of K runs of one seed."""
        if self.fold is not None and self.folds is None:
            raise KcnnError(f"--fold {self.fold} needs --folds K (how many folds there are)")
        if self.folds is None:
            return
        if self.command != "train":
            raise KcnnError(f"--folds {self.folds} is for `kcnn train`, not `kcnn {self.command}`")
        if self.fold is not None and self.fold > self.folds:
            raise KcnnError(
                f"--fold {self.fold} is past the {self.folds} folds: give 1..{self.folds}"
            )
        if self.seeds is not None:
            raise KcnnError(
                f"--folds {self.folds} with --seeds: a folds group is one seed's K runs; "
                "drop --seeds (or run one folds group per --seed)"
            )
        if self.val_split != defaults.VAL_SPLIT:
            raise KcnnError(
                f"--val-split {self.val_split} with --folds {self.folds}: each fold is the "
                "validation split; drop --val-split"
            )
        if self.time_limit is not None:
            raise KcnnError(
                f"--time-limit stops one run; a folds group restarts a stopped fold from its "
                f"beginning: drop --time-limit with --folds {self.folds}"
            )

    def check_class_weight(self) -> None:
        """Keras weighs each image by the class of its target row's largest entry: a teacher's
        probabilities after the labels, or several replicas' batches, would be weighed wrong."""
        if self.class_weight == "none":
            return
        if self.teacher is not None:
            raise KcnnError(
                f"--class-weight {self.class_weight} with --teacher: the teacher's soft labels "
                "carry no one class to weigh; use one of them"
            )
        if self.strategy != "default":
            raise KcnnError(
                f"--class-weight {self.class_weight} weighs the batches of one device; drop it "
                f"with --strategy {self.strategy}"
            )

    def is_group(self) -> bool:
        """Whether this config trains a group of runs (seeds, or the folds of --folds)."""
        return self.seeds is not None or (self.folds is not None and self.fold is None)

    def fold_list(self) -> list[int]:
        """The folds a folds group trains (1..K), or [] when this is no folds group."""
        return list(range(1, self.folds + 1)) if self.folds and self.fold is None else []

    def practices(self) -> list[str]:
        """The practitioners' recipes this run switches on, as their options."""
        keys = ("ema", "average_last", "teacher", "tta", *RECIPE_AUGMENTATION)
        found = [option_name(k) for k in keys if getattr(self, k) is not None]
        return found + (["--batch-size auto"] if self.batch_size == budget.AUTO else [])

    def recipe_augmentation(self) -> augment.RecipeAugmentation:
        """The augmentation recipes on Keras's layers this run switches on."""
        return augment.recipe_augmentation(
            self.augment_randaugment,
            self.augment_magnitude,
            self.augment_augmix,
            self.augment_erasing,
            self.augment_mixup,
            self.augment_cutmix,
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

    def derived(self, key: str) -> str | None:
        """A run name made from the model and the data set is left out of a file written from
        this config: it is derived again from the settings the file ends up with, so
        `--config FILE --dataset other` is named for the other data."""
        return (
            "made from the model and the data set" if key == "name" and self.derived_name else None
        )

    def use_dataset(self, used: str) -> bool:
        """Record the data set that stood in for the one asked for (an offline fallback, such as
        mnist -> mnist-5k) as this run's: a run is named and described by the data it trained on
        (what was asked for stays in its data provenance). A name made from the settings follows
        the data; a name given (by the user, or a seed group for its members) is kept. Returns
        whether the name changed."""
        if used == self.dataset:
            return False
        self.dataset = used
        if not self.derived_name:
            return False
        before, self.name = self.name, self.default_name()
        return self.name != before


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
            name = where("apis", self.settings()["apis"], self.source)
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
        from kcnn.models import backbones  # not for `kcnn --help`

        unsupported = self.practices()
        if unsupported:
            raise KcnnError(
                f"{unsupported[0]} is not available for transfer (its head trains on cached "
                "features, outside the recipes' pipeline); use it with `kcnn train` or "
                "`kcnn compare-apis`"
            )
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
    tip = did_you_mean(weights, WEIGHT_CHOICES)
    raise KcnnError(
        f"--weights {weights}: no such file; {tip}pass --weights imagenet, --weights none, "
        "or the path of a weights file saved from the same backbone"
    )


COMMANDS: dict[str, type[RunConfig]] = {
    c.command: c for c in (TrainConfig, CompareConfig, TransferConfig)
}
