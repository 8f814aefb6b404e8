"""Layer specs: the vocabulary architecture descriptions are written in.

A spec is a small frozen dataclass — `Conv(6, 5, activation="tanh", name="c1")` — that knows
three things: the Keras layers it becomes (`to_keras`), the shape it outputs for a given input
shape (`output_shape`, plain Python, so sizes and minimum inputs are known without TensorFlow),
and how to describe itself as a config (so saved models can be rebuilt).

Composite blocks (residual, inception) subclass `BlockSpec`: their parts are specs too, and one
`wire` function connects them, used both inside the block's Keras layer (Sequential and
subclassed forms) and spread out into the Functional graph, where the branches stay visible.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

Shape = tuple[int, ...]  # (H, W, C) for feature maps, (N,) after flattening

SPEC_CLASSES: dict[str, type[Spec]] = {}


class ShapeError(ValueError):
    """An input is too small for a layer: its output would have no pixels."""


def conv_out(n: int, kernel: int, stride: int, padding: int | str) -> int:
    """Output size of a convolution or pooling window: ⌊(N + 2p − k)/s⌋ + 1, or ⌈N/s⌉ for 'same'."""
    if padding == "same":
        return math.ceil(n / stride)
    return (n + 2 * int(padding) - kernel) // stride + 1


@dataclass(frozen=True)
class Spec:
    name: str = dataclasses.field(default="", kw_only=True)

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        SPEC_CLASSES[cls.__name__] = cls

    def to_keras(self) -> list:
        """Fresh Keras layers, in order, named after this spec."""
        raise NotImplementedError

    def output_shape(self, shape: Shape) -> Shape:
        raise NotImplementedError

    def to_config(self) -> dict[str, Any]:
        return {"class": type(self).__name__, **dataclasses.asdict(self)}

    @staticmethod
    def from_config(config: dict[str, Any]) -> Spec:
        config = dict(config)
        cls = SPEC_CLASSES[config.pop("class")]
        fields = {f.name: f for f in dataclasses.fields(cls)}
        # JSON turns tuples into lists; frozen specs hold tuples so they stay hashable
        return cls(
            **{k: tuple(v) if isinstance(v, list) else v for k, v in config.items() if k in fields}
        )


def _spatial(shape: Shape, layer: str) -> tuple[int, int, int]:
    if len(shape) != 3:
        raise ShapeError(f"{layer} needs a feature map (H, W, C), got shape {shape}")
    return shape  # type: ignore[return-value]


def _window(
    shape: Shape, layer: str, kernel: int, stride: int, padding: int | str
) -> tuple[int, int]:
    h, w, _ = _spatial(shape, layer)
    oh, ow = conv_out(h, kernel, stride, padding), conv_out(w, kernel, stride, padding)
    if oh < 1 or ow < 1:
        raise ShapeError(f"{layer}: a {h}×{w} input is too small for a {kernel}×{kernel} window")
    return oh, ow


@dataclass(frozen=True)
class Conv(Spec):
    """A 2-D convolution. `padding` is 'same', 'valid', or zero-padding on each side in pixels."""

    filters: int
    kernel: int
    stride: int = 1
    padding: int | str = "valid"
    activation: str | None = "relu"
    bias: bool = True

    def _keras_padding(self) -> tuple[int, str]:
        if self.padding in ("same", "valid"):
            return 0, self.padding  # type: ignore[return-value]
        p = int(self.padding)
        if p == 0:
            return 0, "valid"
        if self.stride == 1 and 2 * p == self.kernel - 1:
            return 0, "same"  # identical result, one layer fewer
        return p, "valid"

    def to_keras(self) -> list:
        from keras import layers

        pad, mode = self._keras_padding()
        conv = layers.Conv2D(
            self.filters,
            self.kernel,
            strides=self.stride,
            padding=mode,
            activation=self.activation,
            use_bias=self.bias,
            name=self.name,
        )
        return ([layers.ZeroPadding2D(pad, name=f"{self.name}_pad")] if pad else []) + [conv]

    def output_shape(self, shape: Shape) -> Shape:
        pad = 0 if self.padding == "valid" else self.padding
        return (*_window(shape, self.name, self.kernel, self.stride, pad), self.filters)


@dataclass(frozen=True)
class Pool(Spec):
    """Max or average pooling; `stride` defaults to the window size."""

    size: int
    stride: int | None = None
    kind: str = "max"
    padding: int | str = "valid"

    def to_keras(self) -> list:
        from keras import layers

        cls = layers.MaxPooling2D if self.kind == "max" else layers.AveragePooling2D
        pad = self.padding
        out = []
        if isinstance(pad, int) and pad > 0:
            out.append(layers.ZeroPadding2D(pad, name=f"{self.name}_pad"))
        out.append(
            cls(
                self.size,
                strides=self.stride or self.size,
                padding="same" if pad == "same" else "valid",
                name=self.name,
            )
        )
        return out

    def output_shape(self, shape: Shape) -> Shape:
        pad = 0 if self.padding == "valid" else self.padding
        return (*_window(shape, self.name, self.size, self.stride or self.size, pad), shape[2])


@dataclass(frozen=True)
class Flatten(Spec):
    def to_keras(self) -> list:
        from keras import layers

        return [layers.Flatten(name=self.name)]

    def output_shape(self, shape: Shape) -> Shape:
        return (math.prod(shape),)


@dataclass(frozen=True)
class GlobalAvgPool(Spec):
    def to_keras(self) -> list:
        from keras import layers

        return [layers.GlobalAveragePooling2D(name=self.name)]

    def output_shape(self, shape: Shape) -> Shape:
        return (_spatial(shape, self.name)[2],)


@dataclass(frozen=True)
class Dense(Spec):
    units: int
    activation: str | None = "relu"

    def to_keras(self) -> list:
        from keras import layers

        return [layers.Dense(self.units, activation=self.activation, name=self.name)]

    def output_shape(self, shape: Shape) -> Shape:
        if len(shape) != 1:
            raise ShapeError(f"{self.name} needs a flat input, got shape {shape}")
        return (self.units,)


@dataclass(frozen=True)
class Dropout(Spec):
    rate: float

    def to_keras(self) -> list:
        from keras import layers

        return [layers.Dropout(self.rate, name=self.name)]

    def output_shape(self, shape: Shape) -> Shape:
        return shape


@dataclass(frozen=True)
class BatchNorm(Spec):
    def to_keras(self) -> list:
        from keras import layers

        return [layers.BatchNormalization(name=self.name)]

    def output_shape(self, shape: Shape) -> Shape:
        return shape


@dataclass(frozen=True)
class Activation(Spec):
    function: str = "relu"

    def to_keras(self) -> list:
        from keras import layers

        return [layers.Activation(self.function, name=self.name)]

    def output_shape(self, shape: Shape) -> Shape:
        return shape


@dataclass(frozen=True)
class BlockSpec(Spec):
    """A composite block: named parts (specs) and a `wire` that connects them.

    Subclasses define `parts()` — an ordered dict of part name → spec, with names unique within
    the block — and `wire(run, x)`, where `run(part_name, tensor)` applies one part. The same
    `wire` serves the block's Keras layer and the Functional graph, so the forms cannot drift.
    """

    composite: ClassVar[bool] = True

    def parts(self) -> dict[str, Spec]:
        raise NotImplementedError

    def wire(self, run: Callable[[str, Any], Any], x: Any) -> Any:
        raise NotImplementedError

    def named_parts(self) -> dict[str, Spec]:
        """Parts renamed `<block>_<part>`, so every leaf layer name is unique in the model."""
        return {
            key: dataclasses.replace(spec, name=f"{self.name}_{key}")
            for key, spec in self.parts().items()
        }

    def to_keras(self) -> list:
        from kcnn.models.blocks import Block

        return [Block(self, name=self.name)]


def output_shapes(specs: list[Spec], input_shape: Shape) -> list[Shape]:
    """Each spec's output shape for `input_shape`, raising ShapeError where the input runs out."""
    shapes, shape = [], tuple(input_shape)
    for spec in specs:
        shape = spec.output_shape(shape)
        shapes.append(shape)
    return shapes
