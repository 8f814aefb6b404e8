"""The stores kcnn hands to a library, checked before the library sees them: a sweep's Optuna
study (`--storage`, or SWEEP/study.db) and MLflow's tracking store (`--mlflow`).

The libraries retry what fails to open: SQLAlchemy and MLflow spent 105 s and 36 warnings on
an SQLite "database" that was a FIFO, and MLflow 67 s on a server that accepted the connection
and never answered. What cannot work is refused here in one line, at once:

- an SQLite database that is not a regular file (a FIFO; a folder; in a sweep folder, a link,
  which would write the study wherever it points), or a journal beside it that is one, or whose
  folder is missing;
- an in-memory SQLite database, which is lost when the command ends;
- an HTTP tracking server that does not answer within `ANSWER_SECONDS`.

No TensorFlow, no SQLAlchemy, no MLflow.
"""

from __future__ import annotations

import os
import ssl
import stat
import urllib.error
import urllib.request
from pathlib import Path

from kcnn.errors import KcnnError

ANSWER_SECONDS = 5.0  # how long a tracking server may take to answer kcnn's first request
# The files SQLite keeps beside a database while it writes: each is opened (and written
# through, were it a link) as the database is.
JOURNALS = ("-journal", "-wal", "-shm")


def sqlite_path(url: str, what: str = "") -> Path | None:
    """The file of an SQLite URL (`sqlite:///relative.db`, `sqlite:////abs.db`, with or without a
    driver such as `sqlite+pysqlite`), None for another database; an in-memory one is refused."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.split("+", 1)[0].lower() != "sqlite":
        return None
    path = rest.split("?", 1)[0]
    path = path[1:] if path.startswith("/") else path  # the third slash: what follows is the path
    if not path or path == ":memory:":
        raise KcnnError(
            f"{what} {url} is an in-memory database, lost when the command ends: name a file "
            "(sqlite:///path/to/file.db)"
        )
    return Path(path).expanduser()


def check_sqlite(path: Path, what: str, links: bool = False) -> None:
    """Refuse an SQLite database SQLite could not open as a file of its own (see the module's
    docstring): `what` names the option or place in the message. `links`: a link the user named
    is followed (its target must be a database file); a link in a folder kcnn made, planted by
    someone else, is refused."""
    for candidate in (path, *(path.with_name(path.name + j) for j in JOURNALS)):
        try:
            mode = (os.stat if links else os.lstat)(candidate).st_mode
        except FileNotFoundError:
            continue
        except OSError as e:
            raise KcnnError(f"{what}: cannot use {candidate}: {e.strerror or e}") from None
        if not stat.S_ISREG(mode):
            raise KcnnError(
                f"{what}: {candidate} is {_kind(mode)}, not a database file: remove it, or "
                "name another file"
            )
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise KcnnError(f"{what}: the folder of {path} does not exist; make it, or name another")


def check_url(url: str, what: str) -> None:
    """A database URL (Optuna's `--storage`, MLflow's tracking URI): an SQLite one checked as a
    file; others are the database server's to answer."""
    path = sqlite_path(url, what)
    if path is not None:
        check_sqlite(path, what, links=True)


def check_server(uri: str, what: str, seconds: float = ANSWER_SECONDS) -> None:
    """Refuse an HTTP(S) tracking server that does not answer one request within `seconds`:
    refused, reset, or accepting and never answering. Any answer at all, an error status
    included, is a server (the library says what the status means)."""
    probe = uri.rstrip("/") + "/api/2.0/mlflow/experiments/get-by-name?experiment_name=kcnn"
    try:
        with urllib.request.urlopen(probe, timeout=seconds):  # noqa: S310  (http(s) only)
            return
    except urllib.error.HTTPError:
        return  # it answered
    except (urllib.error.URLError, OSError, ValueError) as e:
        reason = getattr(e, "reason", None) or e
        if isinstance(reason, ssl.SSLError) or isinstance(e, ssl.SSLError):
            return  # it answered, in TLS: MLflow's own TLS settings decide whether to trust it
        if isinstance(reason, TimeoutError) or "timed out" in str(reason):
            reason = f"no answer within {seconds:g} s"
        raise KcnnError(f"{what} {uri}: the server cannot be reached ({reason})") from None


def _kind(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    from kcnn.data.formats import file_kind

    return file_kind(mode)
