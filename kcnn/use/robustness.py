"""Does a run's network survive a little noise, blur or a shift? Accuracy under corruptions.

After Hendrycks & Dietterich 2019 (arXiv:1903.12261, CIFAR-10-C): each corruption of
`kcnn.use.corruptions` (five of CIFAR-10-C's, as its `make_cifar_c.py` defines them, and three of
kcnn's own) at five severities, applied to the run's own test images (uint8, before the run's
pipeline), the accuracy measured through that pipeline. Severity 0 is the clean image.

A corruption that draws at random (noise, a rotation's sign, a shift's direction, a square's
place) is measured over `DRAWS` draws: its accuracy is their mean, beside their standard deviation
and every draw's own figure. Every draw comes from the run's seed, the corruption, the severity
and the draw's number alone, so the same command gives the same figures.

The mean corruption error (mCE) is the error averaged over corruptions and severities; without the
paper's AlexNet baseline it is reported unnormalised, beside the relative mCE, the average of
(corrupted error − clean error): how much the corruptions cost this network. Both are given over
all eight and over CIFAR-10-C's five and kcnn's three apart.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from kcnn import defaults
from kcnn.progress import say
from kcnn.runs import inspected
from kcnn.runs.records import write_json
from kcnn.use.corruptions import CIFAR_10_C, CORRUPTIONS, SEVERITIES, TABLE, corrupt

if TYPE_CHECKING:
    from kcnn.use.predict import LoadedRun

DRAWS = defaults.ROBUSTNESS_DRAWS  # a random corruption's accuracy: the mean over these draws
RUN_SETTINGS = ("arch", "api", "backbone", "dataset", "epochs", "limit")  # what the record names
CHUNK = 256  # images corrupted at a time: memory stays bounded for a test split of any size
DEFINITIONS = (
    "CIFAR-10-C's corruptions as make_cifar_c.py defines them (Hendrycks & Dietterich 2019), "
    "kcnn's own named as kcnn's; spatial ones sized by the image (up and down), made on a copy "
    "enlarged to 32 pixels when smaller"
)


def generator(seed: int, corruption: str, severity: int, draw: int = 0) -> np.random.Generator:
    """The random draws of one corruption at one severity: from the seed, those two and the
    draw's number alone."""
    return np.random.default_rng([seed, CORRUPTIONS.index(corruption), severity, draw])


def accuracy_under(
    loaded: LoadedRun, images, labels, corruption: str, severity: int, seed: int, draw: int = 0
) -> float:
    """Accuracy on `images` under one draw of `corruption` at `severity`, CHUNK images at a time
    (one generator runs through the chunks: the draw does not hinge on the chunk size's rest)."""
    rng = generator(seed, corruption, severity, draw)
    right = 0
    for i in range(0, len(images), CHUNK):
        corrupted = corrupt(images[i : i + CHUNK], corruption, severity, rng)
        right += int(np.sum(loaded.predict(corrupted).argmax(axis=1) == labels[i : i + CHUNK]))
    return right / len(images) if len(images) else 0.0


def _sd(values: list[float]) -> float:
    return float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def evaluate(
    loaded: LoadedRun, limit: int | None = None, progress=say, draws: int = DRAWS
) -> dict[str, Any]:
    """Accuracy of a run on its test split under every corruption at every severity (a random
    one: the mean over `draws` draws); writes RUN/inspect/robustness.json, robustness.png and
    corruptions.png; returns the record."""
    out = inspected.make_folder(loaded.info.folder)
    seed = int(loaded.info.settings.get("seed", 0))
    test = loaded.labelled("test", limit)
    clean = float(np.mean(loaded.predict(test.images).argmax(axis=1) == test.labels))
    progress(
        f"robustness: {len(test)} test images, clean accuracy {clean:.4f}; random corruptions "
        f"over {draws} draws"
    )
    per_draw: dict[str, list[list[float]]] = {}
    for k, spec in enumerate(TABLE, 1):
        per_draw[spec.name] = [
            [
                accuracy_under(loaded, test.images, test.labels, spec.name, s, seed, d)
                for d in range(draws if spec.random else 1)
            ]
            for s in range(1, SEVERITIES + 1)
        ]
        shown = " ".join(f"{np.mean(a):.3f}" for a in per_draw[spec.name])
        progress(f"robustness: [{k}/{len(TABLE)}] {spec.name} ({spec.source}): {shown}")
    record = summarize(per_draw, clean, draws)
    settings = loaded.info.settings
    record.update(
        split="test",
        images=len(test),
        seed=seed,
        run={k: settings.get(k) for k in RUN_SETTINGS if settings.get(k) is not None},
    )
    inspected.save_picture(out / inspected.ROBUSTNESS_PNG, lambda p: _curves(record, p))
    example = test.images[:1]
    inspected.save_picture(out / inspected.CORRUPTIONS_PNG, lambda p: _examples(example, seed, p))
    record["tta"] = loaded.tta  # test-time augmentation of its predictions
    write_json(out / inspected.ROBUSTNESS_JSON, record)
    return record


