"""Every loader's result passes one validation: labels, pixels, shapes, special files, CIFAR
types, one float scaling rule, and the resource limits in kcnn/defaults.py. In-process and fast."""

from __future__ import annotations

import gzip
import os
import pickle
import signal
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from kcnn import defaults
from kcnn.data import datasets, formats
from kcnn.data.splits import make_splits
from kcnn.data.validation import Data, validate
from kcnn.errors import KcnnError

rng = np.random.default_rng(7)


@pytest.fixture
def deadline():
    """Fail, never hang: a blocking read of a FIFO would stop the test run for good."""

    def expire(signum, frame):
        raise TimeoutError("a data loader blocked (opened a FIFO for reading?)")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(10)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


def npz(path, n_train=30, n_test=12, **arrays):
    full = {
        "x_train": rng.integers(0, 256, (n_train, 8, 8), dtype=np.uint8),
        "y_train": np.arange(n_train) % 3,
        "x_test": rng.integers(0, 256, (n_test, 8, 8), dtype=np.uint8),
        "y_test": np.arange(n_test) % 3,
    }
    full.update(arrays)
    np.savez(path, **full)
    return path


# --- labels -------------------------------------------------------------------------------------


def test_labels_given_as_names_become_indices_and_class_names(tmp_path):
    names = np.array(["dog", "cat", "emu"])
    path = npz(
        tmp_path / "pets.npz", y_train=names[np.arange(30) % 3], y_test=names[[1, 2]].repeat(6)
    )
    data = datasets.load(str(path))
    assert data.class_names == ["cat", "dog", "emu"]
    assert data.y_train.dtype == np.int64 and data.y_train[:3].tolist() == [1, 0, 2]
    assert set(data.y_test.tolist()) == {0, 2}


def test_labels_that_skip_values_are_renumbered_not_padded(tmp_path):
    values = np.array([3, 7, 100])
    path = npz(
        tmp_path / "sparse.npz", y_train=values[np.arange(30) % 3], y_test=values[np.arange(12) % 3]
    )
    data = datasets.load(str(path))
    assert data.class_names == ["3", "7", "100"] and set(data.y_train.tolist()) == {0, 1, 2}
    assert data.provenance["label_values"] == [3, 7, 100]
    assert make_splits(data, 0.2, seed=1).num_classes == 3


def test_whole_float_labels_are_accepted(tmp_path):
    data = datasets.load(str(npz(tmp_path / "f.npz", y_train=(np.arange(30) % 3).astype(float))))
    assert data.y_train.dtype == np.int64 and data.class_names == ["0", "1", "2"]


def test_test_label_unseen_in_training(tmp_path):
    path = npz(tmp_path / "u.npz", y_test=np.arange(12) % 4)
    with pytest.raises(KcnnError, match=r"u\.npz.*y_test holds labels 3 that y_train never has"):
        datasets.load(str(path))


def test_names_in_train_numbers_in_test(tmp_path):
    path = npz(tmp_path / "mix.npz", y_train=np.array(["a", "b", "c"] * 10))
    with pytest.raises(KcnnError, match="one holds class names, the other numbers"):
        datasets.load(str(path))


def test_mixed_label_objects_are_refused():
    x = np.zeros((4, 8, 8), np.uint8)
    y = np.array(["a", 1, "b", 2], dtype=object)
    with pytest.raises(KcnnError, match="mixes names and numbers"):
        validate(Data("mine", x, y, None, None, None, {"source": "test"}))


def test_registered_class_names_are_kept_for_a_subset_of_labels():
    x = np.zeros((4, 8, 8), np.uint8)
    data = validate(Data("d", x, np.array([0, 2, 0, 2]), None, None, list("abcd")))
    assert data.class_names == list("abcd") and data.y_train.tolist() == [0, 2, 0, 2]
    with pytest.raises(KcnnError, match="labels must be 0..3"):
        validate(Data("d", x, np.array([0, 4, 0, 4]), None, None, list("abcd")))


# --- images and splits: each problem one clear error naming the file -----------------------------

