"""The measuring protocol every comparison in `make bench` follows, made to survive a noisy,
shared machine:

- every contestant runs once in each of at least 3 repeats, in a new shuffled order in each
  repeat (seeded, so a run can be reproduced), so no contestant always runs first, after a
  warm-up, or in the same busy moment;
- a ratio is taken per repeat, between two contestants of the same repeat (paired): a busy
  minute slows both sides of a pair, so the ratio moves less than either figure;
- what is reported is the median of those ratios and their range (lowest to highest), never a
  ratio of medians.
"""

from __future__ import annotations

import random
import statistics
from collections.abc import Callable

MIN_REPEATS = 3


def shuffled_repeats(
    contestants: dict[str, Callable[[], dict]],
    repeats: int,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> list[dict[str, dict]]:
    """Run every contestant once per repeat, in a shuffled order each time; one dict of results
    (contestant -> its result, plus `order`) per repeat."""
    if repeats < MIN_REPEATS:
        raise ValueError(f"at least {MIN_REPEATS} repeats are needed, got {repeats}")
    rng = random.Random(seed)
    runs = []
    for i in range(repeats):
        order = list(contestants)
        rng.shuffle(order)
        results = {name: contestants[name]() for name in order}
        runs.append({"order": order, **results})
        if progress:
            progress(f"repeat {i + 1}/{repeats} ({', '.join(order)})")
    return runs


def spread(values: list[float]) -> dict:
    """Median and range of the values (ratios of one repeat each)."""
    values = [v for v in values if v is not None]
    if not values:
        return {"median": None, "low": None, "high": None, "values": []}
    return {
        "median": statistics.median(values),
        "low": min(values),
        "high": max(values),
        "values": values,
    }


def paired_ratios(
    runs: list[dict[str, dict]], subject: str, baselines: list[str], key: str
) -> dict[str, dict]:
    """For each baseline, `subject[key] / baseline[key]` per repeat, summarised by `spread`.
    A baseline that failed in a repeat (no figure) gives no ratio for it."""
    out = {}
    for b in baselines:
        ratios = []
        for r in runs:
            a, c = r.get(subject, {}).get(key), r.get(b, {}).get(key)
            ratios.append(a / c if a and c else None)
        out[b] = spread(ratios)
    return out


def best_of(runs: list[dict[str, dict]], names: list[str], key: str) -> list[dict]:
    """Per repeat, the result of whichever of `names` had the highest `key` in that repeat."""
    best = []
    for r in runs:
        present = [r[n] for n in names if r.get(n, {}).get(key)]
        best.append(max(present, key=lambda x: x[key]) if present else {})
    return best
