"""The `kcnn` command line: thin Typer commands over the library.

Importing this package must stay cheap: TensorFlow is imported inside the commands that train
or build models, never at the top, so `kcnn --help` and `kcnn list` answer at once.

What a user sees on failure is one line on stderr (`error: ...`) and an exit status: 2 for bad
input, usage errors included; 1 when compare-apis finds the forms differ; 3 when training diverged;
128 + N when signal N stopped a run. Under `--json` the error is also printed on stdout as
`{"error": ..., "exit": N}`. `kcnn --debug ...` shows tracebacks and TensorFlow's own log lines.
"""

from __future__ import annotations

import contextlib
import os
import sys

import typer

try:
    from typer._click import exceptions as click_errors  # recent Typer carries its own Click
except ImportError:  # older Typer uses Click itself
    from click import exceptions as click_errors

# Each module registers its commands; --help lists them in this order: train first, then what
# comes after training, then the catalog.
# isort: off
from kcnn.cli import training  # noqa: F401
from kcnn.cli import sweeping  # noqa: F401
from kcnn.cli import after  # noqa: F401
from kcnn.cli import diffing  # noqa: F401
from kcnn.cli import inspect  # noqa: F401
from kcnn.cli import previewing  # noqa: F401
from kcnn.cli import auditing  # noqa: F401
from kcnn.cli import catalog  # noqa: F401
from kcnn.cli import doctor  # noqa: F401

# isort: on
from kcnn.cli import app as _app_module
from kcnn.engine.interrupts import exit_on_signals
from kcnn.errors import KcnnError
from kcnn.runs.records import json_text
from kcnn.text import terminal

app = _app_module.app


@contextlib.contextmanager
def quiet_native_stderr(enabled: bool):
    """Keep what TensorFlow's C++ runtime writes to file descriptor 2 (CUDA probing, cuInit,
    NodeDef attribute notes) off the terminal: fd 2 goes to /dev/null, while Python's sys.stderr
    (kcnn's messages, Keras's progress, tracebacks) keeps writing to the real terminal."""
    try:
        real_fd = sys.stderr.fileno() == 2
    except (AttributeError, OSError, ValueError):  # replaced by a test's capture or an IDE
        real_fd = False
    if not enabled or not real_fd:
        yield
        return
    sys.stderr.flush()
    real = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    original = sys.stderr
    try:
        os.dup2(devnull, 2)
        sys.stderr = open(
            real,
            "w",
            buffering=1,
            encoding=original.encoding or "utf-8",
            errors="replace",
            closefd=False,
        )
        yield
    finally:
        sys.stderr.flush()
        os.dup2(real, 2)
        sys.stderr = original
        os.close(devnull)
        os.close(real)


def quiet_python_logs(enabled: bool) -> None:
    """Keep TensorFlow's and absl's Python-side warnings off the terminal: tf.function's
    "triggered tf.function retracing" notes, deprecation notes, a SavedModel's untraced
    functions. They speak to TensorFlow's developers, not to someone training a network, and
    their handlers write to the real terminal past `quiet_native_stderr`. Errors still show;
    `--debug` shows everything."""
    import logging

    level = logging.ERROR if enabled else logging.NOTSET
    logging.getLogger("tensorflow").setLevel(level)  # TensorFlow's own logger (tf.get_logger())
    try:
        from absl import logging as absl_logging  # a dependency of TensorFlow; small, no TF
    except ImportError:
        return
    absl_logging.set_verbosity(absl_logging.ERROR if enabled else absl_logging.WARNING)


def _say_error(message: object) -> None:
    """The one `error:` line. A message may quote a folder, file or class name as it was found,
    so its control characters (ESC, BEL, CR, newlines...) are shown as escapes: one line, inert."""
    print(f"error: {terminal(message)}", file=sys.stderr, flush=True)


def _fail(message: str, code: int, as_json: bool) -> None:
    if as_json:
        print(json_text({"error": message, "exit": code}), flush=True)
    _say_error(message)
    sys.exit(code)


def main(argv: list[str] | None = None) -> None:
    """The console script: runs the app, turning every failure into one line and its exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args[:1] or "--debug" in args  # before Click parses: TF may load first
    as_json = "--json" in args
    quiet_python_logs(not debug)
    with quiet_native_stderr(not debug):
        try:
            with (
                exit_on_signals()
            ):  # Ctrl-C / SIGTERM exit 130 / 143 with one line, never "Aborted!"
                status = app(args=args, prog_name="kcnn", standalone_mode=False)
            # a command's `raise typer.Exit(N)` comes back as N, not as an exception, outside
            # Click's standalone mode (predict with an unreadable image, doctor with a problem)
            if isinstance(status, int) and not isinstance(status, bool) and status:
                sys.exit(status)
        except KcnnError as e:
            if debug:
                raise
            details = getattr(e, "details", None)
            if as_json and details:
                print(json_text({**details, "error": str(e), "exit": e.exit_code}), flush=True)
                _say_error(e)
                sys.exit(e.exit_code)
            _fail(str(e), e.exit_code, as_json)
        except click_errors.NoArgsIsHelpError as e:
            # `kcnn` alone: its help, as Click would print it
            print(e.ctx.get_help() if e.ctx else "", file=sys.stderr)
            sys.exit(2)
        except click_errors.UsageError as e:
            hint = f" (see `{e.ctx.command_path} --help`)" if e.ctx else ""
            _fail(e.format_message().replace("\n", " ") + hint, 2, as_json)
        except typer.Abort:
            _fail("aborted", 130, as_json)
        except typer.Exit as e:
            sys.exit(e.exit_code)
        except click_errors.ClickException as e:
            _fail(e.format_message().replace("\n", " "), e.exit_code or 2, as_json)
        except OSError as e:
            if debug:
                raise
            _fail(f"{e.strerror or e}: {e.filename or ''}".rstrip(": "), 2, as_json)


if __name__ == "__main__":
    main()
