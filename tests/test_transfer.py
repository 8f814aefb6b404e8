"""`kcnn transfer`: reference parameter counts, where weights come from, frozen means frozen,
feature caching changes nothing but the time, fine-tuning unfreezes only the top layers."""

from __future__ import annotations

import json

import numpy as np
import pytest

from kcnn.commands.transfer import build, resolve_weights, transfer, unfreeze_top
from kcnn.engine.config import TransferConfig
from kcnn.models import backbones
from kcnn.runs.records import read_csv, read_json

# The reference figures of transfer learning: 32×32×3 input, 10 classes, seed 003's head.
REFERENCE = {
    "vgg16": (14_789_258, 74_570),
    "mobilenetv2": (2_430_858, 172_874),
    "resnet50v2": (23_835_978, 271_178),
}

SMALL = dict(dataset="shapes", limit=48, epochs=1, batch_size=16, shapes_count=120)


@pytest.fixture
def cifar_like(tmp_path):
    """A tiny 32×32×3, 10-class .npz data set: the input the reference counts are given for."""
    rng = np.random.default_rng(0)
    path = tmp_path / "tiny10.npz"
    np.savez(
        path,
        x_train=rng.integers(0, 256, (40, 32, 32, 3), dtype=np.uint8),
        y_train=np.arange(40) % 10,
        x_test=rng.integers(0, 256, (20, 32, 32, 3), dtype=np.uint8),
        y_test=np.arange(20) % 10,
    )
    return path


@pytest.fixture
def refuse_download(monkeypatch):
    """keras.utils.get_file fails as it does without a network; the calls it got are kept."""
    import keras

    calls = []

    def refuse(fname=None, origin=None, **kwargs):
        calls.append({"fname": fname, "origin": origin, **kwargs})
        raise OSError(f"URL fetch failure on {origin}: network unreachable (test)")

    monkeypatch.setattr(keras.utils, "get_file", refuse)
    return calls


def _backbone_weights(model, name):
    return model.get_layer(name).get_weights()


def _assert_same(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)


@pytest.mark.slow  # builds VGG16, MobileNetV2 and ResNet50V2
def test_all_three_backbones_reproduce_the_reference_parameter_counts(cli, cifar_like, tmp_path):
    result = cli(
        "transfer",
        "all",
        "--dataset",
        cifar_like,
        "--weights",
        "none",
        "--epochs",
        "1",
        "--batch-size",
        "16",
        "--out",
        tmp_path / "runs",
        "--json",
    )
    assert result.code == 0, result.err
    answer = json.loads(result.out)
    assert [m["backbone"] for m in answer["runs"]] == list(REFERENCE)
    for m in answer["runs"]:
        total, trainable = REFERENCE[m["backbone"]]
        assert (m["total_params"], m["trainable_params"], m["frozen_params"]) == (
            total,
            trainable,
            total - trainable,
        )
        assert m["params"] == {
            "total": total,
            "trainable": trainable,
            "non_trainable": total - trainable,
        }
        assert m["weights_source"] == "none (random initialisation)" and m["status"] == "completed"
    folder = answer["comparison"]
    rows = read_csv(f"{folder}/comparison.csv")
    assert [r["backbone"] for r in rows] == list(REFERENCE)
    assert [int(r["total_params"]) for r in rows] == [t for t, _ in REFERENCE.values()]


def test_weights_file_is_loaded_and_stays_frozen(tmp_path):
    import keras

    vgg = backbones.get("vgg16")
    keras.utils.set_random_seed(
        1
    )  # not the run's seed: loaded weights must differ from its own init
    saved = vgg.build((32, 32, 3))
    path = tmp_path / "my_vgg16.weights.h5"
    saved.save_weights(path)

    result = transfer(
        TransferConfig(["vgg16"], weights=str(path), out=str(tmp_path / "runs"), **SMALL),
        quiet=True,
    )
    run = result.runs[0]
    assert run.metrics["weights_source"] == f"file {path}" and run.metrics["weights_kind"] == "file"
    # frozen means frozen: after training the backbone still holds exactly the file's weights,
    # in the live model and in the saved model.keras
    _assert_same(_backbone_weights(run.model, "vgg16"), saved.get_weights())
    reloaded = keras.saving.load_model(run.run_dir / "model.keras")
    _assert_same(_backbone_weights(reloaded, "vgg16"), saved.get_weights())
    assert read_json(run.run_dir / "config.json")["weights_file"] == str(path)


