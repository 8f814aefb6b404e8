"""How kcnn asks Keras to train fast on a CPU without changing a single result.

The measurements behind each rule are in benchmarks/RESULTS.md (`make bench`). In short: a small
network such as LeNet-5 spends a large share of each step outside the maths — in the Python loop
of `fit`, its callbacks and the hand-off to TensorFlow — and running several steps per call of the
compiled training function (`steps_per_execution`) removes most of that. The other levers tried
(thread pools, XLA, switching oneDNN off, dropping op determinism, the JAX backend) gave nothing
measurable here or cost accuracy of the record, so kcnn leaves them at TensorFlow's defaults.
The first epoch also traces the training step; creating the training state before it
(`build_training_state`) makes that one trace instead of two.

    model.compile(..., **performance.compile_options(steps_per_epoch(len(y_train), batch_size)))
"""

from __future__ import annotations

# More steps per call buys little once the per-call overhead is spread over this many, and a
# signal (Ctrl-C) is acted on only between calls: 32 small steps are well under a second.
MAX_STEPS_PER_EXECUTION = 32


def steps_per_execution(steps_per_epoch: int, limit: int = MAX_STEPS_PER_EXECUTION) -> int:
    """The largest number of steps up to `limit` that divides an epoch evenly.

    It must divide the epoch: kcnn feeds `fit` one stream of batches for all epochs (each epoch
    shuffled by (seed, epoch) alone), and an execution that ran past the end of an epoch would
    take the next epoch's first batches, changing which batches make up which epoch — and so the
    history, and what a resumed run sees.
    """
    if steps_per_epoch <= 0:
        raise ValueError(f"steps_per_epoch must be positive, got {steps_per_epoch}")
    return max(n for n in range(1, min(limit, steps_per_epoch) + 1) if steps_per_epoch % n == 0)


def compile_options(steps_per_epoch: int) -> dict:
    """Keyword arguments for `model.compile` that speed training up and leave its results as they
    are (same seed, same history, bit for bit)."""
    return {"steps_per_execution": steps_per_execution(steps_per_epoch)}


def build_training_state(model, input_shape) -> None:
    """Create the optimizer's, the loss's and the metrics' variables now, eagerly, on one batch of
    zeros, after `model.compile`. Left to Keras (on one device), they are created while the first
    training step is traced, and a `tf.function` that created variables is traced a second time:
    for LeNet-5 that second trace was 0.55 s of a 1.3 s first epoch. Nothing is trained and
    nothing counted: the zeros go through the model in inference mode (no dropout draw, no
    BatchNorm update) and the metrics are reset. (Under a distribution strategy Keras builds
    this state itself, symbolically.)"""
    import numpy as np

    x = np.zeros((1, *input_shape), dtype="float32")
    y = np.zeros((1,), dtype="int64")
    y_pred = model(x, training=False)
    model.compute_loss(x, y, y_pred, training=False)
    model.compute_metrics(x, y, y_pred, sample_weight=None)
    if not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)
    model.reset_metrics()