BAD = [
    (
        "nan",
        {"x_train": np.full((30, 8, 8), np.nan, np.float32)},
        r"30 of the 30 images in x_train hold NaN or infinite pixels \(1,920 NaN, 0 inf",
    ),
    (
        "inf",
        {"x_test": np.full((12, 8, 8), np.inf)},
        r"12 of the 12 images in x_test .*\(0 NaN, 768 infinite\)",
    ),
    ("complex", {"x_train": np.zeros((30, 8, 8), np.complex64)}, "holds complex values"),
    ("zero-size", {"x_train": np.zeros((30, 0, 8), np.uint8)}, r"zero-sized images \(0×8"),
    ("wrong-ndim", {"x_train": np.zeros((30, 8, 8, 3, 1), np.uint8)}, "x_train has shape"),
    ("four-channels", {"x_train": np.zeros((30, 8, 8, 4), np.uint8)}, "x_train has shape"),
    (
        "empty-train",
        {"x_train": np.zeros((0, 8, 8), np.uint8), "y_train": np.zeros(0, int)},
        "x_train holds no images",
    ),
    (
        "empty-test",
        {"x_test": np.zeros((0, 8, 8), np.uint8), "y_test": np.zeros(0, int)},
        "x_test holds no images",
    ),
    ("single-class", {"y_train": np.zeros(30, int), "y_test": np.zeros(12, int)}, "single class"),
    ("count", {"y_test": np.arange(11) % 3}, "11 labels but there are 12 images"),
    ("fractional-labels", {"y_train": np.linspace(0, 2, 30)}, "integer class labels"),
    ("nan-labels", {"y_train": np.full(30, np.nan)}, "integer class labels"),
    ("sizes-differ", {"x_test": np.zeros((12, 9, 9), np.uint8)}, "x_test images are 9×9×1"),
    ("negative-pixels", {"x_train": -np.ones((30, 8, 8), np.int16)}, r"range over -1\.\.255"),
    (
        "too-bright",
        {"x_train": np.full((30, 8, 8), 300.0)},
        r"pixel values range over \d+\.\.300; kcnn takes uint8 0\.\.255 or floats",
    ),
    ("bool-pixels", {"x_train": np.ones((30, 8, 8), bool)}, "holds bool values"),
]


