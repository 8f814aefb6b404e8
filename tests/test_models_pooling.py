"""Pooling as the reference implementations pool: ceil mode (Caffe's GoogLeNet, PyTorch's
`ceil_mode=True`), −∞ padding for max pooling, GoogLeNet's map sizes, and BatchNorm's epsilon."""

from __future__ import annotations

import numpy as np
import pytest

from kcnn.models import geometry
from kcnn.models.architectures import get
from kcnn.models.layers import BatchNorm, Conv, Dense, Flatten, Pool, Spec


def torch_pool_size(n: int, k: int, s: int, p: int, ceil: bool) -> int:
    """PyTorch's `pooling_output_shape` (aten/src/ATen/native/Pool.h), integer arithmetic only."""
    out = (n + 2 * p - (k - 1) - 1 + (s - 1 if ceil else 0)) // s + 1
    if ceil and (out - 1) * s >= n + p:
        out -= 1
    return out


def reference_max_pool(x: np.ndarray, k: int, s: int, p: int, ceil: bool) -> np.ndarray:
    """Max pooling by definition: window i covers rows i·s − p … i·s − p + k − 1, clipped to
    the image, and takes the largest real pixel there (padding never counts)."""
    batch, h, w, c = x.shape
    oh, ow = torch_pool_size(h, k, s, p, ceil), torch_pool_size(w, k, s, p, ceil)
    out = np.empty((batch, oh, ow, c), dtype=x.dtype)
    for i in range(oh):
        r0, r1 = max(i * s - p, 0), min(i * s - p + k, h)
        for j in range(ow):
            c0, c1 = max(j * s - p, 0), min(j * s - p + k, w)
            out[:, i, j, :] = x[:, r0:r1, c0:c1, :].max(axis=(1, 2))
    return out


def _apply(spec: Spec, x: np.ndarray) -> np.ndarray:
    y = x
    for layer in spec.to_keras():
        y = layer(y)
    return np.asarray(y)


CASES = [
    (3, 2, 0, True),  # GoogLeNet's pools (Caffe, torchvision)
    (2, 2, 0, True),  # torchvision GoogLeNet's 4th pool
    (3, 2, 1, True),
    (3, 2, 1, False),  # ResNet's stem pool: MaxPool2d(3, stride=2, padding=1)
    (3, 1, 1, True),  # the inception branch: MaxPool2d(3, stride=1, padding=1, ceil_mode=True)
    (3, 3, 1, True),
]


@pytest.mark.parametrize("k,s,p,ceil", CASES)
def test_max_pool_equals_the_reference_on_odd_and_even_sizes(k, s, p, ceil):
    rng = np.random.default_rng(k * 100 + s * 10 + p)
    spec = Pool(k, stride=s, padding=p, ceil=ceil, name="pool")
    for h, w in [(7, 8), (14, 13), (2, 5), (4, 4)]:
        # negative values throughout: zero padding would win over them, −∞ never does
        x = rng.normal(-1.0, 1.0, (2, h, w, 3)).astype("float32")
        expected = reference_max_pool(x, k, s, p, ceil)
        assert spec.output_shape((h, w, 3)) == expected.shape[1:]
        got = _apply(spec, x)
        assert got.shape == expected.shape, (h, w)
        np.testing.assert_array_equal(got, expected)


def test_the_inception_same_pool_is_torchvisions_padded_pool():
    """Pool(3, stride=1, padding='same') as in our Inception module equals PyTorch's
    MaxPool2d(3, stride=1, padding=1, ceil_mode=True), negative inputs included."""
    x = np.random.default_rng(5).normal(-2.0, 1.0, (2, 7, 6, 4)).astype("float32")
    np.testing.assert_array_equal(
        _apply(Pool(3, stride=1, padding="same", name="pool"), x),
        reference_max_pool(x, 3, 1, 1, True),
    )


@pytest.mark.parametrize("n", range(2, 40))
@pytest.mark.parametrize("k,s,p", [(3, 2, 0), (2, 2, 0), (3, 2, 1), (3, 1, 1), (5, 3, 2)])
def test_ceil_mode_sizes_follow_pytorchs_rule(n, k, s, p):
    spec = Pool(k, stride=s, padding=p, ceil=True, name="pool")
    expected = torch_pool_size(n, k, s, p, True)
    assert spec.output_shape((n, n, 1))[:2] == (expected, expected)


def test_ceil_needs_max_pooling_and_padding_at_most_half_the_window():
    with pytest.raises(ValueError, match="ceil mode"):
        Pool(3, stride=2, kind="avg", ceil=True)
    with pytest.raises(ValueError, match="half the window"):
        Pool(3, stride=2, padding=2)


def _googlenet_sizes(side: int) -> list[int]:
    leaves = geometry.trace(get("googlenet").describe(1000), (side, side, 3))
    return [
        x.output_shape[0] for x in leaves if x.name in ("conv1", "pool1", "pool2", "pool3", "pool4")
    ]


