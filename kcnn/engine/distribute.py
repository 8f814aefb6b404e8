"""Training past one device, on TensorFlow's own distribution engine.

`--strategy` picks a `tf.distribute` strategy:

- `default`: TensorFlow's default strategy, one device (what kcnn always did);
- `mirrored`: `MirroredStrategy`, one model copy per device of this machine, gradients summed
  every step. Over the visible GPUs; `--devices N` takes N of them. A machine without GPUs has
  its CPU split into N logical devices (useful to test a distributed run, rarely faster);
- `multi-worker`: `MultiWorkerMirroredStrategy` over several processes or machines described by
  the standard `TF_CONFIG` environment variable. The chief (task type `chief`, or worker 0 when
  there is none) writes the run folder; the other workers write into a scratch folder they delete.

`--batch-size` is always the global batch: each replica sees batch / replicas images a step, so the
same settings train the same model on one device or on many. `--mixed-precision` computes in
float16 (GPU) or bfloat16 (CPU) with float32 weights and a float32 softmax and loss;
`--jit-compile` compiles the training step with XLA.

Everything here that touches devices must run before TensorFlow initialises them, so
`activate(config)` is the first thing a training command does after checking its settings.
Reading TF_CONFIG and waiting for a multi-worker run's peers is `kcnn.engine.cluster`.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kcnn.engine.cluster import (  # noqa: F401  (re-exported: what --strategy reads)
    COLLECTIVE_WAITS,
    PEER_TIMEOUT,
    PEER_TIMEOUT_ENV,
    Cluster,
    parse_tf_config,
    peer_timeout,
    wait_for_peers,
)
from kcnn.errors import KcnnError
from kcnn.models import keras_version

STRATEGIES = ("default", "mirrored", "multi-worker")


@dataclass
class Distribution:
    """The strategy a run trains under and what config.json records of it."""

    kind: str
    strategy: Any
    devices: list[str]
    workers: int = 1
    chief: bool = True
    precision: str | None = None  # the Keras dtype policy of --mixed-precision
    jit_compile: bool = False
    scratch: Path | None = None  # a non-chief worker's throw-away output folder
    _key: tuple = field(default=(), repr=False)

    @property
    def replicas(self) -> int:
        return int(self.strategy.num_replicas_in_sync)

    def record(self) -> dict[str, Any]:
        facts: dict[str, Any] = {
            "replicas": self.replicas,
            # not `devices`: that key is the --devices setting, which `kcnn run` and --resume replay
            "device_names": self.devices,
            "precision_policy": self.precision or "float32",
        }
        if self.kind == "multi-worker":
            facts["workers"] = self.workers
        return facts

    @contextlib.contextmanager
    def scope(self) -> Iterator[None]:
        """Build and compile here: variables mirrored over the replicas, layers made under the
        mixed-precision policy. The global policy is restored afterwards, so a later run in this
        process is unaffected; layers keep the policy they were made with."""
        import keras

        before = keras.mixed_precision.global_policy()
        if self.precision:
            keras.mixed_precision.set_global_policy(self.precision)
        try:
            with self.strategy.scope():
                yield
        finally:
            keras.mixed_precision.set_global_policy(before)

    def distribute(self, dataset):
        """In-memory data sharded by element across workers (there are no files to shard)."""
        if self.kind == "default":
            return dataset
        import tensorflow as tf

        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = (
            tf.data.experimental.AutoShardPolicy.DATA
        )
        return dataset.with_options(options)

    def check_batch(self, batch_size: int) -> None:
        if batch_size % self.replicas:
            lower = batch_size - batch_size % self.replicas
            raise KcnnError(
                f"--batch-size {batch_size} is the global batch and must split evenly over the "
                f"{self.replicas} replicas of --strategy {self.kind}: use {lower or self.replicas} "
                f"or {lower + self.replicas}"
            )

    @contextlib.contextmanager
    def lost_peers(self) -> Iterator[None]:
        """A peer that stops answering mid-run ends the run with one line, never a hang."""
        if self.kind != "multi-worker":
            yield
            return
        import tensorflow as tf

        try:
            yield
        except (tf.errors.DeadlineExceededError, tf.errors.UnavailableError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise KcnnError(
                f"multi-worker: lost contact with a peer worker ({first[:200]})"
            ) from None


_ACTIVE: Distribution | None = None


def active() -> Distribution | None:
    return _ACTIVE


def activate(config) -> Distribution:
    """The distribution `config` asks for, set up once per process (devices can be split and a
    multi-worker cluster joined only before TensorFlow starts). Checks everything first: TF_CONFIG,
    device counts, the batch split. A non-chief worker's `config.out` becomes a scratch folder."""
    global _ACTIVE
    key = (config.strategy, config.devices, config.mixed_precision, config.jit_compile)
    if _ACTIVE is not None:
        if _ACTIVE._key[:2] != key[:2]:
            raise KcnnError(
                f"this process already trains under --strategy {_ACTIVE.kind}; a run with other "
                "--strategy/--devices needs a process of its own"
            )
    else:
        if config.strategy == "default" and config.devices not in (None, 1):
            raise KcnnError(
                f"--devices {config.devices} needs --strategy mirrored (one machine) or "
                "multi-worker; the default strategy trains on one device"
            )
        if config.strategy == "multi-worker":
            cluster = parse_tf_config(os.environ.get("TF_CONFIG"))
            timeout = peer_timeout()
            if config.devices is not None:
                raise KcnnError(
                    "--devices does not apply to --strategy multi-worker: each worker trains on "
                    "the devices of its machine, as TF_CONFIG lists the workers"
                )
            wait_for_peers(cluster, timeout)
            _ACTIVE = _multi_worker(cluster, timeout)
        elif config.strategy == "mirrored":
            _ACTIVE = _mirrored(config.devices, config.jit_compile)
        else:
            _ACTIVE = _default()
        _ACTIVE._key = key
    dist = _ACTIVE
    dist.precision = precision_policy() if config.mixed_precision else None
    dist.jit_compile = bool(config.jit_compile)
    dist.check_batch(config.batch_size)
    if not dist.chief:
        if dist.scratch is None:
            dist.scratch = Path(tempfile.mkdtemp(prefix="kcnn-worker-"))
            atexit.register(shutil.rmtree, dist.scratch, True)
        config.out = str(dist.scratch)
    return dist


