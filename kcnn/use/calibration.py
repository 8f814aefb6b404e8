"""Can a run's probabilities be trusted? Calibration measured, and temperature scaling.

A model is calibrated when, of the images it gives confidence 0.8, 80 % are right. Measured on
the run's own test split through its own pipeline:

- expected calibration error (ECE): the test images in 15 equal-width confidence bins, each bin's
  |accuracy − mean confidence| weighted by its share of the images; the maximum calibration error
  (MCE) is the largest of those gaps (Naeini et al. 2015; Guo et al. 2017, arXiv:1706.04599);
- the Brier score (mean squared distance of the probability vector from the one-hot label) and the
  negative log-likelihood (NLL, the cross-entropy);
- a reliability diagram: accuracy against confidence per bin.

Temperature scaling (Guo et al. 2017) divides the logits by one number T fitted on the validation
split to minimise its NLL: the predicted class never changes, only the confidence. kcnn's models
end in a softmax, so the logits are recovered as log p (equal to the logits up to a constant per
image, which the softmax ignores). The fitted T is kept in RUN/inspect/temperature.json, and
`kcnn predict` then reports calibrated probabilities.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import numpy as np

from kcnn.errors import KcnnError
from kcnn.progress import say, warn
from kcnn.runs import inspected
from kcnn.runs.records import write_json


class LoadedRun(Protocol):
    """A run with its model loaded (`kcnn.use.predict.load` makes one): what calibration reads.
    Named here, not imported: predict applies the temperature fitted here."""

    info: Any  # the run's `RunInfo` (its folder)

    def labelled(self, split: str, limit: int | None = None) -> Any: ...
    def predict(self, images: np.ndarray) -> np.ndarray: ...


BINS = 15
T_RANGE = (0.05, 20.0)  # temperatures searched (log-uniformly bounded)
_TINY = np.finfo(np.float32).tiny  # log p for a probability that underflowed to 0


def _check(probabilities: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(probabilities, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    if p.ndim != 2 or y.shape != (len(p),) or len(p) == 0:
        raise ValueError(f"probabilities {p.shape} and labels {y.shape} do not pair up")
    return p, y


def reliability(probabilities: np.ndarray, labels: np.ndarray, bins: int = BINS) -> list[dict]:
    """Per confidence bin (lo, hi]: images, accuracy, mean confidence (empty bins included)."""
    p, y = _check(probabilities, labels)
    confidence = p.max(axis=1)
    correct = p.argmax(axis=1) == y
    edges = np.linspace(0.0, 1.0, bins + 1)
    # bin b holds lo < c <= hi; the first bin also takes c == 0 (impossible for a softmax)
    which = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, bins - 1)
    rows = []
    for b in range(bins):
        inside = which == b
        n = int(inside.sum())
        rows.append(
            {
                "low": float(edges[b]),
                "high": float(edges[b + 1]),
                "images": n,
                "accuracy": float(correct[inside].mean()) if n else None,
                "confidence": float(confidence[inside].mean()) if n else None,
            }
        )
    return rows


def calibration_errors(rows: list[dict]) -> tuple[float, float]:
    """(ECE, MCE) from the bins of `reliability`."""
    total = sum(r["images"] for r in rows)
    gaps = [(r["images"], abs(r["accuracy"] - r["confidence"])) for r in rows if r["images"]]
    ece = sum(n * gap for n, gap in gaps) / total
    return float(ece), float(max(gap for _, gap in gaps))


def scores(probabilities: np.ndarray, labels: np.ndarray, bins: int = BINS) -> dict[str, Any]:
    """Accuracy, ECE, MCE, Brier score and NLL of probabilities against labels."""
    p, y = _check(probabilities, labels)
    rows = reliability(p, y, bins)
    ece, mce = calibration_errors(rows)
    onehot = np.eye(p.shape[1])[y]
    return {
        "images": len(y),
        "accuracy": float(np.mean(p.argmax(axis=1) == y)),
        "ece": ece,
        "mce": mce,
        "brier": float(np.mean(np.sum((p - onehot) ** 2, axis=1))),
        "nll": nll(p, y),
        "bins": rows,
    }


def nll(probabilities: np.ndarray, labels: np.ndarray) -> float:
    p, y = _check(probabilities, labels)
    return float(-np.mean(np.log(np.maximum(p[np.arange(len(y)), y], _TINY))))


def with_temperature(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(log p / T): the probabilities of logits divided by T (same argmax)."""
    logits = np.log(np.maximum(np.asarray(probabilities, dtype=np.float64), _TINY)) / temperature
    logits -= logits.max(axis=1, keepdims=True)
    e = np.exp(logits)
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


