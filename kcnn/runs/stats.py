"""Seed statistics: what a metric measured over several seeds says, and whether two recipes differ.

One run is one draw of the seed (split, initialisation, shuffling, augmentation). Over a group of
seeds this module gives the mean, the standard deviation (ddof=1) and a 95% confidence interval
(Student's t); between groups, the difference of the means with its interval, a test — paired
(`scipy.stats.ttest_rel`) when the two groups ran the same seeds on the same split, Welch's
(`scipy.stats.ttest_ind(equal_var=False)`) otherwise —, an effect size (Cohen's d_z paired, d with
the pooled deviation otherwise), Holm's correction when more than one pair is tested, and one plain
sentence. No TensorFlow; NumPy and SciPy only.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

LEVEL = 0.95  # every interval here is a 95% interval
ALPHA = 0.05  # and a difference is reported when its (corrected) p is below this
ROUNDING = 1e-12  # differences of metrics within this are float rounding, not a difference

# Metrics where a lower value is the better one; the rest (accuracies, F1) are better higher.
LOWER_IS_BETTER = ("loss", "seconds", "time")


def lower_is_better(metric: str) -> bool:
    return any(word in metric for word in LOWER_IS_BETTER)


def _values(values: Sequence[float], what: str = "values") -> np.ndarray:
    array = np.asarray([float(v) for v in values], dtype=float)
    if array.size == 0:
        raise ValueError(f"no {what} to summarise")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{what} hold a NaN or infinite value: {list(values)}")
    return array


@dataclass(frozen=True)
class Summary:
    """One metric over the seeds of one group. With one seed there is no spread: sd and the
    interval are None."""

    n: int
    mean: float
    sd: float | None
    ci_low: float | None
    ci_high: float | None

    @property
    def half_width(self) -> float | None:
        return None if self.ci_high is None else (self.ci_high - self.ci_low) / 2

    def text(self, scale: float = 1.0, digits: int = 4) -> str:
        """`0.9512 ± 0.0071 (n=5)`: the mean and the half-width of its 95% interval."""
        if self.half_width is None:
            return f"{self.mean * scale:.{digits}f} (n=1)"
        return f"{self.mean * scale:.{digits}f} ± {self.half_width * scale:.{digits}f} (n={self.n})"

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "half_width": self.half_width}


def summarize(values: Sequence[float]) -> Summary:
    """Mean, standard deviation (ddof=1) and the 95% Student-t interval of the mean."""
    from scipy import stats

    x = _values(values)
    mean = float(np.mean(x))
    if x.size < 2:
        return Summary(1, mean, None, None, None)
    sd = float(np.std(x, ddof=1))
    if sd == 0.0:
        return Summary(int(x.size), mean, 0.0, mean, mean)
    low, high = stats.t.interval(LEVEL, x.size - 1, loc=mean, scale=sd / math.sqrt(x.size))
    return Summary(int(x.size), mean, sd, float(low), float(high))


@dataclass(frozen=True)
class Difference:
    """Group b against group a on one metric: b's mean minus a's, with its interval and test."""

    a: str
    b: str
    metric: str
    n_a: int
    n_b: int
    difference: float | None  # mean(b) - mean(a)
    ci_low: float | None
    ci_high: float | None
    test: str  # "paired t", "Welch t", or "none" (too few seeds)
    statistic: float | None
    df: float | None
    p: float | None
    effect: str  # "d_z" (paired) or "d" (Cohen's, pooled deviation)
    effect_size: float | None
    p_holm: float | None = None  # Holm-corrected p (None when only one pair is tested)
    family: str | None = None  # what the correction was over: "the 3 pairs of groups on ..."

    @property
    def half_width(self) -> float | None:
        return None if self.ci_high is None else (self.ci_high - self.ci_low) / 2

    @property
    def significant(self) -> bool:
        p = self.p_holm if self.p_holm is not None else self.p
        return p is not None and p < ALPHA

    def sentence(self) -> str:
        return sentence(self)

    def as_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "half_width": self.half_width,
            "significant": self.significant,
            "sentence": self.sentence(),
        }


def pairs_up(a: Mapping[Hashable, float], b: Mapping[Hashable, float]) -> bool:
    """Whether two groups' runs pair: the same keys (seed and data split), at least two of them."""
    return len(a) >= 2 and set(a) == set(b)


def difference(
    a: Mapping[Hashable, float] | Sequence[float],
    b: Mapping[Hashable, float] | Sequence[float],
    metric: str = "test_accuracy",
    names: tuple[str, str] = ("a", "b"),
) -> Difference:
    """b against a. Mappings key each run by what pairs it (its seed and data fingerprint): when
    both groups hold the same keys the test is paired, else Welch's. Sequences never pair."""
    paired = isinstance(a, Mapping) and isinstance(b, Mapping) and pairs_up(a, b)
    if paired:
        keys = sorted(a, key=repr)
        xa = _values([a[k] for k in keys], names[0])
        xb = _values([b[k] for k in keys], names[1])
    else:
        xa = _values(list(a.values()) if isinstance(a, Mapping) else a, names[0])
        xb = _values(list(b.values()) if isinstance(b, Mapping) else b, names[1])
    base = {"a": names[0], "b": names[1], "metric": metric, "n_a": xa.size, "n_b": xb.size}
    base["difference"] = float(np.mean(xb) - np.mean(xa))
    return _paired(xa, xb, base) if paired else _unpaired(xa, xb, base)


