"""Model files from anyone, and the commands that use a run's model: `predict --model` on a FIFO,
a cut `.tflite`, an ONNX model of two inputs, a SavedModel of special files; a run folder whose
model.keras is another network's, has no convolution, or unpacks to gigabytes; a damaged
temperature.json; an `--out` that cannot be made.

Each is the installed console script in a subprocess under a timeout: exit status 2 (or 0 with
one `warning:` where the README says the command goes on) and one line, never a traceback, a
hang or a crash of the process, nothing left behind where it refused.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

TIMEOUT = 180


def kcnn(*args, timeout: float = TIMEOUT, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "kcnn.cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        cwd=cwd,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""},
    )


def refused(result: subprocess.CompletedProcess, *words: str) -> str:
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr[-2000:]
    for word in words:
        assert word in errors[0], (word, errors[0])
    return errors[0]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """One real, finished LeNet-5 run (digits, one epoch)."""
    out = tmp_path_factory.mktemp("trained")
    done = kcnn("train", "lenet5", "--dataset", "digits", "--epochs", "1", "--limit", "60",
                "--batch-size", "16", "--out", out, "--name", "mine")  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    (run,) = out.iterdir()
    return run


@pytest.fixture
def run(tmp_path, trained) -> Path:
    copy = tmp_path / trained.name
    shutil.copytree(trained, copy)
    return copy


# --- predict --model: exported model files ------------------------------------------------------


def test_a_model_file_that_is_a_fifo_is_refused_never_waited_on(run, tmp_path):
    for name in ("model.tflite", "model.onnx"):
        fifo = tmp_path / name
        os.mkfifo(fifo)
        refused(kcnn("predict", run, run / "curves.png", "--model", fifo, timeout=60), "FIFO")


@pytest.mark.slow  # an export, then a TensorFlow start-up per process
def test_a_cut_tflite_file_is_refused_at_every_cut_never_a_crash(run, tmp_path):
    done = kcnn("export", run, "--format", "tflite")
    assert done.returncode == 0, done.stderr[-2000:]
    whole = (run / "export" / "model.tflite").read_bytes()
    cut = tmp_path / "cut.tflite"
    cut.write_bytes(whole[: len(whole) // 2])
    refused(kcnn("predict", run, run / "curves.png", "--model", cut), "not a valid Flatbuffer")
    # every cut, in one process of its own: a crash would be its exit status, not a refusal
    script = textwrap.dedent(
        f"""
        from pathlib import Path
        from kcnn.errors import KcnnError
        from kcnn.use import runtimes
        whole = Path({str(run / "export" / "model.tflite")!r}).read_bytes()
        cut = Path({str(cut)!r})
        refused = 0
        for end in [*range(0, 4096, 61), *range(4096, len(whole), len(whole) // 97)]:
            cut.write_bytes(whole[:end])
            try:
                runtimes.open_model(cut)
            except KcnnError:
                refused += 1
        print(refused)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=TIMEOUT
    )
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])  # -11 would be SIGSEGV
    assert int(done.stdout.split()[-1]) == len(
        [*range(0, 4096, 61), *range(4096, len(whole), len(whole) // 97)]
    )


def test_an_onnx_model_of_two_inputs_is_refused_in_one_line(run, tmp_path):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    shape = [None, 32, 32, 1]
    inputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, shape) for n in ("a", "b")]
    output = helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)
    graph = helper.make_graph([helper.make_node("Add", ["a", "b"], ["y"])], "two", inputs, [output])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    path = tmp_path / "two.onnx"
    onnx.save(model, path)
    refused(kcnn("predict", run, run / "curves.png", "--model", path), "2 input(s)")


