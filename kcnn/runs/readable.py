"""Figures and settings as a person writes them: 0.9080 (90.8 %), a loss to 4 significant
digits, 1 min 12 s, `train 3200, val 400, test 400` rather than a Python dict.

For what kcnn prints (`kcnn show`, `kcnn runs`); `--json` keeps the full precision of the
records. The text still goes through `kcnn.text` for where it is printed.
"""

from __future__ import annotations

from typing import Any


def accuracy(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}"


def accuracy_percent(value: float | None) -> str:
    """0.9080 (90.8 %)."""
    return "" if value is None else f"{value:.4f} ({value * 100:.1f} %)"


def loss(value: float | None) -> str:
    return "" if value is None else f"{value:.4g}"


def duration(seconds: float | None) -> str:
    """0.4 s, 45 s, 1 min 12 s, 2 h 05 min."""
    if seconds is None:
        return ""
    if seconds < 10:
        return f"{seconds:.1f} s"
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        minutes, rest = divmod(whole, 60)
        return f"{minutes} min {rest} s" if rest else f"{minutes} min"
    hours, rest = divmod(whole, 3600)
    return f"{hours} h {rest // 60:02d} min"


def count(value: int) -> str:
    return f"{value:,}"


def _is_shape(key: str, value: list) -> bool:
    return (
        key.endswith(("shape", "size"))
        and 2 <= len(value) <= 4
        and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    )


def value(v: Any, key: str = "") -> str:
    """A setting or a figure without Python's punctuation: yes/no, none, 0.001, 61,706,
    32×32×1 for a shape, lists joined by commas, tables as `key value, ...`."""
    if v is None:
        return "none"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return count(v) if abs(v) >= 10_000 else str(v)
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, list | tuple):
        if not v:
            return "none"
        if _is_shape(key, list(v)):
            return "×".join(map(str, v))
        return ", ".join(_nested(x) for x in v)
    if isinstance(v, dict):
        if not v:
            return "none"
        return ", ".join(f"{k} {_nested(x, str(k))}" for k, x in v.items())
    return str(v)


def _nested(v: Any, key: str = "") -> str:
    """A value inside a list or table: bracketed when it is itself a list or table."""
    shown = value(v, key)
    return f"({shown})" if isinstance(v, list | tuple | dict) and v and "×" not in shown else shown


def figure(key: str, v: Any) -> str:
    """A result by its name: accuracies to 4 decimals, losses to 4 significant digits, times
    as durations, the rest as `value` writes it."""
    if isinstance(v, int | float) and not isinstance(v, bool):
        if "accuracy" in key and 0 <= v <= 1:
            return accuracy(v)
        if key == "loss" or key.endswith("_loss") or key.startswith("loss_"):
            return loss(v)
        if "seconds" in key.split("_") and v >= 0:
            return duration(v)
    return value(v, key)
