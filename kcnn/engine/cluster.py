"""Who the workers of a multi-worker run are, and whether they are all there.

`TF_CONFIG` (the standard environment variable of `tf.distribute`) names every task's address and
this process's task; it is read as untrusted text (`parse_tf_config`). Before TensorFlow joins the
cluster, which would wait for a missing peer without end, each worker answers and reaches every
other over a small handshake of its own (`wait_for_peers`), so a peer that never starts ends the
run with an error naming it after `peer_timeout()` seconds. Part of `kcnn.engine.distribute`.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import ipaddress
import json
import os
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any

from kcnn.errors import KcnnError

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
