"""`make demo` as written in the Makefile: LeNet-5 on mnist-5k (offline) reaches >= 0.97."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

MAKEFILE = Path(__file__).resolve().parents[1] / "Makefile"


def demo_arguments() -> list[str]:
    """The demo's own settings, read from the Makefile, so the test runs what `make demo` runs."""
    match = re.search(r"^DEMO_ARGS := (.+)$", MAKEFILE.read_text(), re.MULTILINE)
    assert match, "the Makefile defines DEMO_ARGS"
    return shlex.split(match.group(1))


def test_the_demo_trains_offline_data_and_names_no_output_folder():
    args = demo_arguments()
    assert args[:3] == ["train", "lenet5", "--dataset"] and args[3] == "mnist-5k"
    assert "--out" not in args  # the test (and a reader) choose where the run goes


@pytest.mark.slow
def test_the_demo_reaches_097_on_mnist_5k(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "kcnn.cli", *demo_arguments(), "--out", str(tmp_path), "--json"],
        capture_output=True,
        text=True,
        timeout=1800,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    run = json.loads(result.stdout)["runs"][0]
    assert run["dataset"] == "mnist-5k" and not run["dataset_fallback"]
    assert run["test_accuracy"] >= 0.97, run["test_accuracy"]
