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
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import hashlib
import ipaddress
import json
import os
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kcnn.errors import KcnnError
from kcnn.models import keras_version

STRATEGIES = ("default", "mirrored", "multi-worker")
# Seconds a worker waits for its peers to start (default below); a step waits COLLECTIVE_WAITS times
# as long for a peer before the run fails, so a lost peer ends the run instead of hanging it.
PEER_TIMEOUT_ENV = "KCNN_PEER_TIMEOUT"
PEER_TIMEOUT = 60.0
COLLECTIVE_WAITS = 5  # one all-reduce waits at most this many peer timeouts for a slow or lost peer


# --- TF_CONFIG ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cluster:
    """What TF_CONFIG says: every task's address by type, and which task this process is."""

    tasks: dict[str, list[str]]
    task_type: str
    task_index: int

    @property
    def address(self) -> str:
        return self.tasks[self.task_type][self.task_index]

    @property
    def peers(self) -> list[str]:
        return [
            a for kind in ("chief", "worker") for a in self.tasks.get(kind, []) if a != self.address
        ]

    @property
    def workers(self) -> int:
        return len(self.tasks.get("chief", [])) + len(self.tasks.get("worker", []))

    @property
    def chief(self) -> bool:
        if "chief" in self.tasks:
            return self.task_type == "chief"
        return self.task_type == "worker" and self.task_index == 0


def _bad(what: str) -> KcnnError:
    return KcnnError(
        f"TF_CONFIG {what}; --strategy multi-worker needs TF_CONFIG like "
        '{"cluster": {"worker": ["host1:port", "host2:port"]}, "task": {"type": "worker", "index": 0}}'
    )


def split_address(address: Any) -> tuple[str, int]:
    """`host:port` (or `[v6]:port`) checked: a host name or IP and a port 1..65535."""
    if not isinstance(address, str) or ":" not in address:
        raise _bad(f"holds the address {address!r}, which is not host:port")
    host, _, port = address.rpartition(":")
    host = host.strip("[]")
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise _bad(f"holds the address {address!r}, whose port is not a number from 1 to 65535")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        labels = host.split(".")
        if (
            not host
            or len(host) > 253
            or not all(
                label and len(label) <= 63 and label.replace("-", "").isalnum() for label in labels
            )
        ):
            raise _bad(
                f"holds the address {address!r}, whose host is not a host name or IP"
            ) from None
    return host, int(port)


def parse_tf_config(text: str | None) -> Cluster:
    """TF_CONFIG checked before any work: valid JSON, a cluster of chief/worker addresses, and a
    task that is one of them."""
    if text is None or not text.strip():
        raise _bad("is not set")
    try:
        spec = json.loads(text)
    except json.JSONDecodeError as e:
        raise _bad(f"is not valid JSON ({e.msg} at character {e.pos})") from None
    if not isinstance(spec, dict):
        raise _bad("is not a JSON object")
    cluster, task = spec.get("cluster"), spec.get("task")
    if not isinstance(cluster, dict) or not cluster:
        raise _bad("has no `cluster`")
    if not isinstance(task, dict):
        raise _bad("has no `task`")
    tasks: dict[str, list[str]] = {}
    for kind, addresses in cluster.items():
        if kind not in ("chief", "worker", "evaluator", "ps"):
            raise _bad(f"has the unknown task type '{kind}' in `cluster`")
        if kind == "ps":
            raise _bad("lists parameter servers (`ps`), which multi-worker training does not use")
        if not isinstance(addresses, list) or not addresses:
            raise _bad(f"has no addresses for '{kind}' in `cluster`")
        for address in addresses:
            split_address(address)
        tasks[kind] = list(addresses)
    if len(tasks.get("chief", [])) > 1:
        raise _bad("lists more than one chief")
    if not tasks.get("chief") and not tasks.get("worker"):
        raise _bad("has no chief or worker in `cluster`")
    everyone = [a for addresses in tasks.values() for a in addresses]
    if len(set(everyone)) != len(everyone):
        raise _bad("lists the same address twice")
    kind, index = task.get("type"), task.get("index", 0)
    if kind not in tasks:
        raise _bad(f"has task type {kind!r}, which is not in `cluster` ({', '.join(tasks)})")
    if kind == "evaluator":
        raise _bad("names an evaluator task; kcnn evaluates on the chief")
    if isinstance(index, bool) or not isinstance(index, int):
        raise _bad(f"has task index {index!r}, which is not a whole number")
    if not 0 <= index < len(tasks[kind]):
        raise _bad(
            f"has task index {index}, but `cluster` lists {len(tasks[kind])} {kind} task(s) "
            f"(index 0 to {len(tasks[kind]) - 1})"
        )
    return Cluster(tasks, kind, index)


