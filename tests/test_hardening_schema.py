"""Hostile input, class 1 and 2: every source of settings goes through one schema, and every
refusal is one line (`error: ...`, exit 2), with no traceback, no hang and no TensorFlow import
when none is needed. Everything runs the real executable in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import kcnn, refused

TIMEOUT = 120


def experiment(path: Path, body: str, command: str = "train", arch: str | None = "lenet5") -> Path:
    lines = ["[[run]]", f'command = "{command}"']
    if arch:
        lines.append(f'arch = "{arch}"')
    path.write_text("\n".join(lines) + "\n" + body + "\n")
    return path


# Pre-TensorFlow: a tiny harness runs `cli.main` on many argument lists in one process (each
# with its own stderr) and reports, for each, the exit status, stderr, and whether TensorFlow
# had been imported by then.
HARNESS = """
import io, json, sys
from kcnn.cli import main
answers = []
for args in json.loads(sys.argv[1]):
    err, sys.stderr = sys.stderr, io.StringIO()
    code = 0
    try:
        main(args)
    except SystemExit as e:
        code = e.code
    answers.append([code, sys.stderr.getvalue(), "tensorflow" in sys.modules])
    sys.stderr = err
print(json.dumps(answers))
"""


def without_tensorflow(*cases, cwd: Path | None = None) -> list[subprocess.CompletedProcess]:
    """Run each argument list; assert none of them imported TensorFlow."""
    arg_lists = [[str(a) for a in args] for args in cases]
    result = subprocess.run(
        [sys.executable, "-c", HARNESS, json.dumps(arg_lists)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    answers = json.loads(result.stdout.strip().splitlines()[-1])
    done = []
    for args, (code, err, tensorflow) in zip(arg_lists, answers, strict=True):
        assert not tensorflow, f"{args} imported TensorFlow"
        done.append(subprocess.CompletedProcess(args, code, "", err))
    return done


COMMAND_LINE = [
    (["train", "lenet5", "--epochs", "ten"], "--epochs"),
    (["train", "lenet5", "--epochs", "1.5"], "--epochs"),
    (["train", "lenet5", "--epochs", "0"], "--epochs"),
    (["train", "lenet5", "--seed", "-1"], "--seed"),
    (["train", "lenet5", "--seed", str(2**40)], "--seed"),
    (["train", "lenet5", "--batch-size", str(2**70)], "--batch-size"),
    (["train", "lenet5", "--lr", "nan"], "--lr"),
    (["train", "lenet5", "--lr", "inf"], "--lr"),
    (["train", "lenet5", "--limit", "0"], "--limit"),
    (["train", "lenet5", "--val-split", "1"], "--val-split"),
    (["train", "lenet5", "--optimizer", "adamm"], "did you mean 'adam'"),
    (["train", "lenet5", "--dataset", ""], "--dataset"),
    (["train", "lenet5", "--name", "../x"], "run name"),
    (["train", "lenet5", "--name", "a" * 300], "too long"),
    (["train", "nosuch"], "unknown architecture"),
    (["train"], "name an architecture"),
    (["train", "lenet5", "--bogus"], "--bogus"),
    (["train", "lenet5", "--epochs"], "--epochs"),
    (["compare-apis", "--apis", "sequential"], "--apis"),
    (["transfer", "vgg16", "--weights", "/no/such.h5"], "--weights"),
    (["transfer", "vgg16", "--image-size", "10"], "--image-size"),
    (["list", "--bogus"], "--bogus"),
    (["list", "bogus"], "bogus"),
    (["summary"], "arch"),
    (["train", "--resume", "/no/such/run"], "does not exist"),
]


def test_command_line_is_checked_before_tensorflow():
    """Wrong types, ranges, choices, unknown options, missing values: one line, no TensorFlow."""
    answers = without_tensorflow(*(args for args, _ in COMMAND_LINE))
    for (_, word), answer in zip(COMMAND_LINE, answers, strict=True):
        refused(answer, word)
    for args, word in COMMAND_LINE[:3]:  # and through the executable itself
        refused(kcnn(*args), word)


def test_experiment_files_are_checked_with_the_file_named(tmp_path):
    cases = {
        'epochs = "ten"': "epochs",
        "epochs = 2.0": "epochs",
        "batch_size = true": "batch_size",
        "seed = 9223372036854775807": "seed",
        "lr = nan": "lr",
        "epochs = 1979-05-27": "epochs",
        "epoch = 3": "did you mean 'epochs'",
        "dataset = ['digits']": "dataset",
        "[run.dataset]\nx = 1": "dataset",
    }
    runs, words = [], []
    for number, (body, word) in enumerate(cases.items()):
        path = experiment(tmp_path / f"bad{number}.toml", body)
        runs += [["run", path], ["run", path, "--check"], ["train", "--config", path]]
        words += [(word, path.name)] * 3
    same_init = experiment(tmp_path / "same.toml", 'same_init = "no"', "compare-apis", None)
    runs.append(["run", same_init, "--check"])
    words.append(("same_init", "true or false"))
    apis = experiment(tmp_path / "apis.toml", 'apis = "sequential"', "compare-apis", None)
    runs.append(["run", apis])
    words.append(("apis", "apis.toml"))
    for answer, expected in zip(without_tensorflow(*runs), words, strict=True):
        refused(answer, *expected)
    refused(kcnn("run", tmp_path / "bad0.toml"), "epochs", "bad0.toml")


def test_set_overrides_are_checked(tmp_path):
    good = experiment(tmp_path / "good.toml", 'dataset = "digits"\nepochs = 1')
    cases = [
        ("epochs=[1,2]", "epochs"),
        ("epochs=ten", "epochs"),
        ("epochs=1e400", "epochs"),
        ("seed=-1", "seed"),
        ("dataset=", "dataset"),
        ("epochs={a=1}", "epochs"),
        ("bogus=1", "bogus"),
        ("=1", "KEY=VALUE"),
        ("arch=" + "[" * 200 + "]" * 200, "arch"),
    ]
    answers = without_tensorflow(*(["run", good, "--check", "--set", o] for o, _ in cases))
    for (_, word), answer in zip(cases, answers, strict=True):
        refused(answer, word)


def test_absurd_files_are_refused_not_read(tmp_path):
    deep = tmp_path / "deep.toml"
    deep.write_text("a = " + "[" * 10_000 + "]" * 10_000 + "\n")
    huge = tmp_path / "huge.toml"
    with huge.open("w") as f:
        f.write('[[run]]\ncommand = "train"\narch = "lenet5"\n#')
        f.write("x" * 50_000_000 + "\n")
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"\xff\xfe[[run]]\n")
    fifo = tmp_path / "fifo.toml"
    os.mkfifo(fifo)
    (tmp_path / "run").mkdir()
    deep_json = tmp_path / "run" / "config.json"
    deep_json.write_text('{"a":' * 100_000 + "1" + "}" * 100_000)
    cases = [
        (deep, "deep"),
        (huge, "limit"),
        (binary, "UTF-8"),
        (fifo, "not a regular file"),
        (Path("/dev/null"), "not a regular file"),
        (tmp_path, "folder without config.json"),
        (deep_json, "deep"),
        (tmp_path / "missing.toml", "no such"),
    ]
    runs = [a for path, _ in cases for a in (["run", path], ["train", "--config", path])]
    for answer, (_, word) in zip(
        without_tensorflow(*runs), [c for c in cases for _ in "ab"], strict=True
    ):
        refused(answer, word)
    refused(kcnn("run", fifo), "not a regular file")  # never opened: no hang


def test_a_runs_config_json_is_checked_when_redone(tmp_path):
    """`kcnn run RUN/config.json`: the settings (arch included) go through the same schema."""
    record = {"command": "train", "arch": "lenet5", "api": "sequential", "dataset": "digits"}
    cases = [
        ("epochs", "ten", "epochs"),
        ("epochs", 1e300, "epochs"),
        ("seed", -1, "seed"),
        ("name", "../../etc", "run name"),
        ("arch", 5, "arch"),
        ("bogus", 1, "unknown setting 'bogus'"),
    ]
    paths = []
    for number, (key, value, _) in enumerate(cases):
        paths.append(tmp_path / str(number) / "config.json")
        paths[-1].parent.mkdir()
        paths[-1].write_text(json.dumps({**record, key: value}))
    answers = without_tensorflow(*(["run", path] for path in paths))
    for path, (_, _, word), answer in zip(paths, cases, answers, strict=True):
        refused(answer, word, str(path))
    path = tmp_path / "ok" / "config.json"
    path.parent.mkdir()
    path.write_text(json.dumps({**record, "epochs": 2}))
    result = kcnn("run", path, "--check")
    assert result.returncode == 0, result.stderr
    assert 'arch = "lenet5"' in result.stdout and "epochs = 2" in result.stdout


def test_a_backbone_list_may_be_comma_separated():
    result = kcnn("transfer", "vgg16,mobilenetv2", "--print-config")
    assert result.returncode == 0, result.stderr
    assert 'backbones = ["vgg16", "mobilenetv2"]' in result.stdout


@pytest.mark.slow
def test_check_refuses_what_the_run_refuses(tmp_path):
    """`kcnn run --check` does every check the run does before training (data, model input,
    output folder), so the pair always agrees; the run leaves no folder behind."""
    blocker = tmp_path / "file"
    blocker.write_text("")
    cases = [
        ('dataset = "nosuch"', "unknown dataset"),
        (f'dataset = "digits"\nout = "{blocker}/runs"', "output folder"),
        ('dataset = "digits"\nlimit = 3', "--limit 3"),
        ('dataset = "digits"\nimage_size = 8\narch = "alexnet"', "67"),
    ]
    for number, (body, word) in enumerate(cases):
        if "out =" not in body:
            body += f'\nout = "{tmp_path / "runs"}"'
        path = tmp_path / f"pair{number}.toml"
        experiment(path, body + "\nepochs = 1", arch=None if "arch =" in body else "lenet5")
        assert refused(kcnn("run", path, "--check"), word) == refused(kcnn("run", path), word)
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


@pytest.mark.parametrize("command", ["train", "compare-apis", "transfer"])
def test_every_command_that_makes_a_run_folder_takes_name(command):
    result = kcnn(command, "--help")
    assert result.returncode == 0 and "--name" in result.stdout
