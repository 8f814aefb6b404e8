"""The features a classifier decides from: what its last Dense layer takes in.

kcnn.data.nearest measures how far a new image is from the training images in this space (the
deep nearest-neighbour check of Sun et al., 2022). Every model kcnn trains ends in a Dense layer:
for a graph model (Sequential, Functional, a transfer backbone and its head) the features are a
second model sharing its layers and weights; for the subclassed form (`forms.DescribedCNN`) they
are its stages run up to the last Dense. A model of neither kind has none (None).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras


def _last_dense(layers: list[Any]) -> int | None:
    dense = [i for i, layer in enumerate(layers) if isinstance(layer, keras.layers.Dense)]
    return dense[-1] if dense else None


def extractor(model) -> Callable[[Any], Any] | None:
    """A function of a batch of model inputs (float, as the model takes them) giving the input of
    the model's last Dense layer, flattened to (batch, width), in inference mode; None when the
    model has no Dense layer kcnn can reach. One traced call, as Keras's own predict is: a Keras
    graph called eagerly keeps every layer's output of the batch until the call ends (2 GB more
    at the peak for MobileNetV2 on 128 images of 96×96, measured)."""
    import tensorflow as tf

    found = _features(model)
    if found is None:
        return None
    return tf.function(
        lambda x: keras.ops.reshape(found(x), (keras.ops.shape(x)[0], -1)), reduce_retracing=True
    )


def _features(model) -> Callable[[Any], Any] | None:
    from kcnn.models.forms import DescribedCNN

    if isinstance(model, DescribedCNN):
        last = _last_dense(model.stages)
        if last is None:
            return None
        stages = model.stages[:last]

        def run(x):
            for layer in stages:
                x = layer(x, training=False)
            return x

        return run
    return _graph_extractor(model)


def _graph_extractor(model) -> Callable[[Any], Any] | None:
    """A graph model's features: a second model sharing its layers. Nested graph models (a
    transfer backbone) stay closed: a classifier's last Dense is the head's, at the top level."""
    layers = list(getattr(model, "layers", []))
    last = _last_dense(layers)
    if last is None:
        return None
    try:
        inputs = model.inputs[0] if len(model.inputs) == 1 else model.inputs
        features = keras.Model(inputs, layers[last].input)
    except (AttributeError, ValueError, TypeError):  # not a graph of layers (a subclassed model)
        return None
    return lambda x: features(x, training=False)
