"""kcnn.runs.stats against an independent computation: the textbook formulas in NumPy, with only
Student's t distribution (its quantile and tail) taken from SciPy."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import t as student

from kcnn.runs import stats

A = [0.951, 0.947, 0.960, 0.955, 0.949]
B = [0.962, 0.958, 0.969, 0.961, 0.963]


def by_hand_interval(x):
    x = np.asarray(x, float)
    n, mean = x.size, x.sum() / x.size
    sd = math.sqrt(((x - mean) ** 2).sum() / (n - 1))
    half = student.ppf(0.975, n - 1) * sd / math.sqrt(n)
    return mean, sd, mean - half, mean + half


def test_summary_is_the_t_interval():
    s = stats.summarize(A)
    mean, sd, low, high = by_hand_interval(A)
    assert s.n == 5
    assert s.mean == pytest.approx(mean, abs=1e-12)
    assert s.sd == pytest.approx(sd, abs=1e-12)
    assert (s.ci_low, s.ci_high) == pytest.approx((low, high), abs=1e-12)
    assert stats.summarize([0.9]).half_width is None  # one seed: no spread to speak of


def test_paired_test_by_hand():
    a = dict(zip([(83 + i, "fp") for i in range(5)], A, strict=True))
    b = dict(zip([(83 + i, "fp") for i in range(5)], B, strict=True))
    d = stats.difference(a, b, names=("bare", "recipe"))
    diffs = np.array(B) - np.array(A)
    n, mean = diffs.size, diffs.mean()
    sd = math.sqrt(((diffs - mean) ** 2).sum() / (n - 1))
    t = mean / (sd / math.sqrt(n))
    p = 2 * student.sf(abs(t), n - 1)
    half = student.ppf(0.975, n - 1) * sd / math.sqrt(n)
    assert d.test == "paired t"
    assert d.difference == pytest.approx(mean, abs=1e-12)
    assert d.statistic == pytest.approx(t, rel=1e-9)
    assert d.p == pytest.approx(p, rel=1e-9)
    assert (d.ci_low, d.ci_high) == pytest.approx((mean - half, mean + half), abs=1e-12)
    assert d.effect == "d_z" and d.effect_size == pytest.approx(mean / sd, rel=1e-9)
    assert d.significant
    assert d.sentence().startswith(
        f"recipe is better than bare in test_accuracy by {mean * 100:.1f} ± {half * 100:.1f} points"
    )
    assert "5 seeds" in d.sentence()


def test_welch_test_by_hand_when_seeds_do_not_pair():
    a = {(83 + i, "fp"): v for i, v in enumerate(A)}
    b = {(90 + i, "fp"): v for i, v in enumerate(B[:4])}
    d = stats.difference(a, b, names=("A", "B"))
    xa, xb = np.array(A), np.array(B[:4])
    va, vb = xa.var(ddof=1) / xa.size, xb.var(ddof=1) / xb.size
    df = (va + vb) ** 2 / (va**2 / (xa.size - 1) + vb**2 / (xb.size - 1))
    mean = xb.mean() - xa.mean()
    t = mean / math.sqrt(va + vb)
    half = student.ppf(0.975, df) * math.sqrt(va + vb)
    pooled = math.sqrt(
        ((xa.size - 1) * xa.var(ddof=1) + (xb.size - 1) * xb.var(ddof=1)) / (xa.size + xb.size - 2)
    )
    assert d.test == "Welch t"
    assert d.df == pytest.approx(df, rel=1e-9)
    assert d.statistic == pytest.approx(t, rel=1e-9)
    assert d.p == pytest.approx(2 * student.sf(abs(t), df), rel=1e-9)
    assert (d.ci_low, d.ci_high) == pytest.approx((mean - half, mean + half), abs=1e-12)
    assert d.effect == "d" and d.effect_size == pytest.approx(mean / pooled, rel=1e-9)


def test_identical_groups_show_no_difference():
    same = {(83 + i, "fp"): v for i, v in enumerate(A)}
    d = stats.difference(same, dict(same), names=("sequential", "functional"))
    assert d.difference == 0 and d.p == 1.0 and not d.significant
    assert d.sentence().startswith("no evidence of a difference between sequential and functional")
    welch = stats.difference(A, list(A))
    assert welch.test == "Welch t" and welch.p == pytest.approx(1.0) and not welch.significant
    assert stats.difference([0.9, 0.9], [0.9, 0.9]).p == 1.0  # no spread at all


def test_holm_by_hand_and_only_with_several_pairs():
    # m = 3: sorted 0.01, 0.02, 0.04 -> 0.03, max(0.03, 0.04), max(0.04, 0.04)
    assert stats.holm([0.04, 0.01, 0.02]) == pytest.approx([0.04, 0.03, 0.04])
    assert stats.holm([0.5, None, 0.6]) == [1.0, None, 1.0]
    groups = {
        "a": {s: v for s, v in zip(range(5), A, strict=True)},
        "b": {s: v for s, v in zip(range(5), B, strict=True)},
        "c": {s: v + 0.001 for s, v in zip(range(5), A, strict=True)},
    }
    found = stats.compare_groups(groups)
    assert [(d.a, d.b) for d in found] == [("a", "b"), ("a", "c"), ("b", "c")]
    assert [d.p_holm for d in found] == pytest.approx(stats.holm([d.p for d in found]))
    two = stats.compare_groups({"a": groups["a"], "b": groups["b"]})
    assert two[0].p_holm is None and "Holm" not in two[0].sentence()  # one pair: nothing to correct


def test_one_seed_each_cannot_be_tested():
    d = stats.difference([0.95], [0.96])
    assert d.test == "none" and d.p is None and not d.significant
    assert "--seeds" in d.sentence()


def test_loss_is_better_lower():
    d = stats.difference(A, [v - 0.5 for v in A], metric="test_loss", names=("x", "y"))
    assert d.sentence().startswith("y is better than x in test_loss")
