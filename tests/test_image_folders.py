"""Image folders: scanned, never decoded whole; mixed colour and greyscale images of different sizes
read at one stated form, files that are not images left out with a note, unreadable ones
refused past the share kcnn skips, and train/ and test/ with different classes refused by name."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from kcnn import defaults
from kcnn.data import datasets, scan
from kcnn.data.files import FileImages, left_out_line, summary_line
from kcnn.errors import KcnnError


def _image(path: Path, size: tuple[int, int], mode: str, value: int = 128) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    channels = 3 if mode == "RGB" else 1
    pixels = np.full((size[1], size[0], channels), value, np.uint8)
    Image.fromarray(pixels.squeeze() if channels == 1 else pixels, mode).save(path)


def test_one_colour_image_makes_the_folder_colour_and_the_common_size_wins(tmp_path):
    # the first image is a 48×48 greyscale one: the old rule made everything 48×48×1
    _image(tmp_path / "a" / "0.png", (48, 48), "L")
    for i in range(1, 4):
        _image(tmp_path / "a" / f"{i}.png", (32, 32), "L")
    _image(tmp_path / "b" / "0.png", (32, 32), "RGB")
    _image(tmp_path / "b" / "1.png", (64, 40), "RGB")
    data = datasets.load(str(tmp_path))
    x = data.x_train
    assert isinstance(x, FileImages) and x.shape == (6, 32, 32, 3)
    assert data.class_names == ["a", "b"] and list(data.y_train) == [0, 0, 0, 0, 1, 1]
    assert np.all(x[1] == 128)  # greyscale repeated into three equal channels
    line = summary_line(x, None, "none")
    assert "6 images in 2 classes" in line and "3 sizes, mostly 32×32 mixed" in line
    assert "decoded as 32×32 RGB" in line


def test_loading_a_folder_decodes_nothing_and_prints_nothing(tmp_path, capsys, monkeypatch):
    from kcnn.data import decode

    for c in "ab":
        for i in range(2):
            _image(tmp_path / c / f"{i}.png", (20, 20), "L")
    monkeypatch.setattr(decode, "decode", lambda *a: pytest.fail("decoded at load"))
    data = datasets.load(str(tmp_path))
    assert data.x_train.shape == (4, 20, 20, 1)
    assert capsys.readouterr().err == ""  # the summary is the data phase's, once it is settled


def test_common_form_ties_go_to_the_larger_size():
    mode, size = scan.common_form([(False, (10, 10)), (False, (30, 30))])
    assert (mode, size) == ("L", (30, 30))


def test_a_stray_text_file_is_left_out_with_a_note(tmp_path):
    for c in "ab":
        for i in range(2):
            _image(tmp_path / c / f"{i}.png", (16, 16), "RGB")
    (tmp_path / "a" / "notes.txt").write_text("where these came from")
    data = datasets.load(str(tmp_path))
    assert data.x_train.shape == (4, 16, 16, 3)
    note = left_out_line([data.x_train.folder])
    assert f"{tmp_path / 'a' / 'notes.txt'} (not an image by its name)" in note


def test_a_broken_image_among_few_is_refused_naming_it(tmp_path):
    for c in "ab":
        _image(tmp_path / c / "0.png", (16, 16), "RGB")
    (tmp_path / "b" / "1.png").write_bytes(b"not a png at all")
    with pytest.raises(KcnnError, match=r"1 of the 3 image files .*/b/1\.png is not an image"):
        datasets.load(str(tmp_path))


def test_a_broken_header_within_the_share_is_left_out(tmp_path, monkeypatch):
    monkeypatch.setattr(defaults, "BAD_IMAGES_MAX_SHARE", 0.5)
    for c in "ab":
        _image(tmp_path / c / "0.png", (16, 16), "RGB")
        _image(tmp_path / c / "1.png", (16, 16), "RGB")
    (tmp_path / "b" / "2.png").write_bytes(b"not a png at all")
    data = datasets.load(str(tmp_path))
    assert len(data.x_train) == 4
    assert [p for p, _ in data.x_train.folder.unreadable] == [str(tmp_path / "b" / "2.png")]
    records = data.x_train.folder.failures.records()
    assert records[0]["when"] == "scan" and "not an image" in records[0]["reason"]


def test_train_and_test_with_different_classes_are_named(tmp_path):
    for split, names in (("train", "abc"), ("test", "abd")):
        for c in names:
            _image(tmp_path / split / c / "0.png", (8, 8), "L")
    with pytest.raises(KcnnError) as error:
        datasets.load(str(tmp_path))
    message = str(error.value)
    assert f"only {tmp_path / 'train'}/ has c" in message
    assert f"only {tmp_path / 'test'}/ has d" in message


def test_strict_reads_name_the_file_and_pipeline_reads_skip_it(tmp_path):
    rng = np.random.default_rng(0)
    for c in "ab":
        (tmp_path / c).mkdir()
        for i in range(3):
            noise = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
            Image.fromarray(noise).save(tmp_path / c / f"{i}.jpg")
    good = (tmp_path / "a" / "1.jpg").read_bytes()
    (tmp_path / "a" / "1.jpg").write_bytes(good[: len(good) // 2])  # a sound header, cut data
    x = datasets.load(str(tmp_path)).x_train
    with pytest.raises(KcnnError, match=r"1\.jpg cannot be read as an image"):
        x[:3]
    pixels, kept = x.read(np.arange(6))
    assert kept.tolist() == [True, False, True, True, True, True] and len(pixels) == 5
    assert x.kept().tolist() == kept.tolist()
    (record,) = x.folder.failures.records()
    assert record["file"] == str(tmp_path / "a" / "1.jpg") and record["when"] == "decode"
