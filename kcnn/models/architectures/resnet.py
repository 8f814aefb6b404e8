"""ResNet-18, -34, -50, -101 and -152.

Reference:
- He, Zhang, Ren & Sun, "Deep residual learning for image recognition", CVPR 2016
  (arXiv:1512.03385), Table 1.

Stem: conv1 64@7×7 stride 2 → BN → ReLU → 3×3 max pool stride 2. Then four stages, conv2_x …
conv5_x, of basic blocks (18, 34) or bottleneck blocks (50, 101, 152) with 64, 128, 256, 512
base filters; the first block of conv3_x, conv4_x and conv5_x halves the map with stride 2 in
its first conv, and a 1×1 projection on the skip wherever the shape changes (option B). Global
average pooling and a 1000-way softmax close the network.

As in the paper, BatchNorm follows every conv, and those convs have no bias (BN's beta does that
job): 11,689,512 / 21,797,672 / 25,557,032 / 44,549,160 / 60,192,808 learned parameters at
224×224×3 and 1000 classes — the figures the paper's Caffe and torchvision's models have. Keras
counts BN's moving mean and variance as (non-trainable) weights too, so its total is larger by
two per BN channel; the learned (trainable) count is the paper's. (keras.applications.ResNet50
has 25,636,712 because its convs keep their biases.)
"""

from kcnn.models.architectures import Architecture, register
from kcnn.models.composites import BasicBlock, Bottleneck
from kcnn.models.layers import Activation, BatchNorm, Conv, Dense, GlobalAvgPool, Pool

# blocks per stage (conv2_x … conv5_x), Table 1
DEPTHS = {
    "resnet18": (BasicBlock, (2, 2, 2, 2)),
    "resnet34": (BasicBlock, (3, 4, 6, 3)),
    "resnet50": (Bottleneck, (3, 4, 6, 3)),
    "resnet101": (Bottleneck, (3, 4, 23, 3)),
    "resnet152": (Bottleneck, (3, 8, 36, 3)),
}
WIDTHS = (64, 128, 256, 512)
REFERENCE_PARAMS = {
    "resnet18": 11_689_512,
    "resnet34": 21_797_672,
    "resnet50": 25_557_032,
    "resnet101": 44_549_160,
    "resnet152": 60_192_808,
}


@register(
    *(
        Architecture(
            name=name,
            family="ResNet",
            year=2015,
            paper="He et al., Deep residual learning for image recognition",
            input_shape=(224, 224, 3),
            reference_classes=1000,
            reference_params=REFERENCE_PARAMS[name],
            variant=name,
            # total stride 32: below 32×32 the last stage's strided convs would see only padding
            min_input=32,
        )
        for name in DEPTHS
    )
)
def describe(classes: int, variant: str):
    block, depths = DEPTHS[variant]
    specs = [
        Conv(64, 7, stride=2, padding=3, activation=None, bias=False, name="conv1"),
        BatchNorm(name="conv1_bn"),
        Activation("relu", name="conv1_relu"),
        # torchvision's MaxPool2d(3, stride=2, padding=1); the padding is −∞, as in PyTorch
        Pool(3, stride=2, padding=1, name="pool1"),
    ]
    channels = 64
    for stage, (count, width) in enumerate(zip(depths, WIDTHS, strict=True), start=2):
        for i in range(1, count + 1):
            stride = 2 if (i == 1 and stage > 2) else 1
            out = width * block.expansion
            specs.append(
                block(
                    width,
                    stride=stride,
                    projection=(stride != 1 or channels != out),
                    name=f"conv{stage}_{i}",
                )
            )
            channels = out
    return specs + [GlobalAvgPool(name="avg_pool"), Dense(classes, activation="softmax", name="fc")]