@pytest.mark.parametrize("arrays, words", [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_bad_npz_arrays(tmp_path, arrays, words):
    path = npz(tmp_path / "bad.npz", **arrays)
    with pytest.raises(KcnnError, match=words) as caught:
        datasets.load(str(path))
    assert str(path) in str(caught.value)


@pytest.mark.parametrize("name", ["", "  ", "\t"])
def test_empty_dataset_name_is_not_the_current_folder(name):
    with pytest.raises(KcnnError, match="--dataset is empty"):
        datasets.load(name)


# --- one scaling rule for float images, whatever the loader ----------------------------------------


def test_floats_in_0_1_load_as_the_uint8_images(tmp_path):
    images = rng.integers(0, 256, (30, 8, 8, 3), dtype=np.uint8)
    tests = rng.integers(0, 256, (12, 8, 8, 3), dtype=np.uint8)
    as_uint8 = datasets.load(str(npz(tmp_path / "u8.npz", x_train=images, x_test=tests)))
    unit = npz(tmp_path / "unit.npz", x_train=(images / 255).astype(np.float32), x_test=tests / 255)
    as_255 = npz(
        tmp_path / "f255.npz", x_train=images.astype(np.float64), x_test=tests.astype(np.float32)
    )
    for path in (unit, as_255):
        data = datasets.load(str(path))
        assert data.x_train.dtype == np.uint8
        np.testing.assert_array_equal(data.x_train, as_uint8.x_train)
        np.testing.assert_array_equal(data.x_test, as_uint8.x_test)
    # and so the training batches are the same
    a = make_splits(as_uint8, 0.2, seed=3, limit=20)
    b = make_splits(datasets.load(str(unit)), 0.2, seed=3, limit=20)
    np.testing.assert_array_equal(a.x_train, b.x_train)
    np.testing.assert_array_equal(a.y_train, b.y_train)


def idx_bytes(array: np.ndarray, code=0x08, dtype=np.uint8) -> bytes:
    header = bytes([0, 0, code, array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape)
    return header + array.astype(dtype).tobytes()


def write_idx(folder, images, code=0x08, dtype=np.uint8, labels=None):
    folder.mkdir(parents=True, exist_ok=True)
    labels = np.arange(len(images)) % 10 if labels is None else labels
    for prefix in ("train", "t10k"):
        (folder / f"{prefix}-images-idx3-ubyte").write_bytes(idx_bytes(images, code, dtype))
        (folder / f"{prefix}-labels-idx1-ubyte").write_bytes(idx_bytes(labels))


def test_float_idx_files_in_data_dir_are_scaled_like_npz(tmp_path):
    images = rng.integers(0, 256, (20, 28, 28), dtype=np.uint8)
    write_idx(tmp_path / "u8", images)
    write_idx(tmp_path / "f", images / 255, code=0x0D, dtype=">f4")
    a = datasets.load("mnist", data_dir=tmp_path / "u8")
    b = datasets.load("mnist", data_dir=tmp_path / "f")
    assert b.x_train.dtype == np.uint8
    np.testing.assert_array_equal(a.x_train, b.x_train)


# --- special files: refused, never opened for reading ----------------------------------------------


def test_dev_null_as_dataset():
    with pytest.raises(KcnnError, match="/dev/null is a character device"):
        datasets.load("/dev/null")


def test_fifo_as_dataset(tmp_path, deadline):
    os.mkfifo(tmp_path / "pipe.npz")
    with pytest.raises(KcnnError, match=r"pipe\.npz is a FIFO"):
        datasets.load(str(tmp_path / "pipe.npz"))


@pytest.mark.parametrize(
    "dataset, name",
    [
        ("mnist", "mnist.npz"),
        ("mnist", "train-images-idx3-ubyte"),
        ("cifar10", "data_batch_1"),
    ],
)
def test_fifo_in_data_dir(tmp_path, deadline, dataset, name):
    if dataset == "mnist" and name != "mnist.npz":
        write_idx(tmp_path, rng.integers(0, 256, (20, 28, 28), dtype=np.uint8))
        os.remove(tmp_path / name)
    os.mkfifo(tmp_path / name)
    with pytest.raises(KcnnError, match=f"{name} is a FIFO"):
        datasets.load(dataset, data_dir=tmp_path)


def test_folder_where_a_file_belongs(tmp_path):
    (tmp_path / "mnist.npz").mkdir()
    with pytest.raises(KcnnError, match=r"mnist\.npz is a folder"):
        datasets.load("mnist", data_dir=tmp_path)


def test_folder_named_like_an_npz_file(tmp_path):
    (tmp_path / "mine.npz").mkdir()
    with pytest.raises(KcnnError, match=r"mine\.npz is a folder, not an \.npz file"):
        datasets.load(str(tmp_path / "mine.npz"))


def test_data_dir_that_is_a_file(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(KcnnError, match="is not a folder"):
        datasets.load("mnist", data_dir=tmp_path / "f")


def image_folder(root, classes=("a", "b"), per_class=3, size=(8, 8)):
    for name in classes:
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            Image.new("RGB", size, (40 * i, 0, 0)).save(root / name / f"{i}.png")
    return root


def test_fifo_or_folder_inside_a_class_folder_is_left_out_never_opened(tmp_path, deadline):
    root = image_folder(tmp_path / "imgs")
    os.mkfifo(root / "a" / "pipe.png")
    (root / "b" / "nested").mkdir()
    data = datasets.load(str(root))  # a FIFO opened for reading would block: `deadline` fails it
    left = dict(data.x_train.folder.left_out)
    assert left == {
        str(root / "a" / "pipe.png"): "a FIFO (named pipe)",
        str(root / "b" / "nested"): "a folder",
    }
    assert len(data.x_train) == 6


def test_test_folder_is_decoded_in_trainings_mode_and_size(tmp_path):
    image_folder(tmp_path / "train", size=(8, 8))
    for name in ("a", "b"):
        (tmp_path / "test" / name).mkdir(parents=True)
        Image.new("L", (5, 6), 200).save(tmp_path / "test" / name / "0.png")
    data = datasets.load(str(tmp_path))
    assert data.x_test.shape == (2, 8, 8, 3) and data.x_train.shape == (6, 8, 8, 3)


# --- CIFAR batches: checked types, still through the restricted unpickler ---------------------------


def cifar_folder(root, data, labels):
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        (folder / name).write_bytes(pickle.dumps({b"data": data, b"labels": labels}, protocol=2))
    return root


GOOD_DATA = np.zeros((4, 3072), np.uint8)
CIFAR_BAD = [
    ("data-list", [[0] * 3072] * 4, [0, 1, 2, 3], "holds a list as data"),
    ("data-float", GOOD_DATA.astype(np.float32), [0, 1, 2, 3], "float32 as data"),
    ("labels-array", GOOD_DATA, np.arange(4), "holds ndarray 'labels'"),
    ("labels-strings", GOOD_DATA, ["a", "b", "c", "d"], "list 'labels', expected a list of whole"),
    ("labels-floats", GOOD_DATA, [0.0, 1.0, 2.0, 3.0], "expected a list of whole-number"),
    ("labels-short", GOOD_DATA, [0, 1, 2], "4 images but 3 labels"),
]


@pytest.mark.parametrize(
    "data, labels, words", [c[1:] for c in CIFAR_BAD], ids=[c[0] for c in CIFAR_BAD]
)
def test_cifar_batch_with_wrong_types(tmp_path, data, labels, words):
    cifar_folder(tmp_path, data, labels)
    with pytest.raises(KcnnError, match=words) as caught:
        datasets.load("cifar10", data_dir=tmp_path)
    assert "data_batch_1" in str(caught.value)


# --- resource limits ---------------------------------------------------------------------------


def png_claiming(path, width, height):
    """A valid PNG header for a width × height 1-bit image, with almost no pixel data."""

    def chunk(kind, body):
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    raw = zlib.compress(b"\x00" * 16)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", raw) + chunk(b"IEND", b"")
    )
    return path


def test_decompression_bomb_is_refused_from_its_header(tmp_path):
    root = image_folder(tmp_path / "imgs")
    bomb = png_claiming(root / "b" / "bomb.png", 20000, 20000)
    assert bomb.stat().st_size < 200
    with pytest.raises(KcnnError) as caught:
        datasets.load(str(root))
    message = str(caught.value)
    assert "bomb.png" in message and "20000×20000 = 400,000,000 pixels" in message
    assert f"{defaults.MAX_IMAGE_PIXELS:,} pixels" in message and "MAX_IMAGE_PIXELS" in message


def test_pillow_guard_is_our_limit_and_its_warning_an_error(tmp_path, monkeypatch):
    monkeypatch.setattr(defaults, "MAX_IMAGE_PIXELS", 100)
    root = image_folder(tmp_path / "imgs", size=(8, 8))
    Image.new("RGB", (15, 10)).save(root / "a" / "wide.png")  # 150 pixels: Pillow only warns
    with pytest.raises(KcnnError, match=r"wide\.png is too large an image \(15×10 = 150 pixels"):
        datasets.load(str(root))
    assert Image.MAX_IMAGE_PIXELS == 100


def test_npz_over_the_memory_budget_is_read_from_disk_by_rows(tmp_path, monkeypatch):
    from kcnn.data.disk_rows import DiskRows

    path = npz(tmp_path / "big.npz")
    expected = np.load(path)
    monkeypatch.setattr(defaults, "DATA_MEMORY_SHARE", 1e-12)
    data = datasets.load(str(path))
    assert isinstance(data.x_train, DiskRows) and isinstance(data.x_test, DiskRows)
    assert np.array_equal(data.x_train[:], expected["x_train"].reshape(data.x_train.shape))
    assert np.array_equal(data.y_test, expected["y_test"])


def test_gzip_idx_bomb_is_refused_before_decompressing(tmp_path, monkeypatch):
    # a header promising 60,000 images of 4096×4096: 1 TB, in a tiny .gz file
    header = bytes([0, 0, 0x08, 3]) + struct.pack(">III", 60000, 4096, 4096)
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(header + bytes(1000)))
    with pytest.raises(KcnnError, match="would take 937.5 GB, more than this machine's memory"):
        formats.read_idx(tmp_path / "train-images-idx3-ubyte.gz")


def test_too_many_class_folders(tmp_path, monkeypatch):
    monkeypatch.setattr(defaults, "MAX_CLASSES", 3)
    root = image_folder(tmp_path / "imgs", classes=("a", "b", "c", "d"), per_class=1)
    with pytest.raises(KcnnError, match="holds 4 class folders, over the limit of 3"):
        datasets.load(str(root))


def test_too_many_distinct_labels(tmp_path, monkeypatch):
    monkeypatch.setattr(defaults, "MAX_CLASSES", 5)
    path = npz(tmp_path / "many.npz", y_train=np.arange(30), y_test=np.arange(12))
    with pytest.raises(KcnnError, match="30 distinct labels, over the limit of 5 classes"):
        datasets.load(str(path))


def test_check_refuses_without_loading(tmp_path, monkeypatch):
    monkeypatch.setattr(datasets, "_load_path", lambda p: pytest.fail("loaded"))
    datasets.check("cifar10")  # registered: fine, nothing read
    datasets.check(str(tmp_path))
    with pytest.raises(KcnnError, match="did you mean 'mnist'"):
        datasets.check("mnsit")
    with pytest.raises(KcnnError, match="--dataset is empty"):
        datasets.check(" ")
    with pytest.raises(KcnnError, match="does not exist; pass an existing folder to --data-dir"):
        datasets.check("mnist", tmp_path / "nowhere")


def test_every_registered_set_loads_through_its_entry():
    for entry in datasets.DATASETS.values():
        assert entry.classes == len(entry.class_names) and entry.source
        if not entry.offline:  # the Keras sets say which files --data-dir needs, and a cache
            assert entry.files and entry.read and entry.fetch and entry.files in entry.source
    shapes = datasets.load("shapes", shapes_count=12)
    assert shapes.class_names == list(datasets.DATASETS["shapes"].class_names)
