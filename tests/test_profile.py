"""`kcnn summary --profile`: layer times that add up to one forward pass.

Wall-clock speed is not tested here (a loaded 2-core machine times anything): what is tested is
what the times are made of — the prefixes compute the model's own pass, and the call's cost plus
the layers' times equal the whole pass by construction, to float rounding (1e-12 s)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from kcnn.models import profile

TOLERANCE = 1e-12  # seconds: call + Σ layers against the pass, float rounding only
ROOT = Path(__file__).resolve().parent.parent
RECORD = ROOT / "docs" / "profile-lenet5.json"


def test_attribute_adds_up_to_the_pass_exactly():
    rng = np.random.default_rng(3)
    # 40 rounds of a call (0.3 ms) and three layers (0.2, 0.0, 0.1 ms), with noise, then the model
    layers = np.array([0.2e-3, 0.0, 0.1e-3])
    prefix = 0.3e-3 + np.concatenate([[0.0], np.cumsum(layers)])
    samples = prefix + rng.normal(0, 2e-6, (40, 4))
    samples = np.column_stack([samples, samples[:, -1] + 1e-6])
    found = profile.attribute(samples, ["a", "b", "c"])
    total = found["call_seconds"] + sum(r["seconds"] for r in found["layers"].values())
    assert total == pytest.approx(found["pass_seconds"], abs=TOLERANCE)
    assert found["pass_seconds"] == pytest.approx(np.median(samples[:, 3]))
    assert found["model_seconds"] == pytest.approx(np.median(samples[:, 4]))
    assert found["rounds"] == 40
    for (name, row), expected in zip(found["layers"].items(), layers, strict=True):
        low, high = row["interval"]
        assert low <= row["seconds"] <= high, name
        assert row["seconds"] == pytest.approx(expected, abs=5e-6), name
        assert row["share"] == pytest.approx(row["seconds"] / found["pass_seconds"])
    # a layer that costs nothing is told apart from one that does by its interval
    assert found["layers"]["b"]["interval"][0] < 0 < found["layers"]["b"]["interval"][1]
    assert found["layers"]["a"]["interval"][0] > 0
    again = profile.attribute(samples, ["a", "b", "c"])
    assert again == found  # the resampling is seeded
    with pytest.raises(ValueError):
        profile.attribute(samples, ["a", "b"])


@pytest.mark.parametrize("arch, api, shape", [
    ("lenet5", "sequential", (32, 32, 1)),
    ("lenet5", "functional", (32, 32, 1)),
    ("lenet5", "subclassed", (32, 32, 1)),
    ("resnet18", "functional", (32, 32, 3)),  # branches that join (Add): a cut keeps both
])  # fmt: skip
def test_each_prefix_is_the_model_cut_after_a_layer(arch, api, shape):
    from kcnn.models import forms

    model = forms.build(arch, api, shape, 10)
    layers = profile.top_layers(model)
    made = profile.prefixes(model)
    assert len(made) == len(layers) + 1
    x = np.random.default_rng(0).random((2, *shape), dtype=np.float32)
    (first,) = made[0](x)
    np.testing.assert_array_equal(np.asarray(first), x)  # the call around no layer
    (last,) = made[-1](x)
    np.testing.assert_allclose(np.asarray(last), np.asarray(model(x, training=False)), atol=1e-6)
    if api != "functional":  # in a chain, prefix k is prefix k−1 and then layer k
        for k in (1, len(layers) // 2):
            (before,) = made[k - 1](x)
            (after,) = made[k](x)
            expected = layers[k - 1](before, training=False)
            np.testing.assert_allclose(np.asarray(after), np.asarray(expected), atol=1e-6)


@pytest.mark.parametrize("api", ["sequential", "functional"])
def test_summary_profile_adds_up_to_the_pass(cli, api, monkeypatch):
    monkeypatch.setattr(profile, "BUDGET_SECONDS", 0.2)  # the fewest rounds: what is summed
    result = cli("summary", "lenet5", "--api", api, "--profile", "--json")
    assert result.code == 0, result.err
    report = json.loads(result.out)
    timing, rows = report["profile"], report["layers"]
    assert timing["rounds"] >= profile.ROUNDS[0] and timing["batch"] == 1
    total = timing["call_seconds"] + sum(row["seconds"] for row in rows)
    assert total == pytest.approx(timing["pass_seconds"], abs=TOLERANCE)
    shares = sum(row["share"] for row in rows)
    assert shares == pytest.approx(1 - timing["call_seconds"] / timing["pass_seconds"])
    for row in rows:
        low, high = row["interval"]
        assert low <= high
    assert timing["call_seconds"] > 0 and timing["model_seconds"] > 0
    text = report["text"]
    assert "time ms" in text and "95% interval" in text and "share" in text
    assert f"medians of {timing['rounds']} shuffled rounds" in text
    assert f"{timing['pass_seconds'] * 1e3:.3f} ms = the call's own cost" in text


def _readme_block(name: str) -> str:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    found = re.search(rf"<!-- record:{name} -->\n(.*?)\n<!-- /record:{name} -->", readme, re.S)
    assert found, f"README.md has no <!-- record:{name} --> block"
    return found.group(1)


def test_readmes_profile_is_the_kept_records_table():
    """README's profile figure is what `python -m kcnn.models.profile` makes of the report kept
    in docs/ (a real `kcnn summary lenet5 --profile --json`), and that report adds up."""
    report = json.loads(RECORD.read_text(encoding="utf-8"))
    timing = report["profile"]
    total = timing["call_seconds"] + sum(row["seconds"] for row in report["layers"])
    assert total == pytest.approx(timing["pass_seconds"], abs=TOLERANCE)
    made = subprocess.run(
        [sys.executable, "-m", "kcnn.models.profile", str(RECORD)],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    assert made.stdout.strip() == _readme_block("profile")