def peer_timeout() -> float:
    text = os.environ.get(PEER_TIMEOUT_ENV)
    if text is None:
        return PEER_TIMEOUT
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value <= 86_400:
        raise KcnnError(f"{PEER_TIMEOUT_ENV}={text!r} must be a number of seconds from 0 to 86400")
    return value


def _bound(family: int, port: int) -> socket.socket:
    """A socket of `family` listening on `port` of every interface (dual-stack for IPv6)."""
    listener = socket.socket(family, socket.SOCK_STREAM)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            listener.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        listener.bind(("::" if family == socket.AF_INET6 else "", port))
        listener.listen(64)
    except OSError:
        listener.close()
        raise
    listener.setblocking(False)
    return listener


def _listen(cluster: Cluster) -> socket.socket:
    """A non-blocking listener on this task's port, on every interface (IPv6 and IPv4 where the
    machine has both, else IPv4), so that peers, and this task itself, can check it is up."""
    _, port = split_address(cluster.address)
    try:
        if socket.has_ipv6:
            try:
                return _bound(socket.AF_INET6, port)
            except OSError as e:
                if e.errno == errno.EADDRINUSE:
                    raise
        return _bound(socket.AF_INET, port)
    except OSError as e:
        raise KcnnError(
            f"cannot listen on {cluster.address} (TF_CONFIG task {cluster.task_type} "
            f"{cluster.task_index}): {e.strerror or e}; is another process using port {port}?"
        ) from None


def handshake(cluster: Cluster) -> bytes:
    """The line kcnn workers of one cluster exchange while they wait: it names the cluster.
    A peer that answers anything else is another program on that port, or a worker started with
    another TF_CONFIG cluster; TensorFlow would wait on either for ever, with no way to stop it."""
    spec = json.dumps(cluster.tasks, sort_keys=True, separators=(",", ":"))
    return b"kcnn-peer " + hashlib.sha256(spec.encode()).hexdigest()[:32].encode() + b"\n"


def _read_line(connection: socket.socket, limit: int = 512) -> bytes:
    got = b""
    while len(got) < limit and not got.endswith(b"\n"):
        chunk = connection.recv(limit - len(got))
        if not chunk:
            break
        got += chunk
    return got


def _answer(listener: socket.socket, token: bytes, heard_us: set[str]) -> None:
    """Answer every pending check: a peer of this cluster (or this task itself) says the cluster's
    line and its own address, and gets the line back; `heard_us` collects those addresses."""
    with contextlib.suppress(OSError):
        while True:
            connection = listener.accept()[0]
            with contextlib.suppress(OSError), connection:
                connection.settimeout(0.5)
                said, _, address = _read_line(connection).rstrip(b"\n").rpartition(b" ")
                if said == token.rstrip(b"\n"):
                    connection.sendall(token)
                    heard_us.add(address.decode("ascii", "replace"))