def test_weights_file_that_does_not_fit_is_refused(cli, tmp_path):
    mobilenet = backbones.get("mobilenetv2").build((32, 32, 3))
    path = tmp_path / "mobilenet.weights.h5"
    mobilenet.save_weights(path)
    result = cli(
        "transfer",
        "vgg16",
        "--weights",
        path,
        "--dataset",
        "shapes",
        "--limit",
        "24",
        "--out",
        tmp_path / "runs",
    )
    assert result.code == 2
    assert result.err.count("\n") == 1 and "does not fit vgg16" in result.err
    assert not list((tmp_path / "runs").glob("*"))


def test_imagenet_weights_come_from_the_keras_cache_without_a_download(keras_home, refuse_download):
    """A file at $KERAS_HOME/models/<the name Keras expects> is used as it is (Keras's own loader
    would re-check its hash and download again, which fails offline)."""
    import h5py
    import keras
    from keras.src.legacy.saving import legacy_h5_format

    vgg = backbones.get("vgg16")
    keras.utils.set_random_seed(2)
    cached = vgg.build((32, 32, 3))
    target = keras_home / "models" / "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"
    target.parent.mkdir(parents=True)
    with h5py.File(target, "w") as f:  # the legacy .h5 layout the real ImageNet files have
        legacy_h5_format.save_weights_to_hdf5_group(f, cached)

    source = resolve_weights(vgg, "imagenet", 32)
    assert (source.kind, source.path) == ("imagenet", str(target))
    assert (
        source.source.startswith("imagenet, Keras cache") and source.verified is False
    )  # not the real file
    keras.utils.set_random_seed(3)
    net = build(vgg, (32, 32, 3), 10, "seed", 0.2, source)
    _assert_same(net.base.get_weights(), cached.get_weights())
    assert refuse_download == []


def test_offline_without_cached_weights_is_one_clear_error(
    cli, keras_home, refuse_download, tmp_path
):
    result = cli(
        "transfer",
        "mobilenetv2",
        "--dataset",
        "shapes",
        "--limit",
        "24",
        "--epochs",
        "1",
        "--out",
        tmp_path / "runs",
    )
    assert result.code == 2
    err = result.err.strip()
    assert "\n" not in err and "Traceback" not in err
    expected = "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"  # 32×32 uses the 224 file
    assert expected in err and str(keras_home / "models") in err
    assert "--weights PATH" in err and "--weights none" in err
    # it tried the download, into the Keras cache, and made no run folder (no silent random weights)
    assert refuse_download[0]["fname"] == expected and refuse_download[0]["cache_dir"] == str(
        keras_home
    )
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").glob("*"))


def test_default_cifar10_unavailable_suggests_the_offline_data_sets(cli, no_download, tmp_path):
    result = cli("transfer", "vgg16", "--weights", "none", "--out", tmp_path / "runs")
    assert result.code == 2 and result.err.count("\n") == 1
    assert "cifar10" in result.err and "--dataset shapes" in result.err


def test_feature_caching_gives_the_same_training_as_running_the_backbone(tmp_path):
    # with a recipe's loss too: the head on cached features trains with the run's loss
    settings = dict(
        SMALL, limit=96, epochs=2, out=str(tmp_path / "runs"), weights="none", label_smoothing=0.2
    )
    cached = transfer(
        TransferConfig(["vgg16"], cache_features=True, name="cached", **settings), quiet=True
    ).runs[0]
    full = transfer(
        TransferConfig(["vgg16"], cache_features=False, name="full", **settings), quiet=True
    ).runs[0]
    assert cached.metrics["feature_cache"] is True and full.metrics["feature_cache"] is False
    assert cached.metrics["feature_seconds"] > 0 and full.metrics["feature_seconds"] is None
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        np.testing.assert_allclose(cached.history[key], full.history[key], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(cached.metrics["test_loss"], full.metrics["test_loss"], rtol=1e-4)
    assert cached.metrics["test_accuracy"] == pytest.approx(full.metrics["test_accuracy"], abs=1e-6)
    for layer in ("dense_128", "dense_64", "predictions"):
        for a, b in zip(
            cached.model.get_layer(layer).get_weights(),
            full.model.get_layer(layer).get_weights(),
            strict=True,
        ):
            np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5)


