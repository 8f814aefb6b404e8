"""One architecture description, three Keras model-building styles.

`build(arch, api, input_shape, classes)` turns the list of specs an architecture module
describes into a Sequential model, a Functional model, or a subclassed `keras.Model`. The three
are the same network: every layer that holds weights has the same name in each form, which is
how `copy_weights` moves weights between them and how their equality is checked.
"""

from __future__ import annotations

import keras
import numpy as np

from kcnn.defaults import APIS
from kcnn.errors import KcnnError, unknown
from kcnn.models.architectures import get as get_architecture
from kcnn.models.blocks import Block, keras_layers
from kcnn.models.layers import BlockSpec, Spec


def _model_name(arch: str, api: str) -> str:
    return f"{arch.replace('-', '_')}_{api}"


def build_sequential(arch: str, specs: list[Spec], input_shape) -> keras.Model:
    layers = [layer for spec in specs for layer in keras_layers(spec)]
    return keras.Sequential(
        [keras.Input(tuple(input_shape)), *layers], name=_model_name(arch, "sequential")
    )


def build_functional(arch: str, specs: list[Spec], input_shape) -> keras.Model:
    inputs = keras.Input(tuple(input_shape), name="image")
    x = inputs
    for spec in specs:
        x = _apply_expanded(spec, x)
    return keras.Model(inputs, x, name=_model_name(arch, "functional"))


def _apply_expanded(spec: Spec, x):
    """Apply a spec on a symbolic tensor; a block is spread out so its branches show in the graph."""
    if isinstance(spec, BlockSpec):
        made = {key: keras_layers(part) for key, part in spec.named_parts().items()}

        def run(key, t):
            for layer in made[key]:
                t = layer(t)
            return t

        return spec.wire(run, x)
    for layer in keras_layers(spec):
        x = layer(x)
    return x


@keras.saving.register_keras_serializable(package="kcnn")
class DescribedCNN(keras.Model):
    """The subclassed form: layers made in `__init__`, connected in `call`."""

    def __init__(self, arch: str, classes: int, input_shape, **kwargs):
        kwargs.setdefault("name", _model_name(arch, "subclassed"))
        super().__init__(**kwargs)
        self.arch, self.classes, self.image_shape = arch, int(classes), tuple(input_shape)
        specs = get_architecture(arch).describe(self.classes)
        self.stages = [layer for spec in specs for layer in keras_layers(spec)]

    def call(self, inputs, training=None):
        x = inputs
        for layer in self.stages:
            x = layer(x, training=training)
        return x

    def get_config(self):
        return {
            "arch": self.arch,
            "classes": self.classes,
            "input_shape": list(self.image_shape),
            "name": self.name,
        }

    @classmethod
    def from_config(cls, config):
        # a saved model's config is read from a file: its size is checked before any allocation
        shape = tuple(int(v) for v in config["input_shape"])
        get_architecture(config["arch"]).check_input(shape, int(config["classes"]))
        model = cls(**config)
        model(np.zeros((1, *model.image_shape), dtype="float32"))
        return model


def build(arch: str, api: str, input_shape, classes: int) -> keras.Model:
    """Build `arch` in the `api` form for images of `input_shape` (H, W, C) and `classes` classes."""
    if api not in APIS:
        raise unknown("API form", api, APIS)
    architecture = get_architecture(arch)
    input_shape = tuple(int(v) for v in input_shape)
    architecture.check_input(input_shape, classes)
    specs = architecture.describe(classes)
    if api == "sequential":
        return build_sequential(arch, specs, input_shape)
    if api == "functional":
        return build_functional(arch, specs, input_shape)
    model = DescribedCNN(arch, classes, input_shape)
    model(np.zeros((1, *input_shape), dtype="float32"))  # create the weights
    return model


def leaves(model: keras.Model) -> dict[str, keras.layers.Layer]:
    """Every leaf layer of a model by name, blocks opened up: the same names in all three forms."""
    found: dict[str, keras.layers.Layer] = {}
    layers = model.stages if isinstance(model, DescribedCNN) else model.layers
    for layer in layers:
        for leaf in layer.leaves() if isinstance(layer, Block) else [layer]:
            if isinstance(leaf, keras.layers.InputLayer):
                continue
            found[leaf.name] = leaf
    return found


def weight_shapes(model: keras.Model) -> dict[str, list[tuple[int, ...]]]:
    """Each weighted leaf layer's weight shapes, by layer name."""
    return {
        name: [tuple(w.shape) for w in layer.weights]
        for name, layer in leaves(model).items()
        if layer.weights
    }


def copy_weights(source: keras.Model, target: keras.Model) -> None:
    """Copy every weight of `source` into the same-named layer of `target`."""
    src, dst = leaves(source), leaves(target)
    src_w = {n for n, layer in src.items() if layer.weights}
    dst_w = {n for n, layer in dst.items() if layer.weights}
    if src_w != dst_w:
        only_src, only_dst = sorted(src_w - dst_w), sorted(dst_w - src_w)
        raise KcnnError(
            f"cannot copy weights: layers only in {source.name}: {only_src or '-'}; "
            f"only in {target.name}: {only_dst or '-'}"
        )
    for name in src_w:
        dst[name].set_weights(src[name].get_weights())
