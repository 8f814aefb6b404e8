"""Layer specs: the vocabulary architecture descriptions are written in.

A spec is a small frozen dataclass — `Conv(6, 5, activation="tanh", name="c1")` — that knows
what a layer is, in plain Python (no TensorFlow): the shape it outputs for an input shape
(`output_shape`), its weights (`params`), its multiply-adds (`macs`), its sliding window
(`window`, which is what widens the receptive field), and how to describe itself as a config (so
saved models can be rebuilt). `to_keras` gives the Keras layers it becomes. A spec that does not
say one of these is an error, never a silent zero: the base `Spec` raises.

Composite blocks (residual, inception) subclass `BlockSpec`: their parts are specs too, and one
`wire` function connects them — inside the block's Keras layer (`kcnn.models.blocks`, Sequential
and subclassed forms), spread out into the Functional graph where the branches stay visible, and
here, on plain shapes, to sum a block's parameters and multiply-adds from its parts.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kcnn.models.windows import Window, conv_out

Shape = tuple[int, ...]  # (H, W, C) for feature maps, (N,) after flattening

SPEC_CLASSES: dict[str, type[Spec]] = {}

# BatchNorm as the reference implementations have it: the paper's Caffe ResNets and torchvision's
# use epsilon 1e-5 (Keras's default 1e-3 changes the normalised values of small-variance channels),
# and torchvision's momentum=0.1 weighs the new batch by 0.1, which is Keras's momentum=0.9
# (Keras weighs the running average, PyTorch the batch).
BN_EPSILON = 1e-5
BN_MOMENTUM = 0.9


class ShapeError(ValueError):
    """An input is too small for a layer: its output would have no pixels."""


@dataclass(frozen=True)
class Spec:
    name: str = dataclasses.field(default="", kw_only=True)

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        SPEC_CLASSES[cls.__name__] = cls

    def _missing(self, what: str):
        return NotImplementedError(f"{type(self).__name__} does not say its {what}")

    def to_keras(self) -> list:
        """Fresh Keras layers, in order, named after this spec."""
        raise self._missing("Keras layers")

    def output_shape(self, shape: Shape) -> Shape:
        raise self._missing("output shape")

    def params(self, shape: Shape) -> tuple[int, int]:
        """(total, trainable) weights on an input of `shape`, counted as Keras stores them."""
        raise self._missing("parameters")

    def macs(self, shape: Shape) -> int:
        """Multiply-adds on an input of `shape`: one per weight use, as the papers count them."""
        raise self._missing("multiply-adds")

    def window(self) -> Window | None:
        """The sliding window of a conv or pooling layer; None for a layer whose every output
        value sees only its own position (activations, normalisation, dense on a flat vector)."""
        raise self._missing("window")

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


def _slide(shape: Shape, layer: str, window: Window) -> tuple[int, int]:
    h, w, _ = _spatial(shape, layer)
    oh, ow = (conv_out(n, *window) for n in (h, w))
    if oh < 1 or ow < 1:
        k = window.kernel
        raise ShapeError(f"{layer}: a {h}×{w} input is too small for a {k}×{k} window")
    return oh, ow


class Weightless:
    """Mixin for a layer with no weights and no multiply-adds."""

    def params(self, shape: Shape) -> tuple[int, int]:
        return 0, 0

    def macs(self, shape: Shape) -> int:
        return 0


class Pointwise:
    """Mixin for a layer without a sliding window: it does not widen the receptive field."""

    def window(self) -> None:
        return None


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

    def window(self) -> Window:
        return Window(self.kernel, self.stride, 0 if self.padding == "valid" else self.padding)

    def output_shape(self, shape: Shape) -> Shape:
        return (*_slide(shape, self.name, self.window()), self.filters)

    def params(self, shape: Shape) -> tuple[int, int]:
        n = self.kernel * self.kernel * shape[-1] * self.filters + (
            self.filters if self.bias else 0
        )
        return n, n

    def macs(self, shape: Shape) -> int:
        h, w, _ = self.output_shape(shape)
        return h * w * self.kernel * self.kernel * shape[-1] * self.filters


@dataclass(frozen=True)
class Pool(Weightless, Spec):
    """Max or average pooling; `stride` defaults to the window size.

    Max pooling pads with −∞ as PyTorch does, so padding never wins over a real (even negative)
    value; average pooling pads with zeros that count in the mean (PyTorch's default
    `count_include_pad=True`). `ceil=True` is Caffe's and PyTorch's `ceil_mode`: the window
    count rounds up and the last window may run past the bottom/right edge (max pooling only).
    """

    size: int
    stride: int | None = None
    kind: str = "max"
    padding: int | str = "valid"
    ceil: bool = False

    def __post_init__(self):
        if self.kind not in ("max", "avg"):
            raise ValueError(f"{self.name}: pooling kind is 'max' or 'avg', not {self.kind!r}")
        if self.ceil and (self.kind != "max" or self.padding == "same"):
            raise ValueError(f"{self.name}: ceil mode is for max pooling with explicit padding")
        if isinstance(self.padding, int) and 2 * self.padding > self.size:
            # PyTorch's rule too: a wider pad would give windows that hold nothing but padding
            raise ValueError(f"{self.name}: padding {self.padding} exceeds half the window")

    def window(self) -> Window:
        padding = 0 if self.padding == "valid" else self.padding
        return Window(self.size, self.stride or self.size, padding, self.ceil)

    def to_keras(self) -> list:
        from keras import layers

        kernel, stride, padding, ceil = self.window()
        cls = layers.MaxPooling2D if self.kind == "max" else layers.AveragePooling2D
        pool = cls(
            kernel, strides=stride, padding="same" if padding == "same" else "valid", name=self.name
        )
        if padding == "same" or not (padding or ceil):
            return [pool]
        if self.kind == "avg":
            return [layers.ZeroPadding2D(padding, name=f"{self.name}_pad"), pool]
        from kcnn.models.padding import MaxPoolPadding2D

        return [MaxPoolPadding2D(kernel, stride, padding, ceil, name=f"{self.name}_pad"), pool]

    def output_shape(self, shape: Shape) -> Shape:
        return (*_slide(shape, self.name, self.window()), shape[2])


@dataclass(frozen=True)
class Flatten(Weightless, Pointwise, Spec):
    def to_keras(self) -> list:
        from keras import layers

        return [layers.Flatten(name=self.name)]

    def output_shape(self, shape: Shape) -> Shape:
        return (math.prod(shape),)


@dataclass(frozen=True)
class GlobalAvgPool(Weightless, Pointwise, Spec):
    def to_keras(self) -> list:
        from keras import layers

        return [layers.GlobalAveragePooling2D(name=self.name)]

    def output_shape(self, shape: Shape) -> Shape:
        return (_spatial(shape, self.name)[2],)


@dataclass(frozen=True)
class Dense(Pointwise, Spec):
    units: int
    activation: str | None = "relu"

    def to_keras(self) -> list:
        from keras import layers

        # A softmax classifier computes in float32 even under mixed precision: probabilities and
        # the loss taken from them stay sound (float32 is what it computes in anyway otherwise).
        dtype = "float32" if self.activation == "softmax" else None
        return [layers.Dense(self.units, activation=self.activation, name=self.name, dtype=dtype)]

    def output_shape(self, shape: Shape) -> Shape:
        if len(shape) != 1:
            raise ShapeError(f"{self.name} needs a flat input, got shape {shape}")
        return (self.units,)

    def params(self, shape: Shape) -> tuple[int, int]:
        n = shape[-1] * self.units + self.units
        return n, n

    def macs(self, shape: Shape) -> int:
        return shape[-1] * self.units


@dataclass(frozen=True)
class Dropout(Weightless, Pointwise, Spec):
    rate: float

    def to_keras(self) -> list:
        from keras import layers

        return [layers.Dropout(self.rate, name=self.name)]

    def output_shape(self, shape: Shape) -> Shape:
        return shape


@dataclass(frozen=True)
class BatchNorm(Pointwise, Spec):
    def to_keras(self) -> list:
        from keras import layers

        return [layers.BatchNormalization(epsilon=BN_EPSILON, momentum=BN_MOMENTUM, name=self.name)]

    def output_shape(self, shape: Shape) -> Shape:
        return shape

    def params(self, shape: Shape) -> tuple[int, int]:
        # gamma and beta are learned; the moving mean and variance are statistics Keras stores as weights
        return 4 * shape[-1], 2 * shape[-1]

    def macs(self, shape: Shape) -> int:
        return 0  # folded into the preceding conv at inference


@dataclass(frozen=True)
class Activation(Weightless, Pointwise, Spec):
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
    `wire` serves the block's Keras layer and the Functional graph, so the forms cannot drift,
    and gives the block's output shape, parameters and multiply-adds from its parts'.
    """

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
        raise TypeError(
            f"{self.name}: a block becomes one Keras layer, kcnn.models.blocks.Block; "
            "kcnn.models.blocks.keras_layers(spec) makes the layers of any spec"
        )

    def _walk(self, shape: Shape, visit: Callable[[Spec, Any], None]) -> Shape:
        """Follow `shape` through the wiring, calling `visit(part, input_shape)` on every part."""
        parts = self.named_parts()

        def run(key: str, s: Any) -> Any:
            visit(parts[key], s)
            return parts[key].output_shape(s)

        return tuple(self.wire(run, tuple(shape)))

    def output_shape(self, shape: Shape) -> Shape:
        return self._walk(shape, lambda part, s: None)

    def params(self, shape: Shape) -> tuple[int, int]:
        counts = []
        self._walk(shape, lambda part, s: counts.append(part.params(s)))
        return sum(c[0] for c in counts), sum(c[1] for c in counts)

    def macs(self, shape: Shape) -> int:
        counts = []
        self._walk(shape, lambda part, s: counts.append(part.macs(s)))
        return sum(counts)


def output_shapes(specs: list[Spec], input_shape: Shape) -> list[Shape]:
    """Each spec's output shape for `input_shape`, raising ShapeError where the input runs out."""
    shapes, shape = [], tuple(input_shape)
    for spec in specs:
        shape = spec.output_shape(shape)
        shapes.append(shape)
    return shapes
