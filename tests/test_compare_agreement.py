"""compare-apis's agreement: the gaps it reports are between measured curves only."""

from __future__ import annotations

import pytest


def test_agreement_leaves_out_the_learning_rate():
    from kcnn.commands.compare import _agreement

    rows = [
        {"test_accuracy": 0.9, "test_loss": 0.30},
        {"test_accuracy": 0.8, "test_loss": 0.35},
    ]
    schedule = [1e-3, 5e-4]  # a setting: the same in every form, so its gap says nothing
    histories = {
        "sequential": {"loss": [1.0, 0.5], "accuracy": [0.5, 0.7], "learning_rate": schedule},
        "functional": {"loss": [1.0, 0.6], "accuracy": [0.5, 0.6], "learning_rate": schedule},
    }
    a = _agreement(rows, histories)
    assert set(a["max_curve_gap"]) == {"loss", "accuracy"}
    assert a["max_curve_gap"]["loss"] == pytest.approx(0.1)
    assert a["test_accuracy_spread"] == pytest.approx(0.1)
