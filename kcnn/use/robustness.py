"""Does a run's network survive a little noise, blur or a shift? Accuracy under corruptions.

After Hendrycks & Dietterich 2019 (arXiv:1903.12261, CIFAR-10-C): each corruption at five
severities applied to the run's own test images (uint8, before the run's pipeline), the accuracy
measured through that pipeline. Parameters are CIFAR-10-C's for 32×32 images; the spatial ones
(blur width) grow with the side for bigger images, and shifts, occlusions are fractions of the
side, so they carry over to 8×8 digits and 224×224 photos alike. Severity 0 is the clean image.

The mean corruption error (mCE) is the error averaged over corruptions and severities; without the
paper's AlexNet baseline it is reported unnormalised, beside the relative mCE, the average of
(corrupted error − clean error): how much the corruptions cost this network. Every random draw
(noise, occlusion position) comes from the run's seed, the corruption and the severity alone.
"""

from __future__ import annotations

import io
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from kcnn.runs import inspected
from kcnn.runs.records import write_json

if TYPE_CHECKING:
    from kcnn.use.predict import LoadedRun

SEVERITIES = 5
# Per corruption, its five severities' parameter (CIFAR-10-C's where it has one).
PARAMETERS: dict[str, tuple[float, ...]] = {
    "gaussian_noise": (0.04, 0.06, 0.08, 0.09, 0.10),  # σ of pixels in 0..1
    "blur": (0.4, 0.6, 0.7, 0.8, 1.0),  # Gaussian σ in pixels at 32×32
    "contrast": (0.75, 0.5, 0.4, 0.3, 0.15),  # distance to the mean kept
    "brightness": (0.05, 0.1, 0.15, 0.2, 0.3),  # added to pixels in 0..1
    "jpeg": (80, 65, 58, 50, 40),  # JPEG quality
    "rotation": (5, 10, 15, 20, 30),  # degrees, sign drawn per image
    "translation": (0.05, 0.1, 0.15, 0.2, 0.25),  # fraction of the side, direction drawn
    "occlusion": (0.1, 0.2, 0.3, 0.4, 0.5),  # side of a grey square, fraction of the image's
}
CORRUPTIONS = tuple(PARAMETERS)


def _pil(image: np.ndarray):
    from PIL import Image

    return Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)


def _array(im, shape) -> np.ndarray:
    return np.asarray(im, dtype=np.uint8).reshape(shape)


def _per_image(images: np.ndarray, change: Callable[[Any, int], Any]) -> np.ndarray:
    return np.stack([_array(change(_pil(x), i), x.shape) for i, x in enumerate(images)])


def corrupt(
    images: np.ndarray, corruption: str, severity: int, rng: np.random.Generator
) -> np.ndarray:
    """`images` (uint8 N×H×W×C) under `corruption` at `severity` 0..5 (0: unchanged)."""
    if corruption not in PARAMETERS:
        raise ValueError(f"unknown corruption {corruption!r}: one of {', '.join(CORRUPTIONS)}")
    if not 0 <= severity <= SEVERITIES:
        raise ValueError(f"severity {severity}: 0 to {SEVERITIES}")
    if severity == 0 or len(images) == 0:
        return images.copy()
    from PIL import Image, ImageFilter

    c = PARAMETERS[corruption][severity - 1]
    n, h, w = images.shape[:3]
    side = min(h, w)
    x = images.astype(np.float64) / 255.0
    if corruption == "gaussian_noise":
        x = x + rng.normal(0.0, c, size=x.shape)
    elif corruption == "contrast":
        mean = x.mean(axis=(1, 2, 3), keepdims=True)
        x = (x - mean) * c + mean
    elif corruption == "brightness":
        x = x + c
    elif corruption == "blur":
        radius = c * max(1.0, side / 32)
        return _per_image(images, lambda im, i: im.filter(ImageFilter.GaussianBlur(radius)))
    elif corruption == "jpeg":

        def jpeg(im, i):
            buffer = io.BytesIO()
            im.save(buffer, format="JPEG", quality=int(c))
            return Image.open(io.BytesIO(buffer.getvalue()))

        return _per_image(images, jpeg)
    elif corruption == "rotation":
        signs = rng.choice([-1.0, 1.0], size=n)
        return _per_image(
            images,
            lambda im, i: im.rotate(c * signs[i], resample=Image.Resampling.BILINEAR, fillcolor=0),
        )
    elif corruption == "translation":
        angles = rng.uniform(0, 2 * np.pi, size=n)
        dy = np.round(np.sin(angles) * c * h).astype(int)
        dx = np.round(np.cos(angles) * c * w).astype(int)
        out = np.zeros_like(images)
        for i in range(n):
            src = images[i, max(0, -dy[i]) : h - max(0, dy[i]), max(0, -dx[i]) : w - max(0, dx[i])]
            out[
                i,
                max(0, dy[i]) : max(0, dy[i]) + src.shape[0],
                max(0, dx[i]) : max(0, dx[i]) + src.shape[1],
            ] = src
        return out
    elif corruption == "occlusion":
        size = max(1, round(c * side))
        tops = rng.integers(0, h - size + 1, size=n)
        lefts = rng.integers(0, w - size + 1, size=n)
        out = images.copy()
        for i in range(n):
            out[i, tops[i] : tops[i] + size, lefts[i] : lefts[i] + size] = 128
        return out
    return np.clip(np.round(x * 255.0), 0, 255).astype(np.uint8)


