"""GoogLeNet (Inception v1).

Reference:
- Szegedy et al., "Going deeper with convolutions", CVPR 2015 (arXiv:1409.4842), Table 1.

conv 64@7×7/2 → max pool 3/2 → conv 64@1×1 → conv 192@3×3 → max pool 3/2 → inception 3a, 3b →
max pool 3/2 → inception 4a … 4e → max pool 3/2 → inception 5a, 5b → average pool → dropout 0.4
→ classes. The inception modules' branch widths are Table 1's columns (#1×1, #3×3 reduce, #3×3,
#5×5 reduce, #5×5, pool proj). Feature maps at 224×224: 112, 56, 56, 28, 28, 14, 14, 7, 1.

Choices, each with its reason:
- The max pools have pad 1 so the maps are the paper's 112 → 56 → 28 → 14 → 7 (Caffe rounded
  the pooling output up; symmetric zero padding after ReLU gives the same sizes and values).
- The two LRN layers of the stem are left out: they hold no parameters and add nothing once
  trained (the authors' own later Inception versions dropped them).
- The two auxiliary classifiers are left out: they only add training-time losses and are
  discarded at inference; kcnn trains one output.
- The final 7×7 average pool is a global average pool, identical at 224×224 and able to take
  other sizes.
SPEC.md gives no reference parameter count; at 224×224×3 and 1000 classes it is 6,998,552.
"""

from kcnn.models.architectures import Architecture
from kcnn.models.composites import Inception
from kcnn.models.layers import Conv, Dense, Dropout, GlobalAvgPool, Pool

# Table 1: name → (#1×1, #3×3 reduce, #3×3, #5×5 reduce, #5×5, pool proj)
MODULES = {
    "3a": (64, 96, 128, 16, 32, 32),
    "3b": (128, 128, 192, 32, 96, 64),
    "4a": (192, 96, 208, 16, 48, 64),
    "4b": (160, 112, 224, 24, 64, 64),
    "4c": (128, 128, 256, 24, 64, 64),
    "4d": (112, 144, 288, 32, 64, 64),
    "4e": (256, 160, 320, 32, 128, 128),
    "5a": (256, 160, 320, 32, 128, 128),
    "5b": (384, 192, 384, 48, 128, 128),
}

ARCHITECTURES = [
    Architecture(
        name="googlenet",
        family="Inception",
        year=2014,
        paper="Szegedy et al., Going deeper with convolutions",
        module="googlenet",
        input_shape=(224, 224, 3),
        reference_classes=1000,
        # total stride 32: below 32×32 the last stage would see only padding
        min_input=32,
    )
]


def _inception(name: str) -> Inception:
    return Inception(*MODULES[name], name=f"inception{name}")


def describe(classes: int):
    return [
        Conv(64, 7, stride=2, padding=3, name="conv1"),
        Pool(3, stride=2, padding=1, name="pool1"),
        Conv(64, 1, name="conv2_reduce"),
        Conv(192, 3, padding=1, name="conv2"),
        Pool(3, stride=2, padding=1, name="pool2"),
        _inception("3a"),
        _inception("3b"),
        Pool(3, stride=2, padding=1, name="pool3"),
        *(_inception(n) for n in ("4a", "4b", "4c", "4d", "4e")),
        Pool(3, stride=2, padding=1, name="pool4"),
        _inception("5a"),
        _inception("5b"),
        GlobalAvgPool(name="avg_pool"),
        Dropout(0.4, name="dropout"),
        Dense(classes, activation="softmax", name="output"),
    ]
