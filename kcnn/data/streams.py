"""An image folder's training batches past one machine's decoding: multi-worker shards and a
tf.data service.

- `sharded`: under `--strategy multi-worker` each worker's input pipeline decodes only its own
  part of every global batch (every n-th image of it, n the replicas of the cluster), through
  `strategy.distribute_datasets_from_function`: no worker decodes a file another one uses.
- `through_service`: `--data-service grpc://HOST:PORT` hands the reading and decoding to the
  workers of a tf.data service dispatcher (`tf.data.experimental.service`), dynamically sharded
  by batch; they send back uint8 batches at the model's size, and this process augments and
  prepares them. The service's workers run the dataset's graph in their own processes, so that
  graph holds no Python: files are decoded by TensorFlow's own ops (`native_decoder`: JPEG at
  its DCT scale, PNG 8- or 16-bit, GIF, BMP), EXIF orientation comes from the scan, and a file
  that fails to decode is dropped by the worker (`ignore_errors`, which logs it there). Other
  formats (TIFF, WebP, ...) are refused before training, naming the first such file.

With one service worker the batches arrive in the order of a local run; with several, each
epoch's batches are the same, but may arrive in another order (whichever worker is first).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import tensorflow as tf

from kcnn.data.pipeline import (
    _never_empty,
    _ready,
    batch_indices,
    file_batches,
    prepare_batch_fn,
    steps_per_epoch,
)
from kcnn.errors import KcnnError

NATIVE = ("JPEG", "PNG", "GIF", "BMP")  # what TensorFlow's own ops decode
SCALES = (1, 2, 4, 8)  # JPEG DCT scales, as tf.io.decode_jpeg's `ratio`


def sharded(
    strategy, x, y, input_shape, batch_size, seed, first_epoch, epochs, preprocess, augment
):
    """Training batches under a multi-worker strategy, each replica's input pipeline decoding
    only its share of every global batch (see the module docstring)."""

    def per_pipeline(context: tf.distribute.InputContext) -> tf.data.Dataset:
        here = max(1, context.num_replicas_in_sync // context.num_input_pipelines)
        total = context.num_input_pipelines * here
        parts = [
            file_batches(
                x,
                y,
                input_shape,
                batch_size,
                seed,
                first_epoch,
                epochs,
                preprocess,
                augment,
                shard=(context.input_pipeline_id * here + r, total),
            )
            for r in range(here)
        ]
        if here == 1:
            return parts[0]
        return tf.data.Dataset.choose_from_datasets(parts, tf.data.Dataset.range(here).repeat())

    return strategy.distribute_datasets_from_function(per_pipeline)


def service_record(url: str) -> dict[str, Any]:
    return {"dispatcher": url, "decoder": "TensorFlow ops (tf.io.decode_jpeg/decode_image)"}


def _codes(x) -> tuple[list[int], list[int]]:
    """Per image: which decoder branch (a JPEG scale, or decode_image) and its EXIF
    orientation; refuses a file TensorFlow's own ops cannot decode."""
    width, height = x.size
    branches, orientations = [], []
    for row in x.rows:
        header = x.folder.headers[row]
        if header.format not in NATIVE and header.format != "MPO":
            raise KcnnError(
                f"--data-service decodes JPEG, PNG, GIF and BMP files with TensorFlow's own ops; "
                f"{x.folder.files[row]} is {header.format}: convert it, or train without "
                "--data-service"
            )
        if header.format in ("JPEG", "MPO"):
            stored = header.size[::-1] if header.orientation in (5, 6, 7, 8) else header.size
            fits = [s for s in SCALES if stored[0] // s >= width and stored[1] // s >= height]
            branches.append(SCALES.index(max(fits)) if fits else 0)
        else:
            branches.append(len(SCALES))
        orientations.append(header.orientation if 1 <= header.orientation <= 8 else 1)
    return branches, orientations


def native_decoder(mode: str, size: tuple[int, int]) -> Callable:
    """`decode(path, branch, orientation)`: uint8 (height, width, channels) from TensorFlow's own
    ops, turned upright by the EXIF orientation and resized (bilinear, antialiased)."""
    channels = 3 if mode == "RGB" else 1
    width, height = size

    def upright(image, orientation):
        turns = [
            lambda: image,
            lambda: image,
            lambda: tf.image.flip_left_right(image),
            lambda: tf.image.rot90(image, 2),
            lambda: tf.image.flip_up_down(image),
            lambda: tf.image.transpose(image),
            lambda: tf.image.rot90(image, 3),
            lambda: tf.image.rot90(tf.image.transpose(image), 2),
            lambda: tf.image.rot90(image, 1),
        ]
        return tf.switch_case(tf.cast(orientation, tf.int32), turns)

    def decode(path, branch, orientation):
        raw = tf.io.read_file(path)

        def jpeg(scale):
            return lambda: tf.io.decode_jpeg(raw, channels=channels, ratio=scale)

        def other():
            image = tf.io.decode_image(raw, channels=channels, expand_animations=False)
            return tf.reshape(image, tf.concat([tf.shape(image)[:2], [channels]], 0))

        image = tf.switch_case(tf.cast(branch, tf.int32), [*(jpeg(s) for s in SCALES), other])
        image = upright(image, orientation)
        image.set_shape((None, None, channels))
        resized = tf.image.resize(image, (height, width), method="bilinear", antialias=True)
        return tf.cast(tf.clip_by_value(tf.round(resized), 0, 255), tf.uint8)

    return decode


def native_batches(x, y, batch_size: int, seed: int | None, first_epoch: int, epochs: int):
    """(uint8 images, labels, epoch, batch) of each global batch, read and decoded by
    TensorFlow's own ops only (a graph a tf.data service worker runs without Python); a file
    that fails to decode is dropped from its batch."""
    branches, orientations = _codes(x)
    paths = tf.constant([x.folder.files[r] for r in x.rows])
    codes = tf.constant(np.stack([branches, orientations], axis=1), dtype=tf.int32)
    labels = tf.constant(np.asarray(y, dtype=np.int64))
    count = len(y)
    steps = steps_per_epoch(count, batch_size)
    decode = native_decoder(x.mode, x.size)

    def one_batch(step):
        epoch, batch, indices = batch_indices(step, count, batch_size, seed)
        items = tf.data.Dataset.from_tensor_slices(
            (tf.gather(paths, indices), tf.gather(codes, indices), tf.gather(labels, indices))
        )
        images = items.map(
            lambda p, c, label: (decode(p, c[0], c[1]), label),
            num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=True,
        ).ignore_errors()
        return images.batch(batch_size).map(lambda i, label: (i, label, epoch, batch))

    return tf.data.Dataset.range(first_epoch * steps, epochs * steps).flat_map(one_batch)


def through_service(
    url, x, y, input_shape, batch_size, seed, first_epoch, epochs, preprocess, augment
):
    """Training batches read and decoded by the workers of the tf.data service at `url`."""
    source = native_batches(x, y, batch_size, seed, first_epoch, epochs)
    remote = source.apply(
        tf.data.experimental.service.distribute(
            processing_mode=tf.data.experimental.service.ShardingPolicy.DYNAMIC,
            service=url,  # no job name: each iterator its own job, none sharing another's batches
        )
    )
    prepare = prepare_batch_fn(tuple(x.shape[1:]), tuple(input_shape), preprocess)

    def finish(images, labels, epoch, batch):
        images.set_shape((None, *x.shape[1:]))
        images, labels, weights = _never_empty(images, labels)
        if augment is not None:
            images = augment(images, epoch, batch)
        return prepare(images), labels, weights

    return _ready(remote.map(finish, num_parallel_calls=2, deterministic=True))
