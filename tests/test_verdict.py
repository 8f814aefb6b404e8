"""kcnn.runs.verdict against an independent implementation: statsmodels' exact McNemar test, its
Wilson interval, its two-proportion z-test and Newcombe interval, and a bootstrap that resamples
image indices. The edge cases a user meets: no discordant images, all discordant, one run
perfect, a test set of one class."""

from __future__ import annotations

import math

import numpy as np
import pytest
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.proportion import (
    confint_proportions_2indep,
    proportion_confint,
    proportions_ztest,
)

from kcnn.runs import verdict


def statsmodels_mcnemar(a, b) -> float:
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    table = [[np.sum(a & b), np.sum(a & ~b)], [np.sum(~a & b), np.sum(~a & ~b)]]
    return float(mcnemar(table, exact=True).pvalue)


def answers(n: int, only_a: int, only_b: int, both: int, seed: int = 0):
    """Two runs' right/wrong on n images with the given counts, in a shuffled order."""
    kinds = [(1, 0)] * only_a + [(0, 1)] * only_b + [(1, 1)] * both
    kinds += [(0, 0)] * (n - len(kinds))
    order = np.random.default_rng(seed).permutation(n)
    pairs = np.asarray(kinds)[order]
    return pairs[:, 0].astype(bool), pairs[:, 1].astype(bool)


@pytest.mark.parametrize(
    ("n", "only_a", "only_b", "both"),
    [
        (360, 5, 66, 270),  # a clear difference
        (1000, 13, 25, 900),  # a modest one
        (500, 7, 7, 480),  # an even split: p = 1
        (200, 0, 0, 190),  # no discordant images
        (40, 20, 20, 0),  # every image discordant, evenly
        (30, 30, 0, 0),  # every image discordant, all one way
        (100, 0, 9, 91),  # b perfect
        (1, 0, 1, 0),  # one image
    ],
)
def test_mcnemar_exact_is_statsmodels(n, only_a, only_b, both):
    a, b = answers(n, only_a, only_b, both)
    v = verdict.paired(a, b, ("a", "b"))
    assert (v.only_a, v.only_b, v.n_a) == (only_a, only_b, n)
    assert v.p == pytest.approx(statsmodels_mcnemar(a, b), abs=1e-12)
    assert v.difference == pytest.approx(b.mean() - a.mean(), abs=1e-12)
    assert v.accuracy_a == pytest.approx(a.mean()) and v.accuracy_b == pytest.approx(b.mean())


def test_no_discordant_images_is_no_evidence_and_a_zero_interval():
    a, b = answers(200, 0, 0, 150)
    v = verdict.paired(a, b, ("a", "b"))
    assert v.p == 1.0 and not v.significant
    assert (v.ci_low, v.ci_high) == (0.0, 0.0)
    assert v.sentence().startswith("no evidence of a difference in test accuracy between a and b")
    assert "0 right only by a, 0 only by b" in v.sentence()


def test_all_discordant_one_way_is_a_difference_of_one():
    a, b = answers(30, 0, 30, 0)  # b right on every image, a on none
    v = verdict.paired(a, b, ("a", "b"))
    assert v.difference == 1.0 and (v.ci_low, v.ci_high) == (1.0, 1.0)
    assert v.p == pytest.approx(2 * 0.5**30, rel=1e-12) and v.significant
    assert v.sentence().startswith("b is better than a in test accuracy by 100.0 points")


def test_one_class_test_set_pairs_like_any_other():
    # every test image of one class: right/wrong is all a paired verdict needs
    a, b = answers(50, 2, 9, 30, seed=3)
    v = verdict.paired(a, b, ("a", "b"))
    assert v.p == pytest.approx(statsmodels_mcnemar(a, b), abs=1e-12)


