"""The search space of a sweep file (`[sweep.space]`): each dimension a choice or a range,
checked against the setting it varies, counted as a grid without listing it, and built as the
Optuna distribution its trials draw from. Part of `kcnn sweep` (kcnn.commands.sweep)."""

from __future__ import annotations

import decimal
import math
from dataclasses import dataclass
from typing import Any

from kcnn.engine.config import Setting, check_value
from kcnn.errors import KcnnError, did_you_mean

RANGE_KEYS = ("low", "high", "log", "step")
MAX_GRID = 100_000  # points of a grid (Optuna's grid sampler holds them all in memory)


@dataclass(frozen=True)
class Choice:
    """One of a list of values (Optuna's categorical distribution)."""

    values: tuple[Any, ...]

    def suggest(self, trial, key: str) -> Any:
        return trial.suggest_categorical(key, list(self.values))

    def grid(self) -> list[Any]:
        return list(self.values)

    def points(self) -> float:
        return len(self.values)

    def extremes(self) -> list[Any]:
        return list(self.values)

    def describe(self) -> str:
        return "one of " + ", ".join(map(str, self.values))


@dataclass(frozen=True)
class Range:
    """A whole-number or real range, optionally on a log scale or in steps."""

    low: float
    high: float
    integer: bool
    log: bool = False
    step: float | None = None

    def suggest(self, trial, key: str) -> Any:
        if self.integer:
            return trial.suggest_int(
                key, int(self.low), int(self.high), step=int(self.step or 1), log=self.log
            )
        return trial.suggest_float(key, self.low, self.high, step=self.step, log=self.log)

    def points(self) -> float:
        """How many values a grid over the range holds, counted, never listed (a range of
        billions of whole numbers or a step of 1e-300 is a number here, not a list)."""
        if not self.integer and not self.step:
            return math.inf  # a continuous range: no grid
        steps = (self.high - self.low) / (self.step or 1)  # inf for a step of 5e-324
        return math.floor(steps + 1e-9) + 1 if math.isfinite(steps) else math.inf

    def grid(self) -> list[Any]:
        """The grid's values; only for a range whose `points` were checked to be few."""
        step = self.step or 1
        count = int(self.points())
        values = [self.low + i * step for i in range(count)]
        return [int(v) for v in values] if self.integer else [round(v, 12) for v in values]

    def extremes(self) -> list[Any]:
        return [self.low, self.high]

    def describe(self) -> str:
        kind = "whole numbers" if self.integer else "numbers"
        scale = ", log scale" if self.log else (f", step {self.step:g}" if self.step else "")
        return f"{kind} {self.low:g} … {self.high:g}{scale}"


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def parse_dimension(key: str, value: Any, spec: Setting, where: str) -> Choice | Range:
    """One entry of [sweep.space], checked against the setting it varies."""
    at = f"{where}: [sweep.space] {key}"
    if isinstance(value, list):
        if not value:
            raise KcnnError(f"{at} is an empty choice: list at least one value")
        if len(value) > 1000:
            raise KcnnError(f"{at} lists {len(value):,} values; at most 1,000 are allowed")
        checked = []
        for item in value:
            if isinstance(item, dict | list):
                raise KcnnError(f"{at}: a choice holds plain values, got {item!r}")
            found = _checked(key, spec, item, at)
            # a list setting (apis, seeds) is searched as its text: Optuna's choices are plain
            # values, and the text checks back to the very same list in each trial
            checked.append(",".join(map(str, found)) if isinstance(found, list) else found)
        if len({repr(v) for v in checked}) < len(checked):
            raise KcnnError(f"{at} lists a value twice")
        return Choice(tuple(checked))
    if not isinstance(value, dict):
        raise KcnnError(
            f"{at} must be a list of choices or a range {{ low = ..., high = ... }}, got {value!r}"
        )
    for name in value:
        if name not in RANGE_KEYS:
            raise KcnnError(
                f"{at}: unknown range key '{name}': {did_you_mean(str(name), RANGE_KEYS)}"
                "a range takes low, high, log, step"
            )
    if spec.kind not in (int, float):
        raise KcnnError(f"{at}: {key} is not a number setting; give a list of choices instead")
    if "low" not in value or "high" not in value:
        raise KcnnError(f"{at}: a range needs both low and high")
    low, high, log, step = value["low"], value["high"], value.get("log", False), value.get("step")
    if not _number(low) or not _number(high) or not all(map(math.isfinite, (low, high))):
        raise KcnnError(f"{at}: low and high must be numbers, got {low!r} and {high!r}")
    if not isinstance(log, bool):
        raise KcnnError(f"{at}: log must be true or false, got {log!r}")
    integer = spec.kind is int
    if integer and not (float(low).is_integer() and float(high).is_integer()):
        raise KcnnError(f"{at}: {key} is a whole number; low and high must be too")
    if low > high:
        raise KcnnError(f"{at}: low ({low:g}) is above high ({high:g})")
    if log and low <= 0:
        raise KcnnError(f"{at}: a log range must lie above zero, got low = {low:g}")
    if step is not None:
        if log:
            raise KcnnError(f"{at}: a log range takes no step")
        bad = not _number(step) or not math.isfinite(step) or not step > 0
        if bad or (integer and not float(step).is_integer()):
            kind = "a whole number" if integer else "a finite number"
            raise KcnnError(f"{at}: step must be {kind} above zero, got {step!r}")
        if step > high - low and high > low:
            raise KcnnError(
                f"{at}: step {step:g} is wider than the range {low:g} … {high:g}: give a "
                "smaller step, or list the values"
            )
    for bound in (low, high):
        _checked(key, spec, int(bound) if integer else float(bound), at)
    return Range(float(low), float(high), integer, log, float(step) if step else None)


