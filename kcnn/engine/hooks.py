"""Watchers: code outside the engine that follows every run the trainer fits, without the
commands knowing about it — a sweep's pruning and MLflow tracking.

    with hooks.watching(watcher):
        train(config)          # every Trainer inside calls the watcher

A watcher has these methods, each optional:

- `train_begin(trainer)`: a fit phase of `trainer` starts; a true answer ends it at once;
- `epoch_end(trainer, epoch, logs)`: an epoch (1-based) ended and is recorded (the watcher's
  callback comes after the trainer's own); a true answer ends the fit phase after it;
- `finished(trainer, result)`: the run is complete (metrics.json, pictures and model written);
- `child_args()`: the options that make a `kcnn` child process (a seed run in its own process,
  a sweep's worker) report to the same place, such as `--mlflow=URI`.

The list lives in a context variable, so it is per `with` block and per thread, never global.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
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
    watchers = [w for w in _WATCHERS.get() if hasattr(w, "train_begin") or hasattr(w, "epoch_end")]
    if not watchers:
        return []
    from kcnn.engine.callbacks import Watching  # Keras: only where a model is fitted

    def bound(watcher, name):
        method = getattr(watcher, name, None)
        return None if method is None else functools.partial(method, trainer)

    return [Watching(bound(w, "train_begin"), bound(w, "epoch_end")) for w in watchers]


def child_args() -> list[str]:
    """The options a `kcnn` child process needs to report to this block's watchers too."""
    return [arg for w in _WATCHERS.get() for arg in getattr(w, "child_args", list)()]


def finished(trainer: Any, result: Any) -> None:
    """Tell the watchers that `trainer`'s run is complete."""
    for watcher in _WATCHERS.get():
        done = getattr(watcher, "finished", None)
        if done is not None:
            done(trainer, result)