def _paired(xa: np.ndarray, xb: np.ndarray, base: dict) -> Difference:
    """The paired t test of b − a, run by run."""
    from scipy import stats

    d, diff = xb - xa, base["difference"]
    # no spread in the differences (to float rounding: 0.96 - 0.95 and 0.97 - 0.96 differ in
    # their last bits): t is 0/0 or x/0, and SciPy would warn of catastrophic cancellation
    if np.all(np.abs(d - d[0]) <= ROUNDING):
        none = abs(d[0]) <= ROUNDING
        return Difference(
            **base,
            ci_low=diff,
            ci_high=diff,
            test="paired t",
            statistic=0.0 if none else math.copysign(math.inf, d[0]),
            df=float(d.size - 1),
            p=1.0 if none else 0.0,
            effect="d_z",
            effect_size=0.0 if none else None,
        )
    result = stats.ttest_rel(xb, xa)
    ci = result.confidence_interval(LEVEL)
    return Difference(
        **base,
        ci_low=float(ci.low),
        ci_high=float(ci.high),
        test="paired t",
        statistic=float(result.statistic),
        df=float(result.df),
        p=float(result.pvalue),
        effect="d_z",
        effect_size=float(np.mean(d) / np.std(d, ddof=1)),
    )


def _unpaired(xa: np.ndarray, xb: np.ndarray, base: dict) -> Difference:
    """Welch's t test of b against a (none with fewer than two runs a side); the effect size is
    Cohen's d on the pooled standard deviation."""
    from scipy import stats

    diff = base["difference"]
    if xa.size < 2 or xb.size < 2:
        return Difference(
            **base, ci_low=None, ci_high=None, test="none", statistic=None, df=None, p=None,
            effect="d", effect_size=None,
        )  # fmt: skip
    pooled = math.sqrt(
        ((xa.size - 1) * np.var(xa, ddof=1) + (xb.size - 1) * np.var(xb, ddof=1))
        / (xa.size + xb.size - 2)
    )
    if pooled == 0.0:  # every run of both groups gave the same value within its group
        return Difference(
            **base,
            ci_low=diff,
            ci_high=diff,
            test="Welch t",
            statistic=0.0 if diff == 0 else math.copysign(math.inf, diff),
            df=float(xa.size + xb.size - 2),
            p=1.0 if diff == 0 else 0.0,
            effect="d",
            effect_size=0.0 if diff == 0 else None,
        )
    result = stats.ttest_ind(xb, xa, equal_var=False)
    ci = result.confidence_interval(LEVEL)
    return Difference(
        **base,
        ci_low=float(ci.low),
        ci_high=float(ci.high),
        test="Welch t",
        statistic=float(result.statistic),
        df=float(result.df),
        p=float(result.pvalue),
        effect="d",
        effect_size=diff / pooled,
    )


def holm(pvalues: Sequence[float | None]) -> list[float | None]:
    """Holm's step-down correction of several p-values (None stays None): the k-th smallest of m
    is multiplied by m - k + 1, kept monotone, capped at 1."""
    tested = [(p, i) for i, p in enumerate(pvalues) if p is not None]
    m = len(tested)
    adjusted: list[float | None] = [None] * len(pvalues)
    running = 0.0
    for rank, (p, i) in enumerate(sorted(tested)):
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[i] = running
    return adjusted


def compare_groups(
    groups: Mapping[str, Mapping[Hashable, float]], metric: str = "test_accuracy"
) -> list[Difference]:
    """Every pair of groups (in the order given: later against earlier), Holm-corrected when more
    than one pair is tested: the family is this metric's pairs, and each result names it."""
    names = list(groups)
    found = [
        difference(groups[a], groups[b], metric, (a, b))
        for i, a in enumerate(names)
        for b in names[i + 1 :]
    ]
    corrected = holm([d.p for d in found]) if len(found) > 1 else [None for d in found]
    family = f"the {len(found)} pairs of groups compared in {metric}" if len(found) > 1 else None
    return [
        Difference(**{**asdict(d), "p_holm": p, "family": family if p is not None else None})
        for d, p in zip(found, corrected, strict=True)
    ]


def _points(metric: str, value: float) -> str:
    """A difference in the metric's own words: accuracies in percentage points."""
    if "accuracy" in metric or metric.endswith("f1"):
        return f"{value * 100:.1f}"
    return f"{value:.3g}"


def _unit(metric: str) -> str:
    return " points" if "accuracy" in metric or metric.endswith("f1") else ""


def _p_text(p: float) -> str:
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def sentence(d: Difference) -> str:
    """One plain sentence: "B is better than A by 1.2 ± 0.4 points (p = 0.003, 5 seeds)" or
    "no evidence of a difference between A and B at 5 seeds"."""
    seeds = f"{d.n_a} seeds" if d.n_a == d.n_b else f"{d.n_a} and {d.n_b} seeds"
    if d.test == "none":
        return (
            f"{d.b} vs {d.a} in {d.metric}: {seeds} cannot tell a difference from seed noise; "
            "run 2 or more seeds of each (--seeds 5)"
        )
    p = d.p_holm if d.p_holm is not None else d.p
    corrected = ""
    if d.p_holm is not None:
        corrected = f", Holm-corrected over {d.family}" if d.family else ", Holm-corrected"
    if not d.significant:
        return (
            f"no evidence of a difference between {d.a} and {d.b} in {d.metric} at {seeds} "
            f"({_p_text(p)}{corrected})"
        )
    better, worse = (d.b, d.a) if (d.difference > 0) != lower_is_better(d.metric) else (d.a, d.b)
    size = _points(d.metric, abs(d.difference))
    half = _points(d.metric, d.half_width or 0.0)
    return (
        f"{better} is better than {worse} in {d.metric} by {size} ± {half}{_unit(d.metric)} "
        f"({_p_text(p)}{corrected}, {seeds})"
    )
