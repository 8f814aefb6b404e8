"""The backbone registry: every ImageNet network `kcnn transfer` can put a head on.

Each entry names its `keras.applications` constructor and `preprocess_input` (as dotted paths,
imported only when a model is built, so this module stays free of TensorFlow and `kcnn list`
can show the backbones at once), and the "notop" weights file Keras keeps in
`$KERAS_HOME/models/`, with where Keras downloads it from and the MD5 Keras checks it against.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path

from kcnn.errors import unknown

ALL = "all"  # the BACKBONE argument that means every registered backbone


@dataclass(frozen=True)
class Backbone:
    name: str
    paper: str
    constructor: str  # dotted path of the keras.applications function
    preprocess: str  # dotted path of its preprocess_input
    weights_url: str  # folder URL the notop weights file is downloaded from
    weights_md5: str | None  # Keras's file_hash for that file (None: Keras checks none)
    min_size: int = 32  # keras.applications refuses smaller inputs with include_top=False

    def weights_file(self, image_size: int) -> str:
        """The file name Keras looks for in `$KERAS_HOME/models/` for inputs of `image_size`."""
        if self.name == "mobilenetv2":
            # MobileNetV2 ships one file per input size; other sizes fall back to the 224 file,
            # exactly as keras.applications.MobileNetV2 chooses.
            rows = image_size if image_size in (96, 128, 160, 192, 224) else 224
            return f"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_{rows}_no_top.h5"
        return {
            "vgg16": "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
            "resnet50v2": "resnet50v2_weights_tf_dim_ordering_tf_kernels_notop.h5",
        }[self.name]

    def weights_origin(self, image_size: int) -> str:
        return self.weights_url + self.weights_file(image_size)

    def build(self, input_shape: tuple[int, int, int]):
        """The headless network with random weights (kcnn loads the weights itself)."""
        return _resolve(self.constructor)(
            include_top=False, weights=None, input_shape=tuple(input_shape)
        )

    def preprocess_input(self):
        """This backbone's own preprocess_input: takes float pixels in 0..255."""
        return _resolve(self.preprocess)


def _resolve(dotted: str):
    module, _, attr = dotted.rpartition(".")
    return getattr(importlib.import_module(module), attr)


_KERAS_APPS = "https://storage.googleapis.com/tensorflow/keras-applications/"

BACKBONES: dict[str, Backbone] = {
    b.name: b
    for b in [
        Backbone(
            "vgg16",
            "Simonyan & Zisserman 2014, Very Deep Convolutional Networks for Large-Scale "
            "Image Recognition (arXiv:1409.1556)",
            "keras.applications.vgg16.VGG16",
            "keras.applications.vgg16.preprocess_input",
            _KERAS_APPS + "vgg16/",
            "6d6bbae143d832006294945121d1f1fc",
        ),
        Backbone(
            "mobilenetv2",
            "Sandler et al. 2018, MobileNetV2: Inverted Residuals and Linear "
            "Bottlenecks (arXiv:1801.04381)",
            "keras.applications.mobilenet_v2.MobileNetV2",
            "keras.applications.mobilenet_v2.preprocess_input",
            _KERAS_APPS + "mobilenet_v2/",
            None,
        ),
        Backbone(
            "resnet50v2",
            "He et al. 2016, Identity Mappings in Deep Residual Networks (arXiv:1603.05027)",
            "keras.applications.resnet_v2.ResNet50V2",
            "keras.applications.resnet_v2.preprocess_input",
            _KERAS_APPS + "resnet/",
            "fac2f116257151a9d068a22e544a4917",
        ),
    ]
}


def get(name: str) -> Backbone:
    if name not in BACKBONES:
        raise unknown("backbone", name, [*BACKBONES, ALL])
    return BACKBONES[name]


def expand(names: list[str]) -> list[str]:
    """BACKBONE arguments → backbone names: `all` is every backbone; repeats are dropped."""
    found: list[str] = []
    for name in names:
        for each in list(BACKBONES) if name == ALL else [get(name).name]:
            if each not in found:
                found.append(each)
    return found


def cache_path(keras_home: Path, backbone: Backbone, image_size: int) -> Path:
    """Where Keras keeps (or would keep) this backbone's ImageNet weights."""
    return keras_home / "models" / backbone.weights_file(image_size)
