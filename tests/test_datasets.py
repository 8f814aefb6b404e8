"""Every loader format, from small files the tests write themselves, and the offline fallback."""

from __future__ import annotations

import gzip
import pickle
import struct

import numpy as np
import pytest

from kcnn.data import datasets, formats
from kcnn.data.splits import make_splits
from kcnn.errors import KcnnError

rng = np.random.default_rng(0)


def idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_idx_set(folder, n_train=40, n_test=20, gz=False, size=28):
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, size, size), dtype=np.uint8),
        "train-labels-idx1-ubyte": np.arange(n_train, dtype=np.uint8) % 10,
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, size, size), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": np.arange(n_test, dtype=np.uint8) % 10,
    }
    for name, array in arrays.items():
        data = idx_bytes(array)
        if gz:
            (folder / f"{name}.gz").write_bytes(gzip.compress(data))
        else:
            (folder / name).write_bytes(data)
    return arrays


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gz"])
def test_mnist_from_idx_files(tmp_path, gz):
    arrays = write_idx_set(tmp_path, gz=gz)
    data = datasets.load("mnist", data_dir=tmp_path)
    assert data.x_train.shape == (40, 28, 28, 1) and data.x_test.shape == (20, 28, 28, 1)
    np.testing.assert_array_equal(data.x_train[..., 0], arrays["train-images-idx3-ubyte"])
    np.testing.assert_array_equal(data.y_test, arrays["t10k-labels-idx1-ubyte"])
    assert data.provenance["fallback"] is False and "--data-dir" in data.provenance["source"]


def test_fashion_mnist_from_idx_files(tmp_path):
    write_idx_set(tmp_path, gz=True)
    data = datasets.load("fashion-mnist", data_dir=tmp_path)
    assert data.class_names[0] == "T-shirt/top" and len(data.y_train) == 40


def write_mnist_npz(path, n_train=30, n_test=10):
    np.savez(
        path,
        x_train=rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        y_train=np.arange(n_train) % 10,
        x_test=rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        y_test=np.arange(n_test) % 10,
    )


def test_mnist_npz_in_data_dir(tmp_path):
    write_mnist_npz(tmp_path / "mnist.npz")
    data = datasets.load("mnist", data_dir=tmp_path)
    assert data.x_train.shape == (30, 28, 28, 1) and data.name == "mnist"


def test_mnist_from_keras_cache(keras_home, no_download):
    (keras_home / "datasets").mkdir()
    write_mnist_npz(keras_home / "datasets" / "mnist.npz", n_train=50)
    data = datasets.load("mnist")
    assert len(data.y_train) == 50 and "Keras cache" in data.provenance["source"]


def test_mnist_falls_back_to_mnist_5k_loudly(no_download, capsys):
    data = datasets.load("mnist")
    assert data.name == "mnist-5k" and len(data.y_train) == 5000
    assert data.provenance["fallback"] is True and data.provenance["requested"] == "mnist"
    assert capsys.readouterr().err.startswith("warning: full mnist is not in the Keras cache")


def test_bad_files_in_data_dir_are_an_error_not_a_fallback(tmp_path, no_download):
    (tmp_path / "mnist.npz").write_bytes(b"not a zip file")
    with pytest.raises(KcnnError, match="mnist.npz"):
        datasets.load("mnist", data_dir=tmp_path)


def test_data_dir_without_the_files_is_an_error(tmp_path):
    with pytest.raises(KcnnError, match="does not hold mnist files"):
        datasets.load("mnist", data_dir=tmp_path)


def test_cifar10_unavailable_suggests_offline_sets(no_download):
    with pytest.raises(KcnnError, match="--dataset shapes"):
        datasets.load("cifar10")


def cifar_batch(n, label_key="labels", extra=None, first_label=0):
    batch = {
        b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
        label_key.encode(): [int(v) for v in (first_label + np.arange(n)) % 10],
        b"batch_label": b"testing batch",
    }
    batch.update(extra or {})
    return pickle.dumps(batch, protocol=2)


