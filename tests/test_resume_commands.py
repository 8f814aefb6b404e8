"""`--resume` for every training command: a `transfer` run (feature pass, head epochs, fine-tune
epochs) and a `compare-apis` run (each form), stopped by a real signal at varied moments, end
with the numbers of an uninterrupted run, bit for bit."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import kcnn

TIMEOUT = 600


def epochs_recorded(out: Path) -> int:
    """Epochs in every history.csv under `out` (the forms of a comparison added up)."""
    return sum(
        max(len(h.read_text().splitlines()) - 1, 0) for h in out.rglob("history.csv") if h.exists()
    )


def stop_after(args, out: Path, epochs: int, signum=signal.SIGTERM) -> Path:
    """Run `kcnn ARGS --out OUT`, send `signum` once `epochs` epochs are recorded; its folder."""
    process = subprocess.Popen(
        [sys.executable, "-m", "kcnn.cli", *map(str, args), "--out", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    start = time.monotonic()
    try:
        while process.poll() is None and time.monotonic() - start < TIMEOUT:
            if out.exists() and epochs_recorded(out) >= epochs:
                process.send_signal(signum)
                break
            time.sleep(0.05)
        _, err = process.communicate(timeout=TIMEOUT)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode in (0, 128 + signum), err[-2000:]
    if process.returncode:
        assert "--resume" in err.strip().splitlines()[-1], err[-2000:]
    (folder,) = out.iterdir()
    return folder


def outcomes(folder: Path) -> dict[str, tuple]:
    """Every run's final figures and history under `folder`, by its form or backbone."""
    found = {}
    for metrics_path in sorted(folder.rglob("metrics.json")):
        m = json.loads(metrics_path.read_text())
        key = m.get("api") or m.get("backbone")
        history = (metrics_path.parent / "history.csv").read_text()
        found[key] = (
            m["status"],
            m["epochs_completed"],
            m["test_loss"],
            m["test_accuracy"],
            history,
        )
    return found


def check_resume(command: str, args: list[str], tmp_path: Path, moments: list[int]) -> None:
    reference = kcnn(command, *args, "--out", tmp_path / "reference")
    assert reference.returncode == 0, reference.stderr[-2000:]
    (reference_dir,) = (tmp_path / "reference").iterdir()
    expected = outcomes(reference_dir)
    for epochs in moments:
        folder = stop_after([command, *args], tmp_path / f"stopped-{epochs}", epochs)
        stopped = [
            p.parent for p in folder.rglob("metrics.json") if '"interrupted"' in p.read_text()
        ]
        finished = kcnn(command, "--resume", folder)
        assert finished.returncode == 0, finished.stderr[-2000:]
        assert outcomes(folder) == expected, epochs
        for run in stopped:  # every command records each resume in the run it continued
            resumed = json.loads((run / "config.json").read_text()).get("resumed")
            assert resumed and "from_epoch" in resumed[-1], run
        again = kcnn(command, "--resume", folder)  # nothing left to do: refused in one line
        assert again.returncode == 2, again.stderr[-1000:]
        assert "finished" in again.stderr or "completed" in again.stderr, again.stderr[-1000:]


@pytest.mark.slow
def test_transfer_resumes_in_its_frozen_and_fine_tune_phases_bit_for_bit(tmp_path):
    args = ["mobilenetv2", "--dataset", "shapes", "--shapes-count", "120", "--weights", "none",
            "--epochs", "2", "--fine-tune", "5", "--fine-tune-epochs", "2", "--head", "gap",
            "--batch-size", "16", "--lr", "0.01"]  # fmt: skip
    check_resume("transfer", args, tmp_path, moments=[1, 3])


@pytest.mark.slow
def test_compare_apis_resumes_each_form_bit_for_bit(tmp_path):
    args = ["lenet5", "--dataset", "digits", "--epochs", "3", "--limit", "200",
            "--independent-init", "--batch-size", "32"]  # fmt: skip
    check_resume("compare-apis", args, tmp_path, moments=[2, 4])


def test_resume_of_the_wrong_kind_of_folder_is_refused_in_one_line(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"command": "train", "arch": "lenet5"}))
    (folder / "metrics.json").write_text(json.dumps({"status": "interrupted"}))
    for command in ("transfer", "compare-apis"):
        result = kcnn(command, "--resume", folder)
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 2 and lines[-1].startswith("error:"), result.stderr
        assert "Traceback" not in result.stderr and "kcnn train --resume" in lines[-1]
