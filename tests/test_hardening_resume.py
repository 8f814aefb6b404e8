"""Hostile input, class 4 and 5: a resume that cannot be broken.

Real signals at varied moments (loading data, inside an epoch, the last validation, the final
evaluation and pictures, the first seconds of a resume), SIGKILL, damaged or edited records,
another process in the folder, data that changed: each leaves a run that `kcnn train --resume`
either finishes with the very numbers of an uninterrupted run, or refuses in one line naming
the file."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import kcnn, refused

SMALL = ["--dataset", "digits", "--limit", "60", "--epochs", "3", "--batch-size", "16"]


def epochs_in(run_dir: Path) -> int:
    path = run_dir / "history.csv"
    return max(len(path.read_text().splitlines()) - 1, 0) if path.exists() else 0


def attack(args, out: Path, signum: int, when, env=None) -> Path:
    """Start `kcnn ARGS --out OUT`, send `signum` when `when(run_dir or None, seconds)` says so,
    and return the run folder it left."""
    process = subprocess.Popen(
        [sys.executable, "-m", "kcnn.cli", *map(str, args), "--out", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    start = time.monotonic()
    try:
        while process.poll() is None and time.monotonic() - start < 240:
            runs = list(out.glob("*/config.json")) if out.exists() else []
            if when(runs[0].parent if runs else None, time.monotonic() - start):
                process.send_signal(signum)
                break
            time.sleep(0.02)
        _, err = process.communicate(timeout=240)
    finally:
        if process.poll() is None:
            process.kill()
    if signum != signal.SIGKILL and process.returncode not in (0, 128 + signum):
        raise AssertionError(f"exit {process.returncode}: {err[-2000:]}")
    (run_dir,) = out.iterdir()
    return run_dir


def finish(run_dir: Path) -> None:
    """Resume until the run is completed (a resume may itself have been interrupted)."""
    result = kcnn("train", "--resume", run_dir)
    assert result.returncode == 0, result.stderr[-2000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["status"] == "completed"


def outcome(run_dir: Path):
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return (
        metrics["status"],
        metrics["epochs_completed"],
        metrics["test_loss"],
        metrics["test_accuracy"],
        metrics["confusion_matrix"],
        (run_dir / "history.csv").read_text(),
    )


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory) -> Path:
    """A lenet5 run stopped by SIGINT after its first epoch: checkpoint of epoch 1."""
    out = tmp_path_factory.mktemp("interrupted")
    return attack(
        ["train", "lenet5", *SMALL, "--name", "base"],
        out,
        signal.SIGINT,
        lambda run, _: run is not None and epochs_in(run) >= 1,
    )


def copy(run_dir: Path, tmp_path: Path, name: str) -> Path:
    target = tmp_path / name
    shutil.copytree(run_dir, target)
    return target


def edit_json(path: Path, **changes) -> None:
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


def test_damaged_or_edited_records_are_refused_with_the_file_named(interrupted, tmp_path):
    assert json.loads((interrupted / "metrics.json").read_text())["status"] == "interrupted"
    damage = {
        "checkpoint.json": [b"{nope", b"[1]", b'{"epoch": "1"}', b'{"epoch": -1}'],
        "metrics.json": [b"", b"{", b"[]", b"\xff\xfe", b'{"status": "interrupted", "train_seconds": "x"}'],
        "history.csv": [b"epoch,loss\nx,y\n", b"epoch\n1\n", b"\x00\xff", b"epoch,loss\n2,1.0\n"],
        "config.json": [b'{"command": "train", "arch": "lenet5", "epochs": "ten"}', b"{" * 100_000],
    }  # fmt: skip
    number = 0
    for name, contents in damage.items():
        for content in contents:
            number += 1
            run_dir = copy(interrupted, tmp_path, f"d{number}")
            (run_dir / name).write_bytes(content)
            before = (run_dir / "metrics.json").read_bytes()
            refused(kcnn("train", "--resume", run_dir), name, alone=False)
            assert (run_dir / "metrics.json").read_bytes() == before  # left as it was found
    for key, value in [
        ("arch", "vgg11"), ("api", "functional"), ("seed", 5), ("limit", 80),
        ("batch_size", 8), ("data_fingerprint", 1), ("bogus", 1),
    ]:  # fmt: skip
        run_dir = copy(interrupted, tmp_path, key)
        edit_json(run_dir / "config.json", **{key: value})
        refused(kcnn("train", "--resume", run_dir), "config.json", key, alone=False)
    run_dir = copy(interrupted, tmp_path, "garbage-checkpoint")
    (run_dir / "checkpoint.keras").write_bytes(b"garbage")
    refused(kcnn("train", "--resume", run_dir), "checkpoint.keras", alone=False)
    run_dir = copy(interrupted, tmp_path, "no-checkpoint")
    (run_dir / "checkpoint.keras").unlink()
    refused(kcnn("train", "--resume", run_dir), "checkpoint.keras", alone=False)


@pytest.mark.slow  # resumes twice, in two processes
def test_resuming_under_other_cpu_kernels_says_the_figures_will_differ(interrupted, tmp_path):
    """The kernels a run trained with are in its record; a resume under another choice agrees with
    an uninterrupted run only to float rounding, and says so (it is not refused: it is the user's
    choice)."""
    import os

    config = json.loads((interrupted / "config.json").read_text())
    trained = config["versions"]["TF_ENABLE_ONEDNN_OPTS"]
    assert trained == os.environ.get("TF_ENABLE_ONEDNN_OPTS", "unset")
    other = "0" if trained == "1" else "1"
    for setting, warned in ((trained, False), (other, True)):
        run_dir = copy(interrupted, tmp_path, f"resumed-{setting}")
        env = {**os.environ, "TF_ENABLE_ONEDNN_OPTS": setting}
        result = kcnn("train", "--resume", run_dir, env=env)
        assert result.returncode == 0, result.stderr[-2000:]
        warnings = [line for line in result.stderr.splitlines() if "float rounding" in line]
        assert bool(warnings) == warned, result.stderr[-2000:]
        if warned:
            assert warnings[0].startswith("warning: ") and f"={trained}" in warnings[0]


def test_a_second_process_in_the_folder_is_refused(interrupted, tmp_path):
    run_dir = copy(interrupted, tmp_path, "locked")
    fd = os.open(run_dir / ".lock", os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as a running resume holds it
        refused(kcnn("train", "--resume", run_dir), "another kcnn process", alone=False)
    finally:
        os.close(fd)
    assert json.loads((run_dir / "metrics.json").read_text())["status"] == "interrupted"


@pytest.mark.slow
def test_a_fallback_run_resumes_on_the_data_it_trained_on(tmp_path):
    """mnist fell back to mnist-5k, and the run is recorded as mnist-5k: once full MNIST is in the
    Keras cache, a resume still finishes it on mnist-5k (never mixing two data sets)."""
    home = tmp_path / "keras"
    (home / "datasets").mkdir(parents=True)
    env = {**os.environ, "KERAS_HOME": str(home)}
    run_dir = attack(
        ["train", "lenet5", "--dataset", "mnist", "--limit", "40", "--epochs", "3"],
        tmp_path / "runs",
        signal.SIGTERM,
        lambda run, _: run is not None and epochs_in(run) >= 1,
        env=env,
    )
    config = json.loads((run_dir / "config.json").read_text())
    assert config["dataset"] == "mnist-5k" and config["dataset_provenance"]["requested"] == "mnist"
    assert "-mnist-5k-" in run_dir.name
    _write_npz(home / "datasets" / "mnist.npz", seed=0)
    result = kcnn("train", "--resume", run_dir, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["status"] == "completed" and metrics["dataset"] == "mnist-5k"


@pytest.mark.slow
def test_resume_refuses_data_that_changed(tmp_path):
    """The .npz file a run trained on was rewritten since: resuming would mix two data sets."""
    data = tmp_path / "digits.npz"
    _write_npz(data, seed=0)
    run_dir = attack(
        ["train", "lenet5", "--dataset", data, "--limit", "40", "--epochs", "3"],
        tmp_path / "runs",
        signal.SIGTERM,
        lambda run, _: run is not None and epochs_in(run) >= 1,
    )
    _write_npz(data, seed=1)
    refused(kcnn("train", "--resume", run_dir), "other data", "start a new run", alone=False)
    assert json.loads((run_dir / "metrics.json").read_text())["status"] == "interrupted"


def _write_npz(path: Path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    np.savez(
        path,
        x_train=rng.integers(0, 255, (200, 28, 28), dtype=np.uint8),
        y_train=np.arange(200) % 10,
        x_test=rng.integers(0, 255, (50, 28, 28), dtype=np.uint8),
        y_test=np.arange(50) % 10,
    )


@pytest.mark.slow
def test_signals_at_any_moment_then_resume_give_the_uninterrupted_numbers(tmp_path):
    args = ["train", "lenet5", *SMALL, "--name", "x"]
    reference = kcnn(*args, "--out", tmp_path / "reference")
    assert reference.returncode == 0, reference.stderr[-2000:]
    (reference_dir,) = (tmp_path / "reference").iterdir()
    expected = outcome(reference_dir)
    done = json.loads((reference_dir / "metrics.json").read_text())
    trained_images = done["train_images_per_second"] * done["train_seconds"]
    moments = [
        ("loading", signal.SIGINT, lambda run, t: run is not None and epochs_in(run) == 0),
        ("epoch-2", signal.SIGHUP, lambda run, t: run is not None and epochs_in(run) >= 1),
        ("pictures", signal.SIGTERM, lambda run, t: run and (run / "curves.png").exists()),
        ("killed", signal.SIGKILL, lambda run, t: run is not None and epochs_in(run) >= 2),
    ]
    for name, signum, when in moments:
        run_dir = attack(args, tmp_path / name, signum, when)
        status = json.loads((run_dir / "metrics.json").read_text())["status"]
        assert status in ("interrupted", "running", "completed"), (name, status)
        if status != "completed":
            finish(run_dir)
        assert outcome(run_dir) == expected, name
        metrics = json.loads((run_dir / "metrics.json").read_text())
        images = metrics["train_images_per_second"] * metrics["train_seconds"]
        assert images == pytest.approx(trained_images), name  # the time of 3 epochs, no more
    # A signal in the first seconds of a resume leaves a run the next resume still finishes.
    run_dir = attack(
        args, tmp_path / "resume", signal.SIGINT, lambda run, t: epochs_in(run or tmp_path) >= 1
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "kcnn.cli", "train", "--resume", str(run_dir)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    time.sleep(1.5)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=240)
    assert process.returncode in (0, 143), err[-2000:]
    if process.returncode:
        finish(run_dir)
    assert outcome(run_dir) == expected


@pytest.mark.slow
def test_dropout_network_resumes_bit_for_bit(tmp_path):
    """The done-when: VGG-11 (Dropout) interrupted in epoch 2 and resumed ends exactly as an
    uninterrupted run: the Dropout generator state is checkpointed and restored."""
    args = ["train", "vgg11", "--dataset", "digits", "--image-size", "32", "--limit", "120",
            "--epochs", "3", "--batch-size", "32", "--name", "v"]  # fmt: skip
    reference = kcnn(*args, "--out", tmp_path / "reference")
    assert reference.returncode == 0, reference.stderr[-2000:]
    (reference_dir,) = (tmp_path / "reference").iterdir()
    run_dir = attack(
        args, tmp_path / "stopped", signal.SIGTERM, lambda run, _: run and epochs_in(run) >= 1
    )
    note = json.loads((run_dir / "checkpoint.json").read_text())
    assert note["epoch"] in (1, 2)
    with np.load(run_dir / "checkpoint_rng.npz") as saved:
        assert len(saved.files) >= 2  # one generator state per Dropout layer
    finish(run_dir)
    assert outcome(run_dir) == outcome(reference_dir)


@pytest.mark.slow
def test_transfer_all_checks_every_weights_file_before_training(tmp_path):
    bogus = tmp_path / "bogus.h5"
    bogus.write_bytes(os.urandom(4096))
    out = tmp_path / "runs"
    result = kcnn(
        "transfer", "all", "--weights", bogus, "--dataset", "digits", "--limit", "40",
        "--epochs", "1", "--out", out,
    )  # fmt: skip
    refused(result, "bogus.h5", "does not fit", alone=False)
    assert not out.exists() or not any(out.iterdir())
