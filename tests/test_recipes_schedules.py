"""Recipes: schedules, optimizers, label smoothing, plateau and early stopping, exact resume."""

import math
import subprocess
import sys

import keras
import numpy as np
import pytest

from kcnn.engine import recipes
from kcnn.engine.callbacks import early_stopping_callback, learning_rate_callback
from kcnn.engine.recipes import learning_rate, make_loss, make_optimizer, plateau_scale
from kcnn.errors import KcnnError


def test_constant_and_warmup():
    assert [learning_rate(e, 0.1, 5) for e in range(5)] == [0.1] * 5
    rates = [learning_rate(e, 0.1, 10, "constant", warmup=3) for e in range(5)]
    assert rates == pytest.approx([0.025, 0.05, 0.075, 0.1, 0.1])


def test_cosine_starts_at_base_and_falls_to_the_floor():
    rates = [learning_rate(e, 0.1, 10, "cosine") for e in range(10)]
    assert rates[0] == 0.1 and (np.diff(rates) < 0).all()
    assert rates[5] == pytest.approx(0.05)  # halfway: (1 + cos(π/2)) / 2
    assert rates[9] == pytest.approx(0.1 * (1 + math.cos(math.pi * 0.9)) / 2)
    floored = [learning_rate(e, 0.1, 10, "cosine", min_lr=0.01) for e in range(10)]
    assert floored[5] == pytest.approx(0.055) and min(floored) > 0.01
    warm = [learning_rate(e, 0.1, 12, "cosine", warmup=2) for e in range(12)]
    assert warm[:3] == pytest.approx([0.1 / 3, 0.2 / 3, 0.1]) and warm[7] == pytest.approx(0.05)


def test_step_divides_by_ten_at_half_and_three_quarters():
    rates = [learning_rate(e, 1.0, 8, "step") for e in range(8)]
    assert rates == pytest.approx([1, 1, 1, 1, 0.1, 0.1, 0.01, 0.01])
    warm = [learning_rate(e, 1.0, 10, "step", warmup=2) for e in range(10)]
    assert warm == pytest.approx([1 / 3, 2 / 3, 1, 1, 1, 1, 0.1, 0.1, 0.01, 0.01])


def test_one_cycle_climbs_then_anneals():
    rates = [learning_rate(e, 1.0, 10, "one-cycle") for e in range(10)]
    assert rates[0] == pytest.approx(0.04) and rates[3] == 1.0  # round(0.3 * 10) = 3 epochs up
    assert rates[1] == pytest.approx(0.04 + 0.96 / 3)
    assert (np.diff(rates[:4]) > 0).all()
    assert (np.diff(rates[3:]) < 0).all()
    assert learning_rate(2, 1.0, 10, "one-cycle", warmup=2) == 1.0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"schedule": "linear"}, "unknown learning-rate schedule 'linear'"),
        ({"warmup": 10}, "--warmup must be"),
        ({"min_lr": -1}, "--min-lr must be"),
    ],
)
def test_bad_schedules_are_refused(kwargs, message):
    with pytest.raises(KcnnError, match=message):
        learning_rate(0, 0.1, 10, **kwargs)


def test_optimizers():
    sgd = make_optimizer("sgd", 0.1, weight_decay=5e-4, momentum=0.9, nesterov=True)
    assert isinstance(sgd, keras.optimizers.SGD) and sgd.nesterov and sgd.momentum == 0.9
    assert sgd.weight_decay == pytest.approx(5e-4)
    adamw = make_optimizer("adamw", 1e-3, weight_decay=1e-4)
    assert isinstance(adamw, keras.optimizers.AdamW) and adamw.weight_decay == pytest.approx(1e-4)
    assert make_optimizer("adam", 1e-3).weight_decay is None
    assert isinstance(make_optimizer("rmsprop", 1e-3, 1e-4), keras.optimizers.RMSprop)


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        (("adam", 1e-3), {"momentum": 0.9}, "apply to the sgd optimizer, not adam"),
        (("rmsprop", 1e-3), {"nesterov": True}, "apply to the sgd optimizer, not rmsprop"),
        (("sgd", 1e-2), {"nesterov": True}, "--nesterov needs a --momentum"),
        (("sgd", 1e-2), {"momentum": 1.5}, "--momentum must be"),
        (("adamw", 1e-3), {"weight_decay": -1}, "--weight-decay must be"),
        (("lion", 1e-3), {}, "unknown optimizer 'lion'"),
    ],
)
def test_bad_optimizer_settings_are_refused(args, kwargs, message):
    with pytest.raises(KcnnError, match=message):
        make_optimizer(*args, **kwargs)


