"""`kcnn audit DATA`: the data set (a registered name, an .npz, an image folder, or the data of a
run folder) audited (`kcnn.data.audit`), and its report written: audit.html (self-contained: the
copies and suspects drawn side by side as small embedded PNGs, every name escaped) and
audit.json, in a new folder under --out."""

from __future__ import annotations

import base64
import io
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from kcnn import defaults
from kcnn.data import audit
from kcnn.errors import KcnnError
from kcnn.runs import folders
from kcnn.text import html as esc

HTML, JSON = "audit.html", "audit.json"
GROUPS_DRAWN = 60  # groups drawn per section (all are in audit.json)
PICTURES_PER_GROUP = 8
SUSPECTS_DRAWN = 48
THUMB = 64  # the longer side of a picture, in pixels


def settings_of_run(folder: Path) -> dict[str, Any]:
    """The data settings a run trained with, from its config.json (checked as kcnn reads it)."""
    from kcnn.runs.run import RunFolder

    config = RunFolder(folder).config()
    keys = ("dataset", "data_dir", "seed", "val_split", "test_split", "shapes_count", "limit")
    found = {k: config[k] for k in keys if config.get(k) is not None}
    if not isinstance(found.get("dataset"), str):
        raise KcnnError(f"{folder}/config.json names no data set; audit the data set itself")
    return found


def is_run_folder(path: str) -> bool:
    """A run folder holds both records kcnn writes when it opens one (config.json and
    metrics.json); an image folder that happens to hold a config.json is audited as images."""
    return os.path.isdir(path) and all(
        os.path.isfile(os.path.join(path, name)) for name in (folders.CONFIG, folders.METRICS)
    )


def audit_data(
    dataset: str,
    data_dir: str | None = None,
    seed: int = defaults.SEED,
    val_split: float = defaults.VAL_SPLIT,
    test_split: float = defaults.TEST_SPLIT,
    shapes_count: int = defaults.SHAPES_COUNT,
    limit: int | None = None,
) -> tuple[dict[str, Any], audit.Seen]:
    """Load `dataset` as training would, read every image, and find what there is to find."""
    from kcnn.data import datasets

    started = time.perf_counter()
    data = datasets.load(dataset, data_dir, seed, shapes_count)
    seen = audit.read(data, seed, val_split, test_split, limit)
    found = audit.findings(seen)
    return {
        "dataset": dataset,
        "source": data.provenance.get("source", data.name),
        "split_settings": {
            "seed": seed,
            "val_split": val_split,
            "test_split": test_split,
            "limit": limit,
        },
        **found,
        "seconds": round(time.perf_counter() - started, 2),
    }, seen


def write(out: str | Path, name: str, record: dict[str, Any], seen: audit.Seen) -> Path:
    """audit.json and audit.html in a new folder `<out>/<stamp>-audit-<name>`."""
    from kcnn.runs.records import write_atomic, write_json

    folder = folders.create(out, f"audit-{name}")
    record["report"] = str(folder / HTML)
    write_json(folder / JSON, plain(record))
    write_atomic(folder / HTML, page(record, seen))
    return folder


def plain(record: dict[str, Any]) -> dict[str, Any]:
    """The record without the rows the report draws from (what --json and audit.json hold)."""

    def strip(value):
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k not in ("rows", "row")}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value

    return strip(record)


def run_name(dataset: str) -> str:
    """A folder name for the data set: its last path part, made safe."""
    import re

    base = Path(dataset.rstrip("/")).name or "data"
    return re.sub(r"[^A-Za-z0-9._-]+", "-", base).strip("-.")[:60] or "data"


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def lines(record: dict[str, Any], folder: Path) -> list[str]:
    """What `kcnn audit` says on the terminal: the findings in a few lines, leakage first."""
    leak = record["leakage"]
    exact, near = record["exact_duplicates"], record["near_duplicates"]
    ratio = record["imbalance"]
    splits = ", ".join(f"{k} {v:,}" for k, v in record["splits"].items())
    out = [
        f"{record['dataset']}: {record['images']:,} images ({splits}), audited in "
        f"{record['seconds']:.1f} s",
        f"leakage: {leak['test_images_with_exact_copy_in_training']:,} test images have an exact "
        f"copy in training, {leak['test_images_with_near_copy_in_training']:,} a near copy",
        f"exact duplicates: {_count(len(exact['groups']), 'group')}, {exact['images']:,} images",
        f"near duplicates: {_count(len(near['groups']), 'group')}, {near['images']:,} images"
        + (
            " (search cut short: very many near-identical images)"
            if near["search_cut_short"]
            else ""
        ),
        f"classes: {len(record['classes'])}, imbalance {'n/a' if ratio is None else f'{ratio:.2f}'}"
        " (largest / smallest)",
        f"blank {len(record['blank']):,}, tiny {len(record['tiny']):,}, unreadable or left out "
        f"{len(record['unreadable']):,}",
    ]
    for group in (exact["groups"] + near["groups"])[:5]:
        if group["cross_split"]:
            shown = ", ".join(f"{m['image']} ({m['split']})" for m in group["images"][:3])
            out.append(f"  across splits: {shown}")
    out.append(f"report: {folder / HTML}")
    return out


# --- the page --------------------------------------------------------------------------------------