def _reach(
    address: str,
    hello: bytes,
    token: bytes,
    deadline: float,
    answered: threading.Event,
    heard: dict,
) -> None:
    """Until `deadline`: resolve `address`, connect, say `hello` and read the answer, each attempt
    capped by the time left; set `answered` once it answers `token`, and note in `heard` an
    address that answers something else. Runs in a daemon thread per address, so every address
    is tried at once and a slow name lookup or a silent host delays no other."""
    host, port = split_address(address)
    while not answered.is_set():
        if deadline - time.monotonic() <= 0:
            return
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError:
            infos = []
        for family, kind, proto, _, target in infos:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            with contextlib.suppress(OSError), socket.socket(family, kind, proto) as probe:
                probe.settimeout(min(1.0, left))
                probe.connect(target)
                probe.sendall(hello)
                got = _read_line(probe, len(token))
                if got == token:
                    answered.set()
                    return
                heard[address] = True
        time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))


def _listed(addresses: list[str], shown: int = 5) -> str:
    more = len(addresses) - shown
    return ", ".join(addresses[:shown]) + (f" and {more} more" if more > 0 else "")


def wait_for_peers(cluster: Cluster, timeout: float) -> None:
    """Listen on this task's port and check every peer's and this task's own, until every peer
    has answered as a kcnn worker of this cluster and has heard this task answer, or `timeout`
    passes: the whole wait is bounded by `timeout`, however many peers.

    TensorFlow's own start-up waits for ever, holding the interpreter, for a peer that never
    comes, for this task's own address when it is not this machine's, and for a peer that
    answers but is not a worker of this cluster (`handshake`); this bounded wait turns each into
    an error. A task leaves the wait only once every peer has heard from it, so no peer is left
    checking a port whose listener is gone (TensorFlow's server takes the port right after).
    """
    listener = _listen(cluster)
    token = handshake(cluster)
    hello = token.rstrip(b"\n") + b" " + cluster.address.encode("ascii", "replace") + b"\n"
    deadline = time.monotonic() + timeout
    checks = {address: threading.Event() for address in [cluster.address, *cluster.peers]}
    heard: dict[str, bool] = {}
    heard_us: set[str] = set()
    for address, answered in checks.items():
        threading.Thread(
            target=_reach,
            args=(address, hello, token, deadline, answered, heard),
            daemon=True,
            name="kcnn-peer",
        ).start()
    try:
        while True:
            _answer(listener, token, heard_us)
            waiting = [a for a, answered in checks.items() if not answered.is_set()]
            if not waiting and heard_us.issuperset(cluster.peers):
                return
            if time.monotonic() >= deadline:
                raise _unanswered(cluster, waiting, heard, heard_us, timeout)
            time.sleep(0.05)
    finally:
        listener.close()


def _unanswered(
    cluster: Cluster, waiting: list[str], heard: dict, heard_us: set[str], timeout: float
) -> KcnnError:
    if cluster.address in waiting:
        return KcnnError(
            f"multi-worker: this task's own address {cluster.address} (TF_CONFIG task "
            f"{cluster.task_type} {cluster.task_index}) does not reach this machine within "
            f"{timeout:g} s; give this task an address of this machine in TF_CONFIG"
        )
    strangers = [a for a in waiting if a in heard]
    if strangers:
        return KcnnError(
            f"multi-worker: {_listed(strangers)} answered, but not as a kcnn worker of this "
            "cluster (another program on that port, or a worker started with another TF_CONFIG "
            "cluster); give every worker the same TF_CONFIG cluster and free ports"
        )
    if waiting:
        return KcnnError(
            f"multi-worker: no answer from {_listed(waiting)} within {timeout:g} s; start "
            f"every worker listed in TF_CONFIG (or raise {PEER_TIMEOUT_ENV})"
        )
    deaf = [a for a in cluster.peers if a not in heard_us]
    return KcnnError(
        f"multi-worker: {_listed(deaf)} answered but did not reach this task at "
        f"{cluster.address} within {timeout:g} s; let every worker connect to every other "
        "(a firewall or address translation one way?)"
    )


# --- the strategy -------------------------------------------------------------------------------


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
