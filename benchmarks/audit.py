"""`kcnn audit`'s figures, measured: written to benchmarks/audit.json and README.md's block
between `<!-- audit:figures -->` and `<!-- /audit:figures -->` (never typed by hand).

    python benchmarks/audit.py           # measure, write audit.json, rewrite the README block
    python benchmarks/audit.py --readme  # only rewrite the README block from audit.json

What it measures:
- speed: `kcnn audit` of 60,000 images as a user runs it (the whole command, start-up included),
  for random 28×28 images (no copies) and for mnist-5k tiled 12 times, each tile 0..11 levels
  brighter (every image has 11 near copies: the near search's hard case);
- how well planted copies are found: mnist-5k as 4,000 training and 1,000 test images with 50
  exact copies and 50 of each near copy (a JPEG re-encoding, a one-pixel shift, 10 levels
  brighter) planted into the test split: recall and precision of each kind;
- why pHash alone is not enough on small digits: how far a shift moves the hash, and how many
  digits have a different digit within 6 bits;
- an image folder: mnist-5k written as 5,000 PNG files, audited file by file;
- what the leakage check before training costs: its seconds on 70,000 images, and its share of
  a one-epoch run on mnist-5k.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from itertools import combinations
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
README = HERE.parent / "README.md"
RESULTS = HERE / "audit.json"
KCNN = [sys.executable, "-m", "kcnn.cli"]


def _audit(path: Path, out: Path) -> tuple[dict, float]:
    started = time.perf_counter()
    result = subprocess.run(
        [*KCNN, "audit", str(path), "--out", str(out), "--json"], capture_output=True, text=True
    )
    wall = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(result.stderr)
    return json.loads(result.stdout), wall


def _mnist():
    from kcnn.data import datasets

    data = datasets.load("mnist-5k")
    order = np.random.default_rng(5).permutation(len(data.y_train))  # it comes sorted by class
    return data.x_train[order], data.y_train[order]


def speed(tmp: Path) -> dict:
    x, y = _mnist()
    rng = np.random.default_rng(0)
    sets = {
        "random 28×28": rng.integers(0, 256, (60_000, 28, 28, 1), dtype=np.uint8),
        "mnist-5k tiled 12×, 0..11 levels brighter": np.concatenate(
            [np.clip(x.astype(np.int16) + k, 0, 255).astype(np.uint8) for k in range(12)]
        ),
    }
    found = {}
    for name, images in sets.items():
        labels = np.tile(y, len(images) // len(y))[: len(images)] if "mnist" in name else (
            rng.integers(0, 10, len(images))
        )  # fmt: skip
        path = tmp / "speed.npz"
        cut = len(images) * 5 // 6  # 50,000 training images, 10,000 test images
        np.savez(path, x_train=images[:cut], y_train=labels[:cut], x_test=images[cut:],
                 y_test=labels[cut:])  # fmt: skip
        record, wall = _audit(path, tmp / "out")
        found[name] = {
            "images": record["images"],
            "command_seconds": round(wall, 1),
            "audit_seconds": record["seconds"],
            "exact_groups": len(record["exact_duplicates"]["groups"]),
            "near_groups": len(record["near_duplicates"]["groups"]),
            "near_search_cut_short": record["near_duplicates"]["search_cut_short"],
        }
    return found


def _jpeg(image):
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image[..., 0]).save(buffer, "JPEG", quality=75)
    return np.asarray(Image.open(buffer))[..., None]


EDITS = {
    "exact": lambda image: image.copy(),
    "jpeg": _jpeg,
    "shift": lambda image: np.roll(image, 1, axis=1),
    "brighter": lambda image: np.clip(image.astype(int) + 10, 0, 255).astype(np.uint8),
}


def planted(tmp: Path) -> dict:
    """The same planting as tests/test_audit.py's."""
    x, y = _mnist()
    x_train, y_train, x_test, y_test = (
        x[:4000].copy(),
        y[:4000].copy(),
        x[4000:].copy(),
        y[4000:].copy(),
    )
    rng = np.random.default_rng(31)
    sources, targets = rng.choice(4000, 200, replace=False), rng.choice(1000, 200, replace=False)
    pairs = {}
    for k, (kind, edit) in enumerate(EDITS.items()):
        pairs[kind] = set()
        for s, t in zip(
            sources[k * 50 : (k + 1) * 50], targets[k * 50 : (k + 1) * 50], strict=True
        ):
            x_test[t], y_test[t] = edit(x_train[s]), y_train[s]
            pairs[kind].add(tuple(sorted((f"x_train[{s}]", f"x_test[{t}]"))))
    path = tmp / "planted.npz"
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    record, _ = _audit(path, tmp / "out")

    def found(section):
        return {
            tuple(sorted((a["image"], b["image"])))
            for g in record[section]["groups"]
            for a, b in combinations(g["images"], 2)
        }

    scores = {}
    for kind, truth in pairs.items():
        got = found("exact_duplicates" if kind == "exact" else "near_duplicates")
        touching = {p for p in got if p[1] in {b for _, b in truth}}
        scores[kind] = {
            "planted": len(truth),
            "recall": round(len(got & truth) / len(truth), 3),
            "precision": round(len(touching & truth) / max(1, len(touching)), 3),
        }
    near_truth = set().union(*(pairs[k] for k in EDITS if k != "exact"))
    near = found("near_duplicates")
    scores["near, all pairs reported"] = {
        "pairs": len(near),
        "precision": round(len(near & near_truth) / max(1, len(near)), 3),
    }
    return scores


