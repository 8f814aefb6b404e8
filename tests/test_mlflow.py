"""`--mlflow`: a run logged to MLflow is read back with MLflow's own client."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

QUICK = ["--dataset", "digits", "--epochs", "2", "--limit", "100"]


def test_a_trained_run_is_read_back_with_mlflows_own_client(tmp_path, cli):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    store = tmp_path / "mlruns"
    # 300 images: enough training images for training_images.json (kcnn.data.typical)
    quick = [*QUICK[:-1], "300"]
    result = cli("train", "lenet5", *quick, "--out", tmp_path / "runs", "--mlflow", str(store))
    assert result.code == 0, result.err
    client = MlflowClient(tracking_uri=f"sqlite:///{store / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("kcnn")
    [run] = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FINISHED"
    assert run.data.params["arch"] == "lenet5" and run.data.params["epochs"] == "2"
    history = client.get_metric_history(run.info.run_id, "val_accuracy")
    assert [m.step for m in history] == [1, 2]  # each epoch, as it ended
    [run_dir] = (tmp_path / "runs").iterdir()
    rows = (run_dir / "history.csv").read_text().splitlines()
    last = dict(zip(rows[0].split(","), rows[-1].split(","), strict=True))
    assert history[-1].value == pytest.approx(float(last["val_accuracy"]))
    assert run.data.metrics["test_accuracy"] == pytest.approx(
        __import__("json").loads((run_dir / "metrics.json").read_text())["test_accuracy"]
    )
    logged = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"report.html", "pictures", "records", "model"} <= logged
    pictures = {a.path for a in client.list_artifacts(run.info.run_id, "pictures")}
    assert "pictures/curves.png" in pictures
    assert {a.path for a in client.list_artifacts(run.info.run_id, "model")} == {
        "model/model.keras"
    }
    records = {a.path for a in client.list_artifacts(run.info.run_id, "records")}
    assert (run_dir / "training_images.json").is_file()
    assert {f"records/{n}" for n in ("config.json", "metrics.json", "training_images.json")} <= (
        records
    )


def test_a_bad_tracking_uri_is_one_line_before_training(tmp_path, cli):
    pytest.importorskip("mlflow")
    result = cli("train", "lenet5", *QUICK, "--out", tmp_path / "runs", "--mlflow", "ftp://x/y")
    assert result.code == 2
    assert result.err.strip().startswith("error: --mlflow ftp://x/y: unknown tracking URI scheme")
    assert not (tmp_path / "runs").exists()


def test_a_missing_mlflow_is_one_line_naming_the_extra(tmp_path, kcnn_exe):
    fake = tmp_path / "fake"
    (fake / "mlflow").mkdir(parents=True)
    (fake / "mlflow" / "__init__.py").write_text("raise ImportError('no mlflow here')\n")
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(fake), str(root)])}
    done = subprocess.run(
        [*kcnn_exe, "train", "lenet5", *QUICK, "--out", str(tmp_path / "runs"), "--mlflow"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "error: --mlflow needs MLflow, an optional extra: pip install 'kcnn[tracking]'"
    )
    assert not (tmp_path / "runs").exists()


def test_mlflow_alone_takes_no_value_and_a_uri_or_folder_when_one_follows():
    """`--mlflow [URI]` is read by the command that has it, knowing its own options: the word
    after it is its value only when a URI or folder path; argv itself is never rewritten."""
    from typer.main import get_command

    from kcnn.cli import app

    commands = get_command(app).commands

    def parsed(name: str, *args: str) -> dict:
        return commands[name].make_context(name, list(args)).params

    assert parsed("train", "--mlflow", "lenet5")["mlflow"] == "local"
    assert parsed("train", "--mlflow", "lenet5")["arch"] == "lenet5"
    assert parsed("run", "x.toml", "--mlflow")["mlflow"] == "local"
    assert parsed("run", "--mlflow", "x.toml")["file"].name == "x.toml"
    assert parsed("train", "--mlflow", "--epochs", "1")["mlflow"] == "local"
    assert parsed("train", "--mlflow", "http://h:5000")["mlflow"] == "http://h:5000"
    assert parsed("train", "--mlflow", "./track")["mlflow"] == "./track"
    assert parsed("train", "--mlflow=lenet5")["mlflow"] == "lenet5"  # = always gives a value
    # the value of another option is never taken for --mlflow: a run named "--mlflow"
    assert parsed("train", "lenet5", "--name", "--mlflow")["name"] == "--mlflow"
    assert parsed("train", "lenet5", "--name", "--mlflow")["mlflow"] is None
    args = ["train", "--mlflow", "lenet5"]
    before = list(args)
    parsed(*args)
    assert args == before
