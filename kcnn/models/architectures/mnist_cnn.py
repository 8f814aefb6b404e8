"""The MNIST CNN of seed 004: two conv/pool stages and three fully connected layers.

(1, 28, 28) → conv32 (3×3, pad 1) → pool → conv64 (3×3, pad 1) → pool → 3136 → 1024 → 128 → 10.
3,363,594 parameters on 28×28×1. The seed's fully connected layers have no activation between
them, which makes the three a single linear map; kcnn puts ReLU between them (same parameter
count) so the extra layers earn their place.
"""

from kcnn.models.architectures import Architecture, register
from kcnn.models.layers import Conv, Dense, Flatten, Pool


@register(
    Architecture(
        name="mnist-cnn",
        family="seed CNN",
        year=2023,
        paper="seed 004: AI study week 4 (CNN on MNIST, ~98% in 3 epochs)",
        input_shape=(28, 28, 1),
        reference_params=3_363_594,
    )
)
def describe(classes: int):
    return [
        Conv(32, 3, padding=1, name="conv1"),
        Pool(2, name="pool1"),
        Conv(64, 3, padding=1, name="conv2"),
        Pool(2, name="pool2"),
        Flatten(name="flatten"),
        Dense(1024, name="fc1"),
        Dense(128, name="fc2"),
        Dense(classes, activation="softmax", name="output"),
    ]
