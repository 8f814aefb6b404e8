"""Data augmentation of training batches: random crops, flips, rotations, shifts, colour jitter.

A policy (`none`, `light`, `standard`) resolves to individual switches for one data set, and
switches given explicitly override the policy's:

    settings = resolve("standard", "cifar10", channels=3, overrides={"rotate": 5})
    augment = augmenter(settings, seed=83)          # None when nothing is switched on
    batch = augment(batch, epoch, batch_index)      # float32 pixels 0..255 in and out

Where it goes: on the training stream only, on each batch of source images before the pipeline
brings them to the model's input size and scales them (`pipeline.prepare_batch_fn`). At the
source size a 1/8 crop margin is what the literature means by it (4 px on CIFAR's 32×32), the
work is the cheapest (a 32×32 image, not its 224×224 resize), and scaling or `preprocess_input`
come after, so the 0..255 contract of both stays intact.

Determinism: the randomness of a batch comes from stateless ops keyed by (seed, epoch, batch
index) alone, so epoch k's augmented batches are the same whether the run started at epoch 0 or
resumed at k, in whatever order tf.data's parallel map computes them. Keras's preprocessing
layers (RandomFlip, RandomRotation, ...) draw from a `SeedGenerator` variable that advances with
every call; `keras.random` refuses a tensor seed, and a variable advanced by a parallel tf.data
map depends on thread timing, so they cannot give that guarantee. The geometric part therefore
uses the op those layers use, `keras.ops.image.affine_transform`, with per-image transforms drawn
by `tf.random.stateless_*`: crop-with-padding, translation and rotation become one affine map
per image (one interpolation, not three). The recipes on Keras's own layers — RandAugment,
AugMix, random erasing, MixUp, CutMix (`RecipeAugmentation`, applied by
`kcnn.data.keras_augment` after these switches) — keep the same guarantee another way: each
layer draws from a generator without state, keyed by the same (seed, epoch, batch).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kcnn.errors import KcnnError, unknown

POLICIES = ("none", "light", "standard")

# A mirror image is another class here: a flipped 2, 3, 4, 5, 7 or 9 is not that digit, and in
# `shapes` a flipped slash is a backslash. Flipping these is refused even when asked for.
MIRROR_SENSITIVE = frozenset({"mnist", "mnist-5k", "digits", "shapes"})
# Data sets whose classes survive a left-right flip; the policies flip only these (a folder of
# the user's own images may hold text or arrows, so flipping it is left to an explicit switch).
MIRROR_SAFE = frozenset({"fashion-mnist", "cifar10", "cifar100"})


@dataclass(frozen=True)
class AugmentSettings:
    """What is done to each training image; all off is no augmentation."""

    crop: float = 0.0  # pad by this fraction of each side (edge pixels), crop back at random
    flip: bool = False  # mirror left-right with probability 1/2
    rotate: float = 0.0  # rotate by up to this many degrees either way
    translate: float = 0.0  # shift by up to this fraction of each side (sub-pixel)
    color: float = 0.0  # brightness and contrast changed by up to this fraction (colour only)

    @property
    def active(self) -> bool:
        return bool(self.crop or self.flip or self.rotate or self.translate or self.color)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


SWITCHES = tuple(f.name for f in dataclasses.fields(AugmentSettings))
_LIMITS = {"crop": 0.5, "rotate": 180.0, "translate": 0.5, "color": 1.0}


def policy_settings(policy: str, dataset: str, channels: int) -> AugmentSettings:
    """The switches a policy means for one data set.

    light: crop with a 1/8 margin, plus a flip where the classes survive one.
    standard: light, plus rotations of up to 10° and, on colour images, ±20 % colour jitter.
    """
    if policy not in POLICIES:
        raise unknown("augmentation policy", policy, POLICIES)
    if policy == "none":
        return AugmentSettings()
    light = AugmentSettings(crop=0.125, flip=dataset in MIRROR_SAFE)
    if policy == "light":
        return light
    return dataclasses.replace(light, rotate=10.0, color=0.2 if channels == 3 else 0.0)


def resolve(
    policy: str = "none",
    dataset: str = "",
    channels: int = 1,
    overrides: dict[str, Any] | None = None,
) -> AugmentSettings:
    """The policy's switches for `dataset`, overridden by the switches given (None: not given).

    Override keys are the field names of `AugmentSettings` (an `augment_` prefix is accepted).
    """
    settings = policy_settings(policy, dataset, channels)
    given: dict[str, Any] = {}
    for key, value in (overrides or {}).items():
        name = key.removeprefix("augment_")
        if name not in SWITCHES:
            raise unknown("augmentation switch", key, SWITCHES)
        if value is not None:
            given[name] = value
    settings = dataclasses.replace(settings, **given)
    for name, limit in _LIMITS.items():
        value = getattr(settings, name)
        if not 0.0 <= float(value) <= limit:
            raise KcnnError(f"augment {name} must be between 0 and {limit:g}, got {value}")
    if settings.flip and dataset in MIRROR_SENSITIVE:
        raise KcnnError(
            f"{dataset}: a mirrored image is another class there (a flipped digit or slash is not "
            "the same symbol); drop the flip switch"
        )
    if settings.color and channels != 3:
        raise KcnnError(
            f"colour jitter needs colour images but {dataset or 'the data'} has {channels} "
            "channel(s); drop the colour switch"
        )
    return settings


@dataclass(frozen=True)
class RecipeAugmentation:
    """The augmentation recipes on Keras's own layers (`kcnn.data.keras_augment`); zero is off.
    They apply after the policy's switches, on training batches only."""

    randaugment: int = 0  # RandAugment: this many random ops per image
    randaugment_magnitude: float = 0.5  # ... each of up to this strength (Keras's `factor`)
    augmix: float = 0.0  # AugMix, its ops of up to this strength
    erasing: float = 0.0  # random erasing: the probability an image has a patch erased
    mixup: float = 0.0  # MixUp: Beta(α, α) mixing weights, α this
    cutmix: float = 0.0  # CutMix: Beta(α, α) patch areas, α this

    @property
    def active(self) -> bool:
        return bool(self.randaugment or self.augmix or self.erasing or self.mixes)

    @property
    def mixes(self) -> bool:
        """Whether labels are mixed (so the loss takes soft targets)."""
        return bool(self.mixup or self.cutmix)

    def to_dict(self) -> dict[str, Any]:
        found = dataclasses.asdict(self)
        if not self.randaugment:
            del found["randaugment_magnitude"]
        return found


