"""Records on disk, written atomically and read as untrusted.

Writing: JSON, CSV and text go to a fresh temporary file in the same folder, then are renamed
over the record. A reader (or a process killed half-way) sees the old record or the new one,
never a truncated file; and the rename replaces a link planted at the record's name instead of
writing through it.

Reading: a run folder may come from anyone. `read_bytes` opens only a regular file inside the
folder (never a link, FIFO or device), without blocking, and reads at most a cap; `parse_json`
refuses NaN, infinities and nesting deeper than a record ever has. Every failure is a `Damaged`
error that names the file and says why.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import io
import json
import math
import os
import stat
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from kcnn.errors import KcnnError

MAX_JSON_DEPTH = 32  # kcnn's records nest 4 deep; a 100,000-deep file is an attack or an accident


class Damaged(KcnnError):
    """A record that cannot be trusted: missing pieces, wrong types, not a regular file, too big."""

    def __init__(self, path: str | Path, reason: str):
        self.path, self.reason = Path(path), reason
        super().__init__(f"{path} is damaged ({reason})")


# --- writing --------------------------------------------------------------------------------------


def _umask() -> int:
    """The process's file-creation mask (reading it means setting it: put straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def fresh_file(path: str | Path, suffix: str = ".tmp") -> Iterator[Path]:
    """A new, empty temporary file beside `path` (made with O_EXCL, so never a planted link),
    renamed over `path` when the block ends well and removed when it does not. For writers that
    want a file name (Keras's model.save, matplotlib's savefig); `suffix` keeps their format."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; a record gets the usual mode
        os.close(fd)
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_atomic(path: str | Path, text: str | bytes) -> None:
    with fresh_file(path) as tmp:
        data = text.encode("utf-8") if isinstance(text, str) else text
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())


def _plain(value: Any) -> Any:
    """NumPy scalars and arrays, tuples and paths as plain JSON values."""
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


def _finite(value: Any) -> Any:
    """NaN and infinities (a diverged loss) become null: JSON has no spelling for them."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def json_text(data: Mapping[str, Any]) -> str:
    """Strict JSON (no NaN) for anything kcnn records: NumPy values, paths and tuples included."""
    return json.dumps(
        _finite(json.loads(json.dumps(data, default=_plain))), indent=2, allow_nan=False
    )


def write_json(path: str | Path, data: Mapping[str, Any]) -> None:
    write_atomic(path, json_text(data) + "\n")


def write_csv(
    path: str | Path, rows: Iterable[Mapping[str, Any]], columns: list[str] | None = None
) -> None:
    rows = list(rows)
    if columns is None:
        columns = list(dict.fromkeys(k for row in rows for k in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_atomic(path, buffer.getvalue())


# --- reading --------------------------------------------------------------------------------------


def _parts(name: str | Path) -> list[str]:
    parts = Path(name).parts
    if not parts or Path(name).is_absolute() or any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"{name!r} is not a plain name inside a folder")
    return list(parts)


def read_bytes(folder: str | Path, name: str | Path, cap: int) -> bytes:
    """The bytes of the regular file `folder/name`, at most `cap` of them.

    `folder` is the folder the user named (it may itself be a link they chose); nothing below it
    is followed if it is a link, and a FIFO, socket or device is refused without being opened
    for a blocking read. A missing file raises FileNotFoundError; anything else wrong, Damaged."""
    folder = Path(folder)
    parts = _parts(name)
    path = folder.joinpath(*parts)
    flags = os.O_RDONLY | os.O_CLOEXEC
    fds: list[int] = []
    try:
        fds.append(os.open(folder, flags | os.O_DIRECTORY))
        for part in parts[:-1]:
            fds.append(os.open(part, flags | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fds[-1]))
        fd = os.open(parts[-1], flags | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=fds[-1])
        fds.append(fd)
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise Damaged(path, "not a regular file")
        if info.st_size > cap:
            raise Damaged(path, f"{info.st_size:,} bytes, over the {cap:,}-byte limit")
        chunks, size = [], 0
        while size <= cap:
            chunk = os.read(fd, min(1 << 20, cap + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > cap:
            raise Damaged(path, f"over the {cap:,}-byte limit")
        return b"".join(chunks)
    except OSError as e:
        if e.errno == errno.ENOENT:
            raise FileNotFoundError(errno.ENOENT, "no such file", str(path)) from None
        if e.errno in (errno.ELOOP, errno.ENOTDIR):
            raise Damaged(path, "a link or a file where a folder belongs: not followed") from None
        raise Damaged(path, e.strerror or type(e).__name__) from None
    finally:
        for fd in fds:
            os.close(fd)


def read_text(folder: str | Path, name: str | Path, cap: int) -> str:
    data = read_bytes(folder, name, cap)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise Damaged(Path(folder) / name, "not UTF-8 text") from None


def _depth(text: str) -> int:
    """The deepest nesting of [ and { in JSON text, strings skipped (before parsing it)."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


def _no_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def parse_json(text: str, where: str | Path) -> Any:
    """JSON text as kcnn writes it: no NaN or infinities, nested at most MAX_JSON_DEPTH deep."""
    if _depth(text) > MAX_JSON_DEPTH:
        raise Damaged(where, f"nested more than {MAX_JSON_DEPTH} deep")
    try:
        return json.loads(text, parse_constant=_no_constant)
    except (ValueError, RecursionError) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise Damaged(where, f"not valid JSON: {reason[:100]}") from None


def read_json_record(folder: str | Path, name: str | Path, cap: int) -> dict[str, Any]:
    """A JSON object record of a folder, read as untrusted (see read_bytes and parse_json)."""
    where = Path(folder) / name
    data = parse_json(read_text(folder, name, cap), where)
    if not isinstance(data, dict):
        raise Damaged(where, "not a JSON object")
    return data


def read_csv_record(folder: str | Path, name: str | Path, cap: int) -> list[dict[str, str]]:
    """A CSV record's rows (header first), read as untrusted."""
    text = read_text(folder, name, cap)
    try:
        return list(csv.DictReader(io.StringIO(text, newline="")))
    except csv.Error as e:
        raise Damaged(Path(folder) / name, f"not valid CSV: {e}") from None


def read_json(path: str | Path) -> dict[str, Any]:
    """A JSON file kcnn itself just wrote (for untrusted records use read_json_record)."""
    path = Path(path)
    return read_json_record(path.parent, path.name, 64 * 1024 * 1024)


def read_csv(path: str | Path) -> list[dict[str, str]]:
    path = Path(path)
    return read_csv_record(path.parent, path.name, 64 * 1024 * 1024)