def phash_alone() -> dict:
    from kcnn.data import image_hashes

    x, _ = _mnist()
    hashes = image_hashes.phashes(x)
    shifted = image_hashes.phashes([np.roll(image, 1, axis=1) for image in x[:500]])
    moved = image_hashes.hamming(hashes[:500], shifted)
    sample = hashes[:2000]
    distances = np.bitwise_count(sample[:, None] ^ hashes[None, :]).astype(int)
    distances[np.arange(2000), np.arange(2000)] = 99
    return {
        "one_pixel_shift_bits": {
            "median": int(np.median(moved)),
            "max": int(moved.max()),
            "min": int(moved.min()),
        },
        "digits_with_another_within_6_bits": round(float((distances.min(1) <= 6).mean()), 3),
    }


def folder_speed(tmp: Path) -> dict:
    """`kcnn audit` of mnist-5k written out as a folder of PNG files (read file by file)."""
    from PIL import Image

    x, y = _mnist()
    root = tmp / "digits-folder"
    for i, (image, label) in enumerate(zip(x, y, strict=True)):
        (root / str(label)).mkdir(parents=True, exist_ok=True)
        Image.fromarray(image[..., 0]).save(root / str(label) / f"{i:05d}.png")
    record, wall = _audit(root, tmp / "out")
    return {"files": record["images"], "command_seconds": round(wall, 1),
            "audit_seconds": record["seconds"]}  # fmt: skip


def leakage_share(tmp: Path) -> dict:
    """The leakage check's seconds beside a one-epoch `kcnn train lenet5` on mnist-5k's own
    split, measured in that process (prepare_data's share of a short run)."""
    from kcnn.data import datasets, splits
    from kcnn.data.prepared import leakage

    data = datasets.load("mnist-5k")
    parts = splits.make_splits(data, 0.2, 83)
    started = time.perf_counter()
    leakage(parts)
    check = time.perf_counter() - started
    started = time.perf_counter()
    subprocess.run([*KCNN, "train", "lenet5", "--dataset", "mnist-5k", "--epochs", "1", "--out",
                    str(tmp / "runs")], check=True, capture_output=True)  # fmt: skip
    run = time.perf_counter() - started
    return {"check_seconds": round(check, 3), "run_seconds": round(run, 1),
            "share": round(check / run, 4)}  # fmt: skip


def leakage_cost() -> dict:
    from kcnn.data.prepared import leakage
    from kcnn.data.splits import Splits

    rng = np.random.default_rng(2)
    x = rng.integers(0, 256, (70_000, 28, 28, 1), dtype=np.uint8)
    y = rng.integers(0, 10, 70_000)
    parts = Splits(x[:48_000], y[:48_000], x[48_000:60_000], y[48_000:60_000], x[60_000:],
                   y[60_000:], [str(i) for i in range(10)])  # fmt: skip
    started = time.perf_counter()
    leakage(parts)
    return {"images": 70_000, "seconds": round(time.perf_counter() - started, 2)}


def block(results: dict) -> str:
    s = results["speed"]
    p = results["planted"]
    h = results["phash_alone"]
    lines = [
        f"Measured by `python benchmarks/audit.py` ({results['date']}, {results['cores']} CPU "
        "cores; benchmarks/audit.json):",
        "",
    ]
    for name, r in s.items():
        lines.append(
            f"- `kcnn audit` of {r['images']:,} images ({name}): {r['command_seconds']} s for the "
            f"whole command, {r['audit_seconds']} s of it the audit; {r['exact_groups']:,} exact "
            f"and {r['near_groups']:,} near-duplicate groups found"
        )
    kinds = ", ".join(
        f"{k} recall {v['recall']:.2f} / precision {v['precision']:.2f}"
        for k, v in p.items()
        if "recall" in v
    )
    lines.append(f"- planted copies in mnist-5k's test split (50 of each kind): {kinds}")
    lines.append(
        f"- pHash alone: a one-pixel shift moves a digit's hash {h['one_pixel_shift_bits']['min']} "
        f"to {h['one_pixel_shift_bits']['max']} bits, while "
        f"{h['digits_with_another_within_6_bits']:.0%} of mnist-5k's digits have a different "
        "digit within 6 bits: hence the shifted hashes and the picture check"
    )
    f = results["folder"]
    lines.append(
        f"- `kcnn audit` of mnist-5k as a folder of {f['files']:,} PNG files (read file by file): "
        f"{f['command_seconds']} s for the whole command, {f['audit_seconds']} s of it the audit"
    )
    c, share = results["leakage_check"], results["leakage_share"]
    lines.append(
        f"- the leakage check before training: {c['seconds']} s for {c['images']:,} images; on "
        f"mnist-5k {share['check_seconds']} s, {share['share']:.2%} of a one-epoch "
        f"`kcnn train lenet5` ({share['run_seconds']} s)"
    )
    return "\n".join(lines)


def write_readme(results: dict) -> None:
    text = README.read_text()
    start, end = "<!-- audit:figures -->", "<!-- /audit:figures -->"
    if start not in text:
        raise SystemExit(f"README.md has no {start} block")
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    README.write_text(f"{head}{start}\n{block(results)}\n{end}{tail}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readme", action="store_true", help="only rewrite README's block")
    args = parser.parse_args()
    if not args.readme:
        with tempfile.TemporaryDirectory() as tmp:
            results = {
                "date": time.strftime("%Y-%m-%d"),
                "cores": len(os.sched_getaffinity(0)),
                "speed": speed(Path(tmp)),
                "planted": planted(Path(tmp)),
                "phash_alone": phash_alone(),
                "folder": folder_speed(Path(tmp)),
                "leakage_check": leakage_cost(),
                "leakage_share": leakage_share(Path(tmp)),
            }
        RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    write_readme(json.loads(RESULTS.read_text()))
    print(block(json.loads(RESULTS.read_text())))


if __name__ == "__main__":
    main()