def precision_policy() -> str:
    """float16 where it pays (GPU tensor cores), bfloat16 on CPU (float16 is slow there)."""
    import tensorflow as tf

    return "mixed_float16" if tf.config.list_physical_devices("GPU") else "mixed_bfloat16"


def _device_names(devices) -> list[str]:
    return [d.name for d in devices]


def _default() -> Distribution:
    import tensorflow as tf

    strategy = tf.distribute.get_strategy()
    device = tf.config.list_logical_devices("GPU")[:1] or tf.config.list_logical_devices("CPU")[:1]
    return Distribution("default", strategy, _device_names(device))


def _mirrored(devices: int | None, jit_compile: bool) -> Distribution:
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        if devices is not None and devices > len(gpus):
            raise KcnnError(
                f"--devices {devices}: this machine has {len(gpus)} GPU(s); use --devices "
                f"{len(gpus)} or fewer"
            )
        names = _device_names(tf.config.list_logical_devices("GPU"))[: devices or len(gpus)]
        strategy = tf.distribute.MirroredStrategy(devices=names)
        return Distribution("mirrored", strategy, list(strategy.extended.worker_devices))
    # No GPU: split the CPU into logical devices, which only works before TensorFlow starts.
    wanted = devices or 1
    if jit_compile and wanted > 1:
        raise KcnnError(
            "--jit-compile cannot run over logical CPU devices (XLA needs each variable on the "
            "device that uses it); drop --jit-compile or --strategy mirrored on this machine"
        )
    cpu = tf.config.list_physical_devices("CPU")[0]
    try:
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * wanted
        )
    except RuntimeError:  # TensorFlow already started: use what it has, if that is enough
        pass
    names = _device_names(tf.config.list_logical_devices("CPU"))
    if len(names) < wanted:
        raise KcnnError(
            f"--devices {wanted}: TensorFlow found {len(names)} CPU device(s) because it had "
            "already started; run this training in a process of its own"
        )
    names = names[:wanted]
    strategy = tf.distribute.MirroredStrategy(
        devices=names, cross_device_ops=tf.distribute.ReductionToOneDevice()
    )
    return Distribution("mirrored", strategy, list(strategy.extended.worker_devices))


