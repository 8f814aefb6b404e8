"""The augmentation recipes built on Keras's own layers — RandAugment, AugMix and random erasing
on each image, MixUp and CutMix across a batch — made a function of (seed, epoch, batch) alone.

Why keyed: a Keras preprocessing layer draws its randomness from a `SeedGenerator`, a variable
that advances with every call. In a parallel tf.data map its advance depends on which thread ran
first, and a resumed run would start it elsewhere: neither same-batch-same-pixels nor an exact
resume would hold. Every draw of these layers goes through `SeedGenerator.next()` (the layers call
`self._get_seed_generator()` and hand the generator to `keras.random.*`), so each layer here gets
a `KeyedSeedGenerator`: no state at all, its n-th draw in a call is `stateless_fold_in(key, n)`
of the batch's key. tf.data traces the map function once; the graph it makes computes every
draw from the key tensor it is fed, so the same (seed, epoch, batch) gives the same pixels
whichever thread computes it and whichever process resumes the run.

Two Keras layers needed more than a generator, and are subclassed (`KeyedRandAugment`,
`KeyedAugMix`):

- `keras.layers.RandAugment` draws which ops to apply once per batch (`layer_idxes` of shape
  (num_ops,)): every image of a batch got the same ops. The paper, and timm, choose per image;
  here each image draws its own ops (the ops' magnitudes were already per image).
- `keras.layers.AugMix` picks each chain's ops with Python's `random.choice` while the graph is
  traced: under tf.data that is one choice for the whole of training, and a different one after
  a resume. Here the ops, like the mixing weights, are drawn per image from the key. Its ops are
  the paper's (Keras's `all_ops=False`: no brightness, colour, contrast or sharpness, which
  overlap the corruptions AugMix is measured against).

Images are float pixels 0..255 in and out, at the data set's own size (before the pipeline brings
them to the model's input), like `kcnn.data.augment`. MixUp and CutMix also mix the labels, which
are therefore dense: one-hot rows (and a teacher's probabilities after them, `kcnn.engine.recipes`).
Importing this module imports Keras: only the training pipeline does.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import keras
import tensorflow as tf

from kcnn.data.augment import batch_key

# Each recipe draws from its own stream of the batch's key.
_STREAMS = {"randaugment": 11, "augmix": 12, "erasing": 13, "mixing": 14}


class KeyedSeedGenerator(keras.random.SeedGenerator):
    """A seed generator without state: inside `keyed(key)`, its n-th draw is the key folded
    with n. Drawing outside `keyed` is an engine bug (the draw would not be reproducible)."""

    def __init__(self, name: str = "keyed_seed_generator"):
        super().__init__(seed=0, name=name)
        self._key = None
        self._draws = 0

    @contextlib.contextmanager
    def keyed(self, key) -> Iterator[None]:
        self._key, self._draws = key, 0
        try:
            yield
        finally:
            self._key = None

    def next(self, ordered=True):
        if self._key is None:
            raise RuntimeError("a keyed augmentation layer drew outside `keyed(key)`")
        self._draws += 1
        return tf.random.experimental.stateless_fold_in(self._key, self._draws)


def keyed(layer) -> KeyedSeedGenerator:
    """Give `layer` and every layer inside it one `KeyedSeedGenerator`; returns it."""
    generator = KeyedSeedGenerator(name=f"{layer.name}_keyed")
    for inner in [layer, *layer._flatten_layers(include_self=False)]:
        if hasattr(inner, "generator"):
            inner.generator = generator
    return generator


class KeyedRandAugment(keras.layers.RandAugment):
    """Keras's RandAugment with each image's ops drawn for that image (see the module docstring)."""

    def get_random_transformation(self, data, training=True, seed=None):
        transformation = super().get_random_transformation(data, training, seed)
        if transformation is None:
            return None
        images = data["images"] if isinstance(data, dict) else data
        count = tf.shape(images)[0]
        transformation["layer_idxes"] = keras.random.randint(
            (self.num_ops, count), 0, len(self._AUGMENT_LAYERS), seed=self.generator
        )
        return transformation

    def transform_images(self, images, transformation, training=True):
        if not training:
            return tf.cast(images, self.compute_dtype)
        images = tf.cast(images, self.compute_dtype)
        chosen = transformation["layer_idxes"]
        for i in range(self.num_ops):
            out = images
            for index, (name, value) in enumerate(transformation["transforms"].items()):
                layer = getattr(self, name)
                mine = (chosen[i] == index)[:, None, None, None]
                out = tf.where(mine, tf.cast(layer.transform_images(images, value), out.dtype), out)
            images = out
        return tf.cast(images, self.compute_dtype)


class KeyedAugMix(keras.layers.AugMix):
    """Keras's AugMix with every chain's ops, the chains' weights and the final mix drawn per
    image from the key (see the module docstring). A chain step may also do nothing, as in
    Keras's own AugMix, which gives chains of 0 to `chain_depth` ops."""

    def get_random_transformation(self, data, training=True, seed=None):
        if not training:
            return None
        images = data["images"] if isinstance(data, dict) else data
        count = tf.shape(images)[0]
        gamma = keras.random.gamma((count, self.num_chains), self.alpha, seed=self.generator)
        weights = gamma / tf.reduce_sum(gamma, axis=-1, keepdims=True)
        mix = keras.random.beta((count,), self.alpha, self.alpha, seed=self.generator)
        chains = []
        for _ in range(self.num_chains):
            steps = []
            for _ in range(self.chain_depth):
                steps.append(
                    {
                        "index": keras.random.randint(
                            (count,), 0, len(self._augment_layers) + 1, seed=self.generator
                        ),
                        "transforms": {
                            name: getattr(self, name).get_random_transformation(
                                data, seed=self.generator
                            )
                            for name in self._augment_layers
                        },
                    }
                )
            chains.append(steps)
        return {"chain_mixing_weights": weights, "weight_sample": mix, "chains": chains}

    def transform_images(self, images, transformation, training=True):
        images = tf.cast(images, self.compute_dtype)
        if not training:
            return images
        weights = transformation["chain_mixing_weights"]
        mixed = tf.zeros_like(images)
        for c, steps in enumerate(transformation["chains"]):
            chain = images
            for step in steps:
                out = chain  # the last index: this step does nothing
                for index, name in enumerate(self._augment_layers):
                    layer = getattr(self, name)
                    changed = tf.cast(
                        layer.transform_images(chain, step["transforms"][name]), out.dtype
                    )
                    out = tf.where((step["index"] == index)[:, None, None, None], changed, out)
                chain = out
            mixed += chain * weights[:, c, None, None, None]
        keep = transformation["weight_sample"][:, None, None, None]
        images = keep * images + (1 - keep) * mixed
        return tf.clip_by_value(images, *map(float, self.value_range))


