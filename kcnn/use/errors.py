"""Which test images does a run get wrong, and why: error analysis on its own test split.

- the most-confused class pairs: how many images of class A were taken for B, and what share of
  A's test images that is;
- per-class accuracy (recall), worst first;
- a grid of the highest-loss test images (fastai's "top losses"), each with its true class, its
  predicted class and that probability, and its Grad-CAM beside it: where the network looked;
- for an image-folder data set, misclassified.csv: every misclassified image's file, so a user can
  find mislabelled data.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from kcnn import text
from kcnn.progress import say
from kcnn.runs import inspected
from kcnn.runs.records import write_csv, write_json

if TYPE_CHECKING:
    from kcnn.use.predict import LoadedRun

TOP_LOSSES = 12  # images in the grid
TOP_PAIRS = 10  # confused pairs recorded
_TINY = np.finfo(np.float32).tiny


def confused_pairs(labels: np.ndarray, predicted: np.ndarray, classes: int) -> list[dict]:
    """Off-diagonal confusion counts, most frequent first (ties: by true, then predicted class),
    each with its share of the true class's images."""
    matrix = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(matrix, (labels, predicted), 1)
    support = matrix.sum(axis=1)
    pairs = [
        (int(matrix[t, p]), t, p)
        for t in range(classes)
        for p in range(classes)
        if t != p and matrix[t, p]
    ]
    pairs.sort(key=lambda c: (-c[0], c[1], c[2]))
    return [
        {"true": t, "predicted": p, "count": n, "share_of_true": n / int(support[t])}
        for n, t, p in pairs
    ]


def per_class_accuracy(labels: np.ndarray, predicted: np.ndarray, classes: int) -> list[dict]:
    """Each class's accuracy on its own test images, worst first (classes without test images
    are left out: they have no accuracy)."""
    rows = []
    for c in range(classes):
        mine = labels == c
        if mine.any():
            rows.append(
                {
                    "class": c,
                    "accuracy": float(np.mean(predicted[mine] == c)),
                    "images": int(mine.sum()),
                }
            )
    rows.sort(key=lambda r: (r["accuracy"], r["class"]))
    return rows


def losses(probabilities: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Each image's cross-entropy −log p(true class)."""
    p = np.asarray(probabilities, dtype=np.float64)
    return -np.log(np.maximum(p[np.arange(len(labels)), labels], _TINY))


def analyse(loaded: LoadedRun, limit: int | None = None, progress=say) -> dict[str, Any]:
    """Error analysis of a run on its test split; writes RUN/inspect/errors.json, top_losses.png
    and (image folders) misclassified.csv; returns the record."""
    out = inspected.make_folder(loaded.info.folder)
    progress("errors: predicting the test split")
    test = loaded.labelled("test", limit)
    p = loaded.predict(test.images)
    predicted = p.argmax(axis=1)
    classes = p.shape[1]
    loss = losses(p, test.labels)
    name = loaded.label
    pairs = confused_pairs(test.labels, predicted, classes)
    for pair in pairs:
        pair["true_name"], pair["predicted_name"] = name(pair["true"]), name(pair["predicted"])
    per_class = per_class_accuracy(test.labels, predicted, classes)
    for row in per_class:
        row["name"] = name(row["class"])
    order = np.argsort(-loss, kind="stable")[:TOP_LOSSES]
    top = [
        {
            "index": int(i),
            "true": name(int(test.labels[i])),
            "predicted": name(int(predicted[i])),
            "probability": float(p[i, predicted[i]]),
            "true_probability": float(p[i, test.labels[i]]),
            "loss": float(loss[i]),
            **({"file": test.paths[i]} if test.paths is not None else {}),
        }
        for i in order
    ]
    wrong = np.flatnonzero(predicted != test.labels)
    record: dict[str, Any] = {
        "split": "test",
        "images": len(test),
        "misclassified": len(wrong),
        "accuracy": float(np.mean(predicted == test.labels)),
        "confused_pairs": pairs[:TOP_PAIRS],
        "per_class_accuracy": per_class,
        "top_losses": top,
        "files": test.paths is not None,
    }
    progress(f"errors: Grad-CAM of the {len(order)} highest-loss images")
    inspected.save_picture(
        out / inspected.TOP_LOSSES_PNG,
        lambda path: _grid(loaded, test.images[order], top, path),
    )
    if test.paths is not None:
        rows = [
            {
                "file": test.paths[i],
                "true": name(int(test.labels[i])),
                "predicted": name(int(predicted[i])),
                "probability": f"{p[i, predicted[i]]:.4f}",
                "true_probability": f"{p[i, test.labels[i]]:.4f}",
                "loss": f"{loss[i]:.4f}",
            }
            for i in sorted(wrong, key=lambda i: -loss[i])
        ]
        columns = ["file", "true", "predicted", "probability", "true_probability", "loss"]
        # a file name is the user's and may start with = + - @: escaped, never run
        safe = [{k: text.csv_cell(v) for k, v in row.items()} for row in rows]
        write_csv(out / inspected.MISCLASSIFIED_CSV, safe, columns)
        record["misclassified_csv"] = inspected.MISCLASSIFIED_CSV
    record["tta"] = loaded.tta  # test-time augmentation of its predictions
    write_json(out / inspected.ERRORS_JSON, record)
    return record


def _grid(loaded: LoadedRun, images: np.ndarray, top: list[dict], path: Path) -> None:
    """Pairs of panels, four pairs a row: the image titled true/predicted/probability, and its
    Grad-CAM (for the predicted class) over it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    from kcnn.use.visualize import coarse_note, grad_cam

    pairs_per_row = 4
    coarse = ""
    n = len(images)
    rows = max(1, -(-n // pairs_per_row))
    fig, axes = plt.subplots(
        rows, 2 * pairs_per_row, figsize=(2 * pairs_per_row * 1.2, rows * 1.5 + 0.4), squeeze=False
    )
    for ax in axes.flat:
        ax.axis("off")
    for k, (image, info) in enumerate(zip(images, top, strict=True)):
        cam = grad_cam(loaded, image)[0]
        coarse = coarse or coarse_note(cam, image)
        h, w = image.shape[:2]
        heat = np.asarray(
            Image.fromarray(np.uint8(cam * 255)).resize((w, h), Image.Resampling.BILINEAR)
        )
        shown = image[..., 0] if image.shape[-1] == 1 else image
        left, right = axes[
            k // pairs_per_row, 2 * (k % pairs_per_row) : 2 * (k % pairs_per_row) + 2
        ]
        left.imshow(shown, cmap="gray", interpolation="nearest")
        colour = "green" if info["true"] == info["predicted"] else "red"
        left.set_title(
            f"true {info['true']}\npred {info['predicted']} {info['probability']:.2f}",
            fontsize=6,
            color=colour,
        )
        right.imshow(shown, cmap="gray", interpolation="nearest")
        right.imshow(heat / 255.0, cmap="jet", alpha=0.45, interpolation="bilinear")
        right.set_title(
            f"Grad-CAM {cam.shape[0]}×{cam.shape[1]}\nloss {info['loss']:.2f}", fontsize=6
        )
    fig.suptitle(f"the {n} highest-loss test images", fontsize=9)
    if coarse:  # the same map size for every image: said once
        fig.supxlabel(textwrap.fill(coarse, 100), fontsize=7, color="#a03000")
    fig.tight_layout()
    fig.savefig(path, dpi=90, format="png")
    plt.close(fig)
