"""VGG-11, -13, -16 and -19.

Reference:
- Simonyan & Zisserman, "Very deep convolutional networks for large-scale image recognition",
  ICLR 2015 (arXiv:1409.1556), Table 1 configurations A, B, D and E.

Five stages of 3×3 convolutions (stride 1, pad 1, so a stage keeps its size) each closed by a
2×2 max pool, then 4096 → 4096 → classes with dropout 0.5 after the two hidden layers. Configuration
A-LRN and C (with 1×1 convs) are not included. Layer names follow `keras.applications.VGG16`
(`block1_conv1` … `fc1`, `fc2`, `predictions`), so its weights load into ours layer for layer.
"""

from kcnn.models.architectures import Architecture, register
from kcnn.models.layers import Conv, Dense, Dropout, Flatten, Pool

# convolutions per stage; the stages have 64, 128, 256, 512, 512 filters
CONFIGS = {
    "vgg11": (1, 1, 2, 2, 2),  # A
    "vgg13": (2, 2, 2, 2, 2),  # B
    "vgg16": (2, 2, 3, 3, 3),  # D
    "vgg19": (2, 2, 4, 4, 4),  # E
}
WIDTHS = (64, 128, 256, 512, 512)
REFERENCE_PARAMS = {
    "vgg11": 132_863_336,
    "vgg13": 133_047_848,
    "vgg16": 138_357_544,
    "vgg19": 143_667_240,
}


@register(
    *(
        Architecture(
            name=name,
            family="VGG",
            year=2014,
            paper=f"Simonyan & Zisserman, Very deep convolutional networks (configuration {'ABDE'[i]})",
            input_shape=(224, 224, 3),
            reference_classes=1000,
            reference_params=REFERENCE_PARAMS[name],
            variant=name,
        )
        for i, name in enumerate(CONFIGS)
    )
)
def describe(classes: int, variant: str):
    specs = []
    for stage, (convs, width) in enumerate(zip(CONFIGS[variant], WIDTHS, strict=True), start=1):
        specs += [
            Conv(width, 3, padding=1, name=f"block{stage}_conv{i}") for i in range(1, convs + 1)
        ]
        specs.append(Pool(2, name=f"block{stage}_pool"))
    return specs + [
        Flatten(name="flatten"),
        Dense(4096, name="fc1"),
        Dropout(0.5, name="drop1"),
        Dense(4096, name="fc2"),
        Dropout(0.5, name="drop2"),
        Dense(classes, activation="softmax", name="predictions"),
    ]