def _multi_worker(cluster: Cluster, timeout: float) -> Distribution:
    import tensorflow as tf

    options = tf.distribute.experimental.CommunicationOptions(
        timeout_seconds=timeout * COLLECTIVE_WAITS
    )
    try:
        strategy = tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
    except (RuntimeError, ValueError, tf.errors.OpError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise KcnnError(
            f"multi-worker: TensorFlow could not join the cluster: {first[:200]}"
        ) from None
    # after joining: the probe runs TensorFlow ops, and collective ops must be configured first
    _patch_keras_multi_worker()
    return Distribution(
        "multi-worker",
        strategy,
        list(strategy.extended.worker_devices),
        workers=cluster.workers,
        chief=cluster.chief,
    )


# --- Keras's multi-worker bug, detected and worked around ----------------------------------------
# Keras 3.x (up to at least 3.15) cannot `fit` under MultiWorkerMirroredStrategy
# (tensorflow/tensorflow#72388): it averages each step's scalar metrics with
# `strategy.reduce("MEAN", v, axis=0)`, which a scalar has no axis for, and it all-reduces a whole
# input batch over the workers only to learn the batch's shape. kcnn replaces the two private
# functions involved, `reduce_per_replica` and `TensorFlowTrainer._maybe_symbolic_build`, but
# only where the installed Keras is seen to make these calls (a probe runs them against a
# stand-in strategy that records what it is asked), so a fixed Keras keeps its own code.

_PRIVATE = (
    "keras.src.backend.tensorflow.trainer: reduce_per_replica, "
    "_collective_all_reduce_multi_worker, TensorFlowTrainer._maybe_symbolic_build"
)
_PATCHED = False


def _keras_trainer():
    """Keras's TensorFlow trainer module, with the private names the workaround replaces."""
    try:
        from keras.src.backend.tensorflow import trainer as keras_trainer

        for name in ("reduce_per_replica", "_collective_all_reduce_multi_worker"):
            if not callable(getattr(keras_trainer, name)):
                raise AttributeError(name)
        keras_trainer.TensorFlowTrainer._maybe_symbolic_build  # noqa: B018  (must exist)
    except (ImportError, AttributeError) as e:
        raise KcnnError(
            f"--strategy multi-worker: Keras {keras_version.installed()} no longer has the private functions "
            f"kcnn's multi-worker workaround replaces ({_PRIVATE}; missing: {e}); train with "
            "--strategy mirrored or default, or install a Keras release kcnn supports"
        ) from None
    return keras_trainer


def _probe_strategy():
    """A MultiWorkerMirroredStrategy in name only: Keras's checks take it for one in multi-worker
    mode, and every `reduce` it is asked for is recorded (axis and value), not performed."""
    import tensorflow as tf

    class Extended:
        def _in_multi_worker_mode(self) -> bool:
            return True

    class Probe(tf.distribute.MultiWorkerMirroredStrategy):
        def __init__(self):  # no cluster, no devices: nothing of the real strategy is set up
            self._extended = Extended()
            self.reduced: list[tuple[Any, Any]] = []

        def reduce(self, reduce_op, value, axis=None):
            self.reduced.append((value, axis))
            return value

        def experimental_local_results(self, value):
            return (value,)

        def scope(self):
            return contextlib.nullcontext()

    return Probe()


def keras_multi_worker_bugs() -> tuple[bool, bool]:
    """(scalar metrics reduced over axis 0, whole input batch all-reduced to build the model):
    whether the installed Keras does each, seen by running its own functions on a probe."""
    import tensorflow as tf

    keras_trainer = _keras_trainer()
    try:
        probe = _probe_strategy()
        keras_trainer.reduce_per_replica(tf.constant(1.0), probe, "auto")
        scalar_axis = any(
            axis is not None and not value.shape.rank for value, axis in probe.reduced
        )

        class Replicated(tf.distribute.DistributedValues):
            def __init__(self, value):
                self._values = (value,)

        class Model:
            _distribute_strategy = distribute_strategy = _probe_strategy()

            def _symbolic_build(self, data_batch=None):
                pass

        model = Model()
        batch = (Replicated(tf.zeros((2, 3))), Replicated(tf.zeros((2,))))
        keras_trainer.TensorFlowTrainer._maybe_symbolic_build(
            model, iterator=[(0, 0, iter([batch]))]
        )
        batch_reduced = bool(model._distribute_strategy.reduced)
    except Exception as e:  # Keras changed how these work: kcnn cannot tell what it would fix
        raise KcnnError(
            f"--strategy multi-worker: cannot tell whether Keras {keras_version.installed()} has the "
            f"multi-worker bug kcnn works around ({type(e).__name__}: {str(e)[:120]}); train "
            "with --strategy mirrored or default"
        ) from None
    return scalar_axis, batch_reduced


def _patch_keras_multi_worker() -> None:
    """Reduce scalars over all workers with axis=None, and take the input shape from this
    worker's own batch: each only where the installed Keras is seen to need it. Only under
    MultiWorkerMirroredStrategy; every other strategy keeps Keras's own code."""
    global _PATCHED
    if _PATCHED:
        return
    import tensorflow as tf

    keras_trainer = _keras_trainer()
    scalar_axis, batch_reduced = keras_multi_worker_bugs()
    multi_worker = keras_trainer._collective_all_reduce_multi_worker

    if scalar_axis:
        original_reduce = keras_trainer.reduce_per_replica

        def reduce_per_replica(values, strategy, reduction="auto"):
            if reduction in ("auto", "mean") and multi_worker(strategy):
                return tf.nest.map_structure(
                    lambda v: strategy.reduce("MEAN", v, axis=0 if v.shape.rank else None),
                    values,
                )
            return original_reduce(values, strategy, reduction)

        keras_trainer.reduce_per_replica = reduce_per_replica

    if batch_reduced:
        original_build = keras_trainer.TensorFlowTrainer._maybe_symbolic_build

        def maybe_symbolic_build(self, iterator=None, data_batch=None):
            strategy = self._distribute_strategy
            if iterator is not None and strategy is not None and multi_worker(strategy):
                for _, _, batches in iterator:
                    batch = next(batches)
                    break
                data_batch = tf.nest.map_structure(
                    lambda v: (
                        strategy.experimental_local_results(v)[0]
                        if isinstance(v, tf.distribute.DistributedValues)
                        else v
                    ),
                    batch,
                )
                iterator = None
            return original_build(self, iterator=iterator, data_batch=data_batch)

        keras_trainer.TensorFlowTrainer._maybe_symbolic_build = maybe_symbolic_build
    _PATCHED = True
