"""The `kcnn` command line: thin Typer commands over the library.

Importing this module must stay cheap: TensorFlow is imported inside the commands that train
or build models, never at the top, so `kcnn --help` and `kcnn list` answer at once.
"""

from __future__ import annotations

import sys

from kcnn.cli import after, catalog, training  # noqa: F401  (each module registers its commands)
from kcnn.cli import app as _app_module
from kcnn.errors import KcnnError

app = _app_module.app


def main(argv: list[str] | None = None) -> None:
    """The console script: runs the app, turning a KcnnError into one line and its exit status."""
    from kcnn.engine.interrupts import exit_on_signals

    try:
        with exit_on_signals():  # Ctrl-C / SIGTERM exit 130 / 143 with one line, never "Aborted!"
            app(args=argv, prog_name="kcnn")
    except KcnnError as e:
        if _app_module._debug:
            raise
        print(f"error: {e}", file=sys.stderr)
        sys.exit(e.exit_code)


if __name__ == "__main__":
    main()
