"""Figures and settings as a person writes them: 0.9080 (90.8 %), a loss to 4 significant
digits, 1 min 12 s, `train 3,200 · val 400 · test 400` rather than a Python dict.

For what kcnn prints (`kcnn show`, `kcnn runs`) and its reports; `--json` keeps the full precision of the
records. The text still goes through `kcnn.text` for where it is printed.
"""

from __future__ import annotations

import re
from typing import Any


def accuracy(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}"


def accuracy_ci(value: float | None, ci: list[float] | None) -> str:
    """0.9080 [0.8790, 0.9311]: an accuracy and its 95% interval (without one, the accuracy)."""
    if value is None:
        return ""
    if not ci or ci[0] is None or ci[1] is None:
        return accuracy(value)
    return f"{value:.4f} [{ci[0]:.4f}, {ci[1]:.4f}]"


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


_DEVICE = re.compile(r"^.*device:")  # /job:localhost/replica:0/task:0/device:GPU:0 -> GPU:0


def _devices(names: list[Any]) -> str:
    """`['/device:CPU:0']` as `CPU`; several as `GPU 0, GPU 1`."""
    short = [_DEVICE.sub("", str(n)) for n in names]
    if len(short) == 1:
        return short[0].split(":")[0]
    return ", ".join(s.replace(":", " ") for s in short)


def value(v: Any, key: str = "") -> str:
    """A setting or result as a person writes it: `3,200`, `0.001`, `32×32×1`, `yes`,
    `train 3,200 · val 800`, `CPU`, and `—` for none (never a Python repr). `key` is the
    setting's name: a seed is a name, not a count; a device list and a shape read as such."""
    if v is None or (isinstance(v, str | list | tuple | dict) and not v):
        return "—"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, int):
        return str(v) if "seed" in key else f"{v:,}"
    if isinstance(v, dict):
        return " · ".join(f"{k} {value(x, str(k))}" for k, x in v.items())
    if isinstance(v, list | tuple):
        if key.startswith("device"):
            return _devices(list(v))
        if "shape" in key and all(isinstance(x, int) and not isinstance(x, bool) for x in v):
            return "×".join(map(str, v))
        return ", ".join(value(x, key) for x in v)
    return str(v)


def figure(key: str, v: Any) -> str:
    """A result by its name: accuracies to 4 decimals, losses to 4 significant digits, times
    as durations, the rest as `value` writes it."""
    if isinstance(v, int | float) and not isinstance(v, bool):
        if ("accuracy" in key or key.endswith("macro_f1")) and 0 <= v <= 1:
            return accuracy(v)
        if key == "loss" or key.endswith("_loss") or key.startswith("loss_"):
            return loss(v)
        if "seconds" in key.split("_") and v >= 0:
            return duration(v)
    return value(v, key)
