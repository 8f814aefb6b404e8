"""`kcnn train --help` reads at 80 columns, on a terminal or not: options in panels, names
whole, plain metavars, flags without a value type; `kcnn --version` answers without TensorFlow."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from kcnn.cli.options import negative_flag
from kcnn.engine.config import COMMANDS
from kcnn.engine.schema import PANELS, option_name, panel_of


def _help(command: str) -> str:
    env = {**os.environ, "COLUMNS": "80", "TERMINAL_WIDTH": ""}
    env.pop("FORCE_COLOR", None)
    result = subprocess.run(
        [sys.executable, "-m", "kcnn.cli", command, "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        stdin=subprocess.DEVNULL,  # no terminal: what CI and pipes see
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.parametrize("command", list(COMMANDS))
def test_help_fits_80_columns_whole_and_in_panels(command):
    text = _help(command)
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 80
    assert "…" not in text  # no name, value list or default cut short
    for word in ("<str>", "<int>", "<float>", "<bool>", "<list", "<Path>", "<path>"):
        assert word not in text
    words = text.split()
    cls = COMMANDS[command]
    for key, spec in cls.settings().items():
        if spec.argument:
            assert key.upper() in words
        else:
            assert (spec.flags or option_name(key)).split("/")[0] in words, key
    for option in ("--config", "--print-config", "--json"):
        assert option in words
    expected = {spec.help_panel(key) for key, spec in cls.settings().items() if not spec.argument}
    for panel in expected | {"Configuration", "Output and tracking"}:
        assert f"─ {panel} ─" in text, panel
    # panels in the order the help promises: data first, configuration last
    positions = [text.index(f"─ {p} ─") for p in PANELS if f"─ {p} ─" in text]
    assert positions == sorted(positions)


def test_a_flag_shows_no_value_type_and_a_value_a_plain_word():
    text = _help("train")
    flag = next(line for line in text.splitlines() if "--mixed-precision" in line)
    assert flag.split("--mixed-precision")[1].split()[0] == "Compute"  # straight to its help
    epochs = next(line for line in text.splitlines() if "--epochs" in line)
    assert epochs.split()[2] == "N"


def test_the_no_twin_of_a_flag_still_overrides_a_file(cli, tmp_path):
    config = tmp_path / "c.toml"
    config.write_text('[[run]]\ncommand = "train"\narch = "lenet5"\ntensorboard = true\n')
    result = cli("train", "--config", config, negative_flag("tensorboard"), "--print-config")
    assert result.code == 0, result.err
    assert "tensorboard = false" in result.out
    both = cli("train", "lenet5", "--tensorboard", "--no-tensorboard", "--print-config")
    assert both.code == 2 and "contradict" in both.err
    # a flag that is on by default: its --no- twin turns it off
    off = cli("transfer", "vgg16", "--weights", "none", "--no-cache-features", "--print-config")
    assert off.code == 0, off.err
    assert "cache_features = false" in off.out


def test_a_setting_without_a_panel_lands_among_its_kind():
    assert panel_of("augment_shear") == "Augmentation"
    assert panel_of("mlflow") == "Output and tracking"
    assert panel_of("seeds") == "Optimisation"
    assert panel_of("dropout") == "Recipe"  # "out" inside a word is not the output folder


def test_version_answers_without_tensorflow():
    code = (
        "import sys\n"
        "from kcnn.cli import main\n"
        "try:\n"
        "    main(['--version'])\n"
        "except SystemExit as e:\n"
        "    assert e.code == 0, e.code\n"
        "assert 'tensorflow' not in sys.modules\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    from importlib import metadata

    assert result.stdout.strip() == f"kcnn {metadata.version('kcnn')}"


# --- errors name what the user wrote -----------------------------------------------------------


def test_an_error_names_the_option_on_the_command_line_and_the_key_in_a_file(cli, tmp_path):
    typed = cli("train", "lenet5", "--epochs", "0", "--print-config")
    assert typed.code == 2 and "error: --epochs must be a whole number" in typed.err
    assert "in a file" not in typed.err
    config = tmp_path / "c.toml"
    config.write_text('[[run]]\ncommand = "train"\narch = "lenet5"\nepochs = 0\n')
    filed = cli("train", "--config", config, "--print-config")
    assert filed.code == 2 and f"error: {config}: `epochs` must be a whole number" in filed.err
    assert "--epochs" not in filed.err


def test_a_missing_dataset_path_is_refused_before_tensorflow_is_imported(tmp_path):
    code = (
        "import sys\n"
        "from kcnn.cli import main\n"
        "try:\n"
        f"    main(['train', 'lenet5', '--dataset', {str(tmp_path / 'nowhere')!r}])\n"
        "except SystemExit as e:\n"
        "    assert e.code == 2, e.code\n"
        "assert 'tensorflow' not in sys.modules, 'tensorflow was imported'\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "data set path" in result.stderr and "does not exist" in result.stderr
