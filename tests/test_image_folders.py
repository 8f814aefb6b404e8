"""Image folders: mixed colour and greyscale images of different sizes become one stated form,
a stray non-image file is skipped with a note, and train/ and test/ with different classes are
refused by name."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from kcnn.data import datasets, formats
from kcnn.errors import KcnnError


def _image(path: Path, size: tuple[int, int], mode: str, value: int = 128) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    channels = 3 if mode == "RGB" else 1
    pixels = np.full((size[1], size[0], channels), value, np.uint8)
    Image.fromarray(pixels.squeeze() if channels == 1 else pixels, mode).save(path)


def test_one_colour_image_makes_the_folder_colour_and_the_common_size_wins(tmp_path, capsys):
    # the first image is a 48×48 greyscale one: the old rule made everything 48×48×1
    _image(tmp_path / "a" / "0.png", (48, 48), "L")
    for i in range(1, 4):
        _image(tmp_path / "a" / f"{i}.png", (32, 32), "L")
    _image(tmp_path / "b" / "0.png", (32, 32), "RGB")
    _image(tmp_path / "b" / "1.png", (64, 40), "RGB")
    x, y, classes = formats.read_image_folder(tmp_path)
    assert x.shape == (6, 32, 32, 3) and classes == ["a", "b"]
    assert list(y) == [0, 0, 0, 0, 1, 1]
    assert np.all(x[1] == 128)  # greyscale repeated into three equal channels
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert "6 images in 2 classes" in line and "32×32 RGB" in line
    assert "3 sizes" in line and "colour and greyscale" in line


def test_a_uniform_folder_says_so_in_one_line(tmp_path, capsys):
    for c in "ab":
        for i in range(2):
            _image(tmp_path / c / f"{i}.png", (20, 20), "L")
    x, _, _ = formats.read_image_folder(tmp_path)
    assert x.shape == (4, 20, 20, 1)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].endswith("4 images in 2 classes, all 20×20 greyscale")


def test_common_form_ties_go_to_the_larger_size():
    mode, size = formats.common_form([(False, (10, 10)), (False, (30, 30))])
    assert (mode, size) == ("L", (30, 30))


def test_a_stray_text_file_is_skipped_with_a_note(tmp_path, capsys):
    for c in "ab":
        for i in range(2):
            _image(tmp_path / c / f"{i}.png", (16, 16), "RGB")
    (tmp_path / "a" / "notes.txt").write_text("where these came from")
    x, y, _ = formats.read_image_folder(tmp_path)
    assert x.shape == (4, 16, 16, 3)
    err = capsys.readouterr().err
    assert "skipped 1 file(s) that are not images: a/notes.txt" in err


def test_a_broken_image_is_still_refused(tmp_path):
    for c in "ab":
        _image(tmp_path / c / "0.png", (16, 16), "RGB")
    (tmp_path / "b" / "1.png").write_bytes(b"not a png at all")
    with pytest.raises(KcnnError, match=r"1\.png cannot be read as an image"):
        formats.read_image_folder(tmp_path)


def test_train_and_test_with_different_classes_are_named(tmp_path):
    for split, names in (("train", "abc"), ("test", "abd")):
        for c in names:
            _image(tmp_path / split / c / "0.png", (8, 8), "L")
    with pytest.raises(KcnnError) as error:
        datasets.load(str(tmp_path))
    message = str(error.value)
    assert f"only {tmp_path / 'train'}/ has c" in message
    assert f"only {tmp_path / 'test'}/ has d" in message