@pytest.mark.slow  # TensorFlow starts in each of its processes
def test_a_saved_model_folder_holding_a_fifo_or_a_link_is_refused(run, tmp_path):
    folder = tmp_path / "saved"
    (folder / "variables").mkdir(parents=True)
    (folder / "saved_model.pb").write_bytes(b"not a graph")
    os.mkfifo(folder / "variables" / "variables.index")
    refused(kcnn("predict", run, run / "curves.png", "--model", folder), "FIFO")
    (folder / "variables" / "variables.index").unlink()
    (folder / "variables" / "variables.index").symlink_to("/etc/hostname")
    refused(kcnn("predict", run, run / "curves.png", "--model", folder), "not a regular file")


# --- a run folder whose model.keras is not the run's ----------------------------------------------


def _replace_model(run: Path, shape: tuple[int, ...], conv: bool) -> None:
    import keras

    inputs = keras.Input(shape)
    x = keras.layers.Conv2D(4, 3)(inputs) if conv else inputs
    x = keras.layers.GlobalAveragePooling2D()(x) if conv else keras.layers.Flatten()(x)
    model = keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(x))
    (run / "model.keras").unlink()
    model.save(run / "model.keras")


@pytest.mark.slow  # TensorFlow starts in each of its processes
def test_predict_with_a_model_of_another_input_shape_is_one_line(run):
    _replace_model(run, (16, 16, 1), conv=True)
    refused(kcnn("predict", run, run / "curves.png"), "takes 16×16×1 inputs", "32×32×1")


@pytest.mark.slow  # TensorFlow starts in each of its processes
def test_visualize_of_a_model_without_a_convolution_is_one_line_and_writes_nothing(run, tmp_path):
    _replace_model(run, (32, 32, 1), conv=False)
    refused(kcnn("visualize", run), "no convolution")
    assert not (run / "visualize").exists()
    refused(kcnn("visualize", run, "--out", tmp_path / "new" / "pictures"), "no convolution")
    assert not (tmp_path / "new").exists()


def test_a_keras_archive_that_unpacks_to_gigabytes_is_refused_before_loading(run):
    original = run / "model.keras"
    bomb = run / "bomb.keras"
    with zipfile.ZipFile(original) as src, zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as z:
        for member in src.infolist():
            if member.filename == "config.json":  # 65 MiB of spaces: 64 KB packed
                z.writestr("config.json", b" " * (65 * 1024 * 1024))
            else:
                z.writestr(member, src.read(member))
    bomb.replace(original)
    refused(kcnn("predict", run, run / "curves.png"), "config.json unpacks to 65 MiB")


# --- calibration: a damaged temperature.json is said, not used -----------------------------------


@pytest.mark.parametrize(
    "temperature",
    [
        "NaN",
        pytest.param("0", marks=pytest.mark.slow),
        pytest.param("-2.5", marks=pytest.mark.slow),
    ],
)
def test_a_damaged_temperature_is_one_warning_and_the_models_own_probabilities(run, temperature):
    (run / "inspect").mkdir()
    (run / "inspect" / "temperature.json").write_text(f'{{"temperature": {temperature}}}')
    done = kcnn("predict", run, run / "curves.png", run / "confusion_matrix.png", "--json")
    assert done.returncode == 0, done.stderr[-2000:]
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("warning:"), lines
    assert "temperature.json is damaged" in lines[0]
    assert all(row["calibration_temperature"] is None for row in json.loads(done.stdout))


# --- an --out that cannot be made leaves none of the folders it made -------------------------------


@pytest.mark.slow  # TensorFlow starts in each of its processes
def test_a_refused_long_out_leaves_no_parent_folder_behind(run, tmp_path):
    long = "x" * 300  # over the 255 bytes a file name may have
    for command, args in (
        ("train", ["lenet5", "--dataset", "digits", "--epochs", "1", "--limit", "60"]),
        ("export", [run, "--format", "tflite"]),
        ("visualize", [run]),
    ):
        parent = tmp_path / f"made-by-{command}"
        refused(kcnn(command, *args, "--out", parent / "deeper" / long), long[:20])
        assert not parent.exists(), command