def _tiny_model(seed=0):
    keras.utils.set_random_seed(seed)
    return keras.Sequential(
        [
            keras.Input((4,)),
            keras.layers.Dense(8, activation="relu"),
            keras.layers.Dense(3, activation="softmax"),
        ]
    )


def _data(n=48, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4)).astype("float32")
    return x, (x[:, 0] > 0).astype("int64") + (x[:, 1] > 1).astype("int64")


def test_label_smoothing_loss_matches_keras_and_survives_save_and_load(tmp_path):
    y = np.array([0, 2, 1])
    p = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8], [0.3, 0.4, 0.3]], "float32")
    loss = make_loss(0.1)
    expected = keras.losses.CategoricalCrossentropy(label_smoothing=0.1)(np.eye(3)[y], p)
    assert float(loss(y, p)) == pytest.approx(float(expected), rel=1e-6)
    assert float(loss(y[:, None], p)) == pytest.approx(float(expected), rel=1e-6)
    assert float(loss(y, p)) > float(keras.losses.SparseCategoricalCrossentropy()(y, p))
    assert make_loss(0.0) == "sparse_categorical_crossentropy"
    with pytest.raises(KcnnError, match="--label-smoothing must be"):
        make_loss(1.0)

    model = _tiny_model()
    model.compile(optimizer="adam", loss=loss, metrics=["accuracy"])
    x, labels = _data()
    history = model.fit(x, labels, epochs=1, batch_size=16, verbose=0).history
    predicted = model.predict(x, verbose=0).argmax(axis=1)
    assert history["accuracy"][0] == pytest.approx(float((predicted == labels).mean()), abs=0.2)
    evaluated = model.evaluate(x, labels, verbose=0, return_dict=True)
    assert evaluated["accuracy"] == pytest.approx(float((predicted == labels).mean()))
    model.save(tmp_path / "model.keras")
    loaded = keras.models.load_model(tmp_path / "model.keras", safe_mode=True)
    assert loaded.loss.label_smoothing == 0.1
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0))


@pytest.mark.slow
def test_keras_alone_loads_a_smoothed_model_without_its_training_configuration(tmp_path):
    model = _tiny_model()
    model.compile(optimizer="adam", loss=make_loss(0.1), metrics=["accuracy"])
    model.save(tmp_path / "model.keras")
    code = (
        "import sys, keras; m = keras.models.load_model(sys.argv[1], compile=False); "
        "assert 'kcnn' not in sys.modules and m.output_shape == (None, 3)"
    )
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "model.keras")], check=True)


def test_plateau_scale_from_recorded_losses():
    assert plateau_scale([1.0, 0.9, 0.8], factor=0.5, patience=2) == 1.0
    assert plateau_scale([1.0, 1.0, 1.1], factor=0.5, patience=2) == 0.5
    assert plateau_scale([1.0, 1.0, 1.1, 1.2, 1.0], factor=0.5, patience=2) == 0.25
    assert plateau_scale([1.0, 1.0, 1.1, 0.5, 0.6], factor=0.5, patience=2) == 0.5


def _fit(model, x, y, callbacks, first, last, val=None):
    return model.fit(
        x,
        y,
        batch_size=16,
        epochs=last,
        initial_epoch=first,
        shuffle=False,
        validation_data=val,
        callbacks=callbacks,
        verbose=0,
    ).history


def test_plateau_reduces_the_rate_and_logs_it():
    x, y = _data()
    val = (x[:8], (y[:8] + 1) % 3)  # contrived: fitting the training data worsens this loss
    model = _tiny_model()
    model.compile(optimizer=make_optimizer("adam", 0.05), loss="sparse_categorical_crossentropy")
    callback = learning_rate_callback(0.05, 8, plateau=(0.5, 2))
    history = _fit(model, x, y, [callback], 0, 8, val)
    rates, losses = history["learning_rate"], history["val_loss"]
    assert rates[0] == 0.05 and min(rates) < 0.05
    for epoch, rate in enumerate(rates):
        assert rate == pytest.approx(0.05 * plateau_scale(losses[:epoch], 0.5, 2))
    assert float(model.optimizer.learning_rate) == pytest.approx(rates[-1])


