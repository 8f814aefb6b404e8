"""Hostile input, class 2 and 3: what a finished run leaves (file modes, no native log lines on
the terminal), default run names from awkward data-set names, and a diverged run's advice."""

from __future__ import annotations

import json
import re
import stat

from conftest import kcnn

from kcnn.engine import interrupts

NATIVE_LINES = re.compile(r"cuInit|CUDA|oneDNN custom operations|NodeDef|cuda_|TF-TRT")


def test_records_take_the_users_file_mode_and_native_lines_stay_off_the_terminal(tmp_path):
    result = kcnn(
        "train", "lenet5", "--dataset", "digits", "--limit", "40", "--epochs", "1",
        "--out", tmp_path, "--name", "modes", umask=0o027,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert not NATIVE_LINES.search(result.stderr), result.stderr
    (run_dir,) = tmp_path.iterdir()
    for name in ("config.json", "metrics.json", "history.csv", "report.html", "summary.txt"):
        mode = stat.S_IMODE((run_dir / name).stat().st_mode)
        assert mode == 0o640, (name, oct(mode))
    assert json.loads((run_dir / "metrics.json").read_text())["status"] == "completed"


def test_default_run_names_from_awkward_data_set_names(tmp_path):
    for folder, label in [("my data", "my-data"), ("données", "données"), ("a/b c!/", "b-c")]:
        (tmp_path / folder).mkdir(parents=True)  # a missing path is refused before the name
        result = kcnn("train", "lenet5", "--dataset", tmp_path / folder, "--print-config")
        assert result.returncode == 0, result.stderr
        assert f'name = "lenet5-{label}-sequential"' in result.stdout, result.stdout
    result = kcnn("compare-apis", "--dataset", tmp_path / "my data", "--print-config")
    assert 'name = "compare-simple-cnn-my-data"' in result.stdout, result.stdout


def test_diverged_advice_never_suggests_the_optimizer_in_use():
    stop = interrupts.NonFiniteLoss(float("nan"), 0, 3)
    for optimizer in ("adam", "sgd", "rmsprop"):
        message = str(interrupts.diverged(stop, optimizer, 0.01))
        assert f"--optimizer {optimizer}" not in message, message
        assert "--lr 0.001" in message
    assert "--optimizer adam" in str(interrupts.diverged(stop, "sgd", 0.01))
