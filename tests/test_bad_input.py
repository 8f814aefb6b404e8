"""Bad input through the real CLI: exit status 2, one line on stderr that says what to do, no
traceback, and nothing left in the output folder that looks like a run."""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

# --- small bad files, made by the tests themselves -------------------------------------------


def _idx(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def _mnist_idx_folder(folder: Path, damage: str) -> Path:
    rng = np.random.default_rng(0)
    files = {
        "train-images-idx3-ubyte": _idx(rng.integers(0, 255, (40, 28, 28))),
        "train-labels-idx1-ubyte": _idx(np.arange(40) % 10),
        "t10k-images-idx3-ubyte": _idx(rng.integers(0, 255, (20, 28, 28))),
        "t10k-labels-idx1-ubyte": _idx(np.arange(20) % 10),
    }
    if damage == "magic":
        files["train-images-idx3-ubyte"] = b"\x08\x03" + files["train-images-idx3-ubyte"][2:]
    elif damage == "short":
        files["t10k-images-idx3-ubyte"] = files["t10k-images-idx3-ubyte"][:-100]
    elif damage == "gzip":
        files["train-labels-idx1-ubyte.gz"] = gzip.compress(files.pop("train-labels-idx1-ubyte"))[
            :-12
        ]
    folder.mkdir()
    for name, raw in files.items():
        (folder / name).write_bytes(raw)
    return folder


def _cifar_folder(folder: Path, data: np.ndarray) -> Path:
    batches = folder / "cifar-10-batches-py"
    batches.mkdir(parents=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        with open(batches / name, "wb") as f:
            pickle.dump({b"data": data, b"labels": list(range(len(data)))}, f)
    return folder


def _npz(path: Path, **arrays) -> Path:
    rng = np.random.default_rng(0)
    full = {
        "x_train": rng.integers(0, 255, (30, 8, 8), dtype=np.uint8),
        "y_train": np.arange(30) % 3,
        "x_test": rng.integers(0, 255, (12, 8, 8), dtype=np.uint8),
        "y_test": np.arange(12) % 3,
    }
    full.update(arrays)
    np.savez(path, **{k: v for k, v in full.items() if v is not None})
    return path


def _image_folder(root: Path, classes=("a", "b"), per_class=3) -> Path:
    for name in classes:
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(np.full((8, 8, 3), 40 * i, np.uint8)).save(root / name / f"{i}.png")
    return root


# --- the cases: (id, builder(tmp) -> argv, words the message must hold) -------------------------


def _train(*args):
    return ["train", *args]


def _bad_npz_truncated(tmp):
    path = _npz(tmp / "cut.npz")
    path.write_bytes(path.read_bytes()[:200])
    return _train("lenet5", "--dataset", path)


def _bad_npz_garbage(tmp):
    (tmp / "junk.npz").write_bytes(b"this is not a zip archive at all")
    return _train("lenet5", "--dataset", tmp / "junk.npz")


def _cifar_garbage(tmp):
    _cifar_folder(tmp, np.zeros((4, 3072), np.uint8))
    (tmp / "cifar-10-batches-py" / "data_batch_3").write_bytes(b"\x80\x04garbage, cut short")
    return _train("lenet5", "--dataset", "cifar10", "--data-dir", tmp)


def _unwritable_out(tmp):
    (tmp / "a-file").write_text("not a folder")
    return [
        "train",
        "lenet5",
        "--dataset",
        "digits",
        "--epochs",
        "1",
        "--limit",
        "40",
        "--out",
        tmp / "a-file" / "runs",
    ]


def _resume_completed(tmp):
    run = tmp / "done-run"
    run.mkdir()
    (run / "config.json").write_text('{"command": "train", "arch": "lenet5"}')
    (run / "metrics.json").write_text('{"status": "completed", "epochs_completed": 3}')
    return ["train", "--resume", run]


CASES = [
    ("unknown-arch", lambda t: _train("lenet6"), ["architecture", "did you mean 'lenet5'"]),
    (
        "unknown-dataset",
        lambda t: _train("lenet5", "--dataset", "mnsit"),
        ["dataset", "did you mean 'mnist'"],
    ),
    (
        "unknown-api",
        lambda t: _train("lenet5", "--api", "functinal"),
        ["API form", "did you mean 'functional'"],
    ),
    (
        "unknown-optimizer",
        lambda t: _train("lenet5", "--optimizer", "adamm"),
        ["optimizer", "did you mean 'adam'"],
    ),
    (
        "epochs-zero",
        lambda t: _train("lenet5", "--epochs", "0"),
        ["--epochs must be a whole number"],
    ),
    (
        "epochs-negative",
        lambda t: _train("lenet5", "--epochs", "-2"),
        ["--epochs must be a whole number"],
    ),
    (
        "batch-zero",
        lambda t: _train("lenet5", "--batch-size", "0"),
        ["--batch-size must be a whole number"],
    ),
    (
        "lr-zero",
        lambda t: _train("lenet5", "--lr", "0"),
        ["--lr must be a number above 0"],
    ),
    (
        "lr-negative",
        lambda t: _train("lenet5", "--lr", "-0.01"),
        ["--lr must be a number above 0"],
    ),
    (
        "val-split-zero",
        lambda t: _train("lenet5", "--val-split", "0"),
        ["--val-split must be a number above 0 below 1"],
    ),
    (
        "val-split-one",
        lambda t: _train("lenet5", "--val-split", "1"),
        ["--val-split must be a number above 0 below 1"],
    ),
    (
        "val-split-big",
        lambda t: _train("lenet5", "--val-split", "2.5"),
        ["--val-split must be a number above 0 below 1"],
    ),
    (
        "image-too-small",
        lambda t: _train("lenet5", "--dataset", "digits", "--image-size", "16"),
        ["cannot take 16×16", "--image-size 32"],
    ),
    (
        "limit-too-large",
        lambda t: _train("lenet5", "--dataset", "digits", "--limit", "100000"),
        ["--limit 100000 is larger than"],
    ),
    (
        "limit-too-small",
        lambda t: _train("lenet5", "--dataset", "digits", "--limit", "5"),
        ["--limit 5 is too small"],
    ),
    (
        "data-dir-missing",
        lambda t: _train("lenet5", "--dataset", "mnist", "--data-dir", t / "nowhere"),
        ["does not exist", "--data-dir"],
    ),
    (
        "data-dir-without-files",
        lambda t: _train("lenet5", "--dataset", "cifar10", "--data-dir", t),
        ["does not hold cifar10 files"],
    ),
    (
        "dataset-path-missing",
        lambda t: _train("lenet5", "--dataset", t / "no-such-folder"),
        ["does not exist"],
    ),
    ("npz-truncated", _bad_npz_truncated, ["not a readable .npz"]),
    ("npz-not-a-zip", _bad_npz_garbage, ["not a readable .npz"]),
    (
        "npz-missing-keys",
        lambda t: _train("lenet5", "--dataset", _npz(t / "k.npz", y_test=None)),
        ["lacks array(s) y_test"],
    ),
    (
        "npz-mismatched-lengths",
        lambda t: _train("lenet5", "--dataset", _npz(t / "m.npz", y_train=np.arange(29) % 3)),
        ["29 labels but there are 30 images"],
    ),
    (
        "npz-negative-labels",
        lambda t: _train("lenet5", "--dataset", _npz(t / "n.npz", y_test=np.arange(12) % 3 - 1)),
        ["negative labels"],
    ),
    (
        "npz-float-labels",
        lambda t: _train("lenet5", "--dataset", _npz(t / "f.npz", y_train=np.linspace(0, 2, 30))),
        ["integer class labels"],
    ),
    (
        "npz-not-images",
        lambda t: _train("lenet5", "--dataset", _npz(t / "s.npz", x_train=np.zeros((30, 64)))),
        ["x_train has shape (30, 64)"],
    ),
    (
        "idx-wrong-magic",
        lambda t: _train(
            "lenet5", "--dataset", "mnist", "--data-dir", _mnist_idx_folder(t / "m", "magic")
        ),
        ["wrong magic number"],
    ),
    (
        "idx-short",
        lambda t: _train(
            "lenet5", "--dataset", "mnist", "--data-dir", _mnist_idx_folder(t / "m", "short")
        ),
        ["truncated or corrupt"],
    ),
    (
        "idx-bad-gzip",
        lambda t: _train(
            "lenet5", "--dataset", "mnist", "--data-dir", _mnist_idx_folder(t / "m", "gzip")
        ),
        ["not a valid gzip file"],
    ),
    (
        "cifar-wrong-size",
        lambda t: _train(
            "lenet5",
            "--dataset",
            "cifar10",
            "--data-dir",
            _cifar_folder(t, np.zeros((4, 1000), np.uint8)),
        ),
        ["expected (N, 3072) uint8"],
    ),
    ("cifar-not-a-pickle", _cifar_garbage, ["data_batch_3 is not a CIFAR batch"]),
    (
        "folder-non-image",
        lambda t: _train(
            "lenet5", "--dataset", _with_file(_image_folder(t / "imgs"), "b/photo.png")
        ),
        ["photo.png is not an image"],  # notes.txt is left out: tests/test_image_folders.py
    ),
    (
        "folder-empty-class",
        lambda t: _train("lenet5", "--dataset", _with_dir(_image_folder(t / "imgs"), "c")),
        ["holds no images"],
    ),
    (
        "folder-one-class",
        lambda t: _train("lenet5", "--dataset", _image_folder(t / "imgs", classes=("a",))),
        ["at least two"],
    ),
    ("out-not-writable", _unwritable_out, ["--out"]),
    ("name-with-separator", lambda t: _train("lenet5", "--name", "a/b"), ["path separators"]),
    ("name-dotdot", lambda t: _train("lenet5", "--name", ".."), ["path separators or '..'"]),
    ("name-with-dotdot-inside", lambda t: _train("lenet5", "--name", "x..y"), ["'..'"]),
    (
        "summary-input-shape-two-numbers",
        lambda t: ["summary", "lenet5", "--input-shape", "32,32"],
        ["--input-shape must be three"],
    ),
    (
        "summary-input-shape-words",
        lambda t: ["summary", "lenet5", "--input-shape", "big"],
        ["--input-shape must be three"],
    ),
    (
        "summary-input-shape-zero",
        lambda t: ["summary", "lenet5", "--input-shape", "0,32,3"],
        ["--input-shape must be three"],
    ),
    ("summary-unknown-arch", lambda t: ["summary", "resnet51"], ["did you mean"]),
    (
        "summary-input-too-small",
        lambda t: ["summary", "lenet5", "--input-shape", "8,8,1"],
        ["smallest input"],
    ),
    ("train-without-arch", lambda t: ["train"], ["name an architecture"]),
    ("resume-missing-folder", lambda t: ["train", "--resume", t / "no-run"], ["does not exist"]),
    ("resume-not-a-run", lambda t: ["train", "--resume", t], ["not a kcnn run folder"]),
    ("resume-completed-run", _resume_completed, ["already completed"]),
    (
        "resume-with-other-settings",
        lambda t: ["train", "--resume", t, "--lr", "0.1"],
        ["only --epochs"],
    ),
]


def _with_file(root: Path, relative: str) -> Path:
    (root / relative).write_text("a text file, not an image")
    return root


def _with_dir(root: Path, name: str) -> Path:
    (root / name).mkdir()
    return root


@pytest.mark.parametrize("build, words", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_exits_2_with_one_line(cli, tmp_path, build, words):
    data = tmp_path / "data"
    data.mkdir()
    out = tmp_path / "runs"
    args = [str(a) for a in build(data)]
    if args[0] == "train" and "--out" not in args and "--resume" not in args:
        args += ["--out", str(out)]
    result = cli(*args)
    assert result.code == 2, (result.code, result.err)
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err
    assert lines[0].startswith("error: ") and "Traceback" not in result.err
    for word in words:
        assert word in lines[0], lines[0]
    # Nothing that looks like a run: bad input is refused before a run folder is made.
    assert not out.exists() or not any(out.iterdir())


def test_there_are_at_least_25_distinct_bad_inputs():
    assert len({c[0] for c in CASES}) == len(CASES) >= 25