def test_resume_mid_schedule_gives_the_same_rates_and_weights(tmp_path):
    x, y = _data()
    val = (x[:8], (y[:8] + 1) % 3)

    def compiled():
        model = _tiny_model()
        model.compile(
            optimizer=make_optimizer("adamw", 0.02, weight_decay=1e-3),
            loss=make_loss(0.1),
            metrics=["accuracy"],
        )
        return model

    def callback(val_losses=()):
        return learning_rate_callback(
            0.02, 6, "cosine", warmup=1, plateau=(0.5, 1), val_losses=val_losses
        )

    whole = compiled()
    straight = _fit(whole, x, y, [callback()], 0, 6, val)

    first = compiled()
    before = _fit(first, x, y, [callback()], 0, 3, val)
    first.save(tmp_path / "checkpoint.keras")  # what kcnn's checkpoint keeps, optimizer included
    resumed = keras.models.load_model(tmp_path / "checkpoint.keras", safe_mode=True)
    after = _fit(resumed, x, y, [callback(before["val_loss"])], 3, 6, val)

    assert before["learning_rate"] + after["learning_rate"] == straight["learning_rate"]
    assert len(set(straight["learning_rate"])) > 3  # the schedule and the plateau both moved it
    for a, b in zip(whole.get_weights(), resumed.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def _contrived_early_stop(patience, epochs=12):
    """Training on x fits the labels; the validation labels are the training labels shifted, so
    validation loss is best after a few epochs and then worsens."""
    x, y = _data()
    val = (x[:16], (y[:16] + 1) % 3)
    model = _tiny_model(seed=3)
    model.compile(optimizer=make_optimizer("adam", 0.05), loss="sparse_categorical_crossentropy")
    return model, x, y, val, epochs


def test_early_stopping_restores_the_best_epoch():
    model, x, y, val, epochs = _contrived_early_stop(2)
    weights = []
    keep = keras.callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: weights.append(model.get_weights())
    )
    stopper = early_stopping_callback(2)
    history = _fit(model, x, y, [keep, stopper], 0, epochs, val)
    losses = history["val_loss"]
    best = int(np.argmin(losses))
    summary = stopper.summary()
    assert len(losses) == best + 3 < epochs  # stopped two epochs after the best
    assert summary["best_epoch"] == best + 1 and summary["stopped_early"]
    assert summary["restored_best_weights"] and "for 2 epochs" in summary["stop_reason"]
    assert summary["best_val_loss"] == losses[best]
    for a, b in zip(model.get_weights(), weights[best], strict=True):
        np.testing.assert_array_equal(a, b)


def test_early_stopping_resumes_from_its_state():
    model, x, y, val, epochs = _contrived_early_stop(3)
    straight = early_stopping_callback(3)
    whole = _fit(model, x, y, [straight], 0, epochs, val)
    stop = len(whole["val_loss"])
    assert stop < epochs

    model, x, y, val, epochs = _contrived_early_stop(3)
    first = early_stopping_callback(3)
    split = int(np.argmin(whole["val_loss"])) + 1  # interrupted after the best epoch
    before = _fit(model, x, y, [first], 0, split, val)
    saved = first.state()
    second = early_stopping_callback(3, history=before["val_loss"])
    second.restore(saved)
    after = _fit(model, x, y, [second], split, epochs, val)
    assert before["val_loss"] + after["val_loss"] == pytest.approx(whole["val_loss"], rel=1e-5)
    assert second.summary()["best_epoch"] == straight.summary()["best_epoch"]
    assert second.summary()["restored_best_weights"]


def test_bad_recipe_numbers_are_refused():
    with pytest.raises(KcnnError, match="--early-stopping must be"):
        early_stopping_callback(0)
    with pytest.raises(KcnnError, match="--plateau-factor must be"):
        learning_rate_callback(0.1, 5, plateau=(1.5, 2))
    assert recipes.SCHEDULES == ("constant", "cosine", "step", "one-cycle")
