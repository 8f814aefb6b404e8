"""The small CNN of seed 003: the network its Sequential / Functional / subclassed comparison builds.

conv32 → pool → conv64 → pool → conv64 (all 3×3, 'same', ReLU) → flatten → dense 128 → softmax.
582,026 parameters on 32×32×3 CIFAR-10 images.
"""

from kcnn.models.architectures import Architecture, register
from kcnn.models.layers import Conv, Dense, Flatten, Pool


@register(
    Architecture(
        name="simple-cnn",
        family="seed CNN",
        year=2023,
        paper="seed 003: CV - convolutional neural networks (CIFAR-10 in three Keras APIs)",
        input_shape=(32, 32, 3),
        reference_params=582_026,
    )
)
def describe(classes: int):
    return [
        Conv(32, 3, padding="same", name="conv1"),
        Pool(2, name="pool1"),
        Conv(64, 3, padding="same", name="conv2"),
        Pool(2, name="pool2"),
        Conv(64, 3, padding="same", name="conv3"),
        Flatten(name="flatten"),
        Dense(128, name="dense1"),
        Dense(classes, activation="softmax", name="output"),
    ]