def image_recipes(settings) -> list[tuple[str, Any]]:
    """The per-image Keras layers `settings` (a `RecipeAugmentation`) switches on, in the order
    they apply: RandAugment or AugMix, then random erasing (last, as timm does: it erases what
    the others made)."""
    layers: list[tuple[str, Any]] = []
    if settings.randaugment:
        layers.append(
            (
                "randaugment",
                KeyedRandAugment(
                    value_range=(0, 255),
                    num_ops=settings.randaugment,
                    factor=settings.randaugment_magnitude,
                ),
            )
        )
    if settings.augmix:
        layers.append(
            ("augmix", KeyedAugMix(value_range=(0, 255), factor=settings.augmix, all_ops=False))
        )
    if settings.erasing:
        layers.append(
            (
                "erasing",
                keras.layers.RandomErasing(
                    factor=(settings.erasing, settings.erasing), value_range=(0, 255)
                ),
            )
        )
    return layers


def mixer(settings) -> Callable | None:
    """`(images, labels, key) -> (images, labels)` mixing a batch and its dense labels with
    MixUp, CutMix, or — both switched on — one of them per batch, half the batches each (timm's
    default switch); None when neither is on."""
    mixers = []
    if settings.mixup:
        mixers.append(keras.layers.MixUp(alpha=settings.mixup))
    if settings.cutmix:
        mixers.append(keras.layers.CutMix(factor=settings.cutmix))
    if not mixers:
        return None
    generators = [keyed(m) for m in mixers]

    def apply(which: int, images, labels, key):
        with generators[which].keyed(key):
            out = mixers[which]({"images": images, "labels": labels})
        return tf.cast(out["images"], tf.float32), tf.cast(out["labels"], tf.float32)

    def mix(images, labels, key):
        key = tf.random.experimental.stateless_fold_in(key, _STREAMS["mixing"])
        if len(mixers) == 1:
            return apply(0, images, labels, key)
        first = tf.random.stateless_uniform((), key) < 0.5
        return tf.cond(
            first,
            lambda: apply(0, images, labels, tf.random.experimental.stateless_fold_in(key, 1)),
            lambda: apply(1, images, labels, tf.random.experimental.stateless_fold_in(key, 2)),
        )

    return mix


def batch_augmenter(settings, seed: int, basic: Callable | None = None):
    """`(images, labels, epoch, batch_index) -> (images, labels)`: the policy's augmentation
    (`basic`, kcnn.data.augment), then the Keras layers `settings` switch on, each keyed by
    (seed, epoch, batch). None when nothing is on."""
    layers = image_recipes(settings)
    mix = mixer(settings)
    if basic is None and not layers and mix is None:
        return None
    generators = [keyed(layer) for _, layer in layers]

    def augment(images, labels, epoch, batch_index):
        x = basic(images, epoch, batch_index) if basic is not None else tf.cast(images, tf.float32)
        key = batch_key(seed, epoch, batch_index)
        for (name, layer), generator in zip(layers, generators, strict=True):
            with generator.keyed(tf.random.experimental.stateless_fold_in(key, _STREAMS[name])):
                x = tf.cast(layer(x, training=True), tf.float32)
        x = tf.clip_by_value(x, 0.0, 255.0)
        if mix is not None:
            x, labels = mix(x, labels, key)
        return x, labels

    augment.with_labels = True  # augment_epoch hands it the labels too
    return augment
