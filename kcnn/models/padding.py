"""The padding max pooling needs: −∞ rather than zeros, and ceil mode's overhang.

Keras pools only inside the input ('valid') or with TensorFlow's own 'same' split. The reference
implementations pool differently: PyTorch's `MaxPool2d(padding=p)` pads with −∞, so a padded
pixel never wins over a real one, negative or not; and Caffe (the paper's GoogLeNet) and
PyTorch's `ceil_mode=True` round the window count up, letting the last window run past the
bottom/right edge. `MaxPoolPadding2D` pads a map so that a 'valid' `MaxPooling2D` after it takes
exactly those windows: p rows/columns of −∞ before the map, p plus ceil mode's overhang after it.
"""

from __future__ import annotations

import keras

from kcnn.models.windows import ceil_end_padding


@keras.saving.register_keras_serializable(package="kcnn")
class MaxPoolPadding2D(keras.layers.Layer):
    def __init__(self, kernel: int, stride: int, padding: int = 0, ceil: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.kernel, self.stride, self.padding, self.ceil = kernel, stride, int(padding), ceil

    def _pads(self, n: int | None) -> tuple[int, int]:
        if not self.ceil:
            return self.padding, self.padding
        if n is None:
            raise ValueError(f"{self.name}: ceil-mode pooling needs a fixed input size")
        return self.padding, ceil_end_padding(n, self.kernel, self.stride, self.padding)

    def call(self, x):
        top, bottom = self._pads(x.shape[1])
        left, right = self._pads(x.shape[2])
        return keras.ops.pad(
            x, [[0, 0], [top, bottom], [left, right], [0, 0]], constant_values=float("-inf")
        )

    def compute_output_shape(self, input_shape):
        batch, h, w, c = input_shape
        h, w = (None if n is None else n + sum(self._pads(n)) for n in (h, w))
        return (batch, h, w, c)

    def get_config(self):
        return {
            **super().get_config(),
            "kernel": self.kernel,
            "stride": self.stride,
            "padding": self.padding,
            "ceil": self.ceil,
        }
