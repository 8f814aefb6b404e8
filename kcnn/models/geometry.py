"""What a network costs and sees, worked out in plain Python from its specs (no TensorFlow).

`trace(specs, input_shape)` follows an input through every leaf spec — blocks opened up through
their own `wire`, so branches and skips are followed exactly as the Keras layers are connected —
and records for each leaf its input and output shape, parameters, multiply-adds and receptive
field. Each spec says its own parameters, multiply-adds and window (`kcnn.models.layers`); this
module only follows the input through them. `kcnn summary` puts these beside the shapes Keras
reports, and checks one against the other with the formula every seed teaches: a conv or pooling
window of size k, stride s and padding p turns N pixels into ⌊(N + 2p − k)/s⌋ + 1 (⌈…⌉ + 1 for
the ceil-mode pooling of Caffe's GoogLeNet).

Multiply-adds count what the papers count (He et al. 2015, Table 1): one per weight use in convs
and fully connected layers. Pooling, BatchNorm (folded into the conv at inference), activations
and additions are not multiply-adds and count zero.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kcnn import defaults
from kcnn.errors import KcnnError
from kcnn.models.layers import BlockSpec, Shape, Spec
from kcnn.models.windows import Window, conv_out


@dataclass(frozen=True)
class Point:
    """What flows through a trace: a tensor's shape and how much of the image one value sees."""

    shape: Shape
    rf: int | None = (
        1  # receptive field side in input pixels; None once a value sees the whole image
    )
    jump: int = 1  # input pixels between neighbouring values (the product of strides so far)


@dataclass
class Leaf:
    name: str
    spec: Spec
    input_shape: Shape | list[Shape]
    output_shape: Shape
    params: int
    trainable_params: int
    macs: int
    rf: int | None
    input_rf: int | None
    block: str | None = None
    window: Window | None = field(default=None)


