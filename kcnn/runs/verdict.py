"""Single runs: how sure one run's test accuracy is, and whether two runs really differ.

One run's test accuracy is k right of n test images: its 95% interval is Wilson's score
interval, which stays inside 0..1 and is sound at 0 or n right (the normal approximation is not).

Two runs tested on the same images are compared image by image. Only the images one run got
right and the other wrong (the discordant pairs) say anything about which is better: McNemar's
exact test asks whether they split evenly (a two-sided binomial test at p = ½), and a paired
bootstrap of the test images (`RESAMPLES` resamples, seed `BOOTSTRAP_SEED`) gives the interval of
the accuracy difference. This is far more sensitive than comparing two accuracies: two models
that each get 95% right mostly get the same images right.

Two runs tested on different images cannot be paired; they fall back to the unpaired comparison
of two proportions: the pooled two-proportion z-test, with Newcombe's hybrid score interval of
the difference (built from the two Wilson intervals).

Either way the verdict is about these two trained models on images like the test set's, not
about their recipes: seed to seed a recipe's accuracy moves too (`--seeds` measures that).
NumPy and SciPy only; no TensorFlow.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np

from kcnn.runs.stats import ALPHA, LEVEL, _p_text

RESAMPLES = 10_000  # paired bootstrap resamples of the test images
BOOTSTRAP_SEED = 0  # the bootstrap's own generator: the same two runs give the same interval
PAIRED_TEST, UNPAIRED_TEST = "McNemar exact", "two-proportion z"
PAIRED_INTERVAL = f"paired bootstrap ({RESAMPLES:,} resamples, seed {BOOTSTRAP_SEED})"
UNPAIRED_INTERVAL = "Newcombe hybrid score"


def _z() -> float:
    from scipy import stats

    return float(stats.norm.isf((1 - LEVEL) / 2))


def _check_count(k: int, n: int) -> None:
    if isinstance(k, bool) or isinstance(n, bool) or int(k) != k or int(n) != n:
        raise ValueError(f"counts must be whole numbers, got {k!r} of {n!r}")
    if not 0 <= k <= n or n < 1:
        raise ValueError(f"{k} right of {n} images is not a count")


def wilson(k: int, n: int) -> tuple[float, float]:
    """The 95% Wilson score interval of a proportion of k successes in n trials."""
    _check_count(k, n)
    z = _z()
    p = k / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    # at 0 or n right the bound is exactly 0 or 1 (where rounding would leave 0.9999999999999999)
    low = 0.0 if k == 0 else max(0.0, centre - half)
    high = 1.0 if k == n else min(1.0, centre + half)
    return low, high


def right_of(accuracy: float, n: int) -> int | None:
    """How many of n test images an accuracy means, or None when it is no such count (a
    record that does not add up)."""
    if n < 1 or not 0 <= accuracy <= 1:
        return None
    k = round(accuracy * n)
    return k if abs(k - accuracy * n) < 1e-6 * max(n, 1) + 1e-9 else None


@dataclass(frozen=True)
class Interval:
    """A run's test accuracy with its 95% Wilson interval (k right of n)."""

    accuracy: float
    n: int
    ci_low: float
    ci_high: float

    def text(self) -> str:
        """`0.9512 (95% CI 0.9467–0.9554, n=10,000)`."""
        return f"{self.accuracy:.4f} (95% CI {self.ci_low:.4f}–{self.ci_high:.4f}, n={self.n:,})"

    def short(self) -> str:
        """`0.9512 [0.9467, 0.9554]`: for a table cell."""
        return f"{self.accuracy:.4f} [{self.ci_low:.4f}, {self.ci_high:.4f}]"

    def cell(self) -> str:
        """`0.9467–0.9554`: the interval alone, for a table's column beside the accuracy."""
        return f"{self.ci_low:.4f}–{self.ci_high:.4f}"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def accuracy_interval(accuracy: float | None, n: int | None) -> Interval | None:
    """The Wilson interval of an accuracy measured on n test images (None without both, or
    when they do not make a count)."""
    if accuracy is None or not isinstance(n, int) or isinstance(n, bool):
        return None
    k = right_of(float(accuracy), n)
    if k is None:
        return None
    low, high = wilson(k, n)
    return Interval(float(accuracy), n, low, high)


