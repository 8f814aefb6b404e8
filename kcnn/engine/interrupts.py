"""Stopping a run early and cleanly: a signal (`SIGNALS`), and a loss that is no longer a number.

During `model.fit` a signal only raises a flag; the `Sentinel` callback (kcnn.engine.callbacks)
acts on it at the end of the current batch, so the run stops between two steps, never inside one.
The engine (`trainer.Trainer`) then marks the run folder `interrupted`, keeps the history of the
finished epochs and saves a checkpoint of the last finished epoch. A second signal stops at once.

A signal is also a request to stop the whole command, kept until the command ends
(`stop_requested`): a signal that lands where it cannot act at once (while a finished run writes
its records, or inside a library that turns it into an error of its own) still stops the command
at the next point that checks (`check_stop`: before every run, seed, form, backbone and trial),
and at the latest when the command returns. Work whose failure is only a warning (a picture, a
report, a tracking call) runs under `only_a_warning`, which never swallows a stop.

The exit status follows the shell convention for a process ended by a signal: 128 + its
number, so 130 for SIGINT, 143 for SIGTERM and 129 for SIGHUP.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

from kcnn.errors import DivergedError, KcnnError
from kcnn.progress import warn

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)  # a closed terminal stops like SIGTERM

# The first signal any guard received in this command: a request to stop it, kept until the
# command ends (see the module docstring).
_stop: int | None = None
_guards = 0  # guards held now: the request ends with the outermost one


class Interrupted(KcnnError):
    """The user (SIGINT), the system (SIGTERM) or a closed terminal (SIGHUP) asked kcnn to stop."""

    # Keras rebuilds an error raised inside a layer's call as `type(e)(its message)`, which
    # would lose the signal (a signal can arrive while a model is built or called outside
    # `fit`). This mark, Keras's own, tells it the error is already annotated: pass it through.
    _keras_call_info_injected = True

    def __init__(self, signum: int, message: str | None = None):
        if not isinstance(signum, int):
            raise TypeError(f"Interrupted needs a signal number, got {signum!r}")
        self.signum = signum
        self.exit_code = 128 + signum
        super().__init__(message or f"interrupted by {signal.Signals(signum).name}")


class NonFiniteLoss(Exception):
    """Raised inside `fit` by the Sentinel; the engine turns it into a `DivergedError`."""

    def __init__(self, value: float, epoch: int, batch: int):
        self.value, self.epoch, self.batch = value, epoch, batch
        super().__init__(f"loss became {value} in epoch {epoch + 1}, batch {batch + 1}")


def diverged(stop: NonFiniteLoss, optimizer: str, lr: float) -> DivergedError:
    # Adam is the usual cure for a diverging SGD or RMSprop; a diverging Adam needs a lower rate.
    switch = "" if optimizer == "adam" else " or try --optimizer adam"
    return DivergedError(
        f"training diverged: the loss became {stop.value} in epoch {stop.epoch + 1}, batch {stop.batch + 1} "
        f"({optimizer}, --lr {lr:g}); lower --lr (e.g. --lr {lr / 10:g}){switch}"
    )


class SignalGuard:
    """Holds every signal in `SIGNALS` for the duration of a `with` block.

    While `deferring` is true (inside `fit`) a first signal is only recorded in `received`;
    otherwise, or on a second signal, `Interrupted` is raised at once. Outside the main thread
    Python cannot install handlers, and the guard does nothing.
    """

    def __init__(self):
        self.received: int | None = None
        self.deferring = False
        self.shielded = False  # while a stopped run writes its records and checkpoint
        self._previous: dict[int, object] = {}

    def _handle(self, signum, frame):
        global _stop
        _stop = _stop or signum  # even while shielded: the command stops once the records are safe
        if self.shielded:
            return
        if self.deferring and self.received is None:
            self.received = signum
            return
        self.received = self.received or signum
        raise Interrupted(signum)

    def __enter__(self) -> SignalGuard:
        global _guards
        if threading.current_thread() is threading.main_thread():
            for s in SIGNALS:
                self._previous[s] = signal.signal(s, self._handle)
            _guards += 1
        return self

    def __exit__(self, *exc) -> None:
        global _guards, _stop
        if self._previous:
            _guards -= 1
            if _guards == 0:  # the outermost guard: whatever asked to stop has been answered
                _stop = None
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous.clear()

    @contextlib.contextmanager
    def deferred(self):
        """Inside this block a first signal waits for the Sentinel to act on it."""
        self.deferring = True
        try:
            yield
        finally:
            self.deferring = False

    def check(self) -> None:
        if self.received is not None:
            raise Interrupted(self.received)


def stop_requested() -> int | None:
    """The signal that asked this command to stop, or None."""
    return _stop


def check_stop(hint: str = "") -> None:
    """Raise `Interrupted` when a signal asked the command to stop: called before any new piece
    of work (a run, a seed, a form, a backbone, a trial) begins. `hint` says how to go on."""
    if _stop is not None:
        name = signal.Signals(_stop).name
        raise Interrupted(_stop, f"interrupted by {name}{'; ' + hint if hint else ''}")


@contextlib.contextmanager
def only_a_warning(what: str) -> Iterator[None]:
    """Work whose failure costs nothing already paid for (a picture, a report, a tracking call):
    any error is one warning line (`what: error`) — but a stop request is never a warning, even
    one a library turned into an error of its own: it goes on up."""
    try:
        yield
    except Interrupted:
        raise
    except Exception as e:  # noqa: BLE001  (the point: whatever failed, the run is kept)
        if _stop is not None:
            raise Interrupted(_stop) from e
        warn(f"{what}: {e}")


@contextlib.contextmanager
def exit_on_signals():
    """For a whole command: every signal in `SIGNALS` raises `Interrupted` (exit 128 + N).

    Click would turn a KeyboardInterrupt into "Aborted!" and exit status 1; an `Interrupted`
    passes through Click untouched and `cli.main` reports it like any other KcnnError.

    A library that catches every `Exception` can turn the `Interrupted` raised inside it into an
    error of its own (`inspect` makes it "unsupported callable" when the signal lands while
    TensorFlow is being imported; a loader its "cannot read"). After a signal, such an error is
    still the signal's doing. And a signal that was received but never acted on (it landed while
    finished records were written) stops the command when it returns: never exit 0 after it.
    """
    global _stop
    _stop = None
    try:
        with SignalGuard():
            try:
                yield
            except Interrupted:
                raise
            except Exception as e:
                if _stop is None:
                    raise
                raise Interrupted(_stop) from e
            if _stop is not None:
                raise Interrupted(
                    _stop,
                    f"interrupted by {signal.Signals(_stop).name} as the command ended; what it "
                    "finished is kept",
                )
    finally:
        _stop = None
