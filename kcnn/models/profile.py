"""`kcnn summary --profile`: where one forward pass spends its time, layer by layer, in times that
add up to the pass.

Timing each layer in a call of its own measures mostly the call: an empty call already costs a
few tenths of a millisecond, so a Flatten that computes nothing got 8 % of a LeNet-5 and the
layers added up to five times the whole pass. Here every layer is timed inside the network
instead. Prefix k is one traced call (a `tf.function`) of the model's first k layers, run as the
whole model runs them; prefix 0 is the same call around no layer (the input handed back), which
is what a call costs by itself (dispatch, arguments, the wait for the result). Layer k's time is
prefix k's median minus prefix k−1's; the call's cost is prefix 0's. The differences telescope,
so the call's cost and the layers' times add up to the last prefix, the whole pass, exactly; a
share is a share of that pass.

Each round calls every prefix once, in an order shuffled afresh each round, so a load that comes
and goes falls on all of them alike. A layer's 95 % interval comes from resampling the rounds:
a layer whose interval straddles 0 costs less than this machine can tell apart (a Flatten).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np

# Keras and TensorFlow are imported where a model is timed, not here: README's table of a kept
# report (`python -m kcnn.models.profile REPORT.json`) is drawn without loading them.

BUDGET_SECONDS = 3.0  # rounds go on until this much time has passed ...
ROUNDS = (15, 200)  # ... but at least 15 and at most 200 rounds
RESAMPLES = 1000  # bootstrap resamples of the rounds, for each layer's interval


def top_layers(model) -> list:
    """The model's top-level layers in the order a forward pass runs them (the rows of
    `kcnn summary`): a subclassed form's stages, the others' layers without the input."""
    import keras

    from kcnn.models import forms

    layers = model.stages if isinstance(model, forms.DescribedCNN) else model.layers
    return [la for la in layers if not isinstance(la, keras.layers.InputLayer)]


def prefixes(model) -> list[Callable]:
    """For k = 0..L, a function computing the model's first k layers on an input batch, as the
    model computes them; prefix L is the model. Its result: the tensors later layers still need
    (a list). A chain form (Sequential, subclassed) runs its layers in turn; the Functional form
    is cut into sub-models of its own graph, whose branches stay as they are."""
    import keras

    layers = top_layers(model)
    if not _is_graph(model):

        def chain(k):
            def run(x):
                for layer in layers[:k]:
                    x = layer(x, training=False)
                return [x]

            return run

        return [chain(k) for k in range(len(layers) + 1)]
    inputs = model.inputs[0] if len(model.inputs) == 1 else model.inputs
    made = [lambda x: [x]]
    for k in range(1, len(layers) + 1):
        needed = _live(model, layers, k)
        sub = keras.Model(inputs, needed)
        made.append(lambda x, sub=sub: keras.tree.flatten(sub(x, training=False)))
    return made


def _is_graph(model) -> bool:
    import keras

    from kcnn.models import forms

    return not isinstance(model, forms.DescribedCNN | keras.Sequential)


def _live(model, layers: list, k: int) -> list:
    """The outputs of the first k layers that a later layer or the model's output still reads."""
    import keras

    later = {id(t) for la in layers[k:] for t in keras.tree.flatten(la.input)}
    final = {id(t) for t in keras.tree.flatten(model.outputs)}
    return [
        t
        for la in layers[:k]
        for t in keras.tree.flatten(la.output)
        if id(t) in later or id(t) in final
    ]


def measure(model, input_shape, batch: int = 1, budget: float | None = None, seed: int = 0):
    """Seconds of every prefix and of the model called as itself (the last column), one row per
    round: rounds × (L + 2). Each is traced and warmed before the first round."""
    import tensorflow as tf

    budget = BUDGET_SECONDS if budget is None else budget
    rng = np.random.default_rng(seed)
    x = tf.constant(rng.random((batch, *input_shape), dtype=np.float32))
    calls = [*prefixes(model), lambda t: [model(t, training=False)]]
    # each call hands back one number per result: a result must be waited for, and copying a
    # whole feature map back would be timed as the layer's; a slice costs a few microseconds,
    # much the same in every prefix, so it falls almost wholly in the call's own cost
    timed = [tf.function(lambda t, f=f: [tf.reshape(r, [-1])[:1] for r in f(t)]) for f in calls]
    for f in timed:
        f(x), f(x)  # trace, then warm the caches
    rows: list[list[float]] = []
    started = time.perf_counter()
    least, most = ROUNDS
    while len(rows) < least or (len(rows) < most and time.perf_counter() - started < budget):
        row = [0.0] * len(timed)
        for i in rng.permutation(len(timed)):
            t = time.perf_counter()
            for r in timed[i](x):
                np.asarray(r)
            row[i] = time.perf_counter() - t
        rows.append(row)
    return np.asarray(rows)


