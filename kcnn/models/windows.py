"""Window arithmetic: how a conv or pooling window of size k, stride s and padding p maps N input
pixels to output pixels, in floor mode (Keras, TensorFlow) and ceil mode (Caffe, and PyTorch's
`ceil_mode=True`). Plain Python, shared by the specs (`kcnn.models.layers`) and the Keras padding
layer ceil mode needs (`kcnn.models.padding`), so both follow one rule.
"""

from __future__ import annotations

import math
from typing import NamedTuple


class Window(NamedTuple):
    """A sliding window: kernel side, stride, padding (pixels per side, or 'same'), rounding."""

    kernel: int
    stride: int
    padding: int | str
    ceil: bool = False


def conv_out(n: int, kernel: int, stride: int, padding: int | str, ceil: bool = False) -> int:
    """Output size: ⌊(N + 2p − k)/s⌋ + 1, ⌈N/s⌉ for 'same', or in ceil mode ⌈(N + 2p − k)/s⌉ + 1.

    Ceil mode keeps the rule Caffe and PyTorch share: the last window must start inside the
    input or its left padding, never in the padding past the right edge (else it is dropped).
    """
    if padding == "same":
        return math.ceil(n / stride)
    p = int(padding)
    if not ceil:
        return (n + 2 * p - kernel) // stride + 1
    out = -(-(n + 2 * p - kernel) // stride) + 1
    if (out - 1) * stride >= n + p:
        out -= 1
    return out


def ceil_end_padding(n: int, kernel: int, stride: int, padding: int) -> int:
    """Padding after the input (bottom/right) that makes floor-mode windows those of ceil mode,
    given `padding` before it (top/left): the windows start at the same pixels and there are as
    many; only the last one may hang over the edge. Zero if no window reaches past the input."""
    out = conv_out(n, kernel, stride, padding, ceil=True)
    return max(0, (out - 1) * stride + kernel - n - padding)
