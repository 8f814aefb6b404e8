"""Stopping a run early and cleanly: a signal (`SIGNALS`), and a loss that is no longer a number.

During `model.fit` a signal only raises a flag; the `Sentinel` callback acts on it at the end of
the current batch, so the run stops between two steps, never inside one. The engine
(`trainer.Trainer`) then marks the run folder `interrupted`, keeps the history of the finished
epochs and saves a checkpoint of the last finished epoch. A second signal stops at once.

The exit status follows the shell convention for a process ended by a signal: 128 + its
number, so 130 for SIGINT, 143 for SIGTERM and 129 for SIGHUP.
"""

from __future__ import annotations

import contextlib
import math
import signal
import threading

from kcnn.errors import DivergedError, KcnnError

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)  # a closed terminal stops like SIGTERM

# The last signal any guard acted on in this command, for `exit_on_signals` to tell what stopped it.
_last_signal: int | None = None


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
        global _last_signal
        if self.shielded:
            return
        _last_signal = signum
        if self.deferring and self.received is None:
            self.received = signum
            return
        self.received = self.received or signum
        raise Interrupted(signum)

    def __enter__(self) -> SignalGuard:
        if threading.current_thread() is threading.main_thread():
            for s in SIGNALS:
                self._previous[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc) -> None:
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


@contextlib.contextmanager
def exit_on_signals():
    """For a whole command: every signal in `SIGNALS` raises `Interrupted` (exit 128 + N).

    Click would turn a KeyboardInterrupt into "Aborted!" and exit status 1; an `Interrupted`
    passes through Click untouched and `cli.main` reports it like any other KcnnError.

    A library that catches every `Exception` can turn the `Interrupted` raised inside it into an
    error of its own (`inspect` makes it "unsupported callable" when the signal lands while
    TensorFlow is being imported). After a signal, such an error is still the signal's doing.
    """
    global _last_signal
    _last_signal = None
    with SignalGuard():
        try:
            yield
        except (Interrupted, KcnnError):
            raise
        except Exception as e:
            if _last_signal is None:
                raise
            raise Interrupted(_last_signal) from e


def sentinel(guard: SignalGuard):
    """A Keras callback that stops `fit` after the current batch on a signal or a non-finite loss.

    It also keeps, in memory, the weights and optimizer state of the last finished epoch:
    that is what a checkpoint holds, so a resumed run starts exactly where a finished epoch ended.
    """
    import keras

    from kcnn.engine.checkpoints import rng_state, set_rng_state

    class Sentinel(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.epoch = 0  # the epoch being trained (0-based)
            self.snapshot_epoch: int | None = None  # epochs finished when the snapshot was taken
            self._weights: list | None = None
            self._optimizer: list | None = None
            self._rng: list = []
            self._of = (
                None  # the model the snapshot was taken from (transfer fits a head, then all)
            )

        def take_snapshot(self, finished_epochs: int) -> None:
            self._weights = self.model.get_weights()
            self._rng = rng_state(self.model)
            optimizer = getattr(self.model, "optimizer", None)
            self._optimizer = (
                [v.numpy() for v in optimizer.variables] if optimizer is not None else None
            )
            self.snapshot_epoch = finished_epochs
            self._of = self.model

        def restore_snapshot(self, model) -> bool:
            """Put the last finished epoch's state back into `model`; False if there is none of it."""
            if self._weights is None or self._of is not model:
                return False
            self.model.set_weights(self._weights)
            set_rng_state(self.model, self._rng)
            optimizer = getattr(self.model, "optimizer", None)
            if (
                optimizer is not None
                and self._optimizer is not None
                and len(optimizer.variables) == len(self._optimizer)
            ):
                for variable, value in zip(optimizer.variables, self._optimizer, strict=True):
                    variable.assign(value)
            return True

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch
            if self._of is not self.model or self.snapshot_epoch != epoch:
                self.take_snapshot(epoch)

        def on_train_batch_end(self, batch, logs=None):
            loss = (logs or {}).get("loss")
            if loss is not None and not math.isfinite(float(loss)):
                raise NonFiniteLoss(float(loss), self.epoch, batch)
            guard.check()

        def on_test_batch_end(self, batch, logs=None):
            guard.check()

        def on_epoch_end(self, epoch, logs=None):
            loss = (logs or {}).get("loss")
            if loss is not None and not math.isfinite(float(loss)):
                raise NonFiniteLoss(float(loss), epoch, int(self.params.get("steps") or 1) - 1)
            # No signal check here: the Recorder has yet to write this epoch's row. The next
            # batch, or the engine after `fit`, acts on a pending signal.
            self.take_snapshot(epoch + 1)

    return Sentinel()
