"""Terminal output during long work, as a user meets it: a heading before each run of several, a
table of all runs at the end, progress as one plain line per step in a log or a pipe, no
TensorFlow warnings, a Ctrl-C in the middle of a file that says how to finish it, and
`kcnn run FILE --check` that says what it checked."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import kcnn

from kcnn import progress
from kcnn.runs.records import read_csv, read_json

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
TINY = ["--dataset", "digits", "--limit", "200", "--batch-size", "32"]


def _experiment(tmp_path: Path, runs: list[str], extra: str = "") -> Path:
    path = tmp_path / "two.toml"
    tables = "".join(f"\n[[run]]\n{table}\n" for table in runs)
    path.write_text(f'description = "two runs"\n{extra}{tables}')
    return path


def _train(api: str, epochs: int, out: Path, dataset: str = "digits") -> str:
    return (
        f'command = "train"\narch = "lenet5"\napi = "{api}"\ndataset = "{dataset}"\n'
        f'epochs = {epochs}\nlimit = 200\nbatch_size = 32\nout = "{out}"'
    )


# --- the progress helper ----------------------------------------------------------------------


def test_plain_progress_is_one_whole_line_per_tenth_then_a_last_line():
    from kcnn.progress import Steps

    out = io.StringIO()  # not a terminal: a log
    shown = Steps("features of the training images", 25, "images", out).start()
    for _ in range(25):
        shown.advance()
    shown.finish()
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue()
    assert len(lines) == 10, lines  # nine tenths and the last line, never 25
    assert lines[0] == "features of the training images: 3/25 images"
    assert re.fullmatch(r"features of the training images: 25/25 images in \d+\.\d s", lines[-1])


def test_progress_on_a_terminal_is_a_bar_and_a_stopped_one_says_no_done():
    from kcnn.progress import Steps

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    out = Terminal()
    shown = Steps("export onnx", 3, "steps", out).start()
    shown.advance(note="converted")
    shown.finish()
    assert "export onnx" in out.getvalue() and "3" in out.getvalue()

    plain = io.StringIO()
    stopped = Steps("export onnx", 3, "steps", plain).start()
    stopped.advance(note="converted")
    stopped.finish(ended=False)  # interrupted: the last line is not a "done" line
    assert plain.getvalue() == "export onnx: 1/3 steps (converted)\n"


# --- compare-apis: headings, the proof's progress, no TensorFlow warnings ----------------------


def test_compare_apis_says_which_form_trains_and_prints_no_tensorflow_warnings(kcnn_exe, tmp_path):
    result = kcnn("compare-apis", "lenet5", *TINY, "--epochs", "1", "--out", tmp_path / "runs")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "\r" not in out  # stdout is a pipe: whole lines only
    # the build and the proof, one line per step
    steps = [
        line for line in out.splitlines() if line.startswith("lenet5: 3 forms built and proven: ")
    ]
    assert [re.search(r": (\d/4) steps", s).group(1) for s in steps] == ["1/4", "2/4", "3/4", "4/4"]
    assert "built the sequential form" in steps[0] and "proof" in steps[-1]
    # a heading before each form's epochs, in order
    positions = []
    for number, form in enumerate(("sequential", "functional", "subclassed"), 1):
        heading = f"[{number}/3] {form} — lenet5 on digits"
        assert heading in out, out
        positions.append(out.index(heading))
    assert positions == sorted(positions)
    # Keras's one line per epoch in a pipe (`5/5 - 3s - ... accuracy: ...`), one per form
    epochs = [m.start() for m in re.finditer(r"^\d+/\d+ - .*accuracy", out, re.M)]
    assert len(epochs) == 3 and all(p < e for p, e in zip(positions, epochs, strict=True))
    assert "retracing" not in result.stderr and "WARNING" not in result.stderr, result.stderr


def test_tensorflow_retracing_warnings_are_silenced_and_errors_kept():
    script = (
        "import sys\n"
        "from kcnn.cli import quiet_python_logs\n"
        "quiet_python_logs(sys.argv[1] == 'quiet')\n"
        "import tensorflow as tf\n"
        "f = tf.function(lambda x: x + 1)\n"
        "for n in range(12):\n"
        "    f(n)  # a new Python value each call: a retrace each call\n"
        "tf.get_logger().error('a real error')\n"
    )
    answers = {}
    for mode in ("quiet", "debug"):
        done = subprocess.run(
            [sys.executable, "-c", script, mode],
            capture_output=True,
            text=True,
            env=ENV,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        answers[mode] = done.stderr
    assert "retracing" in answers["debug"]  # the warning is real: --debug shows it
    assert "retracing" not in answers["quiet"] and "a real error" in answers["quiet"]


# --- an experiment file of several runs ------------------------------------------------------


def test_a_file_of_runs_heads_each_run_and_ends_with_a_table(kcnn_exe, tmp_path):
    out = tmp_path / "runs"
    path = _experiment(tmp_path, [_train("sequential", 1, out), _train("functional", 1, out)])
    result = kcnn("run", path)
    assert result.returncode == 0, result.stderr
    text = result.stdout
    first = text.index("[1/2] train — lenet5 (sequential) on digits")
    second = text.index("[2/2] train — lenet5 (functional) on digits")
    header = re.search(r"^test acc +95% CI +test loss +epochs +train s +run$", text, re.M)
    assert header is not None and first < second < header.start(), text
    rows = text[header.end() :].strip().splitlines()
    assert len(rows) == 2 and rows[0].endswith("-sequential") and rows[1].endswith("-functional")
    for row in rows:
        accuracy, interval, loss, epochs = row.split()[:4]
        low, high = (float(v) for v in interval.split("–"))  # Wilson's, from the test-set size
        assert 0 <= low <= float(accuracy) <= high <= 1 and float(loss) >= 0 and epochs == "1"


def _wait_for_epoch(folder_glob: str, out: Path, process: subprocess.Popen) -> Path:
    """Poll (not sleep) until a run folder matching `folder_glob` has recorded an epoch."""
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        for history in out.glob(f"{folder_glob}/history.csv"):
            if len(read_csv(history)) >= 1:
                return history.parent
        time.sleep(0.05)
    process.kill()
    raise AssertionError("the second run recorded no epoch in time")


def test_ctrl_c_in_the_second_run_says_how_to_finish_the_file_and_resume_does(
    kcnn_exe, tmp_path, cli
):
    out = tmp_path / "runs"
    # the second run is long enough that the signal surely lands inside it
    path = _experiment(tmp_path, [_train("sequential", 1, out), _train("functional", 10, out)])
    process = subprocess.Popen(
        [*kcnn_exe, "run", str(path), "--set", "seed=7"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )
    second = _wait_for_epoch("*-functional", out, process)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert f"continue with: kcnn train --resume {second}" in err  # that run alone
    assert f"run 2 of 2 in {path}" in err
    hint = f"to finish the file and its comparison: kcnn run {path} --set seed=7 --resume"
    assert hint in err, err
    (first,) = out.glob("*-sequential")
    assert read_json(first / "metrics.json")["status"] == "completed"
    kept = (first / "history.csv").read_text()

    # the command the message gives: run 1 kept, run 2 finished in its folder, the comparison
    result = cli("run", path, "--set", "seed=7", "--resume", "--json")
    assert result.code == 0, result.err
    summaries = json.loads(result.out)["runs"]
    assert [s["run_dirs"] for s in summaries[:2]] == [[str(first)], [str(second)]]
    assert (first / "history.csv").read_text() == kept  # not trained again
    finished = read_json(second / "metrics.json")
    assert finished["status"] == "completed" and finished["epochs_completed"] == 10
    assert summaries[2]["command"] == "compare" and Path(summaries[2]["comparison"]).is_dir()
    assert len([p for p in out.iterdir() if p.is_dir()]) == 3  # two runs and one comparison


# --- kcnn run FILE --check ----------------------------------------------------------------------


def test_check_heads_each_run_shows_only_its_settings_and_says_all_passed(kcnn_exe, tmp_path):
    out = tmp_path / "runs"
    path = _experiment(
        tmp_path, [_train("sequential", 1, out, dataset="shapes"), _train("functional", 1, out)]
    )
    result = kcnn("run", path, "--check")
    assert result.returncode == 0, result.stderr
    text = result.stdout
    first = text.index("[1/2] train — lenet5 (sequential) on shapes")
    second = text.index("[2/2] train — lenet5 (functional) on digits")
    shapes_run, digits_run = text[first:second], text[second:]
    assert "shapes_count = 3000" in shapes_run
    assert "shapes_count" not in digits_run  # ignored by digits: not shown
    assert "momentum" not in text and "nesterov" not in text  # adam: sgd's settings do not apply
    assert "min_lr" not in text  # a constant rate decays towards nothing
    assert shapes_run.count("check passed") == 1 and digits_run.count("check passed") == 1
    assert text.rstrip().splitlines()[-1] == (
        f"all checks passed: all 2 runs ready to train, 2 trainings, 2 epochs in all (kcnn run {path})"
    )
    assert not out.exists()  # nothing trained, no folder made


def test_check_names_the_run_that_failed_and_exits_2(kcnn_exe, tmp_path):
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    path = _experiment(
        tmp_path, [_train("sequential", 1, tmp_path / "runs"), _train("functional", 1, blocked)]
    )
    result = kcnn("run", path, "--check")
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert result.stderr.startswith("error: run 2 of 2 (train — lenet5 (functional) on digits): ")
    assert str(blocked) in result.stderr
    assert result.stdout.count("check passed") == 1 and "check failed" in result.stdout
    assert "all checks passed" not in result.stdout


# --- the long steps of transfer and export ----------------------------------------------------


@pytest.mark.slow
def test_transfer_shows_its_feature_pass_line_by_line(kcnn_exe, tmp_path):
    result = kcnn(
        "transfer",
        "vgg16",
        "--weights",
        "none",
        "--dataset",
        "shapes",
        "--shapes-count",
        "120",
        "--limit",
        "48",
        "--epochs",
        "1",
        "--batch-size",
        "16",
        "--out",
        tmp_path / "runs",
    )
    assert result.returncode == 0, result.stderr
    assert "\r" not in result.stdout
    for split in ("training", "validation"):
        assert re.search(
            rf"^vgg16 features of the {split} images: (\d+)/\1 images in \d+\.\d s$",
            result.stdout,
            re.M,
        ), result.stdout


@pytest.mark.slow
def test_export_shows_each_of_its_stages(cli, tmp_path):
    out = tmp_path / "runs"
    trained = cli("train", "lenet5", *TINY, "--epochs", "1", "--out", out, "--json")
    assert trained.code == 0, trained.err
    run = json.loads(trained.out)["runs"][0]["run_dir"]
    result = cli("export", run, "--format", "saved-model")
    assert result.code == 0, result.err
    lines = [line for line in result.out.splitlines() if line.startswith("export saved-model: ")]
    assert len(lines) == 3, result.out
    assert lines[0].startswith("export saved-model: 1/3 steps (converted to ")
    assert "2/3 steps (the run's model measured on " in lines[1]
    assert re.search(r"3/3 steps \(the exported model checked on .*\) in \d+\.\d s$", lines[2])
    # under --json the stages go to stderr: stdout is the answer alone
    again = cli("export", run, "--format", "saved-model", "--json")
    assert again.code == 0, again.err
    json.loads(again.out)
    assert "export saved-model: 3/3 steps" in again.err


def test_warnings_and_notes_are_one_line_each_escaped_on_stderr(capsys):
    progress.warn("a\nb\x1b[31m")
    progress.note("trained again")
    progress.say("step 1")
    out, err = capsys.readouterr()
    assert out == ""
    assert err.splitlines() == ["warning: a\\nb\\x1b[31m", "note: trained again", "step 1"]


def test_no_module_writes_its_own_warning_line():
    """A warning is said through progress.warn, a note through progress.note: one format, escaped
    once (no module prints `warning:` or `WARNING` itself)."""
    root = Path(progress.__file__).parent
    own = [
        f"{path.relative_to(root)}:{n}"
        for path in root.rglob("*.py")
        if path.name != "progress.py"
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if re.search(r"""["'](warning|WARNING): """, line)
    ]
    assert not own, own