def formula(n: int, kernel: int, stride: int, padding: int | str, ceil: bool = False) -> str:
    """The output-size arithmetic written out, e.g. '⌊(227 + 2·0 − 11)/4⌋ + 1 = 55'."""
    out = conv_out(n, kernel, stride, padding, ceil)
    if padding == "same":
        return f"⌈{n}/{stride}⌉ = {out}"
    if not ceil:
        return f"⌊({n} + 2·{padding} − {kernel})/{stride}⌋ + 1 = {out}"
    text = f"⌈({n} + 2·{padding} − {kernel})/{stride}⌉ + 1"
    # Caffe's and PyTorch's rule drops a last window that would start in the right padding
    return (
        f"{text} = {out}"
        if out == -(-(n + 2 * int(padding) - kernel) // stride) + 1
        else (f"{text} − 1 = {out} (no window starts in the padding)")
    )


def _step(spec: Spec, point: Point | list[Point], leaves: list[Leaf], block: str | None) -> Point:
    if isinstance(spec, BlockSpec):
        parts = spec.named_parts()
        return spec.wire(lambda key, p: _step(parts[key], p, leaves, spec.name), point)
    if isinstance(point, list):  # a merge (add, concatenate): it sees what its inputs see
        shapes = [p.shape for p in point]
        out = spec.output_shape(shapes)  # type: ignore[arg-type]
        rfs = [p.rf for p in point]
        rf = None if None in rfs else max(rfs)  # type: ignore[type-var]
        total, trainable = spec.params(shapes)  # type: ignore[arg-type]
        macs = spec.macs(shapes)  # type: ignore[arg-type]
        leaves.append(Leaf(spec.name, spec, shapes, out, total, trainable, macs, rf, rf, block))
        return Point(out, rf, max(p.jump for p in point))
    out = spec.output_shape(point.shape)
    total, trainable = spec.params(point.shape)
    win = spec.window()
    rf, jump = point.rf, point.jump
    if len(out) == 1:
        rf = None  # a flat vector: every value is computed from the whole map
    elif win and rf is not None:
        rf, jump = rf + (win.kernel - 1) * jump, jump * win.stride
    leaves.append(
        Leaf(
            spec.name,
            spec,
            point.shape,
            out,
            total,
            trainable,
            spec.macs(point.shape),
            rf,
            point.rf,
            block,
            win,
        )
    )
    return Point(out, rf, jump)


def trace(specs: list[Spec], input_shape: Shape) -> list[Leaf]:
    """Every leaf spec in execution order, with its geometry; raises ShapeError if the input runs out."""
    leaves: list[Leaf] = []
    point = Point(tuple(input_shape))
    for spec in specs:
        point = _step(spec, point, leaves, None)
    return leaves


@dataclass
class Totals:
    params: int
    trainable_params: int
    macs: int


def totals(leaves: list[Leaf]) -> Totals:
    return Totals(
        sum(x.params for x in leaves),
        sum(x.trainable_params for x in leaves),
        sum(x.macs for x in leaves),
    )


def _count(n: int) -> str:
    """A count of any size for a message: 1,234,567, or about 10^33 (no huge int to text)."""
    return f"{n:,}" if n < 10**15 else f"about 10^{int(n.bit_length() * 0.30103)}"


def _gib(nbytes: int) -> str:
    return f"{nbytes / 1024**3:,.1f} GiB" if nbytes < 10**15 else f"{_count(nbytes)} bytes"


def _size(values: int) -> int:
    total = 1
    for v in values:
        total *= int(v)
    return total


def check_affordable(name: str, specs: list[Spec], input_shape: Shape) -> None:
    """Refuse, before Keras allocates anything, a model no ordinary machine can hold: an input
    side over IMAGE_SIZE_MAX, more than MODEL_PARAMS_MAX parameters, or one image's float32 layer
    outputs over ACTIVATION_BYTES_MAX (all in kcnn/defaults.py). Counts come from the specs."""
    h, w, c = (int(v) for v in input_shape)
    shown = f"{h}×{w}×{c}"
    if max(h, w) > defaults.IMAGE_SIZE_MAX:
        raise KcnnError(
            f"{name}: input {shown} is over {defaults.IMAGE_SIZE_MAX:,} pixels a side "
            "(IMAGE_SIZE_MAX in kcnn/defaults.py); use a smaller input"
        )
    leaves = trace(specs, (h, w, c))
    params = sum(leaf.params for leaf in leaves)
    if params > defaults.MODEL_PARAMS_MAX:
        raise KcnnError(
            f"{name} for a {shown} input and {_count(leaves[-1].output_shape[-1])} classes would "
            f"have {_count(params)} parameters, over the limit of {defaults.MODEL_PARAMS_MAX:,} "
            "(MODEL_PARAMS_MAX in kcnn/defaults.py); use fewer classes or a smaller input"
        )
    values = _size(input_shape) + sum(_size(leaf.output_shape) for leaf in leaves)
    if values * 4 > defaults.ACTIVATION_BYTES_MAX:
        raise KcnnError(
            f"{name} on a {shown} input would hold {_gib(values * 4)} of layer outputs for "
            f"one image, over the limit of {defaults.ACTIVATION_BYTES_MAX / 1024**3:g} GiB "
            "(ACTIVATION_BYTES_MAX in kcnn/defaults.py); use a smaller input"
        )


def by_layer(specs: list[Spec], leaves: list[Leaf]) -> dict[str, dict[str, Any]]:
    """Geometry by Keras layer name: every leaf, every block (its leaves summed), and the
    zero-padding layer a padded spec becomes (no cost; it does not widen what a value sees)."""
    found: dict[str, dict[str, Any]] = {}
    for leaf in leaves:
        found[leaf.name] = {"macs": leaf.macs, "params": leaf.params, "rf": leaf.rf}
        found[f"{leaf.name}_pad"] = {"macs": 0, "params": 0, "rf": leaf.input_rf}
    for spec in specs:
        if isinstance(spec, BlockSpec):
            inside = [x for x in leaves if x.block == spec.name]
            found[spec.name] = {
                "macs": sum(x.macs for x in inside),
                "params": sum(x.params for x in inside),
                "rf": inside[-1].rf,
            }
    return found


def describe_rf(rf: int | None) -> str:
    return "all" if rf is None else f"{rf}×{rf}"


def human(n: float) -> str:
    """3.86G, 2.1M, 950K: a count at a glance."""
    for unit, size in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.2f}{unit}"
    return str(int(n))