def mcnemar_exact(only_a: int, only_b: int) -> float:
    """McNemar's exact test: the two-sided binomial p of the discordant pairs splitting as
    unevenly as they did, were each equally likely to go either way. No discordant pair: 1."""
    from scipy import stats

    n = only_a + only_b
    if n == 0:
        return 1.0
    return float(min(1.0, 2 * stats.binom.cdf(min(only_a, only_b), n, 0.5)))


def paired_bootstrap(only_a: int, only_b: int, n: int) -> tuple[float, float]:
    """The 95% percentile interval of the accuracy difference (b − a) over `RESAMPLES`
    resamples of the n test images, with replacement, the two runs' answers kept together.

    A resample's difference counts only its discordant images, so drawing n images is drawing
    how many of each kind it holds: one multinomial draw per resample (the same distribution as
    resampling image indices, in O(RESAMPLES) instead of O(RESAMPLES × n))."""
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    kinds = np.array([only_a, only_b, n - only_a - only_b], dtype=float) / n
    drawn = rng.multinomial(n, kinds, size=RESAMPLES)
    differences = (drawn[:, 1] - drawn[:, 0]) / n
    low, high = np.percentile(differences, [100 * (1 - LEVEL) / 2, 100 * (1 + LEVEL) / 2])
    return float(low), float(high)


def two_proportion_z(k_a: int, n_a: int, k_b: int, n_b: int) -> tuple[float, float]:
    """The pooled two-proportion z-test of b's proportion against a's: (z, two-sided p)."""
    from scipy import stats

    pooled = (k_a + k_b) / (n_a + n_b)
    spread = math.sqrt(pooled * (1 - pooled) * (1 / n_a + 1 / n_b))
    difference = k_b / n_b - k_a / n_a
    if spread == 0.0:  # both all right or both all wrong: the same proportion
        return 0.0, 1.0
    z = difference / spread
    return z, float(2 * stats.norm.sf(abs(z)))


def newcombe(k_a: int, n_a: int, k_b: int, n_b: int) -> tuple[float, float]:
    """Newcombe's hybrid score interval (his method 10) of b's proportion minus a's."""
    p_a, p_b = k_a / n_a, k_b / n_b
    low_a, high_a = wilson(k_a, n_a)
    low_b, high_b = wilson(k_b, n_b)
    difference = p_b - p_a
    return (
        difference - math.sqrt((p_b - low_b) ** 2 + (high_a - p_a) ** 2),
        difference + math.sqrt((high_b - p_b) ** 2 + (p_a - low_a) ** 2),
    )


@dataclass(frozen=True)
class Verdict:
    """Run b against run a in test accuracy: paired image by image, or not."""

    a: str
    b: str
    paired: bool
    n_a: int  # test images of each
    n_b: int
    accuracy_a: float
    accuracy_b: float
    difference: float  # b − a
    ci_low: float
    ci_high: float
    interval: str  # how the interval was made
    test: str  # PAIRED_TEST or UNPAIRED_TEST
    p: float
    only_a: int | None = None  # paired: images only a got right
    only_b: int | None = None  # and only b
    statistic: float | None = None  # unpaired: z
    why_unpaired: str | None = None
    p_holm: float | None = None  # Holm-corrected p, within `family`
    family: str | None = None  # what the correction was over ("the 3 pairs of single runs")
    metric: str = "test_accuracy"

    @property
    def significant(self) -> bool:
        p = self.p_holm if self.p_holm is not None else self.p
        return p < ALPHA

    def sentence(self) -> str:
        return sentence(self)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "significant": self.significant, "sentence": self.sentence()}


