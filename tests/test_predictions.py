"""A run's per-image test results (test_predictions.npz): written compact, read back exactly, and
checked on read like every record — a pickle, an unknown array, wrong shapes or dtypes, labels
outside the classes, a link or a file over its cap are each refused as damaged."""

from __future__ import annotations

import io
import json
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest

from kcnn.runs import predictions
from kcnn.runs.predictions import ImageResults
from kcnn.runs.records import Damaged
from kcnn.runs.run import RunFolder


def results(n=40, classes=4, files=None, held_out=True):
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(classes), size=n).astype(np.float32)
    return ImageResults.build(
        rng.permutation(1000)[:n], rng.integers(0, classes, n), p, files, held_out
    )


def folder_with(tmp_path, data: bytes, classes=4):
    (tmp_path / "config.json").write_text(
        json.dumps({"command": "train", "classes": [str(i) for i in range(classes)]})
    )
    (tmp_path / predictions.NAME).write_bytes(data)
    return RunFolder(tmp_path)


def npz(**arrays) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def test_round_trip(tmp_path):
    made = results(files=[f"cat/{i}.png" for i in range(40)])
    read = folder_with(tmp_path, made.to_bytes()).test_predictions()
    assert np.array_equal(read.index, made.index) and np.array_equal(read.true, made.true)
    assert np.array_equal(read.predicted, made.predicted) and read.held_out is True
    assert read.probabilities.dtype == np.float16 and read.probabilities.shape == (40, 4)
    assert read.files == made.files and read.n == 40
    # the prediction is the float32 argmax, kept exactly even where float16 rounds a near-tie
    assert np.array_equal(read.correct, made.true == made.predicted)


def test_compact(tmp_path):
    # 10,000 images × 10 classes: probabilities at 2 bytes, compressed — well under 400 kB
    data = results(n=10_000, classes=10).to_bytes()
    assert len(data) < 400_000


def base() -> dict:
    made = results()
    return {
        "index": made.index,
        "true": made.true,
        "predicted": made.predicted,
        "held_out": np.asarray(True),
        "probabilities": made.probabilities,
    }


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"extra": np.zeros(3)}, "arrays kcnn does not write"),
        ({"files": np.asarray([{"a": 1}] * 40, dtype=object)}, "files array"),
        ({"true": np.full(40, 4, np.int32)}, "true class is outside 0..3"),
        ({"predicted": -np.ones(40, np.int32)}, "predicted class is outside"),
        ({"index": np.zeros(40, np.int64)}, "not distinct"),
        ({"index": np.arange(39)}, "images"),
        ({"probabilities": np.full((40, 4), np.nan, np.float16)}, "not a number from 0 to 1"),
        ({"probabilities": np.full((40, 4), 2.0, np.float32)}, "not a number from 0 to 1"),
        ({"probabilities": np.zeros((40, 5), np.float16)}, "5 classes, the run 4"),
        ({"true": np.zeros((40, 1), np.int32)}, "true array"),
        ({"true": np.zeros(40, np.float32)}, "true array"),
    ],
)
def test_damaged_records_are_refused(tmp_path, change, reason):
    arrays = {**base(), **change}
    with pytest.raises(Damaged, match=reason):
        folder_with(tmp_path, npz(**arrays)).test_predictions()


def test_a_missing_array_is_refused(tmp_path):
    arrays = base()
    del arrays["true"]
    with pytest.raises(Damaged, match="lacks the array"):
        folder_with(tmp_path, npz(**arrays)).test_predictions()


def test_not_an_archive_and_a_lying_header(tmp_path):
    with pytest.raises(Damaged, match="readable .npz"):
        folder_with(tmp_path, b"PK\x03\x04 not really").test_predictions()
    # a header that declares far more than the member holds
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for key, value in base().items():
            member = io.BytesIO()
            if key == "index":  # 4,000,000 positions declared, 40 stored
                header = np.lib.format.header_data_from_array_1_0(value)
                np.lib.format.write_array_header_1_0(member, {**header, "shape": (4_000_000,)})
                member.write(value.tobytes())
            else:
                np.save(member, value)
            archive.writestr(f"{key}.npy", member.getvalue())
    with pytest.raises(Damaged, match="declares more than it holds"):
        folder_with(tmp_path, buffer.getvalue()).test_predictions()


def test_a_link_and_an_oversized_file_are_not_read(tmp_path, monkeypatch):
    secret = tmp_path / "secret.npz"
    secret.write_bytes(results().to_bytes())
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"command": "train"}))
    os.symlink(secret, run / predictions.NAME)
    with pytest.raises(Damaged, match="link"):
        RunFolder(run).test_predictions()
    os.unlink(run / predictions.NAME)
    (run / predictions.NAME).write_bytes(results().to_bytes())
    monkeypatch.setattr(predictions, "CAP", 100)
    with pytest.raises(Damaged, match="limit"):
        RunFolder(run).test_predictions()


@pytest.mark.parametrize("split", [False, True])
def test_an_image_folders_test_images_are_named_by_their_files(tmp_path, split):
    """Image i of the test split is the file `test_files[i]` names, whether the test set is held
    out of one folder or is its test/ folder; positions and files agree."""
    from PIL import Image

    from kcnn.data.prepared import prepare_data
    from kcnn.engine.config import TrainConfig

    root = tmp_path / "pictures"
    rng = np.random.default_rng(0)
    for part in ("train", "test") if split else ("",):
        for name in ("cat", "dog"):
            folder = root / part / name
            folder.mkdir(parents=True)
            for i in range(12):
                pixels = rng.integers(0, 256, (8, 8), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{i:02d}.png")
    config = TrainConfig(arch="lenet5", dataset=str(root), out=str(tmp_path / "runs")).validate()
    prepared = prepare_data(config, lambda shape, classes: (32, 32, 1))
    parts = prepared.parts
    assert parts.test_held_out is not split and len(prepared.test_files) == len(parts.y_test)
    for image, label, file in zip(parts.x_test, parts.y_test, prepared.test_files, strict=True):
        assert not Path(file).is_absolute() and Path(file).parts[-2] == ("cat", "dog")[label]
        assert np.array_equal(np.asarray(Image.open(root / file))[..., None], image)
