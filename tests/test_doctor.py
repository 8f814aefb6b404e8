"""`kcnn doctor`: each check on its own (no network needed: the probe is injected), and the
command as a user runs it, in a subprocess under a timeout."""

from __future__ import annotations

import json
import subprocess
import sys
import time

from kcnn.cli import doctor


def test_the_network_check_reports_a_host_that_does_not_answer_with_advice():
    check = doctor.network(probe=lambda host, port: (False, "Name or service not known"))
    assert check.status == doctor.WARN and "storage.googleapis.com" in check.found
    assert "mnist-5k" in check.advice
    assert doctor.network(probe=lambda host, port: (True, "answers")).status == doctor.OK


def test_the_real_probe_is_bounded_even_when_the_lookup_hangs(monkeypatch):
    def hang(*args, **kwargs):
        time.sleep(3)  # a resolver that stalls, then gives up
        raise OSError("Temporary failure in name resolution")

    monkeypatch.setattr(doctor.socket, "create_connection", hang)
    started = time.monotonic()
    up, why = doctor.reachable("example.invalid", 443, timeout=0.2)
    assert not up and "no answer within 0.2 s" in why
    assert time.monotonic() - started < 10  # bounded by the timeout, not the hung lookup


def test_the_cache_says_what_is_there_and_what_would_be_downloaded(keras_home):
    (keras_home / "datasets").mkdir()
    (keras_home / "datasets" / "mnist.npz").write_bytes(b"x" * 2000)
    (keras_home / "models").mkdir()
    (keras_home / "models" / "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5").write_bytes(b"w")
    checks = {c.name: c for c in doctor.cache(network_up=False)}
    assert checks["mnist"].details["cached"] is True
    assert checks["cifar10"].details == {
        "cached": False,
        "would_download": "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
    }
    assert checks["vgg16"].details["cached"] is True
    assert checks["resnet50v2"].details["would_download"].endswith("notop.h5")
    offline = checks["data sets offline"]
    missing = offline.found.split(": ", 1)[1].split(", ")
    assert "mnist" not in missing and "cifar10" in missing
    assert "resnet50v2" in checks["weights offline"].found and offline.advice
    online = {c.name for c in doctor.cache(network_up=True)}
    assert "data sets offline" not in online  # with a network, a download is no problem


def test_a_run_folder_that_cannot_be_written_fails_with_advice(tmp_path):
    assert doctor.writable(tmp_path / "runs").status == doctor.OK
    assert not (tmp_path / "runs").exists() and not list(tmp_path.iterdir())  # nothing left
    blocker = tmp_path / "file"
    blocker.write_text("")
    check = doctor.writable(blocker / "runs")
    assert check.status == doctor.FAIL and "--out" in check.advice


def test_keras_is_held_to_the_floor(monkeypatch):
    monkeypatch.setattr(doctor, "keras_floor", lambda: "99.0")
    keras = next(c for c in doctor.versions() if c.name == "Keras")
    assert keras.status == doctor.FAIL and "keras>=99.0" in keras.advice
    monkeypatch.setattr(doctor, "keras_floor", lambda: "3.0")
    assert next(c for c in doctor.versions() if c.name == "Keras").status == doctor.OK


def test_doctor_json_in_a_subprocess(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "kcnn.cli", "doctor", "--json", "--out", str(tmp_path / "runs")],
        capture_output=True,
        text=True,
        timeout=180,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    names = {c["name"] for c in answer["checks"]}
    assert {"Python", "TensorFlow", "Keras", "GPUs", "CPU", "run folder", "download host"} <= names
    assert {"mnist", "cifar10", "vgg16", "mobilenetv2", "resnet50v2"} <= names
    assert answer["ok"] is True
    for check in answer["checks"]:
        assert check["status"] in ("ok", "warn", "fail")
        assert (check["status"] == "ok") == (not check["advice"])
    assert not (tmp_path / "runs").exists()
