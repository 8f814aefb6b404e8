"""Watchers: code outside the engine that follows every run the trainer fits, without the
commands knowing about it — a sweep's pruning and MLflow tracking.

    with hooks.watching(watcher):
        train(config)          # every Trainer inside calls the watcher

A watcher has two methods, both optional:

- `callback(trainer)`: a Keras callback for this trainer's fit phases (or None), asked once per
  fit phase; the trainer adds it after its own, so an epoch's row is recorded before it runs.
- `finished(trainer, result)`: the run is complete (metrics.json, pictures and model written).

The list lives in a context variable, so it is per `with` block and per thread, never global.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from typing import Any

_WATCHERS: contextvars.ContextVar[tuple[Any, ...]] = contextvars.ContextVar(
    "kcnn_watchers", default=()
)


@contextlib.contextmanager
def watching(*watchers: Any) -> Iterator[None]:
    """Have every trainer in this block report to `watchers` (None entries are skipped)."""
    token = _WATCHERS.set(_WATCHERS.get() + tuple(w for w in watchers if w is not None))
    try:
        yield
    finally:
        _WATCHERS.reset(token)


def callbacks(trainer: Any) -> list[Any]:
    """The watchers' Keras callbacks for one fit phase of `trainer`."""
    found = []
    for watcher in _WATCHERS.get():
        make = getattr(watcher, "callback", None)
        callback = make(trainer) if make is not None else None
        if callback is not None:
            found.append(callback)
    return found


def finished(trainer: Any, result: Any) -> None:
    """Tell the watchers that `trainer`'s run is complete."""
    for watcher in _WATCHERS.get():
        done = getattr(watcher, "finished", None)
        if done is not None:
            done(trainer, result)
