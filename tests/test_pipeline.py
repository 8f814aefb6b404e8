"""The tf.data pipeline: padding, resizing, channel conversion, scaling, batching."""

import numpy as np

from kcnn.data.pipeline import fit_mode, make_dataset


def test_fit_mode_pads_small_margins_and_resizes_otherwise():
    assert fit_mode((28, 28), (32, 32)) == "pad"  # LeNet-5's MNIST field, as in the paper
    assert fit_mode((32, 32), (32, 32)) == "none"
    assert fit_mode((8, 8), (32, 32)) == "resize"
    assert fit_mode((32, 32), (224, 224)) == "resize"
    assert fit_mode((40, 40), (32, 32)) == "resize"


def test_padding_centres_the_image_and_keeps_pixels():
    x = np.full((3, 28, 28, 1), 255, dtype=np.uint8)
    images, labels = next(iter(make_dataset(x, np.array([0, 1, 2]), (32, 32, 1), batch_size=3)))
    images = images.numpy()
    assert images.shape == (3, 32, 32, 1) and labels.numpy().tolist() == [0, 1, 2]
    assert (
        images[:, 2:30, 2:30].min() == 1.0
        and images[:, :2].max() == 0.0
        and images[:, :, 30:].max() == 0.0
    )


def test_grey_to_colour_and_resize():
    x = np.random.default_rng(0).integers(0, 256, (5, 8, 8, 1), dtype=np.uint8)
    images, _ = next(iter(make_dataset(x, np.zeros(5, int), (16, 16, 3), batch_size=5)))
    images = images.numpy()
    assert images.shape == (5, 16, 16, 3) and 0.0 <= images.min() and images.max() <= 1.0
    np.testing.assert_array_equal(images[..., 0], images[..., 2])


def test_colour_to_grey():
    x = np.zeros((2, 32, 32, 3), dtype=np.uint8)
    x[..., 0] = 255
    images, _ = next(iter(make_dataset(x, np.zeros(2, int), (32, 32, 1), batch_size=2)))
    assert images.shape == (2, 32, 32, 1) and np.allclose(images.numpy(), 0.2989, atol=1e-3)


def test_preprocess_hook_sees_0_to_255_pixels():
    x = np.full((4, 4, 4, 3), 255, dtype=np.uint8)
    images, _ = next(
        iter(
            make_dataset(
                x, np.zeros(4, int), (4, 4, 3), batch_size=4, preprocess=lambda t: t - 255.0
            )
        )
    )
    assert float(np.abs(images.numpy()).max()) == 0.0


def test_shuffle_is_seeded_and_batches_cover_everything():
    x = np.arange(20, dtype=np.uint8).reshape(20, 1, 1, 1)
    y = np.arange(20)

    def order(seed):
        return np.concatenate(
            [b[1].numpy() for b in make_dataset(x, y, (1, 1, 1), 6, shuffle=True, seed=seed)]
        )

    first = order(3)
    assert sorted(first.tolist()) == list(range(20))
    np.testing.assert_array_equal(first, order(3))


def test_arrays_in_the_models_form_are_batched_as_they_are_in_order_and_shuffled_by_seed():
    from kcnn.data.pipeline import array_batches, epoch_batches

    rng = np.random.default_rng(0)
    features = rng.normal(size=(10, 3, 4)).astype(np.float32)  # cached features, any shape
    labels = np.arange(10) % 3
    batches = list(array_batches(features, labels, 4))
    assert [len(y) for _, y in batches] == [4, 4, 2]
    np.testing.assert_array_equal(np.concatenate([x for x, _ in batches]), features)
    np.testing.assert_array_equal(np.concatenate([y for _, y in batches]), labels)

    def epochs(seed):
        stream = epoch_batches(features, labels, None, 5, seed, 0, 2)
        return [(x.numpy(), y.numpy()) for x, y in stream]

    first, again = epochs(7), epochs(7)
    assert len(first) == 4  # two epochs of two batches
    for (x, y), (x2, y2) in zip(first, again, strict=True):
        np.testing.assert_array_equal(x, x2)
        np.testing.assert_array_equal(y, y2)
    for epoch in (first[:2], first[2:]):  # each epoch: every row once, with its own label
        x = np.concatenate([b[0] for b in epoch])
        y = np.concatenate([b[1] for b in epoch])
        order = [int(np.flatnonzero((features == row).all(axis=(1, 2)))[0]) for row in x]
        assert sorted(order) == list(range(10))
        np.testing.assert_array_equal(y, labels[order])
    assert not np.array_equal(first[0][0], epochs(8)[0][0])


def test_a_feature_pass_holds_the_same_pixels_per_batch_at_any_image_size():
    from kcnn.commands.transfer import FEATURE_BATCH_MAX, feature_batch

    assert feature_batch((224, 224, 3)) == 8
    assert feature_batch((112, 112, 3)) == 32
    assert feature_batch((32, 32, 3)) == FEATURE_BATCH_MAX  # small images: the most per batch
    assert feature_batch((2048, 2048, 3)) == 1  # never zero
