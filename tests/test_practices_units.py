"""The practitioners' recipes (issue 32), piece by piece: the budgets' parsing and clock, the
keyed Keras augmentation layers (same key, same pixels, whatever the thread order), the
soft-label loss and accuracy against hand computations, Keras's EMA against a hand computation,
test-time augmentation's views and average, and averaging the last epochs (BatchNorm's
statistics recomputed as the mean of each batch's)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from kcnn.data import augment, tta
from kcnn.engine import averaging, budget
from kcnn.errors import KcnnError

# --- budgets --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, seconds",
    [("90", 90.0), ("90s", 90.0), ("30m", 1800.0), ("2h", 7200.0), ("1h30m", 5400.0),
     ("1d", 86400.0), (" 2 h ", 7200.0), ("0.5m", 30.0), (45, 45.0), (12.5, 12.5)],
)  # fmt: skip
def test_durations_read_as_seconds(text, seconds):
    assert budget.parse_duration("--time-limit", text) == seconds


@pytest.mark.parametrize("bad", ["", "0", "-5", "5x", "m", "1h1h", "2 weeks", True, None, "1e3", 0])
def test_bad_durations_are_refused_in_words(bad):
    with pytest.raises(KcnnError, match="--time-limit takes a duration"):
        budget.parse_duration("--time-limit", bad)


def test_duration_text_reads_back():
    for seconds in (45.0, 1800.0, 5400.0, 90.0, 3600.0):
        assert budget.parse_duration("x", budget.duration_text(seconds)) == seconds


@pytest.mark.parametrize("value, found", [("auto", "auto"), ("AUTO", "auto"), ("64", 64), (1, 1)])
def test_batch_sizes_are_numbers_or_auto(value, found):
    assert budget.parse_batch_size("--batch-size", value) == found


@pytest.mark.parametrize("bad", [0, "0", "x", "65537", 1.5, True, "-3", ""])
def test_bad_batch_sizes_are_refused(bad):
    with pytest.raises(KcnnError, match="whole number from 1 to 65,536 or auto"):
        budget.parse_batch_size("--batch-size", bad)


def test_the_clock_stops_before_an_epoch_that_would_end_past_the_limit():
    now = [0.0]
    clock = budget.Clock(100.0, now=lambda: now[0])
    clock.epoch_begins()
    now[0] = 30.0
    assert not clock.epoch_ends()  # 30 s done, another 30 s ends at 60
    clock.epoch_begins()
    now[0] = 70.0  # this one took 40 s: the slowest; 70 + 40 > 100
    assert clock.epoch_ends()
    assert not clock.passed()
    now[0] = 100.5
    assert clock.passed()


def test_a_cpu_search_finds_a_power_of_two_within_the_training_set():
    import keras

    def make():
        return keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(3, activation="softmax")])  # fmt: skip

    def compile_model(model):
        model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")

    found = budget.find_batch_size(make, (8, 8, 1), 3, 300, compile_model)
    assert found["batch_size"] == 256 and found["device"] == "CPU"
    assert "CPU" in found["bound"] and found["tried"] == [{"batch": 256, "fits": True}]


# --- keyed augmentation on Keras's layers ------------------------------------------------------

RECIPES = [
    {"randaugment": 2},
    {"augmix": 0.3},
    {"erasing": 0.5},
    {"mixup": 0.4},
    {"cutmix": 1.0},
    {"mixup": 0.4, "cutmix": 1.0},
]


def _batch(seed: int = 0, count: int = 16, side: int = 12, classes: int = 4):
    rs = np.random.RandomState(seed)
    images = rs.randint(0, 256, (count, side, side, 1)).astype(np.uint8)
    rows = np.eye(classes, dtype=np.float32)[rs.randint(0, classes, count)]
    return images, rows


def _stream(recipe: dict, seed: int, epoch: int, batches: int = 6):
    import tensorflow as tf

    from kcnn.data.keras_augment import batch_augmenter

    images, rows = _batch()
    augmenter = batch_augmenter(augment.recipe_augmentation(**recipe), seed)
    ds = tf.data.Dataset.from_tensors((images, rows)).repeat(batches)
    return [(x.numpy(), y.numpy()) for x, y in augment.augment_epoch(ds, epoch, augmenter)]


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda r: "+".join(r))
def test_a_keyed_recipe_gives_the_same_pixels_for_the_same_key(recipe):
    first, again = _stream(recipe, 83, 2), _stream(recipe, 83, 2)  # parallel map, other threads
    for (x1, y1), (x2, y2) in zip(first, again, strict=True):
        np.testing.assert_array_equal(x1, x2)
        np.testing.assert_array_equal(y1, y2)
    images, _ = _batch()
    assert not np.array_equal(first[0][0], images.astype(np.float32))  # it did something
    assert not np.array_equal(first[0][0], first[1][0])  # another batch, other draws
    other_epoch = _stream(recipe, 83, 3)
    assert not np.array_equal(first[0][0], other_epoch[0][0])
    other_seed = _stream(recipe, 84, 2)
    assert not np.array_equal(first[0][0], other_seed[0][0])
    for x, y in first:
        assert x.dtype == np.float32 and 0.0 <= x.min() and x.max() <= 255.0
        np.testing.assert_allclose(y.sum(axis=1), 1.0, rtol=1e-5)  # label rows stay distributions


def test_a_draw_outside_its_key_is_an_engine_error():
    from kcnn.data.keras_augment import KeyedSeedGenerator

    with pytest.raises(RuntimeError, match="outside"):
        KeyedSeedGenerator().next()


def test_randaugment_draws_its_ops_per_image():
    import tensorflow as tf

    from kcnn.data.keras_augment import KeyedRandAugment, keyed

    layer = KeyedRandAugment(value_range=(0, 255), num_ops=2)
    generator = keyed(layer)
    with generator.keyed(tf.constant([1, 2], tf.int64)):
        t = layer.get_random_transformation(tf.zeros((32, 8, 8, 1)))
    chosen = t["layer_idxes"].numpy()
    assert chosen.shape == (2, 32)
    assert len(set(chosen[0].tolist())) > 1  # not one choice for the whole batch


def test_mixup_mixes_labels_as_it_mixes_images():
    import tensorflow as tf

    from kcnn.data.keras_augment import mixer

    images = np.stack([np.full((4, 4, 1), 0.0), np.full((4, 4, 1), 200.0)]).astype(np.float32)
    rows = np.eye(2, dtype=np.float32)
    mix = mixer(augment.recipe_augmentation(mixup=1.0))
    x, y = mix(tf.constant(images), tf.constant(rows), tf.constant([5, 6], tf.int64))
    x, y = x.numpy(), y.numpy()
    for i in range(2):  # each image is λ·it + (1 − λ)·its partner, and so are its labels
        assert x[i].std() < 1e-4
        np.testing.assert_allclose(x[i].mean() / 200.0, y[i][1], atol=1e-5)


# --- soft targets: the loss and the accuracy ----------------------------------------------------


def _ce(row, p, smoothing=0.0):
    row = np.asarray(row, np.float64) * (1 - smoothing) + smoothing / len(row)
    return float(-np.sum(row * np.log(np.asarray(p, np.float64))))


def test_the_target_loss_is_cross_entropy_against_rows_and_numbers():
    from kcnn.models.losses import target_classes

    loss_class, _ = target_classes()
    p = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6]], np.float32)
    sparse = loss_class()(np.array([0, 2]), p)
    dense = loss_class()(np.eye(3, dtype=np.float32)[[0, 2]], p)
    hand = np.mean([_ce([1, 0, 0], p[0]), _ce([0, 0, 1], p[1])])
    assert float(sparse) == pytest.approx(hand, rel=1e-5)
    assert float(dense) == pytest.approx(hand, rel=1e-5)
    mixed = np.array([[0.7, 0.3, 0.0], [0.0, 0.25, 0.75]], np.float32)  # MixUp rows
    expected = np.mean([0.7 * _ce([1, 0, 0], p[0]) + 0.3 * _ce([0, 1, 0], p[0]),
                        0.25 * _ce([0, 1, 0], p[1]) + 0.75 * _ce([0, 0, 1], p[1])])  # fmt: skip
    assert float(loss_class()(mixed, p)) == pytest.approx(expected, rel=1e-5)
    smoothed = np.mean([_ce(mixed[i], p[i], 0.1) for i in range(2)])
    assert float(loss_class(label_smoothing=0.1)(mixed, p)) == pytest.approx(smoothed, rel=1e-5)


def test_the_distillation_term_matches_hinton_by_hand():
    from kcnn.models.losses import target_classes

    loss_class, _ = target_classes()
    p = np.array([[0.6, 0.3, 0.1]], np.float32)  # the student
    q = np.array([[0.5, 0.4, 0.1]], np.float32)  # the teacher
    y = np.concatenate([np.eye(3, dtype=np.float32)[[1]], q], axis=1)
    t, w = 3.0, 0.25

    def soften(probabilities):
        z = np.log(probabilities.astype(np.float64)) / t
        return np.exp(z) / np.exp(z).sum()

    ps, qs = soften(p[0]), soften(q[0])
    kl = float(np.sum(qs * (np.log(qs) - np.log(ps))))
    hand = (1 - w) * _ce([0, 1, 0], p[0]) + w * t * t * kl
    got = float(loss_class(teacher_weight=w, temperature=t)(y, p))
    assert got == pytest.approx(hand, rel=1e-5)
    # validation and test labels are numbers: no teacher there, the plain cross-entropy
    assert float(loss_class(teacher_weight=w, temperature=t)(np.array([1]), p)) == pytest.approx(
        _ce([0, 1, 0], p[0]), rel=1e-5
    )


def test_accuracy_of_a_mixed_row_counts_its_larger_label():
    from kcnn.models.losses import target_classes

    _, accuracy_class = target_classes()
    metric = accuracy_class()
    rows = np.array([[0.6, 0.4, 0, 0, 0, 0], [0.3, 0.7, 0, 0, 0, 0]], np.float32)  # + teacher
    rows[:, 3:] = [[0.2, 0.2, 0.6], [0.2, 0.2, 0.6]]
    p = np.array([[0.8, 0.1, 0.1], [0.8, 0.1, 0.1]], np.float32)
    metric.update_state(rows, p)
    assert float(metric.result()) == 0.5  # the first's larger label is 0 (right), the second's 1
    metric.reset_state()
    metric.update_state(np.array([0, 1]), p)
    assert float(metric.result()) == 0.5


def test_a_model_with_the_target_loss_saves_and_loads_safely(tmp_path):
    import keras

    from kcnn.engine import recipes
    from kcnn.models import saved

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
    model.compile(
        optimizer=recipes.make_optimizer("adam", 1e-3, ema=0.9),
        loss=recipes.make_loss(0.1, dense=True, teacher=(0.5, 2.0)),
        metrics=recipes.make_metrics(dense=True),
    )
    model.fit(np.zeros((4, 4)), np.concatenate([np.eye(3)[[0, 1, 2, 0]]] * 2, 1), verbose=0)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = saved.load(path, "retrain it")
    assert loaded.loss.teacher_weight == 0.5 and loaded.loss.temperature == 2.0
    assert loaded.optimizer.use_ema and loaded.optimizer.ema_momentum == 0.9


# --- EMA ----------------------------------------------------------------------------------------


def test_kerass_ema_is_the_average_the_docs_say_by_hand():
    import keras

    from kcnn.engine import recipes

    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1, use_bias=False)])
    model.compile(
        optimizer=recipes.make_optimizer("sgd", 0.1, ema=0.5),
        loss="mean_squared_error",
    )
    model.set_weights([np.array([[1.0]], np.float32)])
    x, y = np.array([[1.0]], np.float32), np.array([[0.0]], np.float32)
    w, average = 1.0, None
    for _ in range(3):
        model.train_on_batch(x, y)
        w = w - 0.1 * 2 * w  # the gradient of (w·1 − 0)² is 2w
        average = w if average is None else 0.5 * average + 0.5 * w  # a₁ = w₁, then d·a + (1−d)·w
    (weight,) = model.get_weights()
    assert weight[0, 0] == pytest.approx(w, rel=1e-6)
    with averaging.EmaWeights(model):
        assert model.get_weights()[0][0, 0] == pytest.approx(average, rel=1e-6)
    assert model.get_weights()[0][0, 0] == pytest.approx(w, rel=1e-6)  # the raw ones are back


@pytest.mark.parametrize(
    "raw, ema, kept",
    [({"accuracy": 0.9, "loss": 0.3}, {"accuracy": 0.91, "loss": 0.5}, "ema"),
     ({"accuracy": 0.9, "loss": 0.3}, {"accuracy": 0.9, "loss": 0.29}, "ema"),
     ({"accuracy": 0.9, "loss": 0.3}, {"accuracy": 0.9, "loss": 0.3}, "raw"),
     ({"accuracy": 0.9, "loss": 0.3}, {"accuracy": 0.89, "loss": 0.1}, "raw")],
)  # fmt: skip
def test_the_better_on_validation_is_kept(raw, ema, kept):
    assert averaging.better_of(raw, ema) == kept


# --- test-time augmentation ---------------------------------------------------------------------


def test_flip_views_are_the_image_and_its_mirror():
    batch = np.arange(2 * 3 * 4 * 1, dtype=np.float32).reshape(2, 3, 4, 1)
    plain, mirror = tta.views(batch, "flip")
    np.testing.assert_array_equal(plain, batch)
    np.testing.assert_array_equal(mirror[:, :, 0], batch[:, :, 3])


def test_crop_views_shift_towards_each_corner_repeating_the_edge():
    batch = np.arange(32 * 32, dtype=np.float32).reshape(1, 32, 32, 1)
    views = tta.views(batch, "crops")
    assert len(views) == 5 and all(v.shape == batch.shape for v in views)
    m = tta.margin(32)
    assert m == 2
    top_left = views[1]
    np.testing.assert_array_equal(top_left[0, m:, m:], batch[0, :-m, :-m])  # shifted by m
    np.testing.assert_array_equal(top_left[0, 0, 0], batch[0, 0, 0])  # the edge repeated
    bottom_right = views[4]
    np.testing.assert_array_equal(bottom_right[0, :-m, :-m], batch[0, m:, m:])


def test_tta_averages_the_views_probabilities():
    batch = np.random.RandomState(0).rand(3, 8, 8, 1).astype(np.float32)

    def forward(x):  # a "model" whose output depends on the view
        score = x[:, :, :4].mean(axis=(1, 2, 3))
        return np.stack([score, 1 - score], axis=1)

    views = tta.views(batch, "crops")
    hand = np.mean([forward(v) for v in views], axis=0)
    np.testing.assert_allclose(tta.average(forward, batch, "crops"), hand, rtol=1e-6)
    np.testing.assert_allclose(tta.average(forward, batch, None), forward(batch), rtol=1e-6)


def test_flip_is_refused_where_a_mirror_is_another_class():
    with pytest.raises(KcnnError, match="use --tta crops"):
        tta.check("flip", "digits")
    assert tta.check("flip", "cifar10") == "flip"
    assert tta.check("none", "digits") is None
    assert tta.check("crops", "mnist") == "crops"


# --- the mean of the last epochs ----------------------------------------------------------------


def test_the_weight_sum_averages_only_the_last_epochs_and_remembers_one_back():
    summed = averaging.WeightSum(first=3)
    for epoch in range(5):
        summed.add(epoch, [np.full((2,), float(epoch), np.float32)])
    assert summed.count == 2 and summed.done == 5
    np.testing.assert_array_equal(summed.mean([np.zeros(2, np.float32)])[0], [3.5, 3.5])
    sums, count = summed.at(4)  # the checkpoint one epoch back
    assert count == 1 and sums[0][0] == 3.0
    with pytest.raises(RuntimeError):
        summed.at(2)


def test_batchnorm_statistics_are_recomputed_as_the_mean_of_each_batch():
    import keras

    model = keras.Sequential([keras.Input((3,)), keras.layers.BatchNormalization()])
    rs = np.random.RandomState(0)
    batches = [rs.randn(8, 3).astype(np.float32) * (i + 1) + i for i in range(4)]
    seen = averaging.recompute_batchnorm(model, batches)
    layer = model.layers[0]
    assert seen == 4 and layer.momentum == 0.99  # its own momentum back
    np.testing.assert_allclose(
        layer.moving_mean.numpy(), np.mean([b.mean(axis=0) for b in batches], axis=0), rtol=1e-5
    )
    np.testing.assert_allclose(
        layer.moving_variance.numpy(),
        np.mean([b.var(axis=0) for b in batches], axis=0),
        rtol=1e-4,
    )
    no_bn = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    assert averaging.recompute_batchnorm(no_bn, batches) == 0


def test_augmentation_recipes_are_recorded_by_what_is_on():
    recipe = augment.recipe_augmentation(randaugment=2, mixup=0.2)
    assert recipe.active and recipe.mixes
    assert recipe.to_dict() == {"randaugment": 2, "randaugment_magnitude": 0.5, "augmix": 0.0,
                                "erasing": 0.0, "mixup": 0.2, "cutmix": 0.0}  # fmt: skip
    assert not augment.recipe_augmentation().active
    assert math.isclose(augment.recipe_augmentation(erasing=0.25).erasing, 0.25)