def fit_temperature(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """The T in T_RANGE minimising the NLL of `with_temperature(probabilities, T)` (a bounded
    one-dimensional search over log T). Never worse than T = 1 on these images: if the search
    lands worse (it cannot by much, but floating point is floating point), T = 1 is kept."""
    from scipy.optimize import minimize_scalar

    p, y = _check(probabilities, labels)

    def loss(log_t: float) -> float:
        return nll(with_temperature(p, float(np.exp(log_t))), y)

    found = minimize_scalar(
        loss, bounds=tuple(np.log(T_RANGE)), method="bounded", options={"xatol": 1e-4}
    )
    t = float(np.exp(found.x))
    return t if loss(np.log(t)) <= loss(0.0) else 1.0


def read_temperature(run_dir: str | Path, warn=None) -> float | None:
    """The temperature `kcnn calibrate` fitted for a run, or None: uncalibrated, or a damaged
    temperature.json (unreadable; a temperature that is missing, not a number, NaN, zero,
    negative or outside the range calibrate searches). A damaged one is said, never used and
    never silently ignored: `warn(message)` gets one line saying so (the model's own
    probabilities are used instead, as for a run never calibrated)."""
    from kcnn.runs.records import Damaged
    from kcnn.runs.run import RunFolder

    name = f"{inspected.INSPECT}/{inspected.TEMPERATURE_JSON}"
    try:
        t = RunFolder(run_dir).json(name).get("temperature")
        problem = (
            None
            if isinstance(t, int | float)
            and not isinstance(t, bool)
            and T_RANGE[0] <= t <= T_RANGE[1]
            else f"its temperature {str(t)[:40]} is not a number from {T_RANGE[0]:g} to {T_RANGE[1]:g}"
        )
    except FileNotFoundError:
        return None
    except Damaged as e:
        problem = e.reason
    if problem is None:
        return float(t)
    if warn is not None:
        warn(
            f"{Path(run_dir) / name} is damaged ({problem}): the model's own probabilities are "
            f"used; fit it again with `kcnn calibrate {run_dir}`"
        )
    return None


def calibrate(
    loaded: LoadedRun, fit: bool, limit: int | None = None, progress=say
) -> dict[str, Any]:
    """Calibration of a run on its test split; `fit` first fits the temperature on its validation
    split (else a temperature fitted before is applied, if any). Writes RUN/inspect/
    calibration.json and reliability.png (temperature.json when fitting); returns the record."""
    out = inspected.make_folder(loaded.info.folder)
    progress("calibration: predicting the test split")
    test = loaded.labelled("test", limit)
    p_test = loaded.predict(test.images)
    record: dict[str, Any] = {"split": "test", "bins": BINS, "before": scores(p_test, test.labels)}
    if fit:
        progress("calibration: fitting the temperature on the validation split")
        val = loaded.labelled("val", limit)
        if len(val) < 2:
            raise KcnnError("the run's validation split has fewer than 2 images: nothing to fit on")
        p_val = loaded.predict(val.images)
        temperature = fit_temperature(p_val, val.labels)
        fitted = {
            "temperature": temperature,
            "method": "temperature scaling (Guo et al. 2017), fitted on the validation split",
            "validation_images": len(val),
            "validation_nll_before": nll(p_val, val.labels),
            "validation_nll_after": nll(with_temperature(p_val, temperature), val.labels),
        }
    else:
        temperature = read_temperature(loaded.info.folder, warn)
        fitted = None
    if temperature is not None:
        after = scores(with_temperature(p_test, temperature), test.labels)
        record.update({"temperature": temperature, "after": after})
    if fitted is not None:
        b, a = record["before"], record["after"]
        fitted.update(
            {
                "test_ece_before": b["ece"],
                "test_ece_after": a["ece"],
                "test_nll_before": b["nll"],
                "test_nll_after": a["nll"],
            }
        )
        write_json(out / inspected.TEMPERATURE_JSON, fitted)
        record["fit"] = fitted
    inspected.save_picture(out / inspected.RELIABILITY_PNG, lambda path: _diagram(record, path))
    record["tta"] = loaded.tta  # test-time augmentation of its predictions
    write_json(out / inspected.CALIBRATION_JSON, record)
    return record


def _diagram(record: dict[str, Any], path: Path) -> None:
    """Reliability diagram: accuracy per confidence bin against the diagonal, before (and after)
    temperature scaling, with the share of images per bin below."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("model", record["before"])]
    if "after" in record:
        panels.append((f"temperature {record['temperature']:.2f}", record["after"]))
    fig, axes = plt.subplots(
        2,
        len(panels),
        figsize=(4 * len(panels), 5),
        squeeze=False,
        gridspec_kw={"height_ratios": [3, 1]},
    )
    for col, (name, s) in enumerate(panels):
        top, bottom = axes[0, col], axes[1, col]
        rows = s["bins"]
        width = rows[0]["high"] - rows[0]["low"]
        centres = [r["low"] + width / 2 for r in rows]
        acc = [r["accuracy"] or 0.0 for r in rows]
        conf = [r["confidence"] or 0.0 for r in rows]
        top.bar(centres, acc, width=width, edgecolor="k", color="#4c72b0", label="accuracy")
        top.bar(
            centres,
            [c - a if r["images"] else 0 for c, a, r in zip(conf, acc, rows, strict=True)],
            bottom=acc,
            width=width,
            color="#dd8452",
            alpha=0.5,
            label="gap to confidence",
        )
        top.plot([0, 1], [0, 1], "k--", lw=1)
        top.set(xlim=(0, 1), ylim=(0, 1), ylabel="accuracy")
        top.set_title(f"{name}: ECE {s['ece']:.3f}, NLL {s['nll']:.3f}", fontsize=9)
        top.legend(fontsize=7, loc="upper left")
        total = max(s["images"], 1)
        bottom.bar(centres, [r["images"] / total for r in rows], width=width, color="#999")
        bottom.set(xlim=(0, 1), xlabel="confidence", ylabel="share")
    fig.suptitle(f"reliability on {record['before']['images']} test images", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90, format="png")
    plt.close(fig)


def lines(c: dict[str, Any]) -> list[str]:
    """What a calibration record says, in a few lines (`kcnn calibrate`, `kcnn inspect`,
    `--calibrate` after training)."""
    b = c["before"]
    lines = [
        f"calibration on {b['images']} test images: ECE {b['ece']:.4f}  MCE {b['mce']:.4f}  "
        f"Brier {b['brier']:.4f}  NLL {b['nll']:.4f}"
    ]
    if "after" in c:
        a = c["after"]
        lines.append(
            f"  with temperature {c['temperature']:.3f}: ECE {a['ece']:.4f}  MCE {a['mce']:.4f}  "
            f"Brier {a['brier']:.4f}  NLL {a['nll']:.4f}"
        )
    return lines
