"""Composite blocks: the residual blocks of ResNet and the inception module of GoogLeNet.

Each block is a `BlockSpec` (see `kcnn.models.layers`): its parts are ordinary specs, and `wire(run, x)`
says how they connect. `run` is whatever the caller needs it to be: Keras layers inside the
block's layer (Sequential and subclassed forms), Keras layers spread into the Functional graph
(branches and skips visible there), or plain shapes — which is how a block's output shape,
parameters and multiply-adds are derived (`BlockSpec`), from the same wiring, so they cannot
disagree with the layers.

The merges (`Add`, `Concat`) are parts too, so the Functional graph shows them as real
`keras.layers.Add`/`Concatenate` nodes and all three forms hold exactly the same layers.

Nothing here imports TensorFlow.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kcnn.models.layers import (
    Activation,
    BatchNorm,
    BlockSpec,
    Conv,
    Pointwise,
    Pool,
    Shape,
    ShapeError,
    Spec,
    Weightless,
)


@dataclass(frozen=True)
class Add(Weightless, Pointwise, Spec):
    """Element-wise sum of equally shaped tensors: the residual connection."""

    def to_keras(self) -> list:
        from keras import layers

        return [layers.Add(name=self.name)]

    def output_shape(self, shapes: list[Shape]) -> Shape:  # type: ignore[override]
        if len({tuple(s) for s in shapes}) != 1:
            raise ShapeError(f"{self.name}: cannot add tensors of different shapes {shapes}")
        return tuple(shapes[0])


@dataclass(frozen=True)
class Concat(Weightless, Pointwise, Spec):
    """Concatenation along channels: the inception module's filter concatenation."""

    def to_keras(self) -> list:
        from keras import layers

        return [layers.Concatenate(axis=-1, name=self.name)]

    def output_shape(self, shapes: list[Shape]) -> Shape:  # type: ignore[override]
        if len({tuple(s[:2]) for s in shapes}) != 1:
            raise ShapeError(f"{self.name}: cannot concatenate maps of different sizes {shapes}")
        return (*shapes[0][:2], sum(s[2] for s in shapes))


def _conv_bn(filters: int, kernel: int, stride: int = 1) -> Conv:
    # no bias: the BatchNorm that follows has its own shift (beta), so a bias would be redundant
    return Conv(
        filters, kernel, stride=stride, padding=(kernel - 1) // 2, activation=None, bias=False
    )


@dataclass(frozen=True)
class BasicBlock(BlockSpec):
    """ResNet's basic block (He et al. 2015, Fig. 2 left): two 3×3 convs and a skip.

    `stride` sits in the first 3×3 conv; `projection` adds a 1×1 conv + BN on the skip when the
    shape changes (the paper's option B).
    """

    filters: int
    stride: int = 1
    projection: bool = False

    expansion = 1

    def parts(self) -> dict[str, Spec]:
        parts: dict[str, Spec] = {
            "conv1": _conv_bn(self.filters, 3, self.stride),
            "bn1": BatchNorm(),
            "relu1": Activation("relu"),
            "conv2": _conv_bn(self.filters, 3),
            "bn2": BatchNorm(),
        }
        if self.projection:
            parts |= {"proj": _conv_bn(self.filters, 1, self.stride), "proj_bn": BatchNorm()}
        return parts | {"add": Add(), "relu": Activation("relu")}

    def wire(self, run: Callable[[str, Any], Any], x: Any) -> Any:
        y = run("relu1", run("bn1", run("conv1", x)))
        y = run("bn2", run("conv2", y))
        skip = run("proj_bn", run("proj", x)) if self.projection else x
        return run("relu", run("add", [y, skip]))


@dataclass(frozen=True)
class Bottleneck(BlockSpec):
    """ResNet's bottleneck block (He et al. 2015, Fig. 2 right): 1×1 reduce, 3×3, 1×1 expand ×4.

    As in the paper (and the original Caffe models) the downsampling stride is in the first 1×1
    conv; torchvision's "v1.5" moves it to the 3×3, which costs more multiply-adds (4.1 vs 3.9
    ×10⁹ for ResNet-50) for the same parameters.
    """

    filters: int
    stride: int = 1
    projection: bool = False

    expansion = 4

    def parts(self) -> dict[str, Spec]:
        out = self.filters * self.expansion
        parts: dict[str, Spec] = {
            "conv1": _conv_bn(self.filters, 1, self.stride),
            "bn1": BatchNorm(),
            "relu1": Activation("relu"),
            "conv2": _conv_bn(self.filters, 3),
            "bn2": BatchNorm(),
            "relu2": Activation("relu"),
            "conv3": _conv_bn(out, 1),
            "bn3": BatchNorm(),
        }
        if self.projection:
            parts |= {"proj": _conv_bn(out, 1, self.stride), "proj_bn": BatchNorm()}
        return parts | {"add": Add(), "relu": Activation("relu")}

    def wire(self, run: Callable[[str, Any], Any], x: Any) -> Any:
        y = run("relu1", run("bn1", run("conv1", x)))
        y = run("relu2", run("bn2", run("conv2", y)))
        y = run("bn3", run("conv3", y))
        skip = run("proj_bn", run("proj", x)) if self.projection else x
        return run("relu", run("add", [y, skip]))


@dataclass(frozen=True)
class Inception(BlockSpec):
    """The inception module of GoogLeNet (Szegedy et al. 2014, Fig. 2b), four parallel branches:

    1×1 | 1×1 reduce → 3×3 | 1×1 reduce → 5×5 | 3×3 max pool (stride 1) → 1×1 projection,
    concatenated along channels. Every conv has a ReLU, as in the paper.
    """

    b1: int
    b2_reduce: int
    b2: int
    b3_reduce: int
    b3: int
    pool_proj: int

    def parts(self) -> dict[str, Spec]:
        return {
            "1x1": Conv(self.b1, 1),
            "3x3_reduce": Conv(self.b2_reduce, 1),
            "3x3": Conv(self.b2, 3, padding=1),
            "5x5_reduce": Conv(self.b3_reduce, 1),
            "5x5": Conv(self.b3, 5, padding=2),
            # TensorFlow's 'same' max pooling never lets its padding win, so this is the paper's
            # and torchvision's MaxPool2d(3, stride=1, padding=1, ceil_mode=True) exactly
            "pool": Pool(3, stride=1, padding="same"),
            "pool_proj": Conv(self.pool_proj, 1),
            "concat": Concat(),
        }

    def wire(self, run: Callable[[str, Any], Any], x: Any) -> Any:
        branches = [
            run("1x1", x),
            run("3x3", run("3x3_reduce", x)),
            run("5x5", run("5x5_reduce", x)),
            run("pool_proj", run("pool", x)),
        ]
        return run("concat", branches)