def grid_size(space: dict[str, Choice | Range], where: str) -> int:
    """The points of a grid over `space`, counted (Optuna's grid sampler lists every one of them
    in memory): refused beyond MAX_GRID, before anything is listed."""
    size = 1.0
    for key, dimension in space.items():
        size *= dimension.points()
        if size > MAX_GRID:
            raise KcnnError(
                f"{where}: [sweep.space] {key} makes the grid over {MAX_GRID:,} points "
                f"({_count(size)}): give a coarser step, a narrower range or fewer values"
            )
    return int(size)


def _count(size: float) -> str:
    if not math.isfinite(size):
        return "more than can be counted"
    return f"{size:,.0f}" if size < 1e15 else f"about {size:.1e}"


def check_distributions(space: dict[str, Choice | Range], where: str) -> None:
    """Each dimension built as the Optuna distribution a trial will draw from, so a range Optuna
    cannot take (a step too fine for its decimal arithmetic) is refused by `--check`, not by
    the first trial."""
    try:
        from optuna import distributions
    except ImportError:  # `kcnn sweep` itself says how to install it
        return
    for key, d in space.items():
        try:
            if isinstance(d, Choice):
                distributions.CategoricalDistribution(list(d.values))
            elif d.integer:
                step = int(d.step or 1)
                distributions.IntDistribution(int(d.low), int(d.high), log=d.log, step=step)
            else:
                distributions.FloatDistribution(d.low, d.high, log=d.log, step=d.step)
        except Exception as e:  # noqa: BLE001  (Optuna raises ValueError, decimal's own, ...)
            reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
            if isinstance(e, decimal.DecimalException):
                reason = "its step is too fine for Optuna's decimal arithmetic"
            raise KcnnError(
                f"{where}: [sweep.space] {key} cannot be searched by Optuna ({reason}): give a "
                "coarser step or list the values"
            ) from None


def _checked(key: str, spec: Setting, value: Any, at: str) -> Any:
    try:
        return check_value(key, spec, value, at)
    except KcnnError as e:
        raise KcnnError(f"{at}: {e}") from None
