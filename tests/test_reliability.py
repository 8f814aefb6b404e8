"""Reliability through the real CLI: interruption and resume, divergence, atomic records under
SIGKILL, a CIFAR pickle that tries to run code, Keras safe mode, and determinism."""

from __future__ import annotations

import json
import os
import pickle
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from kcnn.runs.records import read_csv, read_json

# One tiny run: LeNet-5 on 300 scikit-learn digits, a few seconds per run on a 2-core CPU.
TINY = ["lenet5", "--dataset", "digits", "--limit", "300", "--batch-size", "16"]


def _run_dir(out: Path) -> Path:
    found = [p for p in out.iterdir() if p.is_dir()]
    assert len(found) == 1, found
    return found[0]


def _wait_for_first_epoch(out: Path, process: subprocess.Popen, timeout: float = 120) -> Path:
    """Poll until the run has recorded one finished epoch (not a sleep: the machine may be slow)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        for history in out.glob("*/history.csv"):
            if len(read_csv(history)) >= 1:
                return history.parent
        time.sleep(0.05)
    process.kill()
    raise AssertionError("no epoch was recorded in time")


def _assert_interrupted_folder(run_dir: Path, signal_name: str, planned: int) -> int:
    metrics = read_json(run_dir / "metrics.json")
    rows = read_csv(run_dir / "history.csv")
    checkpoint = read_json(run_dir / "checkpoint.json")
    assert metrics["status"] == "interrupted" and metrics["signal"] == signal_name
    assert metrics["epochs_planned"] == planned and 1 <= metrics["epochs_completed"] < planned
    # history up to the last finished epoch, and a checkpoint of exactly that epoch
    assert [int(r["epoch"]) for r in rows] == list(range(1, metrics["epochs_completed"] + 1))
    assert (
        checkpoint["epoch"] == metrics["epochs_completed"]
        and (run_dir / "checkpoint.keras").is_file()
    )
    assert not (run_dir / "model.keras").exists() and not list(run_dir.glob(".*.tmp*"))
    return metrics["epochs_completed"]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """The reference: the same tiny run, never stopped (4 epochs)."""
    from kcnn.commands.train import train
    from kcnn.engine.config import TrainConfig

    out = tmp_path_factory.mktemp("reference")
    result = train(
        TrainConfig("lenet5", dataset="digits", limit=300, batch_size=16, epochs=4, out=str(out)),
        quiet=True,
    )
    return result


def test_sigint_marks_the_run_interrupted_and_resume_matches_an_uninterrupted_run(
    tmp_path, kcnn_exe, uninterrupted, cli
):
    out = tmp_path / "runs"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    process = subprocess.Popen(
        [*kcnn_exe, "train", *TINY, "--epochs", "4", "--out", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    run_dir = _wait_for_first_epoch(out, process)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert "Traceback" not in err and "Aborted" not in err
    assert "interrupted by SIGINT" in err and f"kcnn train --resume {run_dir}" in err
    _assert_interrupted_folder(run_dir, "SIGINT", 4)

    result = cli("train", "--resume", run_dir, "--json")
    assert result.code == 0, result.err
    resumed = json.loads(result.out)["runs"][0]
    assert resumed["status"] == "completed" and resumed["epochs_completed"] == 4
    assert resumed["run_dir"] == str(run_dir)
    # README: "the numbers an uninterrupted run would have had, bit for bit"
    reference = uninterrupted.metrics
    for key in ("test_accuracy", "test_loss", "confusion_matrix"):
        assert resumed[key] == reference[key], key
    rows = read_csv(run_dir / "history.csv")
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4]
    assert (run_dir / "history.csv").read_text() == (
        uninterrupted.run_dir / "history.csv"
    ).read_text()
    # a finished run keeps model.keras and drops its checkpoint; config.json records the resume
    assert (run_dir / "model.keras").is_file() and not (run_dir / "checkpoint.keras").exists()
    assert read_json(run_dir / "config.json")["resumed"][0]["from_epoch"] >= 1
    again = cli("train", "--resume", run_dir)
    assert again.code == 2 and "already completed" in again.err


def test_sigterm_exits_143_and_resume_can_train_longer(tmp_path, cli, signal_after_epochs):
    out = tmp_path / "runs"
    watcher = signal_after_epochs(out, 1, signal.SIGTERM)
    result = cli("train", *TINY, "--epochs", "5", "--out", out)
    watcher.join()
    assert result.code == 143, result.err
    assert len(result.err.strip().splitlines()) == 1 and "interrupted by SIGTERM" in result.err
    run_dir = _run_dir(out)
    done = _assert_interrupted_folder(run_dir, "SIGTERM", 5)

    if done > 1:
        too_few = cli("train", "--resume", run_dir, "--epochs", str(done - 1))
        assert too_few.code == 2 and f"--epochs {done} or more" in too_few.err
    resumed = cli("train", "--resume", run_dir, "--epochs", "6", "--json")
    assert resumed.code == 0, resumed.err
    metrics = json.loads(resumed.out)["runs"][0]
    assert metrics["status"] == "completed" and metrics["epochs_completed"] == 6
    assert read_json(run_dir / "config.json")["epochs"] == 6


def test_a_nan_loss_stops_the_run_as_diverged(tmp_path, cli):
    # ReLU network, plain SGD at a learning rate of a million: the loss is NaN within a few batches.
    out = tmp_path / "runs"
    result = cli(
        "train",
        "simple-cnn",
        "--dataset",
        "digits",
        "--limit",
        "100",
        "--batch-size",
        "16",
        "--epochs",
        "3",
        "--optimizer",
        "sgd",
        "--lr",
        "1e6",
        "--out",
        out,
    )
    assert result.code == 3, result.err
    lines = result.err.strip().splitlines()
    assert (
        len(lines) == 1
        and "training diverged: the loss became" in lines[0]
        and "lower --lr" in lines[0]
    )
    metrics = read_json(_run_dir(out) / "metrics.json")
    assert metrics["status"] == "diverged" and metrics["diverged_at"]["batch"] >= 1
    rows = read_csv(_run_dir(out) / "history.csv")
    assert len(rows) == metrics["epochs_completed"]
    assert all(np.isfinite(float(r["loss"])) for r in rows)  # only finished, finite epochs are kept
    resumed = cli("train", "--resume", _run_dir(out))
    assert resumed.code == 2 and "diverged" in resumed.err


def test_same_seed_same_history(tmp_path, cli):
    histories = []
    for name in ("first", "second"):
        result = cli("train", *TINY, "--epochs", "2", "--out", tmp_path / name)
        assert result.code == 0, result.err
        histories.append((_run_dir(tmp_path / name) / "history.csv").read_text())
    assert histories[0] == histories[1]
    other = cli("train", *TINY, "--epochs", "2", "--seed", "7", "--out", tmp_path / "other")
    assert (
        other.code == 0
        and (_run_dir(tmp_path / "other") / "history.csv").read_text() != histories[0]
    )


# --- atomic records ----------------------------------------------------------------------------

WRITER = textwrap.dedent("""
    import sys
    from kcnn.runs.records import write_csv, write_json
    folder, i = sys.argv[1], 0
    while True:  # records of changing size, rewritten as fast as possible until killed
        i += 1
        rows = [{"epoch": e, "loss": 1.0 / e, "note": "x" * (i % 500)} for e in range(1, 2 + i % 300)]
        write_json(f"{folder}/metrics.json", {"status": "running", "i": i, "rows": rows})
        write_csv(f"{folder}/history.csv", rows)
        print(i, flush=True)
