"""Names are text, images are untrusted: the installed console script on hostile names and files.

A class folder named `$5 or $10 bills` (mathtext to matplotlib), names holding `|`, ESC and
newlines, a data folder named like a spreadsheet formula; for `kcnn predict`, a decompression
bomb, a FIFO and a link to /dev/zero among good images. Each command runs in a subprocess under a
timeout, as a user meets it.
"""

from __future__ import annotations

import csv
import os
import re
import shutil
import socket
import struct
import subprocess
import zlib
from pathlib import Path

import numpy as np
import pytest
from conftest import kcnn
from PIL import Image

CLASSES = ["$5 or $10 bills", "pipe|and\x1b[31mred\nnewline", "plain"]
DATA = "=1+1|d\x1b]0;t\x07$x$"  # the data folder: a formula, a pipe, ESC/BEL, mathtext
COPY = "-@copy|$y$\x1b[2J"  # a second run: the first copied under a hostile folder name


def _clean(r: subprocess.CompletedProcess) -> None:
    assert "Traceback" not in r.stderr and "Glyph" not in r.stderr, r.stderr
    assert not [line for line in r.stderr.splitlines() if line.startswith("warning: ")]
    for stream in (r.stdout, r.stderr):
        assert "\x1b" not in stream and "\x07" not in stream


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny run on an image folder with hostile class and folder names (1 epoch)."""
    work = tmp_path_factory.mktemp("hostile")
    rng = np.random.default_rng(0)
    for k, name in enumerate(CLASSES):
        folder = work / DATA / name
        folder.mkdir(parents=True)
        for i in range(8):
            pixels = (rng.random((8, 8)) * 80 + k * 80).astype(np.uint8)
            Image.fromarray(pixels, "L").save(folder / f"{i}.png")
    r = kcnn("train", "simple-cnn", "--dataset", DATA, "--epochs", "1", "--out", "runs", cwd=work)
    assert r.returncode == 0, r.stderr
    _clean(r)
    (run,) = (work / "runs").iterdir()
    return work, run


def test_train_draws_the_confusion_matrix_with_hostile_class_names(trained):
    _, run = trained
    with Image.open(run / "confusion_matrix.png") as im:
        assert im.size[0] > 200
    assert (run / "curves.png").is_file() and (run / "metrics.json").is_file()


def test_compare_runs_and_show_keep_hostile_names_inert(trained):
    work, run = trained
    copy = work / "runs" / COPY
    if not copy.exists():
        shutil.copytree(run, copy)
    r = kcnn("compare", run, copy, "--out", "compared", cwd=work, timeout=120)
    assert r.returncode == 0, r.stderr
    _clean(r)
    (folder,) = (work / "compared").iterdir()
    assert (folder / "curves_overlay.png").stat().st_size > 0
    md = (folder / "comparison.md").read_text()
    assert "\x1b" not in md and "\x07" not in md
    results = md.split("## Results\n\n", 1)[1].split("\n\n", 1)[0].splitlines()
    assert len(results) == 4  # header, rule, two runs: no name broke the table
    assert {_pipes(line) for line in results} == {_pipes(results[0])}  # as many cells in each
    with open(folder / "comparison.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows[1]["run"] == "'" + COPY and rows[0]["dataset"] == "'" + DATA  # no formulas

    for args in (["runs", "runs"], ["runs", "compared"], ["show", copy], ["show", folder]):
        r = kcnn(*args, cwd=work, timeout=120)
        assert r.returncode == 0, r.stderr
        _clean(r)
    listing = kcnn("runs", "runs", cwd=work, timeout=120).stdout
    assert "-@copy|$y$\\x1b[2J" in listing and "=1+1|d\\x1b]0;t\\x07$x$" in listing


def test_an_error_quoting_a_name_is_one_inert_line(tmp_path):
    r = kcnn("show", "no\x1b[2Jsuch\nrun\r", cwd=tmp_path, timeout=60)
    assert r.returncode == 2
    (line,) = r.stderr.splitlines()
    assert line.startswith("error: no run folder no\\x1b[2Jsuch\\nrun\\r")
    _clean(r)


def _pipes(row: str) -> int:
    """The cell separators in a pipe-table row (a backslash-escaped `|` is text in a cell)."""
    return sum(m.group() == "|" for m in re.finditer(r"\\.|\|", row))


def _bomb(path: Path) -> None:
    """A valid 8×8 PNG whose header then claims 30000×30000 pixels (CRC fixed up)."""
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(path)
    data = bytearray(path.read_bytes())
    data[16:24] = struct.pack(">II", 30000, 30000)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    path.write_bytes(bytes(data))


@pytest.fixture
def hostile_images(tmp_path):
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "good1.png")
    Image.fromarray(np.full((8, 8), 200, np.uint8)).save(tmp_path / "good2.png")
    _bomb(tmp_path / "bomb.png")
    os.mkfifo(tmp_path / "x.png")
    (tmp_path / "zero.png").symlink_to("/dev/zero")
    (tmp_path / "cut.png").write_bytes((tmp_path / "good1.png").read_bytes()[:40])
    return tmp_path


def test_predict_refuses_each_bad_image_in_one_line_and_predicts_the_others(
    trained, hostile_images
):
    work, run = trained
    named = ["bomb.png", "good1.png", "x.png", "zero.png", "cut.png", "good2.png"]
    r = kcnn("predict", run, *[hostile_images / n for n in named], cwd=work, timeout=180)
    assert r.returncode == 2, r.stderr  # the good ones predicted, but not every image read
    _clean(r)
    errors = r.stderr.splitlines()
    bad = [hostile_images / n for n in named if "good" not in n]
    assert len(errors) == len(bad) and all(line.startswith("error: ") for line in errors)
    assert all(f"{p}" in e for p, e in zip(bad, errors, strict=True))
    assert "too large an image" in errors[0] and "FIFO" in errors[1] and "device" in errors[2]
    assert [line.split()[-1] for line in r.stdout.splitlines()[1:]] == [
        str(hostile_images / "good1.png"),
        str(hostile_images / "good2.png"),
    ]
    assert "$5 or $10 bills" in r.stdout and "\\x1b[31mred\\nnewline" in r.stdout


def test_predict_on_a_folder_reads_only_what_is_inside_it(loaded, cli, hostile_images):
    outside = hostile_images.parent / f"{hostile_images.name}-outside.png"
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(outside)
    (hostile_images / "out.png").symlink_to(outside)
    (hostile_images / "in.png").symlink_to("good1.png")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(hostile_images / "sock.png"))
    (hostile_images / "dir.png").mkdir()
    r = cli("predict", loaded.info.folder, hostile_images)
    sock.close()
    assert r.code == 2, r.err
    predicted = [Path(line.split()[-1]).name for line in r.out.splitlines()[1:]]
    assert predicted == ["good1.png", "good2.png", "in.png"]
    errors = r.err.splitlines()
    assert len(errors) == 7 and all(line.startswith("error: ") for line in errors)
    # bomb, cut, dir, out (a link out), sock, x (a FIFO), zero (a link out)
    assert "dir.png is a folder" in errors[2] and "sock.png" in errors[4]
    assert sum(" is a link out of " in e for e in errors) == 2


@pytest.fixture(scope="module")
def loaded(trained):
    from kcnn.use import predict

    return predict.load(trained[1])


def test_predict_with_no_readable_image_is_one_error(loaded, hostile_images, capsys):
    from kcnn.errors import KcnnError
    from kcnn.use import predict

    files = [hostile_images / n for n in ("bomb.png", "x.png", "zero.png")]
    with pytest.raises(KcnnError, match="^none of the 3 images could be read"):
        list(predict.predict_files(loaded, files, top=1))
    assert capsys.readouterr().err == ""  # the one line is the error itself


def test_predict_reads_and_predicts_a_batch_at_a_time(loaded, tmp_path, monkeypatch):
    """A folder is streamed: the first results come before the later files are even read, and
    the model never sees more than PREDICT_BATCH images at once."""
    from kcnn.use import predict

    for i in range(5):
        Image.fromarray(np.full((8, 8), 40 * i, np.uint8)).save(tmp_path / f"{i}.png")
    monkeypatch.setattr(predict, "PREDICT_BATCH", 2)
    reads, batches = [], []
    real_read, real_predict = predict.read_image, loaded.predict
    monkeypatch.setattr(predict, "read_image", lambda p, s: reads.append(p) or real_read(p, s))
    monkeypatch.setattr(loaded, "predict", lambda x: batches.append(len(x)) or real_predict(x))
    results = predict.predict_files(loaded, [tmp_path], top=1)
    first = next(results)
    assert Path(first["image"]).name == "0.png" and len(reads) == 2
    rest = list(results)
    assert len(rest) == 4 and batches == [2, 2, 1] and len(reads) == 5
