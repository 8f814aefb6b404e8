"""What a user sees for bad data, through the real executable: exit status 2, one `error:` line,
no traceback, no run folder — decided before TensorFlow is imported, so each case is quick."""

from __future__ import annotations

import json
import os
import pickle
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

rng = np.random.default_rng(11)


def npz(path: Path, **arrays) -> Path:
    full = {
        "x_train": rng.integers(0, 256, (30, 8, 8), dtype=np.uint8),
        "y_train": np.arange(30) % 3,
        "x_test": rng.integers(0, 256, (12, 8, 8), dtype=np.uint8),
        "y_test": np.arange(12) % 3,
    }
    full.update(arrays)
    np.savez(path, **full)
    return path


def cifar_folder(root: Path, data, labels) -> Path:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        (folder / name).write_bytes(pickle.dumps({b"data": data, b"labels": labels}, protocol=2))
    return root


def bomb_folder(root: Path) -> Path:
    """Two classes of small images, and one PNG whose header claims 20000×20000 pixels."""
    for name in ("a", "b"):
        (root / name).mkdir(parents=True)
        for i in range(2):
            Image.new("RGB", (8, 8), (90 * i, 0, 0)).save(root / name / f"{i}.png")

    def chunk(kind, body):
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    header = struct.pack(">IIBBBBB", 20000, 20000, 1, 0, 0, 0, 0)
    (root / "b" / "bomb.png").write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * 16))
        + chunk(b"IEND", b"")
    )
    return root


def fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


CASES = [
    ("nan", lambda t: npz(t / "n.npz", x_train=np.full((30, 8, 8), np.nan)), "NaN"),
    ("inf", lambda t: npz(t / "i.npz", x_test=np.full((12, 8, 8), -np.inf)), "infinite"),
    ("complex", lambda t: npz(t / "c.npz", x_train=np.ones((30, 8, 8), complex)), "complex"),
    ("zero-size", lambda t: npz(t / "z.npz", x_test=np.zeros((12, 0, 8), np.uint8)), "zero-sized"),
    (
        "empty-split",
        lambda t: npz(t / "e.npz", x_test=np.zeros((0, 8, 8), np.uint8), y_test=np.zeros(0, int)),
        "x_test holds no images",
    ),
    (
        "single-class",
        lambda t: npz(t / "s.npz", y_train=np.ones(30, int), y_test=np.ones(12, int)),
        "single class",
    ),
    ("unseen-label", lambda t: npz(t / "u.npz", y_test=np.arange(12) % 4), "never has"),
    ("dev-null", lambda t: Path("/dev/null"), "character device"),
    ("fifo", lambda t: fifo(t / "pipe.npz"), "is a FIFO"),
    ("bomb", bomb_folder, "bomb.png is too large an image (20000×20000"),
    ("empty-name", lambda t: "", "--dataset must not be empty"),
]


def run_train(dataset, out: Path, *extra) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    return subprocess.run(
        [sys.executable, "-m", "kcnn.cli", "train", "lenet5", "--dataset", str(dataset)]
        + ["--epochs", "1", "--limit", "30", "--out", str(out), *extra],
        capture_output=True,
        text=True,
        timeout=120,  # a FIFO opened for reading would block forever; fail instead
        env=env,
    )


def assert_refused(result: subprocess.CompletedProcess, out: Path, words: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    assert "Traceback" not in result.stderr and words in lines[0], lines[0]
    assert not out.exists() or not any(out.iterdir())


@pytest.mark.parametrize("build, words", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_dataset_is_refused_in_one_line(tmp_path, build, words):
    out = tmp_path / "runs"
    assert_refused(run_train(build(tmp_path), out), out, words)


def test_bad_cifar_types_in_data_dir(tmp_path):
    cifar_folder(tmp_path / "c", np.zeros((4, 3072), np.uint8).tolist(), [0, 1, 2, 3])
    out = tmp_path / "runs"
    result = run_train("cifar10", out, "--data-dir", str(tmp_path / "c"))
    assert_refused(result, out, "data_batch_1 holds a list as data, expected (N, 3072) uint8")


def test_fifo_in_data_dir(tmp_path):
    (tmp_path / "d").mkdir()
    fifo(tmp_path / "d" / "mnist.npz")
    out = tmp_path / "runs"
    assert_refused(run_train("mnist", out, "--data-dir", str(tmp_path / "d")), out, "is a FIFO")


@pytest.mark.slow  # imports TensorFlow and trains: ~25 s on a busy 2-core machine
def test_sparse_labels_train_a_three_class_model(cli, tmp_path):
    values = np.array([3, 7, 100])
    path = npz(
        tmp_path / "sparse.npz", y_train=values[np.arange(30) % 3], y_test=values[np.arange(12) % 3]
    )
    result = cli("train", "lenet5", "--dataset", path, "--epochs", "1", "--out", tmp_path / "runs")
    assert result.code == 0, result.err
    (run,) = (tmp_path / "runs").iterdir()
    config = json.loads((run / "config.json").read_text())
    assert config["classes"] == ["3", "7", "100"]
    assert config["dataset_provenance"]["label_values"] == [3, 7, 100]


@pytest.mark.slow
def test_labels_given_as_names_train_and_are_kept(tmp_path):
    names = np.array(["cat", "dog", "emu"])
    path = npz(
        tmp_path / "pets.npz",
        x_train=rng.random((30, 8, 8)),  # floats in 0..1, scaled like every loader's
        y_train=names[np.arange(30) % 3],
        y_test=names[np.arange(12) % 3],
    )
    out = tmp_path / "runs"
    result = run_train(path, out)
    assert result.returncode == 0, result.stderr
    (run,) = out.iterdir()
    assert json.loads((run / "config.json").read_text())["classes"] == ["cat", "dog", "emu"]