""")


def test_records_survive_sigkill_at_random_moments(tmp_path):
    rng = random.Random(6)
    kills = 0
    for _ in range(12):
        process = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(tmp_path)], stdout=subprocess.PIPE, text=True
        )
        process.stdout.readline()  # the records exist: now kill it somewhere in a later write
        time.sleep(rng.uniform(0.0, 0.15))
        process.kill()
        process.wait()
        kills += 1
        metrics = read_json(tmp_path / "metrics.json")  # raises on a truncated file
        rows = read_csv(tmp_path / "history.csv")
        assert metrics["status"] == "running" and len(metrics["rows"]) >= 1
        assert rows and rows[-1]["epoch"] == str(len(rows)) and rows[-1]["note"] == rows[0]["note"]
    assert kills == 12
    # a killed writer may leave a temporary file, never a damaged record
    assert {p.name for p in tmp_path.iterdir() if not p.name.startswith(".")} == {
        "metrics.json",
        "history.csv",
    }


# --- safe loading ------------------------------------------------------------------------------


class _RunsCode:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_cifar_pickle_that_would_run_code_is_refused(tmp_path, cli):
    marker = tmp_path / "code-ran"
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        payload = {b"data": _RunsCode(marker), b"labels": [0]}
        (folder / name).write_bytes(pickle.dumps(payload))
    result = cli(
        "train",
        "lenet5",
        "--dataset",
        "cifar10",
        "--data-dir",
        tmp_path,
        "--out",
        tmp_path / "runs",
    )
    assert result.code == 2
    assert "refusing to load global" in result.err and len(result.err.strip().splitlines()) == 1
    assert not marker.exists(), "the pickle ran code"
    assert not (tmp_path / "runs").exists()


def test_resume_loads_checkpoints_in_keras_safe_mode(tmp_path, cli):
    """A checkpoint holding a Python lambda is refused, not run: safe_mode=True."""
    import keras

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    model = keras.Sequential(
        [
            keras.Input((4,)),
            keras.layers.Lambda(lambda x: x + len(os.listdir("."))),
            keras.layers.Dense(2, activation="softmax"),
        ]
    )
    model.save(run_dir / "checkpoint.keras")
    config = {
        "command": "train",
        "arch": "lenet5",
        "dataset": "digits",
        "epochs": 3,
        "limit": 100,
        "batch_size": 16,
        "out": str(tmp_path),
        "name": "x",
    }
    (run_dir / "config.json").write_text(json.dumps(config))
    (run_dir / "metrics.json").write_text(
        json.dumps({"status": "interrupted", "epochs_completed": 1})
    )
    (run_dir / "checkpoint.json").write_text(json.dumps({"epoch": 1}))
    (run_dir / "history.csv").write_text("epoch,loss\n1,2.0\n")
    result = cli("train", "--resume", run_dir)
    assert result.code == 2, result.err
    assert (
        "cannot load" in result.err and "checkpoint.keras" in result.err and "Lambda" in result.err
    )
    assert len(result.err.strip().splitlines()) == 1
    assert read_json(run_dir / "metrics.json")["status"] == "interrupted"  # left as it was