def paired(correct_a, correct_b, names: tuple[str, str] = ("a", "b")) -> Verdict:
    """b against a from whether each got each test image right (the same images, in the same
    order): McNemar's exact test and the paired bootstrap interval."""
    a = np.asarray(correct_a, dtype=bool)
    b = np.asarray(correct_b, dtype=bool)
    if a.shape != b.shape or a.ndim != 1 or a.size == 0:
        raise ValueError(f"paired answers must be two equal, non-empty lists: {a.shape}, {b.shape}")
    n = int(a.size)
    only_a, only_b = int(np.sum(a & ~b)), int(np.sum(b & ~a))
    low, high = paired_bootstrap(only_a, only_b, n)
    return Verdict(
        a=names[0],
        b=names[1],
        paired=True,
        n_a=n,
        n_b=n,
        accuracy_a=float(a.mean()),
        accuracy_b=float(b.mean()),
        difference=(only_b - only_a) / n,
        ci_low=low,
        ci_high=high,
        interval=PAIRED_INTERVAL,
        test=PAIRED_TEST,
        p=mcnemar_exact(only_a, only_b),
        only_a=only_a,
        only_b=only_b,
    )


def unpaired(
    k_a: int, n_a: int, k_b: int, n_b: int, names: tuple[str, str] = ("a", "b"), why: str = ""
) -> Verdict:
    """b against a from their counts alone (tested on different images): the pooled
    two-proportion z-test and Newcombe's interval. `why` says why they could not be paired."""
    _check_count(k_a, n_a)
    _check_count(k_b, n_b)
    z, p = two_proportion_z(k_a, n_a, k_b, n_b)
    low, high = newcombe(k_a, n_a, k_b, n_b)
    return Verdict(
        a=names[0],
        b=names[1],
        paired=False,
        n_a=n_a,
        n_b=n_b,
        accuracy_a=k_a / n_a,
        accuracy_b=k_b / n_b,
        difference=k_b / n_b - k_a / n_a,
        ci_low=low,
        ci_high=high,
        interval=UNPAIRED_INTERVAL,
        test=UNPAIRED_TEST,
        p=p,
        statistic=z,
        why_unpaired=why or None,
    )


def corrected(verdicts: list[Verdict], family: str) -> list[Verdict]:
    """The verdicts with Holm's correction over all of them (one family, named in each
    sentence); a single verdict is left as it is."""
    from kcnn.runs.stats import holm

    if len(verdicts) < 2:
        return list(verdicts)
    adjusted = holm([v.p for v in verdicts])
    return [replace(v, p_holm=p, family=family) for v, p in zip(verdicts, adjusted, strict=True)]


def _points(value: float) -> str:
    return f"{value * 100:.1f}".replace("-", "−")


def _signed(value: float) -> str:
    return f"{value * 100:+.1f}".replace("-", "−")


def sentence(v: Verdict) -> str:
    """One plain sentence: which run is better, by how much with its interval, on which test
    images, by which test and its p (and the family of a Holm correction)."""
    p = v.p_holm if v.p_holm is not None else v.p
    holm = f", Holm-corrected over {v.family}" if v.p_holm is not None and v.family else ""
    how = f"{RESAMPLES:,} paired bootstrap resamples" if v.paired else "Newcombe"
    test = "McNemar's exact test" if v.paired else "two-proportion z-test"
    tested = f"({test}, {_p_text(p)}{holm})"
    if v.significant:
        sign = 1 if v.difference > 0 else -1
        better, worse = (v.b, v.a) if sign > 0 else (v.a, v.b)
        low, high = sorted((sign * v.ci_low, sign * v.ci_high))
        head = (
            f"{better} is better than {worse} in test accuracy by "
            f"{_points(abs(v.difference))} points (95% CI {_points(low)} to {_points(high)}, "
            f"{how})"
        )
    else:
        head = (
            f"no evidence of a difference in test accuracy between {v.a} and {v.b} "
            f"({v.b} − {v.a}: {_signed(v.difference)} points, 95% CI {_signed(v.ci_low)} to "
            f"{_signed(v.ci_high)}, {how})"
        )
    if v.paired:
        first, second = (v.b, v.a) if v.significant and v.difference > 0 else (v.a, v.b)
        count = {v.a: v.only_a, v.b: v.only_b}
        return (
            f"{head} on the same {v.n_a:,} test images: {count[first]:,} right only by "
            f"{first}, {count[second]:,} only by {second} {tested}"
        )
    why = v.why_unpaired or "their test images differ"
    return f"{head} on {v.n_a:,} and {v.n_b:,} test images, unpaired {tested}: {why}"
