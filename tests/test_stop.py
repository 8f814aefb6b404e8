"""A stop request stops the whole command: a SIGTERM at any moment of any command ends it with
128 + N, resumably, and no run begins after it — even when it lands where it cannot act at once
(while a finished run writes its records), inside work whose failure is only a warning (a
group's per_class.png), or inside a library that swallows it.

The moments are made exact: kcnn runs in its own process under a timeout, with one of its
functions patched to send the signal to its own process at that moment (and, for a library that
swallows it, to catch what the handler raises). One more test sends a real SIGTERM from outside
at a moment it watches for, as a scheduler's preemption would."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import KCNN, kcnn

HARNESS = """
import os, signal, sys
{patch}
from kcnn.cli import main
main(sys.argv[1:])
"""

# The first call of `kcnn.runs.plots._save` for per_class.png sends SIGTERM inside the drawing,
# where a failure is only a warning.
WHILE_PER_CLASS_IS_DRAWN = """
import kcnn.runs.plots as plots
_save, sent = plots._save, []
def save(fig, path):
    if path.name == "per_class.png" and not sent:
        sent.append(1)
        os.kill(os.getpid(), signal.SIGTERM)
    return _save(fig, path)
plots._save = save
"""

# The first report.html of a run is written while the run, complete, shields its records: the
# signal cannot act there; and a library that catches everything swallows what it raises.
SWALLOWED_WHILE_A_REPORT_IS_WRITTEN = """
import kcnn.runs.html as html
_write, sent = html.write_report, []
def write(folder):
    if not sent:
        sent.append(1)
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            sum(range(1000))  # the handler runs here, inside the library's try
        except BaseException:
            pass
    return _write(folder)
html.write_report = write
"""


# The first config.json of a run is written the moment its folder is made: a signal there
# lands before the folder holds any status.
WHILE_A_NEW_FOLDER_IS_MADE = """
import kcnn.runs.recorder as recorder
_write, sent = recorder.RunRecords.write_config, []
def write(self):
    if not sent:
        sent.append(1)
        os.kill(os.getpid(), signal.SIGTERM)
    return _write(self)
recorder.RunRecords.write_config = write
"""


def harness(patch: str, *args, timeout: float = 300) -> subprocess.CompletedProcess:
    """`kcnn ARGS` in its own process, with `patch` applied first."""
    return subprocess.run(
        [sys.executable, "-c", HARNESS.format(patch=patch), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "KCNN_SEED_WORKERS": "1"},
    )


def experiment(tmp_path: Path, tables: list[str], name: str = "two.toml") -> Path:
    out = tmp_path / "runs"
    base = f'command = "train"\narch = "lenet5"\ndataset = "digits"\nepochs = 1\nlimit = 60\nout = "{out}"\n'
    path = tmp_path / name
    path.write_text("".join(f"[[run]]\n{base}{table}\n" for table in tables))
    return path


def stopped(result: subprocess.CompletedProcess) -> str:
    """The command stopped for SIGTERM: exit 143, its last line the error, no traceback."""
    assert result.returncode == 128 + signal.SIGTERM, (result.returncode, result.stderr[-3000:])
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: interrupted by SIGTERM"), last
    return last


@pytest.mark.slow  # trains two groups
def test_a_stop_while_a_groups_picture_is_drawn_stops_the_file(tmp_path):
    path = experiment(tmp_path, ["seeds = 2\nlr = 0.01", "seeds = 2\nlr = 0.002"])
    result = harness(WHILE_PER_CLASS_IS_DRAWN, "run", path)
    last = stopped(result)
    assert "not drawn" not in result.stderr  # a stop is never a picture's warning
    assert f"kcnn run {path} --resume" in last
    group_folders = [p for p in (tmp_path / "runs").iterdir() if p.name.endswith("-seeds")]
    assert len(group_folders) == 1  # the second group never began
    again = kcnn("run", path, "--resume", "--json")
    assert again.returncode == 0, again.stderr[-2000:]
    summaries = json.loads(again.stdout)["runs"]
    assert [s["group"] for s in summaries[:1]] == [str(group_folders[0])]  # kept, not redone
    assert (group_folders[0] / "per_class.png").is_file()
    assert len(summaries) == 3 and summaries[-1]["command"] == "compare"


def test_a_stop_a_library_swallows_still_stops_before_the_next_run(tmp_path):
    path = experiment(tmp_path, ["", "lr = 0.002"])
    result = harness(SWALLOWED_WHILE_A_REPORT_IS_WRITTEN, "run", path)
    stopped(result)
    (run,) = [p for p in (tmp_path / "runs").iterdir() if p.is_dir()]  # no second run began
    assert json.loads((run / "metrics.json").read_text())["status"] == "completed"
    again = kcnn("run", path, "--resume")
    assert again.returncode == 0, again.stderr[-2000:]
    assert f"kept: {run}" in again.stdout


def test_a_stop_as_the_last_run_finishes_still_ends_the_command_as_stopped(tmp_path):
    out = tmp_path / "runs"
    args = ["train", "lenet5", "--dataset", "digits", "--epochs", "1", "--limit", "60"]
    result = harness(SWALLOWED_WHILE_A_REPORT_IS_WRITTEN, *args, "--out", out)
    last = stopped(result)
    assert "what it finished is kept" in last
    (run,) = out.iterdir()
    assert json.loads((run / "metrics.json").read_text())["status"] == "completed"


def test_a_real_sigterm_between_runs_stops_the_file_and_resume_finishes_it(tmp_path):
    path = experiment(tmp_path, ["", "lr = 0.002", "lr = 0.005"])
    process = subprocess.Popen(
        [*KCNN, "run", str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 300
    try:
        while time.monotonic() < deadline and process.poll() is None:
            done = [
                m for m in (tmp_path / "runs").glob("*/metrics.json")
                if '"completed"' in m.read_text(errors="replace")
            ]  # fmt: skip
            if done:
                process.send_signal(signal.SIGTERM)
                break
            time.sleep(0.05)
        out, err = process.communicate(timeout=300)
    finally:
        if process.poll() is None:
            process.kill()
    stopped(subprocess.CompletedProcess(process.args, process.returncode, out, err))
    runs = [p for p in (tmp_path / "runs").iterdir() if p.is_dir()]
    assert len(runs) < 3  # the last run never began
    statuses = {json.loads((p / "metrics.json").read_text())["status"] for p in runs}
    assert statuses <= {"completed", "interrupted", "running"}  # each one resumable
    again = kcnn("run", path, "--resume", "--json")
    assert again.returncode == 0, again.stderr[-2000:]
    assert json.loads(again.stdout)["runs"][-1]["command"] == "compare"


def test_a_stop_while_a_run_folder_is_made_leaves_it_whole_and_resumable(tmp_path):
    out = tmp_path / "runs"
    args = ("train", "lenet5", "--dataset", "digits", "--epochs", "1", "--limit", "60")
    stopped(harness(WHILE_A_NEW_FOLDER_IS_MADE, *args, "--out", out))
    (run,) = out.iterdir()
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["status"] == "interrupted" and metrics["epochs_completed"] == 0
    again = kcnn("train", "--resume", run)
    assert again.returncode == 0, again.stderr[-2000:]
    assert json.loads((run / "metrics.json").read_text())["status"] == "completed"
