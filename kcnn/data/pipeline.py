"""The tf.data input pipeline: uint8 images in, batches shaped for the model out.

Everything that changes an image — channel conversion, padding or resizing, scaling — happens
here, one batch at a time, while the model trains on the batches before it. No set is ever held
prepared: a float32 copy is four times its uint8 images, and keeping the training set's once
held it up to four times at the peak (built in chunks, joined, then copied by its iterator:
benchmarks/NOTES.md) for no measurable speed with oneDNN's kernels. So no set is held at a bigger
size than its uint8 images, and feeding 32×32 images to a 224×224 backbone costs one batch of
224×224 images at a time. The shuffles depend on the seed alone.

An image folder (`kcnn.data.files.FileImages`) is files, not an array: its batches come from
`file_batches`, which decodes each batch's files on a thread pool when the batch is needed (two
batches in flight, two more ready), skipping a file that fails to decode. Its epochs are
ordered by a stateless permutation of (seed, epoch) (`tf.random.experimental.index_shuffle`), so
any batch of any epoch is known without the ones before it: a resume, a multi-worker shard and
a tf.data service worker all see the very batches of an uninterrupted run.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
import tensorflow as tf

from kcnn.data.augment import augment_epoch
from kcnn.data.files import is_files


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


def _image_batches(order: tf.data.Dataset, x, y, input_shape, preprocess):
    """Turn batches of image indices into batches of (prepared images, labels)."""
    labels = _labels(y)
    prepare = prepare_batch_fn(tuple(x.shape[1:]), tuple(input_shape), preprocess)
    rows = _rows(x)
    return order.map(
        lambda i: (prepare(rows(i)), tf.gather(labels, i)),
        num_parallel_calls=tf.data.AUTOTUNE,
    )


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
    if is_files(x):
        return file_batches(
            x, y, input_shape, batch_size, seed if shuffle else None, preprocess=preprocess
        )
    # Shuffling indices gives the very permutation shuffling the images would (a shuffle's order
    # depends on its seed and buffer, never on the elements), without copying any image.
    order = tf.data.Dataset.range(len(y))
    if shuffle:
        order = order.shuffle(len(y), seed=seed, reshuffle_each_iteration=True)
    order = order.batch(batch_size)
    return _ready(_image_batches(order, x, y, input_shape, preprocess))


# Batches prepared ahead of the model. tf.data's autotuning is off: its background thread made
# the end of a `fit` wait 0-8 s (at random, seen with VGG16: up to 40 s over 10 epochs) while
# the training iterator was destroyed, and for batches gathered from memory it has nothing to tune.
PREFETCH_BATCHES = 2


def _ready(dataset: tf.data.Dataset) -> tf.data.Dataset:
    options = tf.data.Options()
    options.autotune.enabled = False
    return dataset.prefetch(PREFETCH_BATCHES).with_options(options)


def _labels(y: np.ndarray) -> tf.Tensor:
    """Class numbers as int64; rows of targets (mixed labels, a teacher's probabilities:
    kcnn.engine.trainer) as float32."""
    return tf.constant(y.astype(np.int64) if y.ndim == 1 else y.astype(np.float32))


def _rows(x: np.ndarray) -> Callable[[tf.Tensor], tf.Tensor]:
    """A function from a batch of indices to those rows of `x`, read from the NumPy array in place.

    For images prepared per batch and for arrays already in the model's form (transfer's cached
    features: 98 KiB an image for VGG16 at 224×224, gigabytes for a big set). `tf.constant(x)`
    would copy the whole array into a tensor, holding three copies at its peak and two after
    (measured: benchmarks/RESULTS.md, Memory); gathering each batch from the array keeps one, at
    the cost of one small copy per batch.
    """
    dtype = tf.as_dtype(x.dtype)

    def rows(i: tf.Tensor) -> tf.Tensor:
        out = tf.numpy_function(lambda idx: x[idx], [i], dtype, stateful=False)
        out.set_shape((None, *x.shape[1:]))
        return out

    return rows


def array_batches(x: np.ndarray, y: np.ndarray, batch_size: int) -> tf.data.Dataset:
    """Batches of (rows of `x`, labels) in their fixed order, for arrays already in the model's
    form (cached features): nothing prepared, nothing copied as a whole."""
    rows, labels = _rows(x), tf.constant(y.astype(np.int64))
    order = tf.data.Dataset.range(len(y)).batch(batch_size)
    return _ready(order.map(lambda i: (rows(i), tf.gather(labels, i))))


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
    if is_files(x):
        return file_batches(
            x, y, input_shape, batch_size, seed, first_epoch, epochs, preprocess, augment
        )
    count = len(y)
    labels = _labels(y)
    rows = _rows(x)

    def one_epoch(epoch):
        order = tf.data.Dataset.range(count)
        order = order.shuffle(count, seed=seed * 1_000_003 + epoch, reshuffle_each_iteration=False)
        order = order.batch(batch_size)
        if augment is None:
            return order
        batches = order.map(lambda i: (rows(i), tf.gather(labels, i)))
        return augment_epoch(batches, epoch, augment)

    stream = tf.data.Dataset.range(first_epoch, epochs).flat_map(one_epoch)
    if augment is not None:
        prepare = prepare_batch_fn(tuple(x.shape[1:]), tuple(input_shape), preprocess)
        stream = stream.map(
            lambda images, y_: (prepare(images), y_), num_parallel_calls=tf.data.AUTOTUNE
        )
    elif input_shape is None:
        stream = stream.map(lambda i: (rows(i), tf.gather(labels, i)))
    else:
        stream = _image_batches(stream, x, y, input_shape, preprocess)
    return _ready(stream)


# Batches of an image folder decoded at once: each batch's files go to the decoding thread pool
# together, and the next batch starts while one is still decoding.
FILE_BATCHES_IN_FLIGHT = 2


def file_batches(
    x,
    y: np.ndarray,
    input_shape: tuple[int, int, int],
    batch_size: int,
    seed: int | None = None,
    first_epoch: int = 0,
    epochs: int = 1,
    preprocess: Callable[[tf.Tensor], tf.Tensor] | None = None,
    augment: Callable | None = None,
    shard: tuple[int, int] = (0, 1),
) -> tf.data.Dataset:
    """Batches of (images, labels) of `FileImages` `x`: epochs `first_epoch`..`epochs - 1`, each
    in the order of a permutation drawn from (seed, epoch) alone (`seed` None: in order, one
    pass, with no sample weights). Each batch's files are decoded when it is needed; a file that
    fails is left out of its batch (and recorded: `kcnn.data.scan.Failures`), its label with it;
    training batches come with sample weights (`_never_empty`). `shard` (k, n): this
    input pipeline decodes only every n-th image of each batch from the k-th (a worker's part of
    the global batch under multi-worker training)."""
    count = len(y)
    steps = steps_per_epoch(count, batch_size)
    labels = tf.constant(y.astype(np.int64))
    prepare = prepare_batch_fn(tuple(x.shape[1:]), tuple(input_shape), preprocess)

    def read(indices):
        pixels, kept = x.read(indices)
        return pixels, kept

    def load(step):
        epoch, batch, indices = batch_indices(step, count, batch_size, seed, shard)
        images, kept = tf.numpy_function(read, [indices], (tf.uint8, tf.bool), stateful=False)
        images.set_shape((None, *x.shape[1:]))
        kept.set_shape((None,))
        batch_labels = tf.boolean_mask(tf.gather(labels, indices), kept)
        if seed is None:  # one pass (validation, test, features): an empty batch is dropped
            return prepare(images), batch_labels
        images, batch_labels, weights = _never_empty(images, batch_labels)
        if augment is not None:
            images = augment(images, epoch, batch)
        return prepare(images), batch_labels, weights

    stream = tf.data.Dataset.range(first_epoch * steps, epochs * steps)
    stream = stream.map(load, num_parallel_calls=FILE_BATCHES_IN_FLIGHT, deterministic=True)
    if seed is None:
        stream = stream.filter(lambda images, batch_labels: tf.size(batch_labels) > 0)
        # A filtered stream's length is unknown until it ends, and Keras then warns that the
        # "input ran out of data" however complete the pass: not a fact worth a user's line.
        warnings.filterwarnings(
            "ignore", message="Your input ran out of data", category=UserWarning
        )
    return _ready(stream)


def _never_empty(images, labels):
    """A training batch with its sample weights: 1 for each image; a batch whose every file
    failed to decode becomes one black image of weight 0, so that each epoch keeps its steps
    (its order, and a resume, stay those of an uninterrupted run) and no model meets an empty
    batch. Its step trains on nothing (an optimizer with momentum still moves)."""
    empty = tf.equal(tf.size(labels), 0)
    shape = tf.concat([[1], tf.shape(images)[1:]], 0)
    images = tf.cond(empty, lambda: tf.zeros(shape, images.dtype), lambda: images)
    weights = tf.cond(empty, lambda: tf.zeros((1,)), lambda: tf.ones(tf.shape(labels), tf.float32))
    labels = tf.cond(empty, lambda: tf.zeros((1,), labels.dtype), lambda: labels)
    return images, labels, weights


def batch_indices(step, count: int, batch_size: int, seed: int | None, shard=(0, 1)):
    """(epoch, batch in the epoch, image indices) of global batch number `step`: the batch's
    positions in the epoch's order, permuted by (seed, epoch) unless `seed` is None, and of
    them only this shard's (every shard[1]-th from shard[0])."""
    steps = steps_per_epoch(count, batch_size)
    step = tf.cast(step, tf.int64)
    epoch, batch = step // steps, step % steps
    start = batch * batch_size
    positions = tf.range(start, tf.minimum(start + batch_size, count), dtype=tf.int64)
    if shard[1] > 1:
        positions = positions[shard[0] :: shard[1]]
    if seed is not None:
        key = tf.stack([tf.constant(seed, tf.int64), epoch])
        positions = tf.random.experimental.index_shuffle(
            positions, key, tf.constant(count - 1, tf.int64)
        )
    return epoch, batch, positions