def _caffe_sizes(side: int, last_pool: int = 3) -> list[int]:
    """The map sizes Caffe's GoogLeNet (all pools 3/2 ceil) or torchvision's (4th pool 2/2)
    gives: conv1 7/2 pad 3, then four ceil-mode pools."""
    sizes = [(side + 6 - 7) // 2 + 1]
    for k in (3, 3, 3, last_pool):
        sizes.append(torch_pool_size(sizes[-1], k, 2, 0, True))
    return sizes


def test_googlenet_map_sizes_match_the_reference_models():
    # torchvision's comments: N×64×112×112 → 56 → 28 → 14 → 7 at 224×224
    assert _googlenet_sizes(224) == [112, 56, 28, 14, 7] == _caffe_sizes(224, 2)
    for side in (31, 47, 99, 100, 227, 231, 299):
        assert _googlenet_sizes(side) == _caffe_sizes(side), side
        # torchvision agrees up to its 2×2 fourth pool
        assert _googlenet_sizes(side)[:4] == _caffe_sizes(side, 2)[:4], side


def test_googlenet_parameters_are_the_caffe_model_without_aux_classifiers():
    """6,998,552 = torchvision's GoogLeNet (6,624,904, reproduced here from its layer list) with
    the paper's 5×5 convs instead of its 3×3 and conv biases instead of its BatchNorm."""
    modules = [  # torchvision's inception_block(in, 1×1, 3×3 reduce, 3×3, 5×5 reduce, 5×5, pool proj)
        (192, 64, 96, 128, 16, 32, 32),
        (256, 128, 128, 192, 32, 96, 64),
        (480, 192, 96, 208, 16, 48, 64),
        (512, 160, 112, 224, 24, 64, 64),
        (512, 128, 128, 256, 24, 64, 64),
        (512, 112, 144, 288, 32, 64, 64),
        (528, 256, 160, 320, 32, 128, 128),
        (832, 256, 160, 320, 32, 128, 128),
        (832, 384, 192, 384, 48, 128, 128),
    ]

    def count(k5: int, batchnorm: bool, bias: bool) -> int:
        convs = [(3, 64, 7), (64, 64, 1), (64, 192, 3)]
        for cin, a, br, b, cr, c, pp in modules:
            convs += [
                (cin, a, 1),
                (cin, br, 1),
                (br, b, 3),
                (cin, cr, 1),
                (cr, c, k5),
                (cin, pp, 1),
            ]
        per_channel = (1 if bias else 0) + (2 if batchnorm else 0)
        return sum(i * o * k * k + per_channel * o for i, o, k in convs) + 1024 * 1000 + 1000

    assert count(3, batchnorm=True, bias=False) == 6_624_904  # torchvision, aux_logits=False
    ours = geometry.totals(geometry.trace(get("googlenet").describe(1000), (224, 224, 3)))
    assert ours.trainable_params == ours.params == count(5, batchnorm=False, bias=True) == 6_998_552


def test_batchnorm_has_the_reference_epsilon_and_momentum():
    from kcnn.models.layers import BN_EPSILON, BN_MOMENTUM

    (layer,) = BatchNorm(name="bn").to_keras()
    assert (layer.epsilon, layer.momentum) == (BN_EPSILON, BN_MOMENTUM) == (1e-5, 0.9)
    # inference: (x − mean)/√(var + 1e-5)·γ + β, visibly different from Keras's 1e-3 default
    rng = np.random.default_rng(0)
    x = rng.normal(0, 0.01, (4, 3)).astype("float32")
    layer.build((None, 3))
    gamma, beta, mean = (rng.normal(0, 1, 3).astype("float32") for _ in range(3))
    var = np.full(3, 1e-4, dtype="float32")
    layer.set_weights([gamma, beta, mean, var])
    expected = (x - mean) / np.sqrt(var + 1e-5) * gamma + beta
    np.testing.assert_allclose(np.asarray(layer(x, training=False)), expected, rtol=1e-4)
    # training: the moving mean moves 10% of the way to the batch mean (torchvision's 0.1)
    layer(x, training=True)
    np.testing.assert_allclose(
        layer.moving_mean.numpy(), 0.9 * mean + 0.1 * x.mean(axis=0), rtol=1e-5, atol=1e-6
    )


def test_a_saved_model_with_ceil_pooling_reloads(tmp_path):
    import keras

    from kcnn.models import forms

    specs = [
        Conv(4, 3, activation=None, name="conv"),
        Pool(3, stride=2, ceil=True, name="pool"),
        Flatten(name="flatten"),
        Dense(3, activation="softmax", name="out"),
    ]
    model = forms.build_sequential("toy", specs, (10, 10, 2))
    assert model.output_shape == (None, 3)
    x = np.random.default_rng(1).normal(size=(2, 10, 10, 2)).astype("float32")
    model.save(tmp_path / "m.keras")
    again = keras.saving.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(np.asarray(again(x)), np.asarray(model(x)), atol=1e-6)
    assert Spec.from_config(specs[1].to_config()) == specs[1]