def attribute(samples: np.ndarray, names: list[str], seed: int = 0) -> dict[str, Any]:
    """From `measure`'s rounds × (L + 2) seconds: the call's cost, each layer's time (with a
    95 % interval from resampling the rounds) and share of the whole pass, and the pass.

    Pure arithmetic on the samples: call + Σ layers == pass (the differences telescope)."""
    prefix, itself = samples[:, :-1], samples[:, -1]
    if prefix.shape[1] != len(names) + 1:
        raise ValueError(f"{prefix.shape[1]} prefixes for {len(names)} layers")
    medians = np.median(prefix, axis=0)
    times = np.diff(medians)
    whole = float(medians[-1])
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(samples), size=(RESAMPLES, len(samples)))
    # the same resampled rounds for every prefix (a round's prefixes ran side by side), one
    # prefix at a time (RESAMPLES × rounds numbers, not × prefixes as well)
    resampled = np.diff(
        np.stack([np.median(column[picks], axis=1) for column in prefix.T], axis=1), axis=1
    )  # RESAMPLES × L
    low, high = np.percentile(resampled, [2.5, 97.5], axis=0)
    layers = {
        name: {
            "seconds": float(t),
            "interval": [float(lo), float(hi)],
            "share": float(t / whole) if whole > 0 else None,
        }
        for name, t, lo, hi in zip(names, times, low, high, strict=True)
    }
    return {
        "rounds": len(samples),
        "call_seconds": float(medians[0]),
        "pass_seconds": whole,
        "model_seconds": float(np.median(itself)),
        "layers": layers,
    }


def profile(model, input_shape, batch: int = 1, budget: float | None = None) -> dict:
    """`measure` then `attribute`: the profile of one forward pass of `batch` images, with the
    machine it was measured on (cores, 1-minute load average before and after, TensorFlow)."""
    import tensorflow as tf

    names = [layer.name for layer in top_layers(model)]
    before = _load()
    found = attribute(measure(model, tuple(input_shape), batch, budget), names)
    machine = {
        "cores": os.cpu_count(),
        "load_before": before,
        "load_after": _load(),
        "tensorflow": tf.__version__,
    }
    return {"batch": batch, "method": METHOD, **found, "machine": machine}


def _load() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):  # not on this system
        return None


METHOD = (
    "each layer timed inside the network: the pass up to and including it minus the pass up to "
    "the layer before (medians of shuffled rounds, each prefix one traced call); the call's own "
    "cost is the call around no layer; call + layers = the whole pass"
)


def profile_table(report: dict) -> str:
    """A `kcnn summary --profile --json` report's times as a markdown table with its caption
    (README's profile figure: `python -m kcnn.models.profile REPORT.json`)."""
    from kcnn.models import geometry

    t, rows = report["profile"], report["layers"]

    def ms(seconds: float) -> str:
        return f"{seconds * 1e3:.3f}".replace("-0.000", "0.000")

    lines = [
        "| layer | type | mult-adds | time (ms) | 95% interval (ms) | share of the pass |",
        "|---|---|---:|---:|---:|---:|",
        f"| the call itself | (no layer) | 0 | {ms(t['call_seconds'])} | | "
        f"{t['call_seconds'] / t['pass_seconds']:.1%} |",
    ]
    for r in rows:
        low, high = r["interval"]
        lines.append(
            f"| {r['name']} | {r['type']} | {geometry.human(r['macs'])} | {ms(r['seconds'])} | "
            f"{ms(low)} to {ms(high)} | {r['share']:.1%} |".replace("-0.0%", "0.0%")
        )
    lines.append(
        f"| **one forward pass** | | {geometry.human(report['total_macs'])} | "
        f"**{ms(t['pass_seconds'])}** | | 100% |"
    )
    m = t.get("machine") or {}
    caption = (
        f"{report['arch']} ({report['api']}), input {'×'.join(map(str, report['input_shape']))}, "
        f"batch of {t['batch']}: medians of {t['rounds']} shuffled rounds on {m.get('cores', '?')} "
        f"CPU cores (1-minute load {m.get('load_before', '?')} before, {m.get('load_after', '?')} "
        f"after; TensorFlow {m.get('tensorflow', '?')}); the model called as itself: "
        f"{ms(t['model_seconds'])} ms."
    )
    return "\n".join(lines) + "\n\n" + caption


def main(argv: list[str] | None = None) -> None:
    """`python -m kcnn.models.profile REPORT.json`: the profile table of a kept report."""
    import json
    import sys
    from pathlib import Path

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        raise SystemExit(
            "usage: python -m kcnn.models.profile REPORT.json (summary --profile --json)"
        )
    report = json.loads(Path(args[0]).read_text(encoding="utf-8"))
    if "profile" not in report:
        raise SystemExit(f"{args[0]}: no profile (made without --profile)")
    print(profile_table(report))


if __name__ == "__main__":
    main()