def test_features_too_big_for_memory_go_to_a_file_and_train_the_same(tmp_path, monkeypatch):
    from kcnn import defaults

    settings = dict(SMALL, limit=96, epochs=2, out=str(tmp_path / "runs"), weights="none")
    in_memory = transfer(TransferConfig(["vgg16"], name="memory", **settings), quiet=True).runs[0]
    monkeypatch.setattr(defaults, "FEATURE_MEMORY_MAX_BYTES", 0)
    in_file = transfer(TransferConfig(["vgg16"], name="file", **settings), quiet=True).runs[0]
    assert "in memory" in in_memory.metrics["feature_cache_note"]
    assert "in an unnamed file" in in_file.metrics["feature_cache_note"]
    assert in_memory.history["loss"] == in_file.history["loss"]  # the same floats, bit for bit
    assert in_memory.metrics["test_loss"] == in_file.metrics["test_loss"]
    # the file has no name: nothing is left in the run folder, however the run ended
    assert not [p for p in in_file.run_dir.iterdir() if "features" in p.name]

    monkeypatch.setattr(defaults, "FEATURE_CACHE_MAX_BYTES", 0)
    over = transfer(TransferConfig(["vgg16"], name="over", **settings), quiet=True).runs[0]
    assert over.metrics["feature_cache"] is False and "limit" in over.metrics["feature_cache_note"]


def test_a_feature_store_reads_back_the_rows_asked_for(tmp_path):
    from kcnn.data.feature_store import FeatureStore

    rows = np.random.default_rng(1).normal(size=(9, 2, 3)).astype(np.float32)
    store = FeatureStore(rows.shape, tmp_path)
    store.write(0, rows[:4])
    store.write(4, rows[4:])
    assert len(store) == 9 and store.nbytes == rows.nbytes and list(tmp_path.iterdir()) == []
    np.testing.assert_array_equal(store[np.array([8, 0, 3, 3])], rows[[8, 0, 3, 3]])
    assert store[np.array([], dtype=np.int64)].shape == (0, 2, 3)
    with pytest.raises(IndexError):
        store[np.array([9])]
    with pytest.raises(ValueError):
        store.write(8, rows[:2])  # past the end
    store.close()


def test_fine_tune_unfreezes_only_the_top_layers(tmp_path):
    import keras

    vgg = backbones.get("vgg16")
    start = vgg.build((32, 32, 3))
    path = tmp_path / "start.weights.h5"
    start.save_weights(path)
    config = TransferConfig(
        ["vgg16"],
        weights=str(path),
        fine_tune=3,
        fine_tune_epochs=1,
        fine_tune_lr=1e-3,
        out=str(tmp_path / "runs"),
        **SMALL,
    )
    run = transfer(config, quiet=True).runs[0]
    m = run.metrics
    # the top 3 layers are block5_conv2, block5_conv3 and block5_pool (which has no weights)
    assert m["fine_tune_unfrozen"] == ["block5_conv2", "block5_conv3"]
    conv = 3 * 3 * 512 * 512 + 512
    assert m["fine_tune_trainable_params"] == REFERENCE["vgg16"][1] - 10 * 65 + 6 * 65 + 2 * conv
    assert (
        m["trainable_params"] == REFERENCE["vgg16"][1] - 10 * 65 + 6 * 65
    )  # frozen phase: head only
    assert m["epochs_completed"] == 2 and len(read_csv(run.run_dir / "history.csv")) == 2
    assert (
        m["feature_cache"] is True
        and "fine-tune phase runs the whole model" in m["feature_cache_note"]
    )
    trained = run.model.get_layer("vgg16")
    for layer, same in zip(start.layers, trained.layers, strict=True):
        before, after = layer.get_weights(), same.get_weights()
        if layer.name in ("block5_conv2", "block5_conv3"):
            assert not np.array_equal(before[0], after[0]), (
                f"{layer.name} should have been fine-tuned"
            )
        else:
            _assert_same(before, after)
    assert isinstance(keras.saving.load_model(run.run_dir / "model.keras"), keras.Model)


