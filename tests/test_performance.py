"""The speed defaults change nothing but speed: batches are their images prepared batch by batch,
each epoch's shuffle depends on (seed, epoch) alone, and several steps per execution train to the
very same history as one."""

import numpy as np
import pytest

from kcnn.data import pipeline
from kcnn.engine import performance


def _data(count=90, shape=(28, 28, 1), seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (count, *shape), dtype=np.uint8), rng.integers(0, 3, count)


def _as_lists(ds):
    return [(images.numpy(), labels.numpy()) for images, labels in ds]


def _assert_same(a, b):
    assert len(a) == len(b)
    for (xa, ya), (xb, yb) in zip(a, b, strict=True):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)


def _row_ids(count):
    """Labels that name each image's row, so a batch says which images it should hold."""
    return np.arange(count)


def _assert_prepared_rows(batches, x, prepare):
    for images, rows in batches:
        np.testing.assert_array_equal(images, prepare(x[rows]).numpy())


def test_training_batches_are_their_images_prepared_batch_by_batch():
    x, _ = _data()
    y = _row_ids(len(x))
    batches = _as_lists(pipeline.epoch_batches(x, y, (32, 32, 1), 20, 7, 0, 3))
    _assert_prepared_rows(batches, x, pipeline.prepare_batch_fn((28, 28, 1), (32, 32, 1)))
    assert len(batches) == 3 * pipeline.steps_per_epoch(len(y), 20)
    # every epoch holds every image once, in a new order
    first, second = (np.concatenate([b[1] for b in batches[i * 5 : i * 5 + 5]]) for i in (0, 1))
    assert sorted(first) == sorted(second) == sorted(y) and not np.array_equal(first, second)


def test_an_epoch_depends_only_on_seed_and_epoch_number():
    x, y = _data()
    steps = pipeline.steps_per_epoch(len(y), 20)
    whole = _as_lists(pipeline.epoch_batches(x, y, (32, 32, 1), 20, 7, 0, 4))
    resumed = _as_lists(pipeline.epoch_batches(x, y, (32, 32, 1), 20, 7, 2, 4))
    _assert_same(whole[2 * steps :], resumed)
    other_seed = _as_lists(pipeline.epoch_batches(x, y, (32, 32, 1), 20, 8, 2, 4))
    assert not all(np.array_equal(a[1], b[1]) for a, b in zip(resumed, other_seed, strict=True))


def test_evaluation_sets_are_their_images_prepared_with_preprocess_and_resize():
    x, _ = _data(40, (8, 8, 3))
    y = _row_ids(len(x))
    preprocess = lambda t: t - 127.5  # noqa: E731
    prepare = pipeline.prepare_batch_fn((8, 8, 3), (16, 16, 3), preprocess)
    for shuffle in (False, True):
        ds = pipeline.make_dataset(x, y, (16, 16, 3), 16, shuffle, 3, preprocess)
        batches = _as_lists(ds.repeat(2))
        _assert_prepared_rows(batches, x, prepare)
        assert sorted(np.concatenate([b[1] for b in batches[:3]])) == list(y)


def test_steps_per_execution_divides_the_epoch():
    assert performance.steps_per_execution(25) == 25
    assert performance.steps_per_execution(100) == 25  # largest divisor within the limit
    assert performance.steps_per_execution(64) == 32
    assert performance.steps_per_execution(37) == 1  # a prime epoch: one step per call
    assert performance.steps_per_execution(1) == 1
    for steps in range(1, 200):
        n = performance.steps_per_execution(steps)
        assert steps % n == 0 and 1 <= n <= performance.MAX_STEPS_PER_EXECUTION
    with pytest.raises(ValueError):
        performance.steps_per_execution(0)


def test_compile_options_train_to_the_same_history_as_one_step_per_call():
    import keras
    import tensorflow as tf

    from kcnn.models import forms

    x, y = _data(96)
    x_val, y_val = _data(30, seed=1)
    steps = pipeline.steps_per_epoch(len(y), 16)
    histories = []
    for options in ({}, performance.compile_options(steps)):
        keras.utils.set_random_seed(5)
        tf.config.experimental.enable_op_determinism()
        model = forms.build("lenet5", "sequential", (32, 32, 1), 3)
        model.compile(
            optimizer="adam",
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
            **options,
        )
        history = model.fit(
            pipeline.epoch_batches(x, y, (32, 32, 1), 16, 5, 0, 2),
            validation_data=pipeline.make_dataset(x_val, y_val, (32, 32, 1), 16),
            epochs=2,
            steps_per_epoch=steps,
            verbose=0,
        )
        histories.append(history.history)
    assert performance.compile_options(steps)["steps_per_execution"] == 6
    assert histories[0] == histories[1]


def test_training_state_built_before_fit_traces_the_step_once_and_trains_the_same():
    import keras
    import tensorflow as tf

    from kcnn.models import forms

    x, y = _data(64)
    runs = []
    for prebuild in (False, True):
        keras.utils.set_random_seed(5)
        tf.config.experimental.enable_op_determinism()
        model = forms.build("lenet5", "functional", (32, 32, 1), 3)
        model.compile(
            optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"]
        )
        traces, step = [], model.train_step
        model.train_step = lambda data, step=step, traces=traces: traces.append(1) or step(data)
        if prebuild:
            performance.build_training_state(model, (32, 32, 1))
            assert model.optimizer.built
            assert all(float(keras.ops.sum(v)) == 0 for m in model.metrics for v in m.variables)
        history = model.fit(
            pipeline.epoch_batches(x, y, (32, 32, 1), 16, 5, 0, 2),
            epochs=2,
            steps_per_epoch=pipeline.steps_per_epoch(len(y), 16),
            verbose=0,
        )
        runs.append((len(traces), history.history))
    assert runs[1][0] == 1  # one trace of the training step for the whole fit
    assert runs[0][1] == runs[1][1]  # and the very same history, bit for bit


def test_onednn_kernels_are_kcnn_default_and_the_users_choice_stands():
    """kcnn turns on oneDNN's CPU kernels where TensorFlow leaves them off (AVX2 machines);
    a TF_ENABLE_ONEDNN_OPTS the user set is kept."""
    import os
    import subprocess
    import sys

    probe = "import os, kcnn; print(os.environ['TF_ENABLE_ONEDNN_OPTS'])"
    env = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    for given, expected in ((None, "1"), ("0", "0"), ("1", "1")):
        run_env = env if given is None else {**env, "TF_ENABLE_ONEDNN_OPTS": given}
        out = subprocess.run(
            [sys.executable, "-c", probe], env=run_env, capture_output=True, text=True, timeout=60
        )
        assert out.stdout.strip() == expected, (given, out.stdout, out.stderr)
