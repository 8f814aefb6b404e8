"""RUN/export.json: what `kcnn export` measured of each exported model, read and written here only.

The record is `{"exports": {KEY: {...}}}`, one entry per format (`onnx`, `tflite-int8`, ...),
each with its file's size, its test accuracy beside the run's, its largest probability difference
from the run's model and its speed in its own runtime. `kcnn export` writes it, report.html and
the README's table of formats read it. The file is read only when it is a regular file of sane
size inside the folder, and written atomically by a rename that replaces a link, never follows it.

`python -m kcnn.runs.exports RECORD` prints the markdown table the README shows.
"""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path
from typing import Any

from kcnn import text
from kcnn.errors import KcnnError
from kcnn.runs import tables
from kcnn.runs.records import Damaged, read_json_record, write_json

EXPORT_JSON = "export.json"
MAX_BYTES = 1_000_000  # a record of a few formats is a few kB


def check_writable(folder: Path) -> Path:
    """RUN/export.json may be replaced: absent or a regular file, never a link or a FIFO."""
    path = Path(folder) / EXPORT_JSON
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return path
    if not stat.S_ISREG(mode):
        what = "a symbolic link" if stat.S_ISLNK(mode) else "not a regular file"
        raise KcnnError(f"{path} is {what}: kcnn writes its export record only as a plain file")
    return path


def read(folder: Path) -> dict[str, dict[str, Any]]:
    """The exports recorded in RUN/export.json; {} when there is none or it is not a sound record
    (a link, a FIFO, too large, cut short, the wrong shape)."""
    return read_file(Path(folder) / EXPORT_JSON)


def read_file(path: Path) -> dict[str, dict[str, Any]]:
    """An export record at any path (the README's is kept under docs/), read as `read` does."""
    path = Path(path)
    try:
        data = read_json_record(path.parent, path.name, MAX_BYTES)
    except (FileNotFoundError, Damaged, ValueError):
        return {}
    exports = data.get("exports")
    if not isinstance(exports, dict):
        return {}
    return {str(k): v for k, v in exports.items() if isinstance(v, dict)}


def write(folder: Path, key: str, record: dict[str, Any]) -> Path:
    """Add or replace one export's entry, keeping the others; atomic."""
    path = check_writable(folder)
    write_json(path, {"exports": {**read(folder), key: record}})
    return path


# --- the table of formats ------------------------------------------------------------------------


def _number(value: Any, spec: str) -> str:
    return format(value, spec) if isinstance(value, (int, float)) else "–"


def _size(n: Any) -> str:
    if not isinstance(n, (int, float)):
        return "–"
    return f"{n / 1e6:.2f} MB" if n >= 1e6 else f"{n / 1e3:.0f} kB"


# The formats from the run's own kind (a SavedModel) to the smallest, then ONNX.
ORDER = (
    "saved-model",
    "tflite",
    "tflite-float16",
    "tflite-dynamic",
    "tflite-int8",
    "tflite-int8-io",
    "onnx",
)
TABLE_COLUMNS = (
    "format",
    "size",
    "test accuracy (run's)",
    "largest prob. diff",
    "same class",
    "ms/image (batch 1)",
    "images/s (batch 32)",
    "runtime",
)


def rows(exports: dict[str, dict[str, Any]]) -> list[list[str]]:
    """One row of text cells per export (in the order of ORDER), after the run's own model as
    the last export measured it."""
    out = []
    base = None
    for r in exports.values():
        if isinstance(r.get("run_model"), dict):
            base = r["run_model"]
    if base is not None:
        out.append(
            [
                "keras (the run's model.keras)",
                _size(base.get("file_bytes")),
                _number(base.get("accuracy"), ".4f"),
                "–",
                "–",
                _number(base.get("latency_ms_batch1"), ".3f"),
                _number(base.get("throughput_batch32"), ",.0f"),
                str(base.get("runtime", "")),
            ]
        )
    known = list(ORDER)
    ordered = sorted(exports.items(), key=lambda kv: known.index(kv[0]) if kv[0] in known else 99)
    for key, r in ordered:
        accuracy = _number(r.get("accuracy"), ".4f")
        if isinstance(r.get("run_accuracy"), (int, float)):
            accuracy += f" ({r['run_accuracy']:.4f})"
        agreement = r.get("argmax_agreement")
        out.append(
            [
                key if r.get("kept", True) else f"{key} (failed its check: not kept)",
                _size(r.get("file_bytes")),
                accuracy,
                _number(r.get("max_abs_diff"), ".1e"),
                f"{agreement:.1%}" if isinstance(agreement, (int, float)) else "–",
                _number(r.get("latency_ms_batch1"), ".3f"),
                _number(r.get("throughput_batch32"), ",.0f"),
                str(r.get("runtime", "")),
            ]
        )
    return out


def markdown_table(exports: dict[str, dict[str, Any]]) -> str:
    """The README's table of formats: `|` and newlines in a cell are escaped."""

    cell = text.markdown_cell
    table = [dict(zip(TABLE_COLUMNS, row, strict=True)) for row in rows(exports)]
    lines = [tables.as_markdown(table, TABLE_COLUMNS)]
    loads = [
        r["machine"]["load_average_1min"]
        for r in exports.values()
        if isinstance(r.get("machine"), dict)
        and isinstance(r["machine"].get("load_average_1min"), (int, float))
    ]
    cpus = {
        r["machine"].get("cpus") for r in exports.values() if isinstance(r.get("machine"), dict)
    }
    images = {r.get("images") for r in exports.values()}
    caption = []
    if len(images) == 1 and isinstance(next(iter(images)), int):
        caption.append(f"Each measured on the run's {images.pop()} test images.")
    if loads and len(cpus) == 1:
        caption.append(
            f"Speed on {cell(str(cpus.pop()))} CPUs with a 1-minute load average of "
            f"{min(loads):.1f} to {max(loads):.1f} while the exports ran."
        )
    if caption:
        lines += ["", " ".join(caption)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """`python -m kcnn.runs.exports RECORD`: the markdown table of an export record (or of a run
    folder's export.json)."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        raise SystemExit("usage: python -m kcnn.runs.exports RUN/export.json")
    path = Path(args[0])
    exports = read_file(path / EXPORT_JSON if path.is_dir() else path)
    if not exports:
        raise SystemExit(f"no exports recorded in {path}")
    print(markdown_table(exports))


if __name__ == "__main__":
    main()
