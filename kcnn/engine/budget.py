"""Budgets: a wall-clock limit on training (`--time-limit`) and the largest batch that fits the
device (`--batch-size auto`).

The time limit is kept by `callbacks.TimeLimit`: at the end of each epoch it stops training when
the next epoch, as long as the slowest so far, would end past the limit, and after any batch once
the limit is passed. The run is then left `interrupted` with the checkpoint of its last finished
epoch, exactly as a Ctrl-C leaves it, and `--resume` finishes it bit for bit (the time it has had
so far is its own, so a resumed run is given the limit afresh).

`--batch-size auto` is found once, before any run trains (`find_batch_size`), and the number is
what the run records as its batch size (with how it was found, `batch_size_search`), so the run
replays and resumes with that very batch. On a GPU the batch doubles while one training step
still fits in the device's memory, trying real steps; on a CPU, whose memory is the machine's,
the bound is a share of the memory free now (`CPU_MEMORY_SHARE`), against the bytes one image
takes in a training step, measured, and the largest power of two within it is tried once. Either
way the search stops at the training set's size, at `MAX_BATCH`, and after `SEARCH_SECONDS`.
Nothing here imports TensorFlow until a search runs.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable
from typing import Any

from kcnn.errors import KcnnError

AUTO = "auto"
BATCH_MAX = 65_536
MAX_BATCH = 4096  # the largest batch `auto` tries: past it, steps per epoch get too few
SEARCH_SECONDS = 60.0  # the search's own budget: the batch it has when time is up is kept
CPU_MEMORY_SHARE = 0.25  # of the memory free now, what a training step's batch may take
GPU_MEMORY_SHARE = 0.9  # of the GPU's memory: the rest is headroom for fragmentation
DURATION_MAX = 366 * 24 * 3600.0  # a year: more is a typing slip
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smhd]?)")


def parse_batch_size(name: str, value: Any) -> int | str:
    """A batch size: a whole number from 1 to 65,536, or `auto` (from an option, a file or a
    record)."""
    what = f"{name} must be a whole number from 1 to {BATCH_MAX:,} or auto"
    if isinstance(value, str):
        text = value.strip().lower()
        if text == AUTO:
            return AUTO
        if not re.fullmatch(r"\d{1,9}", text):
            raise KcnnError(f"{what}, got {value!r}")
        value = int(text)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= BATCH_MAX:
        raise KcnnError(f"{what}, got {value!r}")
    return value


def parse_duration(name: str, value: Any) -> float:
    """Seconds from `90`, `90s`, `30m`, `2h`, `1h30m` or `1d` (a file or record may hold the
    number of seconds)."""
    what = f"{name} takes a duration such as 90 (seconds), 30m, 2h or 1h30m"
    if isinstance(value, bool):
        raise KcnnError(f"{what}, got {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip().lower().replace(" ", "")
        parts = _DURATION.findall(text)
        if not text or "".join(n + u for n, u in parts) != text:
            raise KcnnError(f"{what}, got {value!r}")
        units = [u or "s" for _, u in parts]
        if len(set(units)) != len(units):
            raise KcnnError(f"{what}, got {value!r}")
        seconds = sum(float(n) * _UNITS[u] for (n, _), u in zip(parts, units, strict=True))
    else:
        raise KcnnError(f"{what}, got {value!r}")
    if not math.isfinite(seconds) or not 0 < seconds <= DURATION_MAX:
        raise KcnnError(f"{what}, above 0 and at most a year, got {value!r}")
    return seconds


def duration_text(seconds: float) -> str:
    """`1h30m`, `30m`, `45s`: a limit as a person writes it."""
    whole = round(seconds)
    if abs(seconds - whole) > 1e-9 or whole < 60:
        return f"{seconds:g}s"
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return "".join(f"{v}{u}" for v, u in ((hours, "h"), (minutes, "m"), (secs, "s")) if v)


# --- the time limit ---------------------------------------------------------------------------


class Clock:
    """When a run's time limit ends, counted from this process's start of training."""

    def __init__(self, limit: float, now: Callable[[], float] = time.monotonic):
        self.limit, self.now = limit, now
        self.start = now()
        self.slowest_epoch = 0.0
        self._epoch_start = self.start

    def elapsed(self) -> float:
        return self.now() - self.start

    def epoch_begins(self) -> None:
        self._epoch_start = self.now()

    def epoch_ends(self) -> bool:
        """Record the epoch that ended; whether another as slow would end past the limit."""
        self.slowest_epoch = max(self.slowest_epoch, self.now() - self._epoch_start)
        return self.elapsed() + self.slowest_epoch > self.limit

    def passed(self) -> bool:
        return self.elapsed() > self.limit


class TimeUp(KcnnError):
    """The run stopped at its time limit and can be resumed: exit status 75 (EX_TEMPFAIL, "try
    again later"), which a job script can tell from a failure (1, 2, 3) and from a signal."""

    exit_code = 75


class TimeLimitReached(Exception):
    """Raised inside `fit` when the limit is passed in the middle of an epoch: the run stops
    as an interrupted one, its checkpoint the last finished epoch."""


# --- the batch-size search ----------------------------------------------------------------------


def find_batch_size(
    make: Callable[[], Any],
    input_shape: tuple[int, int, int],
    classes: int,
    images: int,
    compile_model: Callable[[Any], None],
    now: Callable[[], float] = time.monotonic,
) -> dict[str, Any]:
    """The largest batch that fits (see the module docstring): a record of the search, whose
    `batch_size` is the answer. `make()` builds a fresh model; `compile_model(model)` compiles
    it with the run's recipe; `images`: the training set's size (no batch is bigger)."""
    import tensorflow as tf

    gpus = tf.config.list_logical_devices("GPU")
    ceiling = max(1, min(MAX_BATCH, images))
    start = now()
    model = make()
    compile_model(model)

    def step(batch: int) -> None:
        x = tf.zeros((batch, *input_shape), tf.float32)
        y = tf.zeros((batch,), tf.int64)
        model.train_on_batch(x, y)

    if gpus:
        return _search_gpu(step, ceiling, start, now, gpus[0].name)
    return _search_cpu(step, model, input_shape, ceiling, start, now)


def _largest_power_of_two(limit: float) -> int:
    return 2 ** max(0, int(math.floor(math.log2(max(limit, 1)))))


def _search_gpu(step, ceiling: int, start: float, now, device: str) -> dict[str, Any]:
    """Double the batch while a real training step fits on the GPU."""
    import tensorflow as tf

    fits, tried, batch, why = 0, [], 1, f"the training set's size or {MAX_BATCH}"
    while batch <= ceiling:
        try:
            step(batch)
        except (tf.errors.ResourceExhaustedError, tf.errors.InternalError) as e:
            tried.append({"batch": batch, "fits": False})
            why = f"batch {batch} did not fit in the GPU's memory ({type(e).__name__})"
            break
        tried.append({"batch": batch, "fits": True})
        fits = batch
        if now() - start > SEARCH_SECONDS:
            why = f"the search's {SEARCH_SECONDS:g} s were spent"
            break
        batch *= 2
    if not fits:
        raise KcnnError(
            "--batch-size auto: not even a batch of 1 fits in the GPU's memory; use a smaller "
            "model or --image-size"
        )
    return {
        "batch_size": fits,
        "device": device,
        "bound": why,
        "tried": tried,
        "seconds": round(now() - start, 3),
    }


def _available_memory() -> int | None:
    """Bytes of memory free now (Linux's MemAvailable), or None where it cannot be read."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _step_bytes_per_image(model, input_shape) -> int:
    """What one image takes in a training step: its input, and every layer's output kept for the
    backward pass with its gradient (4 bytes a value, twice), plus a third for the kernels'
    workspaces."""
    values = math.prod(input_shape)
    for layer in model.layers:
        shape = getattr(layer, "output", None)
        shape = getattr(shape, "shape", None)
        if shape is not None and all(d is not None for d in shape[1:]):
            values += math.prod(shape[1:])
    return int(values * 4 * 2 * 1.5)


def _search_cpu(step, model, input_shape, ceiling: int, start: float, now) -> dict[str, Any]:
    """The largest power of two whose training step takes at most CPU_MEMORY_SHARE of the
    memory free now (bytes per image estimated from the model's layers), tried once."""
    free = _available_memory()
    per_image = _step_bytes_per_image(model, input_shape)
    if free is None:
        limit, why = ceiling, f"free memory unknown: the training set's size or {MAX_BATCH}"
    else:
        budget = free * CPU_MEMORY_SHARE
        limit = min(ceiling, budget // per_image)
        why = (
            f"CPU: {CPU_MEMORY_SHARE:.0%} of the {free / 2**30:.1f} GiB free at {per_image:,} bytes "
            f"an image in a training step, the training set's size and {MAX_BATCH}"
        )
    batch = _largest_power_of_two(limit)
    try:
        step(batch)
    except Exception as e:  # the estimate was wrong: fall back to the largest that ran before
        raise KcnnError(
            f"--batch-size auto: a training step of batch {batch} failed on the CPU "
            f"({type(e).__name__}); pass --batch-size N"
        ) from None
    return {
        "batch_size": batch,
        "device": "CPU",
        "bound": why,
        "bytes_per_image": per_image,
        "memory_free_bytes": free,
        "tried": [{"batch": batch, "fits": True}],
        "seconds": round(now() - start, 3),
    }
