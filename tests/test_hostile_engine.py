"""Hostile input to kcnn's engine, tried as a user meets it: an old Keras, model files that are not
`.keras` archives, TF_CONFIG clusters of every shape (silent peers, a lone chief, an address of
another machine, a peer that is not kcnn), models too big for any laptop, labels too big for a
class. Each ends in exit status 2 and one `error:` line, never a traceback or a hang; the shapes
TensorFlow can train, train.

Every process runs under a timeout; every socket and process a test starts is closed or killed.
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import socket
import subprocess
import threading
import time
import tomllib
from pathlib import Path

import numpy as np
import pytest
from conftest import KCNN, kcnn, refused
from test_distribute import TINY, _free_ports, _run_dir, _tf_config

from kcnn import defaults
from kcnn.data import validation
from kcnn.engine import distribute
from kcnn.errors import KcnnError
from kcnn.models import geometry, keras_version, saved
from kcnn.models.architectures import get as get_architecture
from kcnn.runs.records import read_json

ROOT = Path(__file__).resolve().parents[1]


# --- Keras: the release kcnn needs ----------------------------------------------------------------


def test_the_keras_floor_is_the_one_pyproject_states():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = [d for d in project["dependencies"] if d.split(">")[0].split("=")[0].strip() == "keras"]
    assert pins == [f"keras>={keras_version.required()}"]
    assert keras_version.MINIMUM == (3, 13, 2)
    assert keras_version.new_enough(keras_version.installed())  # this environment passes


@pytest.mark.parametrize(
    ("version", "ok"),
    [
        ("3.15.1", True),
        ("3.13.2", True),
        ("3.13.2.post1", True),
        ("3.14.0.dev2025120101", True),
        ("4.0", True),
        ("3.13.2rc1", False),  # a pre-release of 3.13.2 comes before it
        ("3.13.2.dev0", False),
        ("3.13.1", False),
        ("3.13", False),
        ("3.0.0", False),
        ("2.15.0", False),
        ("not a version", False),
    ],
)
def test_keras_versions_compare_as_releases(version, ok):
    assert keras_version.new_enough(version) is ok


def _fake_keras(tmp_path: Path, version: str) -> dict[str, str]:
    """An environment whose package metadata says Keras `version` is installed (a dist-info
    folder ahead of site-packages on the path); the real Keras stays importable."""
    fake = tmp_path / "fake-site"
    info = fake / f"keras-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: keras\nVersion: {version}\n")
    path = [str(fake), str(ROOT), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    return {"PYTHONPATH": os.pathsep.join(path)}


def test_an_old_keras_is_refused_in_one_line_by_every_model_command(tmp_path):
    env = _fake_keras(tmp_path, "3.10.0")
    for args in (["summary", "lenet5"], ["predict", tmp_path / "run", tmp_path / "x.png"]):
        line = refused(kcnn(*args, env=env, timeout=120))
        assert "Keras 3.10.0" in line and "keras>=3.13.2" in line and "pip install" in line
    train = kcnn("train", *TINY, "--out", tmp_path / "runs", env=env, timeout=120)
    assert "Keras 3.10.0" in refused(train)
    assert not (tmp_path / "runs").exists()
    # what neither loads nor builds a model still answers (and never imports TensorFlow)
    for args in (["list"], ["--help"]):
        result = kcnn(*args, env=env, timeout=120)
        assert result.returncode == 0, result.stderr


def test_every_command_is_known_to_build_models_or_not():
    from kcnn.cli import app
    from kcnn.cli.app import MODEL_COMMANDS

    names = {c.name or c.callback.__name__.replace("_", "-") for c in app.registered_commands}
    # they read records, never a model (doctor reports the Keras version, never refuses it)
    without_models = {"list", "runs", "show", "compare", "diff", "doctor", "augment-preview"}
    without_models.add("audit")  # looks at data, never at a model
    assert MODEL_COMMANDS | without_models == names and not MODEL_COMMANDS & without_models


# --- model files: only .keras archives ------------------------------------------------------------

HDF5 = b"\x89HDF\r\n\x1a\n"


@pytest.mark.parametrize(
    ("name", "content", "says"),
    [
        ("model.keras", HDF5 + b"\0" * 600, "HDF5"),  # an HDF5 file under a .keras name
        ("model.keras", b"\0" * 512 + HDF5 + b"\0" * 100, "HDF5"),  # after a 512-byte user block
        ("model.h5", b"PK\x03\x04 whatever", "HDF5"),  # the legacy suffix, whatever it holds
        ("model.keras", b"plain text, not a zip archive", "not a .keras model"),
        ("model.keras", b"PK\x03\x04 a zip signature, then nothing", "not a .keras model"),
    ],
)
def test_model_files_that_are_not_keras_archives_are_refused(tmp_path, name, content, says):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(KcnnError, match=says) as caught:
        saved.load(path, "retrain it")
    assert str(path) in str(caught.value) and str(caught.value).endswith("retrain it")


@pytest.mark.slow  # trains a tiny run first
def test_predict_refuses_an_hdf5_model_in_a_run_folder(tmp_path):
    import h5py
    from PIL import Image

    out = tmp_path / "runs"
    trained = kcnn("train", *TINY, "--epochs", "1", "--out", out)
    assert trained.returncode == 0, trained.stderr
    run = _run_dir(out)
    image = tmp_path / "digit.png"
    Image.fromarray(np.full((8, 8), 128, np.uint8)).save(image)
    (run / "model.keras").unlink()
    with h5py.File(run / "model.keras", "w") as f:  # a real HDF5 file under the .keras name
        f.attrs["model_config"] = json.dumps({"class_name": "Sequential", "config": {}})
    line = refused(kcnn("predict", run, image))
    assert "HDF5" in line and "model.keras" in line
    (run / "model.keras").write_text("not a model")
    assert "not a .keras model" in refused(kcnn("predict", run, image))


# --- Keras's multi-worker bug: detected, not assumed ----------------------------------------------


def test_the_multi_worker_workaround_follows_what_keras_does(monkeypatch):
    import tensorflow as tf
    from keras.src.backend.tensorflow import trainer as keras_trainer

    # the installed Keras (3.15) makes both calls the workaround exists for
    assert distribute.keras_multi_worker_bugs() == (True, True)

    # a Keras that reduces scalars over no axis and builds from this worker's batch has neither
    def fixed_reduce(values, strategy, reduction="auto"):
        return tf.nest.map_structure(
            lambda v: strategy.reduce("MEAN", v, axis=0 if v.shape.rank else None), values
        )

    def fixed_build(self, iterator=None, data_batch=None):
        self._symbolic_build(data_batch=data_batch)

    monkeypatch.setattr(keras_trainer, "reduce_per_replica", fixed_reduce)
    monkeypatch.setattr(keras_trainer.TensorFlowTrainer, "_maybe_symbolic_build", fixed_build)
    assert distribute.keras_multi_worker_bugs() == (False, False)
    monkeypatch.setattr(distribute, "_PATCHED", False)
    distribute._patch_keras_multi_worker()
    assert keras_trainer.reduce_per_replica is fixed_reduce  # left as Keras has it
    assert keras_trainer.TensorFlowTrainer._maybe_symbolic_build is fixed_build


def test_missing_private_keras_names_are_a_clear_error(monkeypatch):
    from keras.src.backend.tensorflow import trainer as keras_trainer

    monkeypatch.delattr(keras_trainer, "reduce_per_replica")
    with pytest.raises(KcnnError, match="no longer has the private functions") as caught:
        distribute.keras_multi_worker_bugs()
    assert "reduce_per_replica" in str(caught.value) and "--strategy mirrored" in str(caught.value)


# --- TF_CONFIG: every wait bounded, every cluster shape trains or is refused ----------------------


@contextlib.contextmanager
def _silent_peers(n: int):
    """`n` addresses that accept no connection and refuse none: each listens with a full
    backlog, so a connection attempt waits until it times out (a host that drops packets)."""
    listeners, fillers = [], []
    try:
        for _ in range(n):
            listener = socket.socket()
            listener.bind(("127.0.0.1", 0))
            listener.listen(0)
            listeners.append(listener)
            for _ in range(2):  # fill the backlog; further handshakes are dropped
                filler = socket.socket()
                filler.setblocking(False)
                with contextlib.suppress(BlockingIOError):
                    filler.connect(listener.getsockname())
                fillers.append(filler)
        time.sleep(0.2)
        yield [f"127.0.0.1:{s.getsockname()[1]}" for s in listeners]
    finally:
        for s in fillers + listeners:
            s.close()


def _cluster(chief: list[str], workers: list[str], kind: str, index: int = 0) -> str:
    cluster = {k: v for k, v in (("chief", chief), ("worker", workers)) if v}
    return json.dumps({"cluster": cluster, "task": {"type": kind, "index": index}})


def test_the_wait_for_fifty_silent_peers_is_bounded_by_the_timeout():
    (port,) = _free_ports(1)
    with _silent_peers(50) as peers:
        cluster = distribute.parse_tf_config(_cluster([], [f"127.0.0.1:{port}", *peers], "worker"))
        start = time.monotonic()
        with pytest.raises(KcnnError, match="no answer from") as caught:
            distribute.wait_for_peers(cluster, 2.0)
        waited = time.monotonic() - start
    assert "and 45 more within 2 s" in str(caught.value)
    assert waited < 2.0 + 10  # a second per silent peer, as before, would be over 50 s


def test_fifty_silent_peers_end_the_command_in_one_line(tmp_path):
    (port,) = _free_ports(1)
    with _silent_peers(50) as peers:
        config = _cluster([], [f"127.0.0.1:{port}", *peers], "worker")
        result = kcnn(
            "train", *TINY, "--strategy", "multi-worker", "--out", tmp_path / "runs",
            env={"TF_CONFIG": config, distribute.PEER_TIMEOUT_ENV: "3"}, timeout=120,
        )  # fmt: skip
    assert "no answer from" in refused(result)
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("kind", ["chief", "worker"])
def test_a_lone_task_at_an_address_of_another_machine_is_refused(tmp_path, kind):
    # 192.0.2.0/24 is reserved for documentation: never an address of this machine
    (port,) = _free_ports(1)
    address = f"192.0.2.1:{port}"
    config = _cluster(
        [address] if kind == "chief" else [], [address] if kind == "worker" else [], kind
    )
    result = kcnn(
        "train", *TINY, "--strategy", "multi-worker", "--out", tmp_path / "runs",
        env={"TF_CONFIG": config, distribute.PEER_TIMEOUT_ENV: "2"}, timeout=120,
    )  # fmt: skip
    line = refused(result)
    assert "own address 192.0.2.1" in line and "does not reach this machine" in line
    assert not (tmp_path / "runs").exists()


def test_a_chief_whose_workers_never_come_is_refused(tmp_path):
    chief, *workers = (f"127.0.0.1:{p}" for p in _free_ports(3))
    result = kcnn(
        "train", *TINY, "--strategy", "multi-worker", "--out", tmp_path / "runs",
        env={"TF_CONFIG": _cluster([chief], workers, "chief"), distribute.PEER_TIMEOUT_ENV: "2"},
        timeout=120,
    )  # fmt: skip
    line = refused(result)
    assert all(w in line for w in workers) and chief not in line
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow  # trains
@pytest.mark.parametrize("kind", ["chief", "worker"])
def test_a_cluster_of_one_task_trains(tmp_path, kind):
    (port,) = _free_ports(1)
    address = [f"127.0.0.1:{port}"]
    config = _cluster(address if kind == "chief" else [], address if kind == "worker" else [], kind)
    result = kcnn(
        "train", *TINY, "--epochs", "1", "--strategy", "multi-worker", "--out", tmp_path / "runs",
        env={"TF_CONFIG": config, distribute.PEER_TIMEOUT_ENV: "10"}, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    run = _run_dir(tmp_path / "runs")
    assert read_json(run / "config.json")["workers"] == 1
    assert read_json(run / "metrics.json")["status"] == "completed"


@pytest.mark.slow  # two processes that each start TensorFlow and train
def test_a_chief_and_a_worker_train_together(tmp_path):
    chief, worker = (f"127.0.0.1:{p}" for p in _free_ports(2))
    outs = [tmp_path / "chief", tmp_path / "worker"]
    tasks = [("chief", 0), ("worker", 0)]
    processes = []
    try:
        for out, (kind, index) in zip(outs, tasks, strict=True):
            env = {
                **os.environ,
                "CUDA_VISIBLE_DEVICES": "",
                "TF_CPP_MIN_LOG_LEVEL": "3",
                "TF_CONFIG": _cluster([chief], [worker], kind, index),
                distribute.PEER_TIMEOUT_ENV: "60",
            }
            processes.append(
                subprocess.Popen(
                    [
                        *KCNN,
                        "train",
                        *TINY,
                        "--epochs",
                        "1",
                        "--strategy",
                        "multi-worker",
                        "--out",
                        str(out),
                    ],
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                    env=env,
                )  # fmt: skip
            )
        results = [p.communicate(timeout=300) for p in processes]
    finally:
        for p in processes:
            if p.poll() is None:
                p.kill()
                p.wait(timeout=30)
    assert [p.returncode for p in processes] == [0, 0], results
    config = read_json(_run_dir(outs[0]) / "config.json")
    assert config["workers"] == 2 and config["replicas"] == 2
    assert not outs[1].exists()  # the worker's folder was scratch


@contextlib.contextmanager
def _impostor():
    """A port that accepts connections and answers like some other server would."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    server.settimeout(0.2)
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            with contextlib.suppress(OSError):
                connection = server.accept()[0]
                with connection:
                    connection.sendall(b"SSH-2.0-OpenSSH_9.6\r\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        thread.join(timeout=5)
        server.close()


def test_a_peer_that_answers_but_is_not_kcnn_is_refused_before_tensorflow_waits_on_it(tmp_path):
    # TensorFlow's join would wait for ever on it, holding the interpreter: nothing could stop it
    (port,) = _free_ports(1)
    with _impostor() as other:
        result = kcnn(
            "train", *TINY, "--strategy", "multi-worker", "--out", tmp_path / "runs",
            env={"TF_CONFIG": _tf_config([port, other], 0), distribute.PEER_TIMEOUT_ENV: "2"},
            timeout=120,
        )  # fmt: skip
    line = refused(result)
    assert f"127.0.0.1:{other} answered, but not as a kcnn worker of this cluster" in line
    assert not (tmp_path / "runs").exists()


def test_workers_started_with_different_clusters_refuse_each_other():
    ports = _free_ports(3)
    workers = [f"127.0.0.1:{p}" for p in ports[:2]]
    ours = {"worker": workers}
    theirs = {"worker": workers, "evaluator": [f"127.0.0.1:{ports[2]}"]}  # another TF_CONFIG
    errors: dict[int, str] = {}

    def wait(index: int, cluster: dict) -> None:
        task = {"cluster": cluster, "task": {"type": "worker", "index": index}}
        try:
            distribute.wait_for_peers(distribute.parse_tf_config(json.dumps(task)), 3.0)
        except KcnnError as e:
            errors[index] = str(e)

    threads = [threading.Thread(target=wait, args=(i, c)) for i, c in enumerate([ours, theirs])]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert workers[1] in errors[0] and workers[0] in errors[1]
    assert all("not as a kcnn worker of this cluster" in e for e in errors.values())


# --- kcnn summary: what no laptop can build is refused before building ----------------------------


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["vgg16", "--input-shape", "100000,100000,3"], "IMAGE_SIZE_MAX"),
        pytest.param(
            ["vgg16", "--classes", "1000000000"], "MODEL_PARAMS_MAX", marks=pytest.mark.slow
        ),  # the bound itself is checked fast, in process, below
    ],
    ids=["huge-input", "a-billion-classes"],
)
def test_summary_of_a_model_no_laptop_holds_is_one_line(args, says):
    line = refused(kcnn("summary", *args, timeout=180))
    assert says in line


