"""LeNet-5.

Reference:
- LeCun, Bottou, Bengio & Haffner, "Gradient-based learning applied to document recognition",
  Proc. IEEE 86(11), 1998.

C1 6@5×5 → S2 → C3 16@5×5 → S4 → C5 120@5×5 → F6 84 → 10, tanh throughout, average pooling
for the subsampling layers. The paper feeds 28×28 MNIST digits centred in a 32×32 field; kcnn's
pipeline does the same zero-padding. Two simplifications shared by every modern rendering: S2/S4
are plain average pooling (the paper's have a trainable coefficient and bias) and C3 connects to
all six S2 maps (the paper's sparse connection table was an engineering compromise of 1998).
"""

from kcnn.models.architectures import Architecture, register
from kcnn.models.layers import Conv, Dense, Flatten, Pool


@register(
    Architecture(
        name="lenet5",
        family="LeNet",
        year=1998,
        paper="LeCun et al., Gradient-based learning applied to document recognition",
        input_shape=(32, 32, 1),
        reference_params=61_706,
    )
)
def describe(classes: int):
    return [
        Conv(6, 5, activation="tanh", name="c1"),
        Pool(2, kind="avg", name="s2"),
        Conv(16, 5, activation="tanh", name="c3"),
        Pool(2, kind="avg", name="s4"),
        Conv(120, 5, activation="tanh", name="c5"),
        Flatten(name="flatten"),
        Dense(84, activation="tanh", name="f6"),
        Dense(classes, activation="softmax", name="output"),
    ]