def _thumbnail(pixels: np.ndarray) -> str:
    from PIL import Image

    image = Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels)
    scale = THUMB / max(image.size)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    image = image.resize(size, Image.Resampling.NEAREST)
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _picture(seen: audit.Seen, row: int, caption: str) -> str:
    try:
        data = _thumbnail(np.asarray(seen.pixels_of(row)))
        img = f'<img alt="{esc(caption)}" src="data:image/png;base64,{data}">'
    except Exception as e:  # noqa: BLE001  (a file changed or unreadable since: said, not drawn)
        img = f"<em>not drawn: {esc(str(e)[:120])}</em>"
    return f"<figure>{img}<figcaption>{esc(caption)}</figcaption></figure>"


def _group_html(seen: audit.Seen, group: dict[str, Any]) -> str:
    rows = group["rows"][:PICTURES_PER_GROUP]
    pictures = "".join(
        _picture(seen, r, f"{seen.names[r]} ({seen.splits[r]}, "
                 f"{seen.class_names[int(seen.labels[r])]})")
        for r in rows
    )  # fmt: skip
    more = group["size"] - len(rows)
    notes = []
    if group["cross_split"]:
        notes.append(f"<strong>spans {esc(' + '.join(group['splits']))}: leakage</strong>")
    if group["labels_differ"]:
        notes.append("<strong>labelled differently</strong>")
    if more > 0:
        notes.append(f"and {more:,} more (all in {JSON})")
    return f'<div class="group"><p>{group["size"]:,} images. {"; ".join(notes)}</p>{pictures}</div>'


def _section(title: str, seen: audit.Seen, part: dict[str, Any], note: str) -> list[str]:
    groups = part["groups"]
    parts = [f"<h2>{esc(title)}: {len(groups):,} groups, {part['images']:,} images</h2>"]
    parts.append(f"<p>{esc(note)}</p>")
    if part.get("search_cut_short"):
        parts.append(
            f"<p><strong>The search stopped after {audit.MOST_CANDIDATES:,} candidate "
            "comparisons (very many near-identical images): the groups below are those "
            "found until then.</strong></p>"
        )
    parts += [_group_html(seen, g) for g in groups[:GROUPS_DRAWN]]
    if len(groups) > GROUPS_DRAWN:
        parts.append(f"<p>... and {len(groups) - GROUPS_DRAWN:,} more groups in {JSON}.</p>")
    return parts


def _suspects(title: str, seen: audit.Seen, items: list[dict[str, Any]]) -> list[str]:
    if not items:
        return [f"<h2>{esc(title)}: none</h2>"]
    drawn = [
        _picture(seen, i["row"], f"{i['image']} ({i['split']})") for i in items[:SUSPECTS_DRAWN]
    ]
    more = (
        f"<p>... and {len(items) - SUSPECTS_DRAWN:,} more in {JSON}.</p>"
        if len(items) > SUSPECTS_DRAWN
        else ""
    )
    return [
        f"<h2>{esc(title)}: {len(items):,}</h2>",
        f'<div class="group">{"".join(drawn)}</div>',
        more,
    ]


def _table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    head = "".join(f"<th>{esc(c)}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{esc(r.get(c, ''))}</td>" for c in columns) + "</tr>" for r in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def page(record: dict[str, Any], seen: audit.Seen) -> str:
    from kcnn.runs.html import _page

    leak = record["leakage"]
    ratio = record["imbalance"]
    parts = [
        "<style>.group{display:flex;flex-wrap:wrap;gap:6px;align-items:flex-end;"
        "border-top:1px solid #ddd;padding:4px 0}.group p{flex-basis:100%;margin:2px 0}"
        "figure{margin:0;font-size:11px;max-width:140px;word-break:break-all}"
        "img{image-rendering:pixelated}</style>",
        f"<h1>Audit of {esc(record['dataset'])}</h1>",
        f"<p>{esc(record['source'])}: {record['images']:,} images "
        f"({esc(', '.join(f'{k} {v:,}' for k, v in record['splits'].items()))}), split as "
        f"training splits it ({esc(record['split_settings'])}).</p>",
        f"<p>Test images with an exact copy among the training or validation images: "
        f"<strong>{leak['test_images_with_exact_copy_in_training']:,}</strong>; with a near copy: "
        f"<strong>{leak['test_images_with_near_copy_in_training']:,}</strong>.</p>",
    ]
    parts += _section(
        "Exact duplicates", seen, record["exact_duplicates"], "The same decoded pixels."
    )
    parts += _section(
        "Near duplicates", seen, record["near_duplicates"], record["near_duplicates"]["method"]
    )
    parts += [
        "<h2>Classes</h2>",
        f"<p>Imbalance (largest class / smallest): "
        f"{'n/a' if ratio is None else f'{ratio:.2f}'}</p>",
        _table(record["classes"], ["class", "images", *record["splits"]]),
        "<h2>Sizes and modes</h2>",
        _table(record["sizes"][:20], ["width", "height", "images"]),
        _table([{"mode": m, "images": n} for m, n in record["modes"].items()], ["mode", "images"]),
    ]
    parts += _suspects("Blank images (every pixel the same)", seen, record["blank"])
    parts += _suspects(
        f"Tiny images (under {audit.TINY_SIDE} px, or under a quarter of the common size)",
        seen,
        record["tiny"],
    )
    unreadable = record["unreadable"]
    parts.append(f"<h2>Unreadable or left out: {len(unreadable):,}</h2>")
    if unreadable:
        parts.append(_table(unreadable[:500], ["image", "split", "reason"]))
    return _page(f"kcnn audit: {record['dataset']}", parts)