def recipe_augmentation(
    randaugment: int | None = None,
    randaugment_magnitude: float = 0.5,
    augmix: float | None = None,
    erasing: float | None = None,
    mixup: float | None = None,
    cutmix: float | None = None,
) -> RecipeAugmentation:
    """The recipes from settings where None is off (the `augment_*` settings of a run)."""
    return RecipeAugmentation(
        randaugment or 0,
        randaugment_magnitude,
        augmix or 0.0,
        erasing or 0.0,
        mixup or 0.0,
        cutmix or 0.0,
    )


def augmenter(settings: AugmentSettings, seed: int) -> Callable[[Any, Any, Any], Any] | None:
    """A function `(images, epoch, batch_index) -> images` for float or uint8 batches
    (B, H, W, C) of pixels 0..255; it returns float32 of the same shape, still within 0..255.
    None when `settings` switch nothing on.
    """
    if not settings.active:
        return None
    import keras
    import tensorflow as tf

    def augment(images, epoch, batch_index):
        x = tf.cast(images, tf.float32)
        shape = tf.shape(x)
        count, h, w = shape[0], tf.cast(shape[1], tf.float32), tf.cast(shape[2], tf.float32)
        keys = tf.random.experimental.stateless_split(batch_key(seed, epoch, batch_index), num=7)

        def uniform(i, limit):
            return tf.random.stateless_uniform((count,), keys[i], -limit, limit)

        if settings.crop or settings.translate or settings.rotate:
            # Output pixel (x, y) reads input pixel centre + R⁻¹((x, y) − centre − shift).
            shift_x, shift_y = tf.zeros((count,)), tf.zeros((count,))
            if settings.crop:  # whole-pixel offsets: a padded image cropped back
                # (width, height) are static in kcnn's pipeline, so the margins are Python ints
                pads = [max(1, round(side * settings.crop)) for side in images.shape[2:0:-1]]
                dx, dy = (
                    tf.random.stateless_uniform((count,), keys[i], -pad, pad + 1, tf.int32)
                    for i, pad in enumerate(pads)
                )
                shift_x += tf.cast(dx, tf.float32)
                shift_y += tf.cast(dy, tf.float32)
            if settings.translate:
                shift_x += uniform(2, settings.translate) * w
                shift_y += uniform(3, settings.translate) * h
            angle = uniform(4, settings.rotate * math.pi / 180.0)
            cos, sin = tf.cos(angle), tf.sin(angle)
            cx, cy = (w - 1) / 2, (h - 1) / 2
            transform = tf.stack(
                [
                    cos,
                    -sin,
                    cx - cos * (cx + shift_x) + sin * (cy + shift_y),
                    sin,
                    cos,
                    cy - sin * (cx + shift_x) - cos * (cy + shift_y),
                    tf.zeros((count,)),
                    tf.zeros((count,)),
                ],
                axis=1,
            )
            x = keras.ops.image.affine_transform(
                x, transform, interpolation="bilinear", fill_mode="nearest"
            )
        if settings.flip:
            mirrored = tf.random.stateless_uniform((count,), keys[5]) < 0.5
            x = tf.where(mirrored[:, None, None, None], tf.reverse(x, axis=[2]), x)
        if settings.color:
            factors = tf.random.stateless_uniform(
                (2, count), keys[6], -settings.color, settings.color
            )
            mean = tf.reduce_mean(x, axis=[1, 2, 3], keepdims=True)
            contrast = (1.0 + factors[0])[:, None, None, None]
            brightness = (255.0 * factors[1])[:, None, None, None]
            x = (x - mean) * contrast + mean + brightness
        return tf.clip_by_value(x, 0.0, 255.0)

    return augment


def batch_key(seed: int, epoch, batch_index):
    """The stateless key of one training batch: (seed, epoch, batch index) alone, so a batch's
    augmentation never depends on the order tf.data computes batches in, nor on a resume."""
    import tensorflow as tf

    return tf.stack(
        [
            tf.cast(seed, tf.int64) * 1_000_003 + tf.cast(epoch, tf.int64),
            tf.cast(batch_index, tf.int64),
        ]
    )


def augment_epoch(batches, epoch, augment: Callable | None):
    """One epoch's dataset of (images, labels) batches with each batch augmented by
    (epoch, its index in the epoch); the dataset itself when `augment` is None. An augmenter
    marked `with_labels` (kcnn.data.keras_augment: MixUp and CutMix mix the labels too) takes
    and returns (images, labels)."""
    if augment is None:
        return batches
    import tensorflow as tf

    if getattr(augment, "with_labels", False):
        return batches.enumerate().map(
            lambda index, batch: augment(batch[0], batch[1], epoch, index),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
    return batches.enumerate().map(
        lambda index, batch: (augment(batch[0], epoch, index), batch[1]),
        num_parallel_calls=tf.data.AUTOTUNE,
    )