def test_cifar10_batches(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for i in range(1, 6):
        (folder / f"data_batch_{i}").write_bytes(cifar_batch(4, first_label=4 * i))
    (folder / "test_batch").write_bytes(cifar_batch(6))
    data = datasets.load("cifar10", data_dir=tmp_path)
    assert data.x_train.shape == (20, 32, 32, 3) and data.x_test.shape == (6, 32, 32, 3)
    assert data.class_names[0] == "airplane"
    # channel-first rows of 1024 values become HWC pixels
    raw = pickle.loads((folder / "data_batch_1").read_bytes(), encoding="bytes")[b"data"][0]
    assert data.x_train[0, 0, 0].tolist() == [raw[0], raw[1024], raw[2048]]


def test_cifar100_with_label_names(tmp_path):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    (folder / "train").write_bytes(cifar_batch(8, "fine_labels"))
    (folder / "test").write_bytes(cifar_batch(4, "fine_labels"))
    names = [f"class{i}".encode() for i in range(100)]
    (folder / "meta").write_bytes(pickle.dumps({b"fine_label_names": names}, protocol=2))
    data = datasets.load("cifar100", data_dir=tmp_path)
    assert data.x_train.shape == (8, 32, 32, 3) and data.class_names[3] == "class3"


class _Boom:
    def __reduce__(self):
        import os

        return (os.getcwd, ())


def test_cifar_pickle_with_code_is_refused(tmp_path):
    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps({b"data": _Boom()}))
    with pytest.raises(KcnnError, match="not a CIFAR batch"):
        formats.read_cifar_batch(path)


def write_png(path, size=(10, 12), colour=(200, 10, 10)):
    from PIL import Image

    Image.new("RGB", size, colour).save(path)


def test_image_folder(tmp_path):
    for name, colour in (("cats", (255, 0, 0)), ("dogs", (0, 0, 255))):
        (tmp_path / name).mkdir()
        for i in range(5):
            write_png(tmp_path / name / f"{i}.png", colour=colour)
    data = datasets.load(str(tmp_path))
    assert data.class_names == ["cats", "dogs"] and data.x_train.shape == (10, 12, 10, 3)
    assert data.x_test is None and data.x_train[0, 0, 0].tolist() == [255, 0, 0]


def test_image_folder_with_train_and_test(tmp_path):
    for split in ("train", "test"):
        for name in ("a", "b"):
            (tmp_path / split / name).mkdir(parents=True)
            for i in range(3):
                write_png(tmp_path / split / name / f"{i}.png")
    data = datasets.load(str(tmp_path))
    assert len(data.y_train) == 6 and len(data.y_test) == 6


def test_image_folder_with_a_non_image(tmp_path):
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        write_png(tmp_path / name / "0.png")
    (tmp_path / "b" / "photo.jpg").write_text("not an image")  # notes.txt would be skipped
    with pytest.raises(KcnnError, match=r"photo.jpg is not an image \(its header"):
        datasets.load(str(tmp_path))


def test_npz_file(tmp_path):
    path = tmp_path / "mine.npz"
    np.savez(
        path,
        x_train=rng.random((12, 16, 16, 3)).astype(np.float32),
        y_train=np.arange(12) % 3,
        x_test=rng.random((6, 16, 16, 3)).astype(np.float32),
        y_test=np.arange(6) % 3,
    )
    data = datasets.load(str(path))
    assert data.x_train.dtype == np.uint8 and data.x_train.shape == (12, 16, 16, 3)
    assert data.class_names == ["0", "1", "2"]


def test_npz_missing_keys(tmp_path):
    path = tmp_path / "bad.npz"
    np.savez(path, x_train=np.zeros((2, 4, 4)))
    with pytest.raises(KcnnError, match="lacks"):
        datasets.load(str(path))


def test_offline_sets():
    digits = datasets.load("digits")
    assert digits.x_train.shape == (1797, 8, 8, 1) and digits.x_train.max() == 255
    mnist5k = datasets.load("mnist-5k")
    assert mnist5k.x_train.shape == (5000, 28, 28, 1) and mnist5k.x_train.dtype == np.uint8


def test_shapes_are_deterministic_and_balanced():
    a = datasets.load("shapes", seed=5, shapes_count=60)
    b = datasets.load("shapes", seed=5, shapes_count=60)
    c = datasets.load("shapes", seed=6, shapes_count=60)
    np.testing.assert_array_equal(a.x_train, b.x_train)
    assert not np.array_equal(a.x_train, c.x_train)
    assert a.x_train.shape == (60, 32, 32, 3) and np.bincount(a.y_train).tolist() == [10] * 6


def test_unknown_dataset_suggests_the_closest():
    with pytest.raises(KcnnError, match="did you mean 'mnist-5k'"):
        datasets.load("mnist5k")


def test_splits_are_stratified_and_limited():
    data = datasets.load("digits")
    parts = make_splits(data, val_split=0.2, seed=83, limit=500)
    sizes = parts.sizes()
    assert sizes == {"train": 400, "val": 100, "test": 360}
    assert np.bincount(parts.y_val, minlength=10).min() >= 9  # every class present in validation
    again = make_splits(data, val_split=0.2, seed=83, limit=500)
    np.testing.assert_array_equal(parts.y_train, again.y_train)


def test_limit_larger_than_the_data():
    with pytest.raises(KcnnError, match="larger than"):
        make_splits(datasets.load("digits"), val_split=0.2, seed=1, limit=10_000)
