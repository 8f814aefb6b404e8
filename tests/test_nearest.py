"""predict's second check of unfamiliar images: the distance to the nearest training image in the
model's own feature space (kcnn.data.nearest, Sun et al. 2022), recorded by every run with a
validation split (training_features.npz) and read back as untrusted.

The record is checked against features recomputed here with plain Keras (a second model ending at
the last Dense layer's input) and nearest neighbours found by scikit-learn.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import kcnn
from PIL import Image
from sklearn.neighbors import NearestNeighbors

from kcnn.data import nearest
from kcnn.runs.records import Damaged


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


# --- the arithmetic ---------------------------------------------------------------------------


def test_scores_are_the_distance_to_the_nearest_kept_feature():
    rng = np.random.default_rng(0)
    training, held_out, queries = (
        rng.normal(size=(300, 16)),
        rng.normal(size=(80, 16)),
        rng.normal(size=(50, 16)),
    )
    check = nearest.fit(training, held_out)
    kept = check.features.astype(np.float64)
    assert np.allclose(kept, _unit(training), atol=1e-3)  # float16
    index = NearestNeighbors(n_neighbors=1).fit(kept)
    expected = index.kneighbors(_unit(queries))[0][:, 0]
    assert np.allclose(check.scores(queries), expected, atol=1e-4)
    held = index.kneighbors(_unit(held_out))[0][:, 0]
    assert check.threshold == pytest.approx(np.percentile(held, nearest.PERCENTILE), abs=1e-4)
    assert np.array_equal(check.far(queries), check.scores(queries) > check.threshold)


def test_a_scaled_copy_of_a_training_feature_is_at_distance_zero():
    rng = np.random.default_rng(1)
    training = rng.normal(size=(100, 8))
    check = nearest.fit(training, rng.normal(size=(60, 8)))
    assert check.scores(3.0 * training[:5]).max() < 1e-2


def test_too_few_held_out_images_or_only_zero_features_record_nothing():
    rng = np.random.default_rng(2)
    assert (
        nearest.fit(rng.normal(size=(100, 8)), rng.normal(size=(nearest.MIN_HELD_OUT - 1, 8)))
        is None
    )
    assert nearest.fit(np.zeros((100, 8)), rng.normal(size=(60, 8))) is None
    mixed = np.vstack([np.zeros((10, 8)), rng.normal(size=(20, 8))])  # dead features are left out
    assert len(nearest.fit(mixed, rng.normal(size=(60, 8))).features) == 20


@pytest.mark.parametrize(
    "change, words",
    [
        ({"version": np.asarray(99)}, "version 99"),
        ({"k": np.asarray(5)}, "k 5"),
        ({"threshold": np.asarray(np.nan)}, "threshold"),
        ({"threshold": np.asarray(2.5)}, "threshold"),
        ({"features": np.full((4, 8), np.nan, np.float16)}, "length 1"),
        ({"features": np.ones((4, 8), np.float16)}, "length 1"),
        ({"features": np.zeros((nearest.SAMPLE + 1, 2), np.float16)}, "keeps"),
    ],
)
def test_a_record_that_is_not_what_kcnn_writes_is_refused(change, words):
    rng = np.random.default_rng(3)
    arrays = nearest.fit(rng.normal(size=(50, 8)), rng.normal(size=(60, 8))).arrays()
    with pytest.raises(ValueError, match=words):
        nearest.Nearest.from_arrays({**arrays, **change})


# --- the features ------------------------------------------------------------------------------


def test_the_three_forms_give_the_same_features():
    from kcnn.models import forms, penultimate

    x = np.random.default_rng(4).random((3, 32, 32, 1)).astype("float32")
    source = forms.build("lenet5", "functional", (32, 32, 1), 10)
    found = []
    for api in ("sequential", "functional", "subclassed"):
        model = forms.build("lenet5", api, (32, 32, 1), 10)
        forms.copy_weights(source, model)
        found.append(np.asarray(penultimate.extractor(model)(x)))
    assert found[0].shape == (3, 84)
    assert all(np.allclose(f, found[0], atol=1e-6) for f in found)


# --- a run's record and predict ----------------------------------------------------------------


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    result = kcnn("train", "lenet5", "--dataset", "digits", "--epochs", "3", "--out", out, "--json")
    assert result.returncode == 0, result.stderr[-2000:]
    return Path(json.loads(result.stdout)["runs"][0]["run_dir"])


def _features(run: Path, images: np.ndarray) -> np.ndarray:
    """The model's features recomputed with plain Keras: a model ending at the last Dense's input."""
    import keras

    from kcnn.use import predict

    loaded = predict.load(run)
    model = loaded.model
    last = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)][-1]
    features = keras.Model(model.inputs[0], last.input)
    return np.asarray(features(loaded.prepare(images), training=False)).reshape(len(images), -1)


def test_the_record_holds_the_models_features_of_evenly_spaced_training_images(run):
    from kcnn import defaults
    from kcnn.data import datasets, splits
    from kcnn.runs.run import RunFolder

    check = RunFolder(run).nearest()
    data = datasets.load("digits", None, defaults.SEED, defaults.SHAPES_COUNT)
    parts = splits.make_splits(data, defaults.VAL_SPLIT, defaults.SEED, None, defaults.TEST_SPLIT)
    rows = np.unique(np.linspace(0, len(parts.y_train) - 1, nearest.SAMPLE).round().astype(int))
    expected = _unit(_features(run, parts.x_train[rows]))
    assert check.features.shape == expected.shape
    assert np.allclose(check.features.astype(np.float64), expected, atol=2e-3)
    held = NearestNeighbors(n_neighbors=1).fit(check.features.astype(np.float64))
    distances = held.kneighbors(_unit(_features(run, parts.x_val)))[0][:, 0]
    assert check.threshold == pytest.approx(np.percentile(distances, nearest.PERCENTILE), abs=2e-3)


def test_predict_gives_each_images_feature_distance_and_warns_of_noise(run, tmp_path):
    rng = np.random.default_rng(5)
    noise = tmp_path / "noise.png"
    Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8)).save(noise)
    result = kcnn("predict", run, noise, "--json")
    assert result.returncode == 0, result.stderr
    (answer,) = json.loads(result.stdout)
    from kcnn.runs.run import RunFolder

    check = RunFolder(run).nearest()
    image = np.asarray(Image.open(noise))[None, ..., None]
    expected = check.scores(_features(run, image))[0]
    assert answer["feature_distance"]["score"] == pytest.approx(expected, abs=1e-4)
    assert answer["feature_distance"]["threshold"] == pytest.approx(check.threshold)
    assert answer["feature_distance"]["far"] is bool(expected > check.threshold)


@pytest.mark.slow  # 25 epochs of shapes: what a shapes model must learn before its features mean much
def test_a_photo_among_shapes_is_far_as_the_model_sees_it_where_pixels_say_nothing(tmp_path):
    """The case that made the check: a shapes model, whose pixel check lets a photo pass, finds
    it far in its feature space (Grace Hopper's portrait, shipped with matplotlib)."""
    from matplotlib import cbook

    photo = cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
    trained = kcnn("train", "lenet5", "--dataset", "shapes", "--api", "functional", "--epochs", "25",
                   "--out", tmp_path, "--json")  # fmt: skip
    assert trained.returncode == 0, trained.stderr[-2000:]
    shapes_run = json.loads(trained.stdout)["runs"][0]["run_dir"]
    result = kcnn("predict", shapes_run, photo, "--json")
    assert result.returncode == 0, result.stderr
    (answer,) = json.loads(result.stdout)
    assert answer["distance"]["far"] is False and answer["feature_distance"]["far"] is True
    (line,) = result.stderr.splitlines()
    assert (
        line.startswith("warning: ")
        and "lies far from the run's training images as the model" in line
    )


@pytest.mark.parametrize("plant", ["not-npz", "extra-array", "nan", "width", "link", "fifo"])
def test_a_damaged_record_is_one_warning_and_images_are_still_predicted(run, tmp_path, plant):
    from kcnn.runs import arrays

    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    path = copy / "training_features.npz"
    found = dict(np.load(path))
    if plant == "not-npz":
        path.write_bytes(b"PK\x03\x04 not an archive")
    elif plant == "extra-array":
        path.write_bytes(arrays.to_bytes({**found, "payload": np.zeros(3)}))
    elif plant == "nan":
        path.write_bytes(arrays.to_bytes({**found, "features": found["features"] * np.nan}))
    elif plant == "width":  # features of another width than the model's (84)
        wider = _unit(np.random.default_rng(6).normal(size=(50, 90))).astype(np.float16)
        path.write_bytes(arrays.to_bytes({**found, "features": wider}))
    elif plant == "link":
        path.unlink()
        (tmp_path / "elsewhere.npz").write_bytes(arrays.to_bytes(found))
        path.symlink_to(tmp_path / "elsewhere.npz")
    else:
        import os

        path.unlink()
        os.mkfifo(path)
    image = tmp_path / "digit.png"
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(image)
    result = kcnn("predict", copy, image, "--json", timeout=120)
    assert result.returncode == 0, result.stderr
    (line,) = [line for line in result.stderr.splitlines() if "training_features.npz" in line]
    assert line.startswith("warning: ") and "features" in line
    assert json.loads(result.stdout)[0]["feature_distance"] is None


def test_a_hostile_record_is_damaged_when_read_through_the_run_folder(run, tmp_path):
    from kcnn.runs.run import RunFolder

    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    (copy / "training_features.npz").write_bytes(b"\x00" * 100)
    with pytest.raises(Damaged, match="training_features.npz"):
        RunFolder(copy).nearest()


@pytest.mark.slow  # a TFLite export
def test_an_exported_model_is_checked_on_pixels_alone(run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    exported = kcnn("export", copy, "--format", "tflite", "--json")
    assert exported.returncode == 0, exported.stderr[-2000:]
    (model,) = copy.rglob("*.tflite")
    image = tmp_path / "digit.png"
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(image)
    result = kcnn("predict", copy, image, "--model", model, "--json")
    assert result.returncode == 0, result.stderr
    (answer,) = json.loads(result.stdout)
    assert answer["feature_distance"] is None and answer["distance"] is not None
