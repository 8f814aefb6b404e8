"""ZFNet.

Reference:
- Zeiler & Fergus, "Visualizing and understanding convolutional networks", ECCV 2014.

AlexNet as the paper's visualisations corrected it (Fig. 3): the first layer's 11×11 stride-4
filters aliased and left dead features, so conv1 becomes 96@7×7 stride 2 and conv2 stride 2.
With the paper's 224×224 input the feature maps are 110 → 55 → 26 → 13 → 13 → 13 → 6, which
fixes the padding: conv1 pad 1, pool1 pad 1, conv2 none, pool2 pad 1 (⌊(N + 2p − k)/s⌋ + 1
at each step). One tower, ReLU, dropout 0.5 between the fully connected layers.

The paper's contrast normalisation across feature maps is left out, as AlexNet's LRN is:
it holds no parameters, and batch normalisation has since taken its place.
No paper gives a reference parameter count; at 224×224×3 and 1000 classes it is 62,357,608.
"""

from kcnn.models.architectures import Architecture, register
from kcnn.models.layers import Conv, Dense, Dropout, Flatten, Pool


@register(
    Architecture(
        name="zfnet",
        family="AlexNet",
        year=2013,
        paper="Zeiler & Fergus, Visualizing and understanding convolutional networks",
        input_shape=(224, 224, 3),
        reference_classes=1000,
    )
)
def describe(classes: int):
    return [
        Conv(96, 7, stride=2, padding=1, name="conv1"),
        Pool(3, stride=2, padding=1, name="pool1"),
        Conv(256, 5, stride=2, name="conv2"),
        Pool(3, stride=2, padding=1, name="pool2"),
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