def generator(seed: int, corruption: str, severity: int) -> np.random.Generator:
    """The random draws of one corruption at one severity: from the seed and those two alone."""
    return np.random.default_rng([seed, CORRUPTIONS.index(corruption), severity])


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def accuracy_under(loaded: LoadedRun, images, labels, corruption, severity, seed) -> float:
    corrupted = corrupt(images, corruption, severity, generator(seed, corruption, severity))
    return float(np.mean(loaded.predict(corrupted).argmax(axis=1) == labels))


def evaluate(loaded: LoadedRun, limit: int | None = None, progress=_progress) -> dict[str, Any]:
    """Accuracy of a run on its test split under every corruption at every severity; writes
    RUN/inspect/robustness.json, robustness.png and corruptions.png; returns the record."""
    out = inspected.make_folder(loaded.info.folder)
    seed = int(loaded.info.settings.get("seed", 0))
    test = loaded.labelled("test", limit)
    clean = float(np.mean(loaded.predict(test.images).argmax(axis=1) == test.labels))
    progress(f"robustness: {len(test)} test images, clean accuracy {clean:.4f}")
    table: dict[str, list[float]] = {}
    for k, corruption in enumerate(CORRUPTIONS, 1):
        table[corruption] = [
            accuracy_under(loaded, test.images, test.labels, corruption, s, seed)
            for s in range(1, SEVERITIES + 1)
        ]
        shown = " ".join(f"{a:.3f}" for a in table[corruption])
        progress(f"robustness: [{k}/{len(CORRUPTIONS)}] {corruption}: {shown}")
    errors = np.array([[1 - a for a in accs] for accs in table.values()])
    record = {
        "split": "test",
        "images": len(test),
        "seed": seed,
        "clean_accuracy": clean,
        "severities": SEVERITIES,
        "parameters": {k: list(v) for k, v in PARAMETERS.items()},
        "accuracy": table,
        "corruption_error": {c: float(e.mean()) for c, e in zip(table, errors, strict=True)},
        "mean_corruption_error": float(errors.mean()),
        "relative_mean_corruption_error": float(errors.mean() - (1 - clean)),
        "mean_corrupted_accuracy_over_clean": float((1 - errors.mean()) / clean) if clean else None,
    }
    inspected.save_picture(out / inspected.ROBUSTNESS_PNG, lambda p: _curves(record, p))
    example = test.images[:1]
    inspected.save_picture(out / inspected.CORRUPTIONS_PNG, lambda p: _examples(example, seed, p))
    write_json(out / inspected.ROBUSTNESS_JSON, record)
    return record


def _curves(record: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4), layout="constrained")
    severities = list(range(SEVERITIES + 1))
    for corruption, accs in record["accuracy"].items():
        ax.plot(severities, [record["clean_accuracy"], *accs], marker="o", ms=3, label=corruption)
    ax.set(xlabel="severity (0: clean)", ylabel="test accuracy", ylim=(0, 1.02))
    ax.set_title(
        f"accuracy under corruption ({record['images']} test images): "
        f"mCE {record['mean_corruption_error']:.3f}, "
        f"relative {record['relative_mean_corruption_error']:+.3f}",
        fontsize=9,
    )
    fig.legend(loc="outside right upper", fontsize=7)  # beside the axes: lines cross everywhere
    ax.grid(alpha=0.3)
    fig.savefig(path, dpi=90, format="png")
    plt.close(fig)


def _examples(image: np.ndarray, seed: int, path: Path) -> None:
    """One test image under every corruption (rows) at every severity (columns)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(
        len(CORRUPTIONS), SEVERITIES + 1, figsize=(1.1 * (SEVERITIES + 1), 1.1 * len(CORRUPTIONS))
    )
    for r, corruption in enumerate(CORRUPTIONS):
        for s in range(SEVERITIES + 1):
            x = corrupt(image, corruption, s, generator(seed, corruption, s))[0]
            ax = axes[r, s]
            ax.imshow(x[..., 0] if x.shape[-1] == 1 else x, cmap="gray", vmin=0, vmax=255)
            ax.set_xticks([])
            ax.set_yticks([])
            if s == 0:
                ax.set_ylabel(corruption, fontsize=6)
            if r == 0:
                ax.set_title(f"severity {s}", fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=90, format="png")
    plt.close(fig)