@pytest.mark.parametrize(
    ("arch", "shape", "classes", "says"),
    [
        ("resnet50", (4096, 4096, 3), 10, "ACTIVATION_BYTES_MAX"),  # no big weights, huge maps
        ("lenet5", (32, 32, 10**11), 10, "MODEL_PARAMS_MAX"),
        ("lenet5", (32, 32, 1), 10**40, "about 10^"),  # counts too big to print are estimated
        ("alexnet", (5000, 227, 3), 10, "IMAGE_SIZE_MAX"),
    ],
)
def test_model_bounds_come_from_the_specs(arch, shape, classes, says):
    with pytest.raises(KcnnError, match=says.replace("^", r"\^")):
        get_architecture(arch).check_input(shape, classes)


def test_the_reference_models_are_within_the_bounds():
    for name in ("vgg16", "resnet152", "alexnet", "googlenet"):
        architecture = get_architecture(name)
        shape, classes = architecture.input_shape, architecture.reference_classes
        geometry.check_affordable(name, architecture.describe(classes), shape)  # no error
    assert (
        defaults.MODEL_PARAMS_MAX * 16 <= 24 * 1000**3
    )  # weights, gradients, Adam: a 24 GB laptop


# --- labels too big for a class ---------------------------------------------------------------------


def test_a_cifar_label_of_ten_to_the_thirty_is_one_line(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": np.zeros((4, 3072), np.uint8), b"labels": [0, 1, 10**30, 3]}
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
    result = kcnn(
        "train", "lenet5", "--dataset", "cifar10", "--data-dir", tmp_path,
        "--out", tmp_path / "runs", timeout=180,
    )  # fmt: skip
    line = refused(result)
    assert "1000000000000000000000000000000" in line and "0..9" in line
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow  # a TensorFlow start-up; the same check is made fast, in process, below
def test_npz_float_labels_of_1e30_are_one_line(tmp_path):
    path = tmp_path / "big.npz"
    np.savez(
        path, x_train=np.zeros((30, 8, 8), np.uint8), y_train=(np.arange(30) % 3) * 1e30,
        x_test=np.zeros((6, 8, 8), np.uint8), y_test=np.zeros(6),
    )  # fmt: skip
    result = kcnn("train", "lenet5", "--dataset", path, "--out", tmp_path / "runs", timeout=180)
    assert "2e+30" in refused(result)
    assert not (tmp_path / "runs").exists()


def _data(y_train, y_test=None) -> validation.Data:
    n = len(y_train)
    return validation.Data(
        "t", np.zeros((n, 4, 4), np.uint8), y_train, np.zeros((2, 4, 4), np.uint8),
        np.asarray(y_train[:2] if y_test is None else y_test), None,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("labels", "says"),
    [
        (np.array([0, 1, 2**63], np.uint64), "9223372036854775808"),  # would wrap to -2⁶³
        (np.array([0.0, 1.0, 1e30]), "1e+30"),
        (np.array([0.0, 1.0, -1e30]), "-1e+30"),
        (np.array([0.0, 1.0, 2.0**60]), "too large"),  # whole, but past float64's exact integers
        (np.array([0, 1, 10**30], dtype=object), "1000000000000000000000000000000"),
        (np.array([0, 1, -(10**400)], dtype=object), "a negative 1329-bit number"),
    ],
    ids=["uint64", "float-1e30", "float-minus-1e30", "float-2e60", "int-10e30", "int-10e400"],
)
def test_labels_too_large_for_a_class_are_refused(labels, says):
    with pytest.raises(KcnnError, match="too large to be a class label") as caught:
        validation.validate(_data(labels))
    assert says in str(caught.value)


def test_large_and_negative_labels_that_fit_are_classes():
    labels = np.array([-(2**62), 5, 2**62, 5, -(2**62), 2**62])
    data = validation.validate(_data(labels, labels[:2]))
    assert data.class_names == [str(-(2**62)), "5", str(2**62)]
    assert data.y_train.tolist() == [0, 1, 2, 1, 0, 2]


# --- what the issue names as stale: kept in agreement ----------------------------------------------


def test_the_signal_guard_holds_what_signals_lists():
    import signal

    from kcnn.engine import interrupts

    assert "`SIGNALS`" in interrupts.SignalGuard.__doc__
    with interrupts.SignalGuard() as guard:
        assert set(guard._previous) == set(interrupts.SIGNALS)
    assert signal.SIGHUP in interrupts.SIGNALS


def test_a_signal_inside_a_keras_layer_call_stays_an_interrupt():
    """Outside `fit` (a model being built or called) the guard raises inside Keras code, which
    rebuilds errors from their message alone; the signal must survive that, not become a crash."""
    import os
    import signal

    import keras
    import numpy as np

    from kcnn.engine import interrupts

    class Stops(keras.layers.Layer):
        armed = False  # not while Sequential builds itself, outside the guard

        def call(self, x):
            if self.armed:
                os.kill(os.getpid(), signal.SIGTERM)
            return x

    stops = Stops()
    model = keras.Sequential([keras.Input((2,)), stops])
    stops.armed = True
    with interrupts.SignalGuard(), pytest.raises(interrupts.Interrupted) as stopped:
        model(np.zeros((1, 2), "float32"))
    assert stopped.value.signum == signal.SIGTERM and stopped.value.exit_code == 143
    assert str(stopped.value) == "interrupted by SIGTERM"


def test_a_signal_a_library_turned_into_its_own_error_still_exits_as_the_signal():
    """`inspect` and others catch every Exception: the Interrupted raised inside them comes out as
    their own error (seen while TensorFlow was being imported). The command still stops as the
    signal asked; an error with no signal behind it stays what it is."""
    import os
    import signal

    from kcnn.engine import interrupts

    def library_call():
        try:
            os.kill(os.getpid(), signal.SIGTERM)
        except Exception as e:  # what the library does
            raise TypeError("unsupported callable") from e

    with pytest.raises(interrupts.Interrupted) as stopped, interrupts.exit_on_signals():
        library_call()
    assert stopped.value.exit_code == 143
    with pytest.raises(TypeError), interrupts.exit_on_signals():
        raise TypeError("a bug, no signal")