def summarize(per_draw: dict[str, list[list[float]]], clean: float, draws: int) -> dict[str, Any]:
    """The record's figures from every draw's accuracy (corruption → severity → draws)."""
    accuracy = {name: [float(np.mean(a)) for a in runs] for name, runs in per_draw.items()}
    errors = {name: 1 - np.array(accs) for name, accs in accuracy.items()}
    sources = {spec.name: spec.source for spec in TABLE}

    def mce(names) -> dict[str, float]:
        e = np.array([errors[n] for n in names])
        return {"mean": float(e.mean()), "relative": float(e.mean() - (1 - clean))}

    groups = {s: [n for n in accuracy if sources[n] == s] for s in dict.fromkeys(sources.values())}
    overall = mce(list(accuracy))
    return {
        "definitions": DEFINITIONS,
        "clean_accuracy": clean,
        "severities": SEVERITIES,
        "draws": draws,
        "corruptions": {
            spec.name: {
                "source": spec.source,
                "parameters": list(spec.parameters),
                "meaning": spec.meaning,
                "draws": draws if spec.random else 1,
            }
            for spec in TABLE
        },
        "parameters": {spec.name: list(spec.parameters) for spec in TABLE},
        "accuracy": accuracy,
        "accuracy_sd": {name: [_sd(a) for a in runs] for name, runs in per_draw.items()},
        "accuracy_draws": per_draw,
        "corruption_error": {name: float(e.mean()) for name, e in errors.items()},
        "mean_corruption_error": overall["mean"],
        "relative_mean_corruption_error": overall["relative"],
        "by_source": {src: mce(names) for src, names in groups.items() if names},
        "mean_corrupted_accuracy_over_clean": (1 - overall["mean"]) / clean if clean else None,
    }


def _curves(record: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4), layout="constrained")
    severities = list(range(SEVERITIES + 1))
    for corruption, accs in record["accuracy"].items():
        about = record["corruptions"][corruption]
        ax.errorbar(
            severities,
            [record["clean_accuracy"], *accs],
            yerr=[0.0, *record["accuracy_sd"][corruption]],  # a random one's spread over draws
            marker="o" if about["source"] == CIFAR_10_C else "s",
            ms=3,
            capsize=2,
            ls="-" if about["source"] == CIFAR_10_C else "--",
            label=f"{corruption} ({about['source']})",
        )
    ax.set(xlabel="severity (0: clean)", ylabel="test accuracy", ylim=(0, 1.02))
    ax.set_title(
        f"accuracy under corruption, {record['images']} test images: mCE "
        f"{record['mean_corruption_error']:.3f}, relative "
        f"{record['relative_mean_corruption_error']:+.3f}\n(a random corruption: mean ± SD of "
        f"{record['draws']} draws)",
        fontsize=8,
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
                ax.set_ylabel(corruption.replace("_", "\n"), fontsize=6)
            if r == 0:
                ax.set_title(f"severity {s}", fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=90, format="png")
    plt.close(fig)


def markdown_table(record: dict[str, Any]) -> str:
    """A robustness record as a markdown table with its caption (README's robustness figure:
    `python -m kcnn.use.robustness RUN/inspect/robustness.json`)."""
    severities = int(record["severities"])
    lines = [
        "| corruption | defined by | "
        + " | ".join(f"severity {s}" for s in range(1, severities + 1))
        + " | error |",
        "|---|---|" + "---:|" * (severities + 1),
    ]
    for name, accs in record["accuracy"].items():
        about, sds = record["corruptions"][name], record["accuracy_sd"][name]
        cells = [
            f"{a:.3f} ± {sd:.3f}" if about["draws"] > 1 else f"{a:.3f}"
            for a, sd in zip(accs, sds, strict=True)
        ]
        lines.append(
            f"| {name} | {about['source']} | {' | '.join(cells)} | "
            f"{record['corruption_error'][name]:.3f} |"
        )
    by = record["by_source"]
    run = record.get("run") or {}
    who = " ".join(str(run[k]) for k in ("arch", "dataset") if k in run) or "the run"
    caption = (
        f"{who}: {record['images']:,} test images, clean accuracy {record['clean_accuracy']:.3f}; "
        f"a random corruption's accuracy is the mean ± SD of {record['draws']} draws. Mean "
        f"corruption error {record['mean_corruption_error']:.3f} (relative "
        f"{record['relative_mean_corruption_error']:+.3f}): CIFAR-10-C's five "
        f"{by['CIFAR-10-C']['mean']:.3f}, kcnn's three {by['kcnn']['mean']:.3f}."
    )
    return "\n".join(lines) + "\n\n" + caption


def main(argv: list[str] | None = None) -> None:
    """`python -m kcnn.use.robustness RECORD`: the table of a kept robustness.json."""
    import json

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        raise SystemExit("usage: python -m kcnn.use.robustness RUN/inspect/robustness.json")
    print(markdown_table(json.loads(Path(args[0]).read_text(encoding="utf-8"))))


if __name__ == "__main__":
    main()
