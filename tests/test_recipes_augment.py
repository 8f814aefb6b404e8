"""Augmentation: policies and switches, training batches only, digits never mirrored, reproducible."""

import numpy as np
import pytest
import tensorflow as tf

from kcnn.data import augment, pipeline
from kcnn.data.augment import AugmentSettings, augment_epoch, augmenter, resolve
from kcnn.data.pipeline import make_dataset
from kcnn.errors import KcnnError


def _images(n=8, size=28, channels=1, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, channels), dtype=np.uint8)


def test_policies_resolve_per_data_set():
    assert resolve("none", "cifar10", 3) == AugmentSettings()
    assert not resolve("none", "cifar10", 3).active
    assert resolve("light", "cifar10", 3) == AugmentSettings(crop=0.125, flip=True)
    assert resolve("standard", "cifar10", 3) == AugmentSettings(0.125, True, 10.0, 0.0, 0.2)
    # digits and shapes are never mirrored; grey images get no colour jitter
    for name in ("mnist", "mnist-5k", "digits", "shapes"):
        channels = 3 if name == "shapes" else 1
        assert not resolve("standard", name, channels).flip
    assert resolve("standard", "fashion-mnist", 1) == AugmentSettings(0.125, True, 10.0, 0.0, 0.0)
    assert not resolve("light", "my/images", 3).flip  # the user's own data: flip only when asked


def test_switches_override_the_policy():
    settings = resolve(
        "standard", "cifar10", 3, {"augment_flip": False, "rotate": 5, "color": None}
    )
    assert settings == AugmentSettings(crop=0.125, flip=False, rotate=5, translate=0.0, color=0.2)
    assert resolve("none", "mnist-5k", 1, {"translate": 0.1}).to_dict() == {
        "crop": 0.0,
        "flip": False,
        "rotate": 0.0,
        "translate": 0.1,
        "color": 0.0,
    }


@pytest.mark.parametrize(
    ("policy", "dataset", "channels", "overrides", "message"),
    [
        ("strong", "cifar10", 3, {}, "unknown augmentation policy 'strong'"),
        ("none", "mnist-5k", 1, {"flip": True}, "mirrored image is another class"),
        ("none", "shapes", 3, {"augment_flip": True}, "mirrored image is another class"),
        ("none", "mnist-5k", 1, {"color": 0.2}, "colour jitter needs colour images"),
        ("none", "cifar10", 3, {"rotate": 400}, "rotate must be between 0 and 180"),
        ("none", "cifar10", 3, {"zoom": 0.1}, "unknown augmentation switch 'zoom'"),
    ],
)
def test_bad_settings_are_refused(policy, dataset, channels, overrides, message):
    with pytest.raises(KcnnError, match=message):
        resolve(policy, dataset, channels, overrides)


def test_nothing_switched_on_means_no_augmenter():
    assert augmenter(resolve("none", "cifar10", 3), seed=1) is None
    batches = tf.data.Dataset.from_tensor_slices((_images(4), np.arange(4))).batch(2)
    assert augment_epoch(batches, 0, None) is batches


def test_shape_dtype_and_range_are_kept():
    augment = augmenter(resolve("standard", "cifar10", 3, {"translate": 0.1}), seed=3)
    x = _images(6, 32, 3)
    out = augment(x, 0, 0).numpy()
    assert out.shape == x.shape and out.dtype == np.float32
    assert 0.0 <= out.min() and out.max() <= 255.0
    assert not np.array_equal(out, x.astype(np.float32))
    # a smaller last batch works too
    assert augment(x[:3], 0, 9).shape == (3, 32, 32, 3)


def test_same_seed_epoch_and_batch_give_the_same_batch():
    augment = augmenter(resolve("standard", "cifar10", 3), seed=7)
    x = _images(8, 32, 3)
    first, again = augment(x, 4, 2).numpy(), augment(x, 4, 2).numpy()
    np.testing.assert_array_equal(first, again)
    # and a fresh augmenter with the same seed (a resumed process) agrees
    np.testing.assert_array_equal(first, augmenter(resolve("standard", "cifar10", 3), 7)(x, 4, 2))
    for other in (
        augment(x, 5, 2),
        augment(x, 4, 3),
        augmenter(resolve("standard", "cifar10", 3), 8)(x, 4, 2),
    ):
        assert not np.array_equal(first, other.numpy())


