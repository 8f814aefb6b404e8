"""What the terminal shows during long work, the same in every command: a heading before each
run of several, progress of anything that takes more than a few seconds, and the one warning line.

On a terminal progress is a rich bar, redrawn in place; in a log or a pipe it is one plain line
per step (at most `LINES` of them, then a last one with the time taken), so a log file holds no
carriage-return spam. Everything goes where Keras's epoch lines go: stdout, or stderr when the
command answers in JSON on stdout (`quiet`). Standard library only, beside rich (installed with
Typer), which is imported only when a bar is drawn.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator
from typing import TextIO

from kcnn.text import terminal

LINES = 10  # plain lines of one piece of work in a log, beside its last line


def stream(quiet: bool = False) -> TextIO:
    """Where progress goes: stdout, or stderr when stdout is kept for a JSON answer."""
    return sys.stderr if quiet else sys.stdout


def on_terminal(out: TextIO) -> bool:
    try:
        return out.isatty()
    except (AttributeError, ValueError):  # a closed or replaced stream
        return False


def warn(message: object) -> None:
    """The one warning line: `warning: ...` on stderr, its control characters shown as escapes
    (a message may quote a folder or class name as it was found). A warning is said once,
    where it happens; it never stops the work."""
    print(f"warning: {terminal(message)}", file=sys.stderr, flush=True)


def note(message: object) -> None:
    """The one note line: `note: ...` on stderr, for a fact worth knowing that needs nothing done
    (a run trained again from its start, a batch size chosen), escaped as a warning is."""
    print(f"note: {terminal(message)}", file=sys.stderr, flush=True)


def say(message: object) -> None:
    """A plain line of progress on stderr, so that an answer on stdout (JSON) stays clean."""
    print(terminal(message), file=sys.stderr, flush=True)


def heading(number: int, count: int, text: str, quiet: bool = False) -> None:
    """`[2/3] functional — lenet5 on mnist-5k` before the 2nd of 3 runs: which one is training."""
    out = stream(quiet)
    print(f"\n[{number}/{count}] {terminal(text)}", file=out, flush=True)


class Steps:
    """Progress of one piece of work counted in steps (images, batches, checks); see `steps`."""

    def __init__(self, what: str, total: int, unit: str, out: TextIO, show: bool = True):
        self.what, self.total, self.unit, self.out = terminal(what), max(0, total), unit, out
        self.show = show
        self.done = 0
        self.started = time.perf_counter()
        self._bar = None
        self._task = None
        self._shown = 0  # plain lines written so far (the last line aside)
        self.note = ""

    def _count(self, done: int) -> str:
        return f"{done:,}/{self.total:,} {self.unit}".rstrip()

    def start(self) -> Steps:
        if self.show and on_terminal(self.out):
            try:
                from rich.console import Console
                from rich.markup import escape
                from rich.progress import (
                    BarColumn,
                    MofNCompleteColumn,
                    Progress,
                    TextColumn,
                    TimeElapsedColumn,
                )
            except ImportError:  # Typer without rich ("typer-slim"): plain lines then
                return self

            self._bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn(self.unit),
                TimeElapsedColumn(),
                console=Console(file=self.out),
                # what is printed meanwhile goes above the bar, but only from a stream that is
                # this terminal too: rows piped to a file must stay in that file
                redirect_stdout=on_terminal(sys.stdout),
                redirect_stderr=on_terminal(sys.stderr),
            )
            self._bar.start()
            self._task = self._bar.add_task(escape(self.what), total=self.total)  # no markup
        return self

    def advance(self, steps: int = 1, note: str = "") -> None:
        """`steps` more done; `note` says what was just done (a stage of a staged task)."""
        self.done = min(self.total, self.done + steps)
        self.note = f" ({terminal(note)})" if note else ""
        if self._bar is not None:
            self._bar.update(self._task, completed=self.done)
            return
        if not self.show:
            return
        # a line each time another tenth is done; the last step is said by `finish`
        if self.done < self.total and self.done * LINES >= (self._shown + 1) * self.total:
            self._shown = self.done * LINES // self.total
            print(f"{self.what}: {self._count(self.done)}{self.note}", file=self.out, flush=True)

    def finish(self, ended: bool = True) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
        elif ended and self.show:
            seconds = time.perf_counter() - self.started
            print(
                f"{self.what}: {self._count(self.done)}{self.note} in {seconds:.1f} s",
                file=self.out,
            )
            self.out.flush()


@contextlib.contextmanager
def steps(
    what: str, total: int, unit: str = "", quiet: bool = False, show: bool = True
) -> Iterator[Steps]:
    """Show the progress of `total` steps of `what`; call `.advance(n)` as steps are done.

        with steps("features of the training images", len(x), "images") as shown:
            for batch in batches: ...; shown.advance(len(batch))

    Work that fails or is interrupted leaves its last line as it was (no "done" line); with
    `show` false (work too short to be worth a line) nothing is shown."""
    shown = Steps(what, total, unit, stream(quiet), show).start()
    ended = False
    try:
        yield shown
        ended = True
    finally:
        shown.finish(ended)