def test_batchnorm_stays_frozen_and_in_inference_mode():
    import keras

    mobilenet = backbones.get("mobilenetv2")
    net = build(mobilenet, (32, 32, 3), 10, "gap", 0.2, resolve_weights(mobilenet, "none", 32))
    assert (
        not net.base.trainable and len(net.model.trainable_weights) == 2
    )  # the classifier's kernel and bias
    x = np.random.default_rng(0).uniform(-1, 1, (4, 32, 32, 3)).astype("float32")
    # the backbone was called with training=False: BatchNorm uses its moving statistics even
    # when the whole model is called in training mode
    np.testing.assert_allclose(
        net.extractor(x, training=True), net.extractor(x, training=False), atol=1e-6
    )
    unfrozen = unfreeze_top(net.base, 10)
    top = [layer for layer in net.base.layers if not isinstance(layer, keras.layers.InputLayer)][
        -10:
    ]
    for layer in [
        layer for layer in net.base.layers if not isinstance(layer, keras.layers.InputLayer)
    ]:
        expect = layer in top and not isinstance(layer, keras.layers.BatchNormalization)
        assert layer.trainable == expect, layer.name
    assert unfrozen and all(
        not isinstance(net.base.get_layer(n), keras.layers.BatchNormalization) for n in unfrozen
    )


def test_grayscale_small_images_are_upsampled_in_the_pipeline_with_the_gap_head(cli, tmp_path):
    result = cli(
        "transfer",
        "vgg16",
        "--dataset",
        "digits",
        "--weights",
        "none",
        "--head",
        "gap",
        "--image-size",
        "40",
        "--limit",
        "40",
        "--epochs",
        "1",
        "--batch-size",
        "16",
        "--out",
        tmp_path / "runs",
        "--json",
    )
    assert result.code == 0, result.err
    m = json.loads(result.out)["runs"][0]
    config = read_json(f"{m['run_dir']}/config.json")
    assert config["input_shape"] == [40, 40, 3] and config["fit"] == "resize"
    assert config["preprocess_input"] == "keras.applications.vgg16.preprocess_input"
    # gap head: 512 pooled features → 10 classes
    assert m["trainable_params"] == 512 * 10 + 10 and m["head"] == "gap"


@pytest.mark.parametrize(
    "args, message",
    [
        (["vgg61"], "did you mean 'vgg16'"),
        (["vgg16", "--weights", "imagnet"], "did you mean 'imagenet'"),
        (["vgg16", "--head", "gapp"], "did you mean 'gap'"),
        (["vgg16", "--image-size", "16"], "smallest input that works is 32×32"),
        (
            ["vgg16", "--fine-tune", "-1"],
            "--fine-tune must be a whole number from 0",
        ),
        (["vgg16", "--fine-tune", "50", "--weights", "none"], "more than the 18 layers of vgg16"),
    ],
)
def test_bad_input_is_refused_before_any_run(cli, tmp_path, args, message):
    result = cli(
        "transfer", *args, "--dataset", "shapes", "--limit", "24", "--out", tmp_path / "runs"
    )
    assert result.code == 2, result.err
    assert message in result.err and result.err.count("\n") == 1
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").glob("*"))


def test_all_expands_to_the_three_backbones():
    assert backbones.expand(["all"]) == ["vgg16", "mobilenetv2", "resnet50v2"]
    assert backbones.expand(["resnet50v2", "all", "vgg16"]) == [
        "resnet50v2",
        "vgg16",
        "mobilenetv2",
    ]


def test_list_shows_backbones_without_tensorflow(kcnn_exe):
    import subprocess
    import sys

    code = (
        "import sys; from kcnn.cli import main\n"
        "try:\n    main(['list', 'backbones'])\nexcept SystemExit:\n    pass\n"
        "print('tensorflow' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert all(name in out for name in REFERENCE) and out.strip().endswith("False")
