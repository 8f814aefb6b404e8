"""AlexNet.

Reference:
- Krizhevsky, Sutskever & Hinton, "ImageNet classification with deep convolutional neural
  networks", NeurIPS 2012.

The network of the paper's Fig. 2 as one tower (the paper split it over two GPUs; conv2, conv4
and conv5 then saw only their own GPU's half of the maps, which changes the parameter count but
not the idea): conv1 96@11×11 stride 4 → max pool 3/2 → conv2 256@5×5 pad 2 → max pool 3/2 →
conv3 384@3×3 → conv4 384@3×3 → conv5 256@3×3 (pad 1) → max pool 3/2 → 4096 → 4096 → classes,
ReLU throughout, dropout 0.5 after each of the two 4096-unit layers.

The paper's 224×224 input does not fit its own arithmetic; 227×227 does
(⌊(227 − 11)/4⌋ + 1 = 55), so 227 is the reference input: 62,378,344 parameters for 1000 classes.

Local response normalisation (after conv1 and conv2 in the paper) is left out: it has no
parameters, later work (Simonyan & Zisserman 2014, §4.1) found it did not help, and batch
normalisation replaced it. The parameter count is unaffected.
"""

from kcnn.models.architectures import Architecture, register
from kcnn.models.layers import Conv, Dense, Dropout, Flatten, Pool


@register(
    Architecture(
        name="alexnet",
        family="AlexNet",
        year=2012,
        paper="Krizhevsky et al., ImageNet classification with deep convolutional neural networks",
        input_shape=(227, 227, 3),
        reference_classes=1000,
        reference_params=62_378_344,
    )
)
def describe(classes: int):
    return [
        Conv(96, 11, stride=4, name="conv1"),
        Pool(3, stride=2, name="pool1"),
        Conv(256, 5, padding=2, name="conv2"),
        Pool(3, stride=2, name="pool2"),
        Conv(384, 3, padding=1, name="conv3"),
        Conv(384, 3, padding=1, name="conv4"),
        Conv(256, 3, padding=1, name="conv5"),
        Pool(3, stride=2, name="pool5"),
        Flatten(name="flatten"),
        Dense(4096, name="fc6"),
        Dropout(0.5, name="drop6"),
        Dense(4096, name="fc7"),
        Dropout(0.5, name="drop7"),
        Dense(classes, activation="softmax", name="fc8"),
    ]
