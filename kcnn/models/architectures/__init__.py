"""The architecture registry: one place that knows every model name.

Each architecture lives in its own module, which declares an `Architecture` (name, paper,
reference figures) and a `describe(classes)` returning its layer specs. The CLI, `kcnn list`,
`kcnn summary` and the tests all ask this registry. Nothing here imports TensorFlow.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from kcnn.errors import KcnnError, unknown
from kcnn.models.layers import ShapeError, Spec, output_shapes

# Modules that declare architectures; each holds `ARCHITECTURES`, a list of `Architecture`s.
MODULES = ["lenet5", "simple_cnn", "mnist_cnn", "alexnet", "zfnet", "vgg", "resnet", "googlenet"]


@dataclass(frozen=True)
class Architecture:
    name: str
    family: str
    year: int
    paper: str
    module: str  # the module whose `describe` builds it
    input_shape: tuple[int, int, int]  # the reference input (the paper's)
    reference_classes: int = 10
    reference_params: int | None = None  # at the reference input and class count
    variant: str | None = None  # passed to describe() by modules that hold several configs
    # Networks that end in global pooling accept inputs down to 1×1 by arithmetic alone; this is
    # the smallest side at which every downsampling stage still sees image pixels.
    min_input: int = 1

    def describe(self, classes: int) -> list[Spec]:
        if classes < 2:
            raise KcnnError(f"--classes must be at least 2, got {classes}")
        module = importlib.import_module(f"kcnn.models.architectures.{self.module}")
        return module.describe(classes, self.variant) if self.variant else module.describe(classes)

    def check_input(self, input_shape: tuple[int, int, int], classes: int) -> None:
        """Refuse an input too small for this network, naming the smallest size that works."""
        try:
            output_shapes(self.describe(classes), input_shape)
            if min(input_shape[:2]) < self.min_input:
                raise ShapeError(f"{self.name} shrinks its input {self.min_input}-fold")
        except ShapeError as e:
            smallest = self.min_size(input_shape[2], classes)
            raise KcnnError(
                f"{self.name} cannot take {input_shape[0]}×{input_shape[1]} images ({e}); "
                f"the smallest input that works is {smallest}×{smallest}: pass --image-size {smallest} or larger"
            ) from None

    def min_size(self, channels: int = 3, classes: int = 10) -> int:
        """The smallest square input side this network accepts."""
        specs = self.describe(classes)
        for side in range(self.min_input, 4096):
            try:
                output_shapes(specs, (side, side, channels))
                return side
            except ShapeError:
                continue
        raise ValueError(f"{self.name}: no input up to 4096×4096 works")


def _load() -> dict[str, Architecture]:
    found: dict[str, Architecture] = {}
    for name in MODULES:
        for arch in importlib.import_module(f"kcnn.models.architectures.{name}").ARCHITECTURES:
            found[arch.name] = arch
    return found


ARCHITECTURES: dict[str, Architecture] = _load()


def get(name: str) -> Architecture:
    if name not in ARCHITECTURES:
        raise unknown("architecture", name, ARCHITECTURES)
    return ARCHITECTURES[name]
