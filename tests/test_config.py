"""One configuration model: every setting declared once, checked by one schema from every source,
and every run replayable from its own config.json."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from dataclasses import dataclass

import pytest

from kcnn.engine.config import (
    COMMANDS,
    CompareConfig,
    RunConfig,
    TrainConfig,
    TransferConfig,
    setting,
)
from kcnn.errors import KcnnError

TINY = ["--dataset", "digits", "--limit", "120", "--batch-size", "32", "--epochs", "2"]


def _click_command(name: str):
    from typer.main import get_command

    from kcnn.cli import app

    return get_command(app).commands[name]


@pytest.mark.parametrize("command", list(COMMANDS))
def test_every_setting_is_an_option_and_every_option_a_setting(command):
    """The CLI options of a training command are made from its config class: nothing more,
    nothing less (besides --config, --print-config, --mlflow, --json and --resume)."""
    cls = COMMANDS[command]
    params = {p.name for p in _click_command(command).params}
    # a yes/no setting shows one flag; its `--no-` twin is a hidden parameter of the same setting
    twins = {name for name in params if name.endswith("__off")}
    assert {name.removesuffix("__off") for name in twins} <= set(cls.settings())
    params -= twins
    extra = {
        "config_file",
        "print_config",
        "mlflow",
        "as_json",
        "resume",
    }  # --resume: every command
    assert params - extra == set(cls.settings())
    shared = set(RunConfig.settings())
    assert shared <= set(cls.settings())  # every shared setting, in every command


def test_choices_are_listed_in_help():
    """In the help text, with spaces (a narrow terminal wraps between names), not the metavar."""
    helps = {p.name: p for p in _click_command("train").params}
    assert "One of: sequential, functional, subclassed." in helps["api"].help
    assert "One of: adam, adamw, sgd, rmsprop." in helps["optimizer"].help
    assert helps["optimizer"].metavar == "NAME"


def test_a_new_shared_setting_reaches_every_command_from_one_declaration(monkeypatch):
    """Adding a setting is one field: its option, check and record come from it."""
    from kcnn.cli.options import setting_parameters

    @dataclass
    class Extended(TrainConfig):
        warmup_steps: int = setting(0, "Warm-up steps.", low=0, high=1000)

    spec = Extended.settings()["warmup_steps"]
    (parameter,) = setting_parameters(Extended, "warmup_steps", spec)
    assert parameter.default == 0
    option = parameter.annotation.__metadata__[0]
    assert "--warmup-steps" in (*option.param_decls, option.default)
    with pytest.raises(KcnnError, match=r"^--warmup-steps must be"):
        Extended("lenet5", warmup_steps=-1).validate()
    assert Extended("lenet5", warmup_steps=5).validate().settings_dict()["warmup_steps"] == 5


@pytest.mark.parametrize(
    "cls, values, message",
    [
        (TrainConfig, {"epochs": "ten"}, "--epochs must be a whole number"),
        (TrainConfig, {"epochs": [1, 2]}, "must be a whole number"),
        (TrainConfig, {"epochs": 2.0}, "must be a whole number"),
        (TrainConfig, {"epochs": True}, "must be a whole number"),
        (TrainConfig, {"seed": -1}, "from 0 to 4,294,967,295"),
        (TrainConfig, {"seed": 2**40}, "from 0 to 4,294,967,295"),
        (TrainConfig, {"batch_size": 2**63}, "from 1 to 65,536"),
        (TrainConfig, {"lr": float("nan")}, "finite number"),
        (TrainConfig, {"lr": "fast"}, "must be a number"),
        (TrainConfig, {"val_split": 1}, "above 0 below 1"),
        (TrainConfig, {"limit": 0}, "--limit"),
        (TrainConfig, {"api": "functinal"}, "did you mean 'functional'"),
        (TrainConfig, {"dataset": ""}, "--dataset"),
        (TrainConfig, {"dataset": "   "}, "--dataset"),
        (TrainConfig, {"optimizer": 3}, "must be text"),
        (TrainConfig, {"image_size": 3000, "batch_size": 128}, "GB as float32"),
        (CompareConfig, {"same_init": "no"}, "must be true or false"),
        (CompareConfig, {"apis": ["sequential"]}, "at least two different API forms"),
        (CompareConfig, {"apis": [1, 2]}, "list of names"),
        (TransferConfig, {"backbones": ["vgg61"]}, "did you mean 'vgg16'"),
        (TransferConfig, {"backbones": "vgg16", "dropout": 1.0}, "--dropout"),
    ],
)
def test_the_schema_refuses_bad_values(cls, values, message):
    args = {"arch": "lenet5"} if cls is TrainConfig else {}
    if cls is TransferConfig:
        values = {"backbones": ["vgg16"], **values}
    with pytest.raises(KcnnError) as error:
        cls(**{**args, **values}).validate()
    assert message in str(error.value)


def test_a_string_where_a_list_belongs_is_a_list_of_names_never_letters():
    config = TransferConfig("vgg16,mobilenetv2", weights="none").validate()
    assert config.backbones == ["vgg16", "mobilenetv2"]
    assert TransferConfig("vgg16", weights="none").validate().backbones == ["vgg16"]
    assert CompareConfig(apis="sequential,subclassed").validate().apis == [
        "sequential",
        "subclassed",
    ]


def test_unknown_keys_in_a_file_suggest_the_closest_setting():
    with pytest.raises(KcnnError, match="unknown setting 'epoch' for train: did you mean 'epochs'"):
        TrainConfig.from_settings({"arch": "lenet5", "epoch": 3})


def test_validate_is_idempotent_and_fills_in_derived_settings(tmp_path):
    (tmp_path / "my data").mkdir()
    config = TrainConfig("lenet5", dataset=f"{tmp_path / 'my data'}/").validate()
    assert config.lr == 1e-3 and config.name == "lenet5-my-data-sequential"
    assert config.validate().settings_dict() == config.settings_dict()


def test_print_config_is_an_experiment_file_that_replays_the_same_settings(tmp_path, cli):
    result = cli("train", "lenet5", *TINY, "--optimizer", "sgd", "--print-config")
    assert result.code == 0, result.err
    parsed = tomllib.loads(result.out)
    assert parsed["run"][0]["command"] == "train" and parsed["run"][0]["lr"] == 0.01
    path = tmp_path / "printed.toml"
    path.write_text(result.out)
    check = cli("run", path, "--dry-run", "--json")
    assert check.code == 0, check.err
    planned = json.loads(check.out)["runs"][0]
    expected = TrainConfig(
        "lenet5", dataset="digits", limit=120, batch_size=32, epochs=2, optimizer="sgd"
    )
    assert planned == {"command": "train", **expected.validate().settings_dict()}
    assert not (tmp_path / "runs").exists()  # nothing ran


def test_config_file_options_are_overridden_by_the_command_line(tmp_path, cli):
    path = tmp_path / "one.toml"
    path.write_text('[[run]]\ncommand = "train"\narch = "lenet5"\ndataset = "digits"\nepochs = 4\n')
    result = cli("train", "--config", path, "--epochs", "7", "--print-config")
    assert result.code == 0, result.err
    run = tomllib.loads(result.out)["run"][0]
    assert run["epochs"] == 7 and run["dataset"] == "digits" and run["arch"] == "lenet5"
    wrong = cli("transfer", "--config", path)
    assert wrong.code == 2 and "is a `train` run" in wrong.err


def test_a_run_redone_from_its_config_json_gives_the_same_result(tmp_path, cli):
    first = cli("train", "lenet5", *TINY, "--out", tmp_path / "a", "--json")
    assert first.code == 0, first.err
    original = json.loads(first.out)["runs"][0]
    run_dir = original["run_dir"]
    again = cli("run", f"{run_dir}/config.json", "--set", f"out={tmp_path / 'b'}", "--json")
    assert again.code == 0, again.err
    redone = json.loads(again.out)["runs"][0]
    with open(f"{redone['run_dirs'][0]}/metrics.json") as f:
        metrics = json.load(f)
    assert metrics["test_accuracy"] == original["test_accuracy"]
    assert metrics["test_loss"] == original["test_loss"]
    # the folder form works too, and checks the same way
    assert cli("run", run_dir, "--dry-run").code == 0


def test_json_answers_share_one_shape_and_errors_are_json_too(cli, tmp_path):
    result = cli("train", "lenet5", "--epochs", "0", "--json")
    assert result.code == 2
    assert json.loads(result.out) == {
        "error": result.err.strip().removeprefix("error: "),
        "exit": 2,
    }


def test_usage_errors_are_one_line_through_the_real_executable(kcnn_exe):
    for args in (["train", "lenet5", "--bogus"], ["train", "lenet5", "--epochs"], ["summary"]):
        done = subprocess.run(
            [*kcnn_exe, *args], capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL
        )
        assert done.returncode == 2, done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
        assert "╭" not in done.stderr and "Traceback" not in done.stderr


def test_the_cli_does_not_import_tensorflow_to_check_settings():
    code = (
        "import sys\nfrom kcnn.cli import main\n"
        "try:\n    main(['train', 'lenet5', '--seed', '-1'])\nexcept SystemExit as e:\n"
        "    print(e.code, 'tensorflow' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.split() == ["2", "False"], done.stderr


def test_transfer_runs_record_their_backbone_not_an_architecture():
    from kcnn.runs.recorder import RunRecords

    config = TransferConfig(["vgg16"], weights="none").validate()
    identity = {"backbone": "vgg16", "head": "seed"}
    record = RunRecords(config.command, config.settings_dict(), identity).config_record()
    assert record["command"] == "transfer" and record["backbone"] == "vgg16"
    assert "arch" not in record and "api" not in record


@pytest.mark.parametrize(
    "words, expected",
    [
        ("kcnn train le", {"lenet5"}),
        ("kcnn train lenet5 --api ", {"sequential", "functional", "subclassed"}),
        ("kcnn transfer mob", {"mobilenetv2"}),
        ("kcnn train lenet5 --dataset mnist", {"mnist", "mnist-5k"}),
    ],
)
def test_shell_completion_offers_names_and_choices(kcnn_exe, words, expected):
    env = {
        **os.environ,
        "_KCNN_COMPLETE": "complete_bash",
        "COMP_WORDS": words,
        "COMP_CWORD": str(len(words.split(" ")) - 1),
    }
    done = subprocess.run(
        [sys.executable, "-c", "from kcnn.cli import main; main()"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert set(done.stdout.split()) == expected, done.stderr
