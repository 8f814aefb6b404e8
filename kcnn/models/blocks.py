"""The Keras layer that holds a composite block (residual, inception) as one layer.

It lets even a Sequential model hold a block with branches or skips. Its parts and their wiring
come from the block's `BlockSpec`, the same one the Functional form spreads out into its graph.
`keras_layers(spec)` is where a spec becomes Keras layers: a block this one layer, any other
spec its own `to_keras()`. Importing this module registers every Keras layer kcnn defines, so
saved models that hold them reload.
"""

from __future__ import annotations

import keras

import kcnn.models.composites  # noqa: F401  (registers the block specs a saved Block's config names)
import kcnn.models.padding  # noqa: F401  (registers the max-pooling padding layer for reloading)
from kcnn.models.layers import BlockSpec, Spec


def keras_layers(spec: Spec) -> list[keras.layers.Layer]:
    """Fresh Keras layers for `spec`, in order: a block is one `Block` layer."""
    return [Block(spec, name=spec.name)] if isinstance(spec, BlockSpec) else spec.to_keras()


@keras.saving.register_keras_serializable(package="kcnn")
class Block(keras.layers.Layer):
    def __init__(self, spec: BlockSpec | dict, **kwargs):
        super().__init__(**kwargs)
        self.spec = Spec.from_config(spec) if isinstance(spec, dict) else spec
        # one list of Keras layers per part, in the spec's order (that order is the weight order)
        self.parts = {key: keras_layers(part) for key, part in self.spec.named_parts().items()}

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
