"""The architecture registry: one place that knows every model name.

Each architecture lives in its own module in this package, which registers it where its layer
specs are written, in the style of timm's `@register_model`:

    @register(Architecture(name="lenet5", family="LeNet", year=1998, ...))
    def describe(classes: int) -> list[Spec]:
        ...

A module that holds several configurations registers them all on one `describe(classes,
variant)` (each `Architecture` names its `variant`). The modules are found by listing this
package, so adding an architecture built from existing specs is one new file. The CLI,
`kcnn list`, `kcnn summary` and the tests all ask this registry. Nothing here imports TensorFlow.
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass

from kcnn.errors import KcnnError, unknown
from kcnn.models import geometry
from kcnn.models.layers import ShapeError, Spec, output_shapes


@dataclass(frozen=True)
class Architecture:
    name: str
    family: str
    year: int
    paper: str
    input_shape: tuple[int, int, int]  # the reference input (the paper's)
    reference_classes: int = 10
    reference_params: int | None = None  # at the reference input and class count
    variant: str | None = None  # passed to describe() by modules that hold several configs
    # Networks that end in global pooling accept inputs down to 1×1 by arithmetic alone; this is
    # the smallest side at which every downsampling stage still sees image pixels.
    min_input: int = 1
    # the registered `describe(classes[, variant])` that writes its specs (set by `register`)
    specs: Callable[..., list[Spec]] | None = dataclasses.field(
        default=None, repr=False, compare=False
    )

    @property
    def module(self) -> str:
        """The module that defines it."""
        return self.specs.__module__ if self.specs else ""

    def describe(self, classes: int) -> list[Spec]:
        if classes < 2:
            raise KcnnError(f"--classes must be at least 2, got {classes}")
        if self.specs is None:
            raise TypeError(f"architecture {self.name!r} was not registered with a describe()")
        return self.specs(classes, self.variant) if self.variant else self.specs(classes)

    def check_input(self, input_shape: tuple[int, int, int], classes: int) -> None:
        """Refuse an input too small for this network, naming the smallest size that works, and
        a model too big for an ordinary machine (`geometry.check_affordable`), before building."""
        specs = self.describe(classes)
        try:
            output_shapes(specs, input_shape)
            if min(input_shape[:2]) < self.min_input:
                raise ShapeError(f"{self.name} shrinks its input {self.min_input}-fold")
        except ShapeError as e:
            smallest = self.min_size(input_shape[2], classes)
            raise KcnnError(
                f"{self.name} cannot take {input_shape[0]}×{input_shape[1]} images ({e}); "
                f"the smallest input that works is {smallest}×{smallest}: pass --image-size {smallest} or larger"
            ) from None
        geometry.check_affordable(self.name, specs, input_shape)

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


REGISTRY: dict[str, Architecture] = {}


def register(*architectures: Architecture) -> Callable:
    """Decorator for a `describe` function: registers each architecture as built by it.

    A name registered twice is a programming error and raises, naming both modules.
    """

    def decorate(describe: Callable[..., list[Spec]]) -> Callable[..., list[Spec]]:
        names = [a.name for a in architectures]
        taken = [n for n in names if n in REGISTRY] + [n for n in set(names) if names.count(n) > 1]
        if taken:
            where = {REGISTRY[n].module for n in taken if n in REGISTRY} | {describe.__module__}
            raise ValueError(
                f"architecture name {sorted(set(taken))} registered twice (in {sorted(where)})"
            )
        for a in architectures:
            REGISTRY[a.name] = dataclasses.replace(a, specs=describe)
        return describe

    return decorate


def _discover() -> None:
    """Import every module of this package (each registers its architectures); list oldest first."""
    for module in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{module.name}")
    ordered = sorted(REGISTRY.items(), key=lambda item: item[1].year)
    REGISTRY.clear()
    REGISTRY.update(ordered)


_discover()
ARCHITECTURES = REGISTRY  # the public name; one dict, so later registrations show up too


def get(name: str) -> Architecture:
    if name not in ARCHITECTURES:
        raise unknown("architecture", name, ARCHITECTURES)
    return ARCHITECTURES[name]