def test_paired_bootstrap_matches_resampling_image_indices():
    """The multinomial shortcut against the plain bootstrap: draw n image indices with
    replacement, 20,000 times. Two independent Monte Carlo estimates of the same quantiles agree
    to well within 0.5 points at these sizes."""
    a, b = answers(1000, 13, 25, 900, seed=1)
    v = verdict.paired(a, b)
    rng = np.random.default_rng(12345)
    d = b.astype(float) - a.astype(float)
    means = np.array([d[rng.integers(0, d.size, d.size)].mean() for _ in range(20_000)])
    low, high = np.percentile(means, [2.5, 97.5])
    assert v.ci_low == pytest.approx(low, abs=0.005)
    assert v.ci_high == pytest.approx(high, abs=0.005)
    assert verdict.paired(a, b) == v  # seeded: the same runs give the same interval


@pytest.mark.parametrize(
    ("k", "n"), [(0, 10), (10, 10), (1, 1), (0, 1), (357, 360), (9512, 10000), (3, 7)]
)
def test_wilson_is_statsmodels(k, n):
    low, high = proportion_confint(k, n, alpha=0.05, method="wilson")
    assert verdict.wilson(k, n) == pytest.approx((max(low, 0.0), min(high, 1.0)), abs=1e-12)


def test_accuracy_interval_from_a_recorded_accuracy():
    interval = verdict.accuracy_interval(0.9528, 360)
    assert interval is None  # 0.9528 × 360 is no whole number of images: no interval invented
    interval = verdict.accuracy_interval(343 / 360, 360)
    low, high = proportion_confint(343, 360, method="wilson")
    assert (interval.ci_low, interval.ci_high) == pytest.approx((low, high), abs=1e-12)
    assert interval.text().startswith("0.9528 (95% CI 0.92")
    assert verdict.accuracy_interval(1.0, 360).ci_high == 1.0  # a perfect run
    assert verdict.accuracy_interval(None, 360) is None
    assert verdict.accuracy_interval(0.5, None) is None


@pytest.mark.parametrize(
    ("k_a", "n_a", "k_b", "n_b"),
    [(308, 360, 343, 360), (95, 100, 97, 100), (0, 20, 3, 20), (500, 1000, 470, 900)],
)
def test_unpaired_is_statsmodels(k_a, n_a, k_b, n_b):
    v = verdict.unpaired(k_a, n_a, k_b, n_b, ("a", "b"), "different images")
    z, p = proportions_ztest([k_b, k_a], [n_b, n_a])
    low, high = confint_proportions_2indep(k_b, n_b, k_a, n_a, method="newcomb", compare="diff")
    assert v.statistic == pytest.approx(z, rel=1e-9)
    assert v.p == pytest.approx(p, abs=1e-12)
    assert (v.ci_low, v.ci_high) == pytest.approx((low, high), abs=1e-12)
    assert "unpaired" in v.sentence() and "different images" in v.sentence()


def test_unpaired_both_perfect_is_no_evidence():
    v = verdict.unpaired(20, 20, 30, 30, ("a", "b"))
    assert v.p == 1.0 and v.statistic == 0.0 and not v.significant
    assert math.isclose(v.difference, 0.0)


def test_holm_over_a_named_family():
    found = [
        verdict.paired(*answers(360, 5, 66, 270), ("a", "b")),
        verdict.paired(*answers(360, 10, 18, 300), ("a", "c")),
        verdict.paired(*answers(360, 7, 7, 300), ("b", "c")),
    ]
    done = verdict.corrected(found, "the 3 pairs of single runs compared")
    ps = sorted(v.p for v in found)
    assert sorted(v.p_holm for v in done) == pytest.approx(
        [min(1, 3 * ps[0]), min(1, max(3 * ps[0], 2 * ps[1])), 1.0], abs=1e-12
    )
    assert all(
        "Holm-corrected over the 3 pairs of single runs compared" in v.sentence() for v in done
    )
    assert verdict.corrected(found[:1], "x") == found[:1]  # one pair: nothing to correct


def test_counts_that_are_no_counts_are_refused():
    with pytest.raises(ValueError):
        verdict.wilson(11, 10)
    with pytest.raises(ValueError):
        verdict.paired([True, False], [True])


def test_kcnn_itself_never_imports_statsmodels():
    """statsmodels is the tests' independent check (the dev extra), never a dependency."""
    from pathlib import Path

    import kcnn

    sources = Path(kcnn.__file__).parent.rglob("*.py")
    assert not [p for p in sources if "statsmodels" in p.read_text(encoding="utf-8")]
