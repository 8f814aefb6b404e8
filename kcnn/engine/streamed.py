"""What the trainer does for an image folder, whose images are files read when a batch needs them
(kcnn.data.files): its training stream past one machine, and stopping a run whose files fail to
decode past the share kcnn skips (exit 2, resumable)."""

from __future__ import annotations

from kcnn.data.prepared import Prepared


class TooManyBadImages(Exception):
    """More of an image folder's files failed to decode than kcnn skips: the run stops, resumable."""


def check_images(prepared: Prepared | None) -> None:
    """Raise `TooManyBadImages` once the files that failed to decode pass the share kcnn skips."""
    why = prepared.failures_over() if prepared is not None else None
    if why is not None:
        raise TooManyBadImages(why)


def watch(prepared: Prepared):
    """A Keras callback that stops `fit` after a batch once the image files that failed to
    decode pass `defaults.BAD_IMAGES_MAX_SHARE` (the pipeline skips them and counts)."""
    import keras

    class Watch(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            check_images(prepared)

        def on_test_batch_end(self, batch, logs=None):
            check_images(prepared)

    return Watch()


def skipped_in(metrics_text: str):
    """The image files a run's metrics.json lists as skipped (None: none, or not readable)."""
    import json

    try:
        record = json.loads(metrics_text)
    except (ValueError, TypeError):
        return None
    return record.get("skipped_images") if isinstance(record, dict) else None


def training_stream(trainer, epochs: int):
    """An image folder's training batches read by the workers of a tf.data service
    (--data-service), or under multi-worker training each worker decoding only its own part of
    every global batch (kcnn.data.streams); None: the trainer's own pipeline reads them."""
    from kcnn.data import streams

    p, c = trainer.prepared, trainer.config
    args = (p.parts.x_train, p.parts.y_train, p.input_shape, c.batch_size, c.seed)
    rest = (len(trainer.rows), epochs, trainer.preprocess, trainer.augmenter())
    if c.data_service:
        trainer.records.add_facts(input_service=streams.service_record(c.data_service))
        return trainer._distributed(streams.through_service(c.data_service, *args, *rest))
    if trainer.dist is not None and trainer.dist.kind == "multi-worker":
        return streams.sharded(trainer.dist.strategy, *args, *rest)
    return None
