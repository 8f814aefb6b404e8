"""GoogLeNet (Inception v1).

Reference:
- Szegedy et al., "Going deeper with convolutions", CVPR 2015 (arXiv:1409.4842), Table 1, and
  the authors' Caffe model (BVLC `bvlc_googlenet`).

conv 64@7×7/2 → max pool 3/2 → conv 64@1×1 → conv 192@3×3 → max pool 3/2 → inception 3a, 3b →
max pool 3/2 → inception 4a … 4e → max pool 3/2 → inception 5a, 5b → average pool → dropout 0.4
→ classes. The inception modules' branch widths are Table 1's columns (#1×1, #3×3 reduce, #3×3,
#5×5 reduce, #5×5, pool proj). Every conv has a bias and a ReLU, and there is no BatchNorm (it
came a year later). Feature maps at 224×224: 112, 56, 28, 14, 7.

What follows the reference exactly:
- The four max pools are Caffe's: 3×3, stride 2, no padding, window count rounded up (PyTorch's
  `MaxPool2d(3, stride=2, ceil_mode=True)`): windows start at pixel 0 and the last may run past
  the bottom/right edge. (torchvision's 4th pool is 2×2; its maps are the same at 224×224.)
- The inception pool branch is a 3×3 stride-1 max pool padded 1, where padding never wins.
- 6,998,552 parameters at 224×224×3 and 1000 classes: the Caffe model without its two auxiliary
  classifiers. torchvision's `googlenet(aux_logits=False)` has 6,624,904: BatchNorm instead of
  conv biases, and a 3×3 conv where the paper has the 5×5 (a known torchvision bug, kept for its
  weights); without its BatchNorm it has 6,610,344.

What is left out, each with its reason:
- The two local response normalisation layers (after pool 1 and after the 3×3 conv): they hold
  no parameters; torchvision's GoogLeNet leaves them out too.
- The two auxiliary classifiers (on 4a and 4d): they only add training-time losses and are
  discarded at inference; kcnn trains one output.
- The final 7×7 average pool is a global average pool: identical at 224×224, and it takes other
  sizes. The smallest input is 31×31 (the fourth pool then gets a 2×2 map; ceil mode takes it).
"""

from kcnn.models.architectures import Architecture, register
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


def _inception(name: str) -> Inception:
    return Inception(*MODULES[name], name=f"inception{name}")


def _pool(name: str) -> Pool:
    return Pool(3, stride=2, ceil=True, name=name)


@register(
    Architecture(
        name="googlenet",
        family="Inception",
        year=2014,
        paper="Szegedy et al., Going deeper with convolutions",
        input_shape=(224, 224, 3),
        reference_classes=1000,
    )
)
def describe(classes: int):
    return [
        Conv(64, 7, stride=2, padding=3, name="conv1"),
        _pool("pool1"),
        Conv(64, 1, name="conv2_reduce"),
        Conv(192, 3, padding=1, name="conv2"),
        _pool("pool2"),
        _inception("3a"),
        _inception("3b"),
        _pool("pool3"),
        *(_inception(n) for n in ("4a", "4b", "4c", "4d", "4e")),
        _pool("pool4"),
        _inception("5a"),
        _inception("5b"),
        GlobalAvgPool(name="avg_pool"),
        Dropout(0.4, name="dropout"),
        Dense(classes, activation="softmax", name="output"),
    ]
