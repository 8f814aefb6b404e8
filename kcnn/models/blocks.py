"""The Keras layer that holds a composite block (residual, inception) as one layer.

It lets even a Sequential model hold a block with branches or skips. Its parts and their wiring
come from the block's `BlockSpec`, the same one the Functional form spreads out into its graph.
"""

from __future__ import annotations

import keras

import kcnn.models.composites  # noqa: F401  (registers the block specs a saved Block's config names)
from kcnn.models.layers import BlockSpec, Spec


@keras.saving.register_keras_serializable(package="kcnn")
class Block(keras.layers.Layer):
    def __init__(self, spec: BlockSpec | dict, **kwargs):
        super().__init__(**kwargs)
        self.spec = Spec.from_config(spec) if isinstance(spec, dict) else spec
        # one list of Keras layers per part, in the spec's order (that order is the weight order)
        self.parts = {key: part.to_keras() for key, part in self.spec.named_parts().items()}

    def build(self, input_shape):
        # Create every part's weights here, from shapes alone: Keras infers this layer's symbolic
        # output from compute_output_shape, so neither a Sequential model nor reloading a saved
        # one would otherwise run `call` before the weights are needed.
        def run(key, shape):
            for layer in self.parts[key]:
                if not layer.built:
                    layer.build(shape)
                shape = layer.compute_output_shape(shape)
            return shape

        self.spec.wire(run, tuple(input_shape))

    def _run(self, key, x, training=None):
        for layer in self.parts[key]:
            x = layer(x, training=training)
        return x

    def call(self, inputs, training=None):
        return self.spec.wire(lambda key, x: self._run(key, x, training), inputs)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], *self.spec.output_shape(tuple(input_shape[1:])))

    def leaves(self) -> list[keras.layers.Layer]:
        return [layer for part in self.parts.values() for layer in part]

    def get_config(self):
        return {**super().get_config(), "spec": self.spec.to_config()}
