"""Past one device: tf.distribute strategies, mixed precision and XLA, through the real CLI.

Strategies split devices and join clusters only before TensorFlow starts, so every run that uses
one is a process of its own. Every wait has a timeout; every started process is killed in the end.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
from conftest import KCNN, kcnn, refused

from kcnn.engine import distribute
from kcnn.errors import KcnnError
from kcnn.runs.records import read_csv, read_json

# LeNet-5 on 300 scikit-learn digits: a few seconds per run on a 2-core CPU.
TINY = ["lenet5", "--dataset", "digits", "--limit", "300", "--batch-size", "16"]
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}


def _run_dir(out: Path) -> Path:
    found = [p for p in out.iterdir() if p.is_dir()]
    assert len(found) == 1, found
    return found[0]


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _tf_config(ports: list[int], index: int, kind: str = "worker") -> str:
    workers = [f"127.0.0.1:{p}" for p in ports]
    return json.dumps({"cluster": {"worker": workers}, "task": {"type": kind, "index": index}})


@contextlib.contextmanager
def _two_workers(tmp_path, extra: list[str], env: dict[str, str]):
    """Two `kcnn train --strategy multi-worker` processes of one cluster, each writing under its
    own folder; yields (processes, folders) and kills whatever still runs afterwards."""
    ports = _free_ports(2)
    outs = [tmp_path / f"worker{i}" for i in range(2)]
    processes = []
    try:
        for i in range(2):
            processes.append(
                subprocess.Popen(
                    [
                        *KCNN,
                        "train",
                        *TINY,
                        *extra,
                        "--strategy",
                        "multi-worker",
                        "--out",
                        str(outs[i]),
                    ],
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                    env={**ENV, **env, "TF_CONFIG": _tf_config(ports, i)},
                )
            )
        yield processes, outs
    finally:
        for p in processes:
            if p.poll() is None:
                p.kill()
                p.wait(timeout=30)


# --- TF_CONFIG, checked before any work ---------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "not a JSON object"),
        ('{"task": {"type": "worker", "index": 0}}', "no `cluster`"),
        ('{"cluster": {"worker": ["127.0.0.1:2222"]}}', "no `task`"),
        (
            '{"cluster": {"worker": ["127.0.0.1:2222"]}, "task": {"type": "worker", "index": 1}}',
            "index 1",
        ),
        (
            '{"cluster": {"worker": ["127.0.0.1:2222"]}, "task": {"type": "chief", "index": 0}}',
            "'chief'",
        ),
        (
            '{"cluster": {"worker": ["localhost"]}, "task": {"type": "worker", "index": 0}}',
            "host:port",
        ),
        (
            '{"cluster": {"worker": ["127.0.0.1:70000"]}, "task": {"type": "worker", "index": 0}}',
            "port",
        ),
        (
            '{"cluster": {"worker": ["bad host!:22"]}, "task": {"type": "worker", "index": 0}}',
            "host",
        ),
        (
            '{"cluster": {"worker": "127.0.0.1:2222"}, "task": {"type": "worker", "index": 0}}',
            "no addresses",
        ),
        (
            '{"cluster": {"worker": ["a:1", "a:1"]}, "task": {"type": "worker", "index": 0}}',
            "twice",
        ),
        (
            '{"cluster": {"ps": ["a:1"], "worker": ["b:1"]}, "task": {"type": "worker", "index": 0}}',
            "ps",
        ),
        (
            '{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": "0"}}',
            "whole number",
        ),
    ],
)
def test_parse_tf_config_refuses_what_is_malformed(text, says):
    with pytest.raises(KcnnError, match="TF_CONFIG") as caught:
        distribute.parse_tf_config(text)
    assert says in str(caught.value)


def test_parse_tf_config_finds_the_chief():
    workers = ["10.0.0.1:2222", "10.0.0.2:2222"]
    first = distribute.parse_tf_config(
        json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": 0}})
    )
    assert first.chief and first.workers == 2 and first.peers == ["10.0.0.2:2222"]
    with_chief = {"chief": ["host-a:1"], "worker": workers}
    worker0 = distribute.parse_tf_config(
        json.dumps({"cluster": with_chief, "task": {"type": "worker", "index": 0}})
    )
    assert not worker0.chief and worker0.workers == 3
    chief = distribute.parse_tf_config(
        json.dumps({"cluster": with_chief, "task": {"type": "chief", "index": 0}})
    )
    assert chief.chief and chief.address == "host-a:1"


@pytest.mark.parametrize(
    "tf_config",
    [
        None,
        "{oops",
        '{"cluster": {"worker": ["127.0.0.1:2222"]}, "task": {"type": "worker", "index": 5}}',
        '{"cluster": {"worker": ["127.0.0.1:0"]}, "task": {"type": "worker", "index": 0}}',
    ],
)
def test_bad_tf_config_exits_2_within_seconds_and_leaves_nothing(tmp_path, tf_config):
    env = dict(ENV)
    env.pop("TF_CONFIG", None)
    if tf_config is not None:
        env["TF_CONFIG"] = tf_config
    start = time.monotonic()
    result = subprocess.run(
        [*KCNN, "train", *TINY, "--strategy", "multi-worker", "--out", str(tmp_path / "runs")],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert "TF_CONFIG" in refused(result)
    assert time.monotonic() - start < 30
    assert not (tmp_path / "runs").exists()


def test_a_worker_whose_peer_never_comes_gives_up_with_exit_2(tmp_path):
    ports = _free_ports(2)
    start = time.monotonic()
    result = kcnn(
        "train", *TINY, "--strategy", "multi-worker", "--out", tmp_path / "runs",
        env={"TF_CONFIG": _tf_config(ports, 0), distribute.PEER_TIMEOUT_ENV: "2"},
        timeout=60,
    )  # fmt: skip
    line = refused(result)
    assert f"127.0.0.1:{ports[1]}" in line and "no answer" in line
    assert time.monotonic() - start < 40
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow  # five processes that each start TensorFlow
def test_settings_that_do_not_fit_the_strategy_are_refused(tmp_path):
    out = tmp_path / "runs"
    uneven = kcnn(
        "train", *TINY[:-1], "15", "--strategy", "mirrored", "--devices", "2", "--out", out
    )
    assert "global batch" in refused(uneven) and "16" in uneven.stderr
    one_device = kcnn("train", *TINY, "--devices", "2", "--out", out)
    assert "--strategy mirrored" in refused(one_device)
    xla = kcnn(
        "train", *TINY, "--strategy", "mirrored", "--devices", "2", "--jit-compile", "--out", out
    )
    assert "--jit-compile" in refused(xla)
    assert "must be a whole number" in refused(kcnn("train", *TINY, "--devices", "0"))
    assert "unknown strategy" in refused(kcnn("train", *TINY, "--strategy", "tpu"))
    assert not out.exists()


def test_help_documents_the_global_batch():
    result = kcnn("train", "--help", timeout=60)
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    assert "global batch" in text and "--strategy" in text and "--mixed-precision" in text


# --- training under a strategy ------------------------------------------------------------------


@pytest.mark.slow
def test_mirrored_over_two_cpu_devices_matches_one_device(tmp_path):
    runs = {}
    for label, extra in {
        "one": [],
        "mirrored": ["--strategy", "mirrored", "--devices", "2"],
    }.items():
        out = tmp_path / label
        result = kcnn("train", *TINY, "--epochs", "2", "--out", out, "--json", *extra)
        assert result.returncode == 0, result.stderr
        runs[label] = _run_dir(out)
    one, mirrored = (read_json(runs[k] / "metrics.json") for k in ("one", "mirrored"))
    assert mirrored["status"] == "completed"
    assert abs(one["test_accuracy"] - mirrored["test_accuracy"]) <= 0.02
    config = read_json(runs["mirrored"] / "config.json")
    assert config["strategy"] == "mirrored" and config["replicas"] == 2
    assert config["devices"] == 2  # the setting, as given
    assert len(config["device_names"]) == 2 and all("CPU" in d for d in config["device_names"])
    assert config["batch_size"] == 16  # the global batch, as given
    assert read_json(runs["one"] / "config.json")["replicas"] == 1
    # the confusion matrix comes from predictions in the test set's order
    matrix = mirrored["confusion_matrix"]
    correct = sum(matrix[i][i] for i in range(len(matrix))) / sum(map(sum, matrix))
    assert abs(correct - mirrored["test_accuracy"]) < 1e-6


@pytest.mark.slow
def test_an_interrupted_mirrored_run_resumes_under_its_strategy(tmp_path):
    out = tmp_path / "runs"
    process = subprocess.Popen(
        [*KCNN, "train", *TINY, "--epochs", "30", "--strategy", "mirrored", "--devices", "2",
         "--out", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not any(len(read_csv(h)) >= 1 for h in out.glob("*/history.csv")):
            assert process.poll() is None, process.communicate(timeout=10)
            assert time.monotonic() < deadline, "no epoch was recorded in time"
            time.sleep(0.05)
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)
    assert process.returncode == 130, err
    run_dir = _run_dir(out)
    done = read_json(run_dir / "metrics.json")["epochs_completed"]
    assert 1 <= done < 30 and (run_dir / "checkpoint.keras").is_file()
    resumed = kcnn("train", "--resume", run_dir, "--epochs", str(done + 1))
    assert resumed.returncode == 0, resumed.stderr
    metrics = read_json(run_dir / "metrics.json")
    assert metrics["status"] == "completed" and metrics["epochs_completed"] == done + 1
    assert read_json(run_dir / "config.json")["replicas"] == 2


@pytest.mark.slow
def test_two_workers_train_one_model_and_only_the_chief_writes(tmp_path):
    extra = ["--epochs", "2", "--name", "together"]
    with _two_workers(tmp_path, extra, {distribute.PEER_TIMEOUT_ENV: "60"}) as (processes, outs):
        results = [p.communicate(timeout=240) for p in processes]
    codes = [p.returncode for p in processes]
    assert codes == [0, 0], results
    chief = _run_dir(outs[0])
    for name in ("config.json", "metrics.json", "history.csv", "model.keras", "report.html"):
        assert (chief / name).is_file(), name
    config, metrics = read_json(chief / "config.json"), read_json(chief / "metrics.json")
    assert (
        config["workers"] == 2 and config["replicas"] == 2 and config["strategy"] == "multi-worker"
    )
    assert metrics["status"] == "completed" and metrics["epochs_completed"] == 2
    assert metrics["test_accuracy"] > 0.2  # ten classes: well above chance after two epochs
    assert not outs[1].exists()  # the other worker leaves nothing behind
    assert "written by the chief" in results[1][0]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("flag", "key", "policy"),
    [
        ("--mixed-precision", "mixed_precision", "mixed_bfloat16"),
        ("--jit-compile", "jit_compile", "float32"),
    ],
)
def test_mixed_precision_and_xla_learn_and_are_recorded(tmp_path, flag, key, policy):
    out = tmp_path / "runs"
    result = kcnn("train", *TINY, "--epochs", "3", "--out", out, flag)
    assert result.returncode == 0, result.stderr
    run_dir = _run_dir(out)
    config, metrics = read_json(run_dir / "config.json"), read_json(run_dir / "metrics.json")
    assert config[key] is True and config["precision_policy"] == policy
    assert metrics["test_accuracy"] > 0.4  # ten classes: chance is 0.1
    if key == "mixed_precision":
        layers = json.loads(_keras_config(run_dir / "model.keras"))["config"]["layers"]
        policies = [layer["config"]["dtype"]["config"]["name"] for layer in layers[1:]]
        assert policies[-1] == "float32" and set(policies[:-1]) == {"mixed_bfloat16"}


def _keras_config(path: Path) -> str:
    import zipfile

    with zipfile.ZipFile(path) as archive:
        return archive.read("config.json").decode()


def test_the_precision_policy_is_restored_after_building():
    import keras
    import tensorflow as tf

    from kcnn.models import forms

    dist = distribute.Distribution(
        "default", tf.distribute.get_strategy(), [], precision="mixed_bfloat16"
    )
    with dist.scope():
        model = forms.build("lenet5", "functional", (32, 32, 1), 10)
    assert keras.mixed_precision.global_policy().name == "float32"
    assert model.layers[1].dtype_policy.name == "mixed_bfloat16"
    assert model.layers[-1].dtype_policy.name == "float32"  # the softmax classifier
    assert model.output.dtype == "float32"


@pytest.mark.slow
def test_a_worker_that_loses_its_peer_mid_run_fails_instead_of_hanging(tmp_path):
    peer = {distribute.PEER_TIMEOUT_ENV: "4"}  # a step waits at most 5 × 4 s for a peer
    with _two_workers(tmp_path, ["--epochs", "200"], peer) as (processes, outs):
        deadline = time.monotonic() + 180
        while not any(len(read_csv(h)) >= 1 for h in outs[0].glob("*/history.csv")):
            assert processes[0].poll() is None, processes[0].communicate(timeout=10)
            assert time.monotonic() < deadline, "no epoch was recorded in time"
            time.sleep(0.1)
        processes[1].kill()
        _, err = processes[0].communicate(timeout=120)
    assert processes[0].returncode == 2, err
    assert "lost contact with a peer" in err.strip().splitlines()[-1]
    assert read_json(_run_dir(outs[0]) / "metrics.json")["status"] == "failed"


@pytest.mark.slow
def test_the_sentinel_still_catches_a_diverged_loss_under_mirrored(tmp_path):
    # Under a strategy Keras hands callbacks the loss already reduced over the replicas.
    out = tmp_path / "runs"
    result = kcnn(
        "train", "simple-cnn", "--dataset", "digits", "--limit", "100", "--batch-size", "16",
        "--epochs", "3", "--optimizer", "sgd", "--lr", "1e6", "--strategy", "mirrored",
        "--devices", "2", "--out", out,
    )  # fmt: skip
    assert result.returncode == 3, result.stderr
    assert "training diverged: the loss became" in result.stderr.strip().splitlines()[-1]
    assert read_json(_run_dir(out) / "metrics.json")["status"] == "diverged"