def test_crop_shifts_whole_pixels_within_the_margin():
    x = np.zeros((32, 28, 28, 1), np.uint8)
    x[:, 12:16, 12:16] = 255
    out = augmenter(resolve("light", "mnist-5k", 1), seed=0)(x, 0, 0).numpy()[..., 0]
    assert set(np.unique(out)) <= {0.0, 255.0}  # a whole-pixel shift, no blur
    rows = [np.argwhere(image > 0)[:, 0].min() for image in out]
    cols = [np.argwhere(image > 0)[:, 1].min() for image in out]
    assert min(rows + cols) >= 12 - 4 and max(rows + cols) <= 12 + 4  # 1/8 of 28, rounded
    assert len(set(rows)) > 1 and len(set(cols)) > 1


def test_digits_are_never_mirrored():
    # An asymmetric stroke: a mirrored image would have its ink on the other half.
    x = np.zeros((64, 28, 28, 1), np.uint8)
    x[:, 4:24, 3:9] = 255
    augment = augmenter(resolve("standard", "mnist-5k", 1), seed=0)
    for epoch in range(3):
        out = augment(x, epoch, 0).numpy()[..., 0]
        left, right = out[:, :, :14].sum(axis=(1, 2)), out[:, :, 14:].sum(axis=(1, 2))
        assert (left > 4 * right).all()
    # the same check sees flips where they are allowed
    mirrored = augmenter(AugmentSettings(flip=True), seed=0)(x, 0, 0).numpy()[..., 0]
    assert (mirrored[:, :, 14:].sum(axis=(1, 2)) > mirrored[:, :, :14].sum(axis=(1, 2))).any()


def _epoch(x, y, settings, seed, epoch, batch_size=4):
    batches = tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size)
    augmented = augment_epoch(batches, epoch, augmenter(settings, seed))
    return [(images.numpy(), labels.numpy()) for images, labels in augmented]


def test_an_epoch_stream_is_reproducible_and_keeps_labels():
    x, y = _images(10, 32, 3), np.arange(10)
    settings = resolve("standard", "cifar10", 3)
    first, again, later = (_epoch(x, y, settings, 5, e) for e in (2, 2, 3))
    assert len(first) == 3 and [len(b[0]) for b in first] == [4, 4, 2]
    for (a, la), (b, lb), (c, _) in zip(first, again, later, strict=True):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(la, lb)
        assert not np.array_equal(a, c)
    np.testing.assert_array_equal(np.concatenate([b[1] for b in first]), y)
    # batches differ from each other even where their images are the same
    same = np.repeat(x[:1], 8, axis=0)
    a, b = _epoch(same, np.zeros(8), settings, 5, 0)
    assert not np.array_equal(a[0], b[0])


def test_evaluation_batches_are_untouched():
    """Validation and test batches come from make_dataset, which never augments."""
    x = _images(6, 28, 1)
    images, _ = next(iter(make_dataset(x, np.zeros(6, int), (28, 28, 1), batch_size=6)))
    np.testing.assert_allclose(images.numpy(), x / 255.0, atol=1e-7)
    assert "augment" not in make_dataset.__code__.co_varnames


def test_resolving_settings_does_not_load_tensorflow():
    """Config validation may check recipe settings at start-up, where TensorFlow must not load."""
    import subprocess
    import sys

    code = (
        "import sys; from kcnn.data.augment import resolve; from kcnn.engine import recipes; "
        "resolve('light', 'cifar10', 3); recipes.learning_rate(3, 0.1, 10, 'cosine'); "
        "recipes.check_optimizer('sgd', 5e-4, 0.9, True); recipes.check_label_smoothing(0.1); "
        "recipes.check_plateau(0.5, 3); recipes.check_early_stopping(5); "
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    assert augment.POLICIES == ("none", "light", "standard")


@pytest.mark.skipif(
    "augment" not in pipeline.epoch_batches.__code__.co_varnames,
    reason="pipeline.epoch_batches does not take an augmenter yet",
)
def test_the_training_stream_is_augmented_and_resumes_exactly():
    """Once wired: epoch_batches(..., augment=...) augments, and a stream started at epoch 1 holds
    the very batches epoch 1 of a stream started at epoch 0 holds."""
    x, y = _images(10, 28, 1), np.arange(10)
    augment = augmenter(resolve("standard", "mnist-5k", 1), seed=4)

    def stream(first, augment):
        batches = pipeline.epoch_batches(x, y, (32, 32, 1), 4, 4, first, 2, augment=augment)
        return [(images.numpy(), labels.numpy()) for images, labels in batches]

    whole, resumed, plain = stream(0, augment), stream(1, augment), stream(0, None)
    assert len(whole) == 6 and len(resumed) == 3
    for (a, la), (b, lb) in zip(whole[3:], resumed, strict=True):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(la, lb)
    for (a, la), (b, lb) in zip(whole, plain, strict=True):
        np.testing.assert_array_equal(la, lb)  # same order, different pixels
        assert a.shape == b.shape and not np.array_equal(a, b)
