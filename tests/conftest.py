"""Shared fixtures and helpers: an isolated Keras home, an in-process CLI runner, the installed
`kcnn` in a subprocess (`kcnn(*args)`) and the check of a refusal (`refused`).

Test modules import the helpers: `from conftest import kcnn, refused`.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

# Quiet TensorFlow and keep tests on the CPU, before anything imports it.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

# kcnn's own environment defaults (oneDNN's kernels among them) before any test module imports
# TensorFlow, so this process computes as the `kcnn` processes it starts do: a run trained in one
# and resumed in the other must agree bit for bit.
import kcnn as _package  # noqa: E402, F401

KCNN = [sys.executable, "-m", "kcnn.cli"]  # the console script, as a user's shell runs it
TIMEOUT = 300  # seconds: a hang fails the test instead of the suite


def kcnn(
    *args,
    cwd: str | Path | None = None,
    env: dict[str, str] | None = None,
    timeout: float = TIMEOUT,
    umask: int | None = None,
) -> subprocess.CompletedProcess:
    """`kcnn ARGS` in its own process, as a user meets it: stdin closed, stdout and stderr
    captured as text, under a timeout. `env` adds to (or replaces) this process's variables."""
    return subprocess.run(
        [*KCNN, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        cwd=cwd,
        env={**os.environ, **env} if env is not None else None,
        preexec_fn=(lambda: os.umask(umask)) if umask is not None else None,
    )


def refused(result: subprocess.CompletedProcess, *words: str, alone: bool = True) -> str:
    """The refusal of bad input: exit status 2, one `error:` line (the only line on stderr
    unless `alone` is false: then the last, after progress) holding each of `words`, and no
    traceback. Returns that line."""
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    if alone:
        assert len(lines) == 1, result.stderr[-2000:]
    assert lines and lines[-1].startswith("error: "), result.stderr[-2000:]
    assert sum(line.startswith("error:") for line in lines) == 1, result.stderr[-2000:]
    for word in words:
        assert word in lines[-1], (word, lines[-1])
    return lines[-1]


@pytest.fixture(autouse=True)
def keras_home(tmp_path_factory, monkeypatch):
    """Every test gets an empty Keras cache, so nothing depends on what this machine downloaded."""
    home = tmp_path_factory.mktemp("keras_home")
    monkeypatch.setenv("KERAS_HOME", str(home))
    return home


@pytest.fixture
def no_download(monkeypatch):
    """Make every Keras download fail at once, as it does on a machine without a network."""
    from kcnn.data import datasets

    def refuse(name):
        raise OSError(f"URL fetch failure for {name}: network unreachable (test)")

    monkeypatch.setattr(datasets, "download", refuse)


@dataclass
class CliResult:
    code: int
    out: str
    err: str


@pytest.fixture
def cli(capsys):
    """Run `kcnn ARGS...` in this process (fast: TensorFlow is imported once per test session)."""
    from kcnn.cli import main

    def run(*args: str) -> CliResult:
        capsys.readouterr()
        code = 0
        try:
            main([str(a) for a in args])
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run


@pytest.fixture
def kcnn_exe():
    """The installed console script, for tests that need a real process (signals, start-up)."""
    return list(KCNN)


@pytest.fixture
def signal_after_epochs():
    """`start(out, epochs, signum)`: send a real signal to this process once an in-process run
    under `out` has recorded `epochs` epochs; returns the watching thread (join it)."""
    from kcnn.runs.records import read_csv

    def start(out: Path, epochs: int, signum: int) -> threading.Thread:
        def watch():
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                if any(len(read_csv(h)) >= epochs for h in out.glob("*/history.csv")):
                    os.kill(os.getpid(), signum)
                    return
                time.sleep(0.02)

        thread = threading.Thread(target=watch, daemon=True)
        thread.start()
        return thread

    return start
