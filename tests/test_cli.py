"""The command line: fast start, listing, summaries and the basic bad inputs."""

import json
import subprocess
import sys

import pytest


def test_importing_the_cli_does_not_import_tensorflow():
    code = "import sys, kcnn.cli; assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_kcnn_help_loads_no_heavy_library_nor_any_command_that_trains():
    """`kcnn --help` builds every training command from the registry's entries: none of the
    heavy libraries, and not the trainer, is loaded (its start-up stays short)."""
    heavy = ["tensorflow", "keras", "matplotlib", "optuna", "mlflow", "scipy", "numpy"]
    heavy += ["kcnn.engine.trainer", "kcnn.commands.train", "kcnn.commands.runner"]
    code = (
        "import sys; from kcnn.cli import main\n"
        "try: main(['--help'])\n"
        "except SystemExit as e: assert not e.code, e.code\n"
        f"print([m for m in {heavy!r} if m in sys.modules])"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_help_and_list_answer_without_tensorflow():
    code = (
        "import sys; from kcnn.cli import main\n"
        "for args in (['--help'], ['list'], ['list', 'models', '--json']):\n"
        "    try: main(args)\n"
        "    except SystemExit as e: assert not e.code, e.code\n"
        "assert 'tensorflow' not in sys.modules"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "train" in result.stdout and "lenet5" in result.stdout and "mnist-5k" in result.stdout


def test_list_json(cli):
    result = cli("list", "--json")
    data = json.loads(result.out)
    lenet = next(m for m in data["models"] if m["name"] == "lenet5")
    assert lenet["reference_params"] == 61706 and lenet["year"] == 1998
    assert {"mnist", "mnist-5k", "digits", "shapes", "cifar10"} <= {
        d["name"] for d in data["datasets"]
    }


@pytest.mark.parametrize("api", ["sequential", "functional", "subclassed"])
def test_summary_json_counts_parameters(cli, api):
    result = cli(
        "summary", "lenet5", "--api", api, "--input-shape", "32,32,1", "--classes", "10", "--json"
    )
    assert result.code == 0, result.err
    report = json.loads(result.out)
    assert report["total_params"] == 61706 and report["trainable_params"] == 61706
    assert report["layers"][0]["output_shape"] == [28, 28, 6]


def test_summary_table(cli):
    result = cli("summary", "simple-cnn")
    assert "582,026" in result.out and "conv1" in result.out


@pytest.mark.parametrize(
    "args, message",
    [
        (["train", "lenet55"], "did you mean 'lenet5'"),
        (["train", "lenet5", "--dataset", "mnistt"], "did you mean 'mnist'"),
        (
            ["train", "lenet5", "--epochs", "0"],
            "--epochs must be a whole number",
        ),
        (
            ["train", "lenet5", "--batch-size", "-3"],
            "--batch-size must be a whole number",
        ),
        (
            ["train", "lenet5", "--val-split", "1.5"],
            "--val-split must be a number above 0 below 1",
        ),
        (
            ["train", "lenet5", "--dataset", "mnist", "--data-dir", "/no/such/folder"],
            "does not exist",
        ),
        (["summary", "lenet5", "--input-shape", "32,32"], "--input-shape must be three"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(cli, tmp_path, args, message):
    result = cli(*args, "--out", tmp_path) if args[0] == "train" else cli(*args)
    assert result.code == 2
    assert message in result.err and len(result.err.strip().splitlines()) == 1
    assert "Traceback" not in result.err
    assert not list(tmp_path.iterdir())
