"""The tf.data input pipeline: uint8 images in, batches shaped for the model out.

Everything that changes an image — channel conversion, padding or resizing, scaling — happens
here, per batch, so a data set is never copied at a bigger size in memory (feeding 32×32 images
to a 224×224 backbone costs one batch of 224×224 images at a time, not the whole set).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import tensorflow as tf

from kcnn.data.augment import augment_epoch


def fit_mode(source_hw: tuple[int, int], target_hw: tuple[int, int]) -> str:
    """How a source image is brought to the model's size: 'none', 'pad' or 'resize'.

    Zero-padding keeps every pixel as it is and is what LeNet-5's paper did (MNIST 28×28 into a
    32×32 field), so it is used when the image fits with a margin of at most 1/8 of the target;
    anything else is resized.
    """
    if tuple(source_hw) == tuple(target_hw):
        return "none"
    fits = all(s <= t for s, t in zip(source_hw, target_hw, strict=True))
    small_margin = all((t - s) <= t / 8 for s, t in zip(source_hw, target_hw, strict=True))
    return "pad" if fits and small_margin else "resize"


def prepare_batch_fn(
    source_shape: tuple[int, int, int],
    input_shape: tuple[int, int, int],
    preprocess: Callable[[tf.Tensor], tf.Tensor] | None = None,
) -> Callable[[tf.Tensor], tf.Tensor]:
    """A function from a uint8 batch (B, H, W, C) to the float32 batch the model takes.

    `preprocess` receives float pixels in 0..255 (the contract of keras.applications'
    preprocess_input); without it pixels are scaled to 0..1.
    """
    (h, w, c), (th, tw, tc) = source_shape, input_shape
    mode = fit_mode((h, w), (th, tw))

    def prepare(images: tf.Tensor) -> tf.Tensor:
        x = tf.cast(images, tf.float32)
        if c == 1 and tc == 3:
            x = tf.repeat(x, 3, axis=-1)
        elif c == 3 and tc == 1:
            x = tf.image.rgb_to_grayscale(x)
        if mode == "pad":
            x = tf.image.pad_to_bounding_box(x, (th - h) // 2, (tw - w) // 2, th, tw)
        elif mode == "resize":
            x = tf.image.resize(x, (th, tw), method="bilinear")
        return preprocess(x) if preprocess is not None else x / 255.0

    return prepare


def make_dataset(
    x: np.ndarray,
    y: np.ndarray,
    input_shape: tuple[int, int, int],
    batch_size: int,
    shuffle: bool = False,
    seed: int = 0,
    preprocess: Callable[[tf.Tensor], tf.Tensor] | None = None,
) -> tf.data.Dataset:
    """Batches of (images, labels) ready for `model.fit`/`evaluate`/`predict`."""
    prepare = prepare_batch_fn(tuple(x.shape[1:]), tuple(input_shape), preprocess)
    ds = tf.data.Dataset.from_tensor_slices((x, y.astype(np.int64)))
    if shuffle:
        ds = ds.shuffle(len(y), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size)
    ds = ds.map(
        lambda images, labels: (prepare(images), labels), num_parallel_calls=tf.data.AUTOTUNE
    )
    return ds.prefetch(tf.data.AUTOTUNE)


def steps_per_epoch(count: int, batch_size: int) -> int:
    return -(-count // batch_size)


def epoch_batches(
    x: np.ndarray,
    y: np.ndarray,
    input_shape: tuple[int, int, int] | None,
    batch_size: int,
    seed: int,
    first_epoch: int,
    epochs: int,
    preprocess: Callable[[tf.Tensor], tf.Tensor] | None = None,
    augment: Callable | None = None,
) -> tf.data.Dataset:
    """Training batches for epochs `first_epoch`..`epochs - 1` as one stream, for
    `model.fit(..., steps_per_epoch=steps_per_epoch(len(y), batch_size), initial_epoch=first_epoch)`.

    Each epoch is shuffled by (seed, epoch number) alone, not by how many epochs this process has
    run, so a run resumed at epoch k sees the very batches an uninterrupted run sees from k on.
    `input_shape` None: `x` is already what the model takes (cached features), batched as it is.
    `augment(images, epoch, batch_index)` (kcnn.data.augment) changes each training batch before it
    is brought to the model's size, by (seed, epoch, batch) alone, so resuming stays exact.
    """
    images = tf.data.Dataset.from_tensor_slices((x, y.astype(np.int64)))
    count = len(y)

    def one_epoch(epoch):
        order = images.shuffle(count, seed=seed * 1_000_003 + epoch, reshuffle_each_iteration=False)
        return augment_epoch(order.batch(batch_size), epoch, augment)

    ds = tf.data.Dataset.range(first_epoch, epochs).flat_map(one_epoch)
    if input_shape is not None:
        prepare = prepare_batch_fn(tuple(x.shape[1:]), tuple(input_shape), preprocess)
        ds = ds.map(
            lambda batch, labels: (prepare(batch), labels), num_parallel_calls=tf.data.AUTOTUNE
        )
    return ds.prefetch(tf.data.AUTOTUNE)
