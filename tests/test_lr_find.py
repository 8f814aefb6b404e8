"""`kcnn lr-find`'s suggestions are fastai's: `valley`, `steep` and `minimum` as
fastai.callback.schedule computes them, on the part of the curve fastai's `Learner.lr_find`
hands them (`recorder.lrs[num_it//10:-5]`, the smoothed losses alike)."""

from __future__ import annotations

import numpy as np
import pytest

from kcnn.use.lr_find import rates, suggest


def _fastai(lrs, losses, num_it):
    """fastai's lr_find suggestions, written out from fastai/callback/schedule.py."""
    lrs, losses = np.asarray(lrs)[num_it // 10 : -5], np.asarray(losses)[num_it // 10 : -5]
    # valley
    n = len(losses)
    max_start, max_end = 0, 0
    lds = [1] * n
    for i in range(1, n):
        for j in range(0, i):
            if (losses[i] < losses[j]) and (lds[i] < lds[j] + 1):
                lds[i] = lds[j] + 1
            if lds[max_end] < lds[i]:
                max_end = i
                max_start = max_end - lds[max_end]
    sections = (max_end - max_start) / 3
    valley = float(lrs[max_start + int(sections) + int(sections / 2)])
    # steep
    grads = (losses[1:] - losses[:-1]) / (np.log(lrs[1:]) - np.log(lrs[:-1]))
    steep = float(lrs[grads.argmin()])
    # minimum
    minimum = float(lrs[losses.argmin()]) / 10
    return {"valley": valley, "steep": steep, "minimum": minimum}


def test_suggestions_by_hand():
    r = [10.0 ** (i - 8) for i in range(12)]  # 1e-8 ... 1e3, 12 planned steps
    smoothed = [9.0, 3.0, 2.9, 2.5, 1.5, 0.9, 0.8, 5, 6, 7, 8, 9]
    s = suggest({"rates": r, "smoothed": smoothed}, planned=12)
    # fastai reads steps 1..6 (12 // 10 = 1 dropped in front, 5 at the end): 3.0 ... 0.8
    # steep: forward differences -0.1 -0.4 -1.0 -0.6 -0.1, the steepest step 2.5 -> 1.5 starts
    # at 1e-5 (central differences would say 1e-4; the dropped 9 -> 3 would say 1e-8)
    assert s["steep"] == pytest.approx(1e-5)
    # minimum: 0.8 at 1e-2, ÷ 10
    assert s["minimum"] == pytest.approx(1e-3)
    # valley: all six fall, the longest run ends at the last; -1 + int(6/3) + int(6/6) = 2
    assert s["valley"] == pytest.approx(1e-5)


def _curve(planned: int, done: int, seed: int):
    """A realistic smoothed range-test curve: flat, a fall, a floor, then divergence."""
    r = rates(1e-7, 10.0, planned)[:done]
    x = np.log10(r)
    rng = np.random.default_rng(seed)
    loss = 2.3 - 1.6 / (1 + np.exp(-2.5 * (x + 3.5))) + 0.8 * np.exp(3 * (x + 0.5))
    raw = loss + rng.normal(0, 0.05, done)
    smoothed, average = [], 0.0
    for i, v in enumerate(raw):
        average = 0.98 * average + 0.02 * v
        smoothed.append(average / (1 - 0.98 ** (i + 1)))
    return {"rates": list(r), "smoothed": smoothed}


@pytest.mark.parametrize(
    "planned, done, seed", [(100, 100, 0), (100, 83, 1), (300, 240, 2), (37, 37, 3)]
)
def test_suggestions_are_fastais_on_fixed_curves(planned, done, seed):
    curve = _curve(planned, done, seed)
    wanted = _fastai(curve["rates"], curve["smoothed"], planned)
    assert suggest(curve, planned) == wanted


def test_too_short_a_curve_suggests_nothing():
    assert suggest({"rates": [1e-3] * 5, "smoothed": [1.0] * 5}, planned=5) == {
        "valley": None,
        "steep": None,
        "minimum": None,
    }
    one = suggest({"rates": [1e-4, 1e-3, 1e-2, 1e-1, 1, 10], "smoothed": [1.0] * 6}, planned=6)
    assert one["steep"] is None and one["minimum"] == pytest.approx(1e-5)
