"""`kcnn doctor`: what this machine gives kcnn, and one line of advice per problem.

It reports the versions (Python, TensorFlow, Keras against the Keras release kcnn needs), the
devices (GPUs, the CPU's vector extensions), what the Keras cache holds of kcnn's data sets and
backbone weights (and what a run would download instead), whether the run folder can be written,
and whether the download host answers. Nothing is downloaded and nothing is left behind: the
write check makes one temporary file and removes it; the network check is one connection
attempt, bounded in time (DNS included), so an offline machine answers at once.

Exit status 0 when every check passed or only warned; 1 when one failed (a Keras below the floor,
a run folder that cannot be written): a script can gate on it.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import socket
import tempfile
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlparse

import typer

from kcnn import defaults
from kcnn.cli.app import AsJson, app, print_json
from kcnn.models.backbones import BACKBONES, cache_path

OK, WARN, FAIL = "ok", "warn", "fail"
NETWORK_TIMEOUT = 3.0  # seconds for DNS and the connection together
CPU_FEATURES = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512_vnni", "amx_tile")


@dataclass
class Check:
    """One finding: what was looked at, what was found, and (for a problem) what to do."""

    area: str
    name: str
    status: str
    found: str
    advice: str = ""
    details: dict[str, Any] = field(default_factory=dict)


# --- versions ------------------------------------------------------------------------------------


def _version(*distributions: str) -> str | None:
    for name in distributions:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return None


def _release(version: str) -> tuple[int, ...]:
    match = re.match(r"\d+(?:\.\d+)*", version.strip())
    return tuple(int(p) for p in match.group(0).split(".")) if match else ()


def keras_floor() -> str:
    """The oldest Keras kcnn accepts: kcnn.models.keras_version's MINIMUM where that module
    exists, else the `keras>=` requirement kcnn was installed with (pyproject.toml)."""
    try:
        from kcnn.models import keras_version  # the owner of the floor, where present

        return keras_version.required()
    except ImportError:
        pass
    try:
        requirements = metadata.requires("kcnn") or []
    except metadata.PackageNotFoundError:
        requirements = []
    for line in requirements:
        match = re.match(r"^\s*keras\s*>=\s*([\w.]+)", line)
        if match:
            return match.group(1)
    return "3.0"


def versions() -> list[Check]:
    python = platform.python_version()
    checks = [Check("versions", "Python", OK, python)]
    if _release(python) < (3, 11):
        checks[0].status, checks[0].advice = FAIL, "kcnn needs Python 3.11 or newer"
    tf = _version("tensorflow", "tensorflow-cpu", "tensorflow-macos", "tf-nightly")
    checks.append(
        Check("versions", "TensorFlow", OK, tf)
        if tf
        else Check("versions", "TensorFlow", FAIL, "not installed", "pip install tensorflow")
    )
    keras = _version("keras", "keras-nightly")
    floor = keras_floor()
    if keras is None:
        checks.append(
            Check("versions", "Keras", FAIL, "not installed", f"pip install 'keras>={floor}'")
        )
    elif _release(keras) < _release(floor):
        checks.append(
            Check(
                "versions",
                "Keras",
                FAIL,
                f"{keras} (kcnn needs >= {floor}: its model-loader security fixes)",
                f"upgrade Keras: pip install --upgrade 'keras>={floor}'",
                {"version": keras, "floor": floor},
            )
        )
    else:
        found = f"{keras} (security floor {floor})"
        checks.append(Check("versions", "Keras", OK, found, details={"floor": floor}))
    return checks


# --- devices -------------------------------------------------------------------------------------


def cpu_features(cpuinfo: Path = Path("/proc/cpuinfo")) -> list[str] | None:
    """The vector extensions TensorFlow uses that this CPU has (None: the system does not say)."""
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        return None
    flags: set[str] = set()
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            flags.update(line.split(":", 1)[-1].split())
            break
    return [name for name in CPU_FEATURES if name in flags]


def devices() -> list[Check]:
    import tensorflow as tf

    gpus = [d.name for d in tf.config.list_physical_devices("GPU")]
    cuda = bool(tf.test.is_built_with_cuda())
    driver = Path("/proc/driver/nvidia/version").exists() or shutil.which("nvidia-smi") is not None
    if gpus:
        gpu = Check("devices", "GPUs", OK, f"{len(gpus)}: {', '.join(gpus)}")
    elif driver:
        gpu = Check(
            "devices",
            "GPUs",
            WARN,
            "an NVIDIA driver is present, but TensorFlow sees no GPU",
            "install TensorFlow with its CUDA libraries: pip install 'tensorflow[and-cuda]'",
        )
    else:
        gpu = Check("devices", "GPUs", OK, "none: training runs on the CPU")
    gpu.details = {"gpus": gpus, "built_with_cuda": cuda}
    features = cpu_features()
    cores = os.cpu_count() or 0
    if features is None:
        cpu = Check("devices", "CPU", OK, f"{cores} cores (features not readable here)")
    elif "avx2" not in features:
        cpu = Check(
            "devices",
            "CPU",
            WARN,
            f"{cores} cores, {' '.join(features) or 'no AVX'}",
            "this CPU lacks AVX2: TensorFlow's wheels run slowly or not at all on it",
        )
    else:
        cpu = Check("devices", "CPU", OK, f"{cores} cores, {' '.join(features)}")
    cpu.details = {"cores": cores, "features": features}
    return [gpu, cpu]


# --- the Keras cache -----------------------------------------------------------------------------


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _megabytes(size: int) -> str:
    return f"{size / 1e6:,.0f} MB" if size >= 1e6 else f"{size / 1e3:,.0f} kB"


def cache(network_up: bool | None) -> list[Check]:
    """Which of kcnn's downloadable data sets and backbone weight files the Keras cache holds,
    and what a run would download instead; offline, one line of advice for what is missing."""
    from kcnn.data.datasets import DATASETS, keras_home  # NumPy: not for `kcnn --help`

    home = keras_home()
    checks = [Check("cache", "Keras home", OK, str(home), details={"path": str(home)})]
    missing_data, missing_weights = [], []
    for entry in DATASETS.values():
        if entry.offline:
            continue
        where = home / "datasets" / (entry.cache or f"{entry.name}.npz")
        if where.exists() and (where.is_file() or any(where.iterdir())):
            found = f"cached ({_megabytes(_size(where))})"
            checks.append(Check("cache", entry.name, OK, found, details={"cached": True}))
            continue
        origin = entry.url or "https://storage.googleapis.com/ (Keras)"
        missing_data.append(entry)
        found = f"not cached: the first run downloads it from {urlparse(origin).hostname}"
        details = {"cached": False, "would_download": origin}
        checks.append(Check("cache", entry.name, OK, found, details=details))
    for backbone in BACKBONES.values():
        path = cache_path(home, backbone, 224)
        if path.is_file():
            found = f"ImageNet weights cached ({_megabytes(path.stat().st_size)})"
            checks.append(Check("cache", backbone.name, OK, found, details={"cached": True}))
            continue
        missing_weights.append(backbone.name)
        details = {"cached": False, "would_download": backbone.weights_origin(224)}
        found = f"ImageNet weights not cached: transfer downloads {path.name}"
        checks.append(Check("cache", backbone.name, OK, found, details=details))
    if network_up is False and missing_data:
        names = ", ".join(e.name for e in missing_data)
        falls = [f"{e.name} falls back to {e.fallback}" for e in missing_data if e.fallback]
        checks.append(
            Check(
                "cache",
                "data sets offline",
                WARN,
                f"not cached and no network: {names}",
                "pass --data-dir with a data set's original files (see `kcnn list datasets`)"
                + (f"; {', '.join(falls)}" if falls else ""),
            )
        )
    if network_up is False and missing_weights:
        checks.append(
            Check(
                "cache",
                "weights offline",
                WARN,
                f"ImageNet weights not cached and no network: {', '.join(missing_weights)}",
                f"copy the weight files into {home / 'models'}, or use transfer --weights none",
            )
        )
    return checks


# --- the run folder and the network --------------------------------------------------------------


def writable(out: Path) -> Check:
    """Whether run folders can be made under `out`: one temporary file there (or in the nearest
    existing parent, when `out` does not exist yet), removed at once."""
    probe_in = out
    while not probe_in.exists() and probe_in != probe_in.parent:
        probe_in = probe_in.parent
    try:
        if not probe_in.is_dir():
            raise NotADirectoryError(f"{probe_in} is not a folder")
        with tempfile.NamedTemporaryFile(dir=probe_in, prefix=".kcnn-doctor-"):
            pass
    except OSError as e:
        return Check(
            "files",
            "run folder",
            FAIL,
            f"{out}: cannot write ({e.strerror or e})",
            "pass --out with a folder you can write to (kcnn train ... --out PATH)",
        )
    found = f"{out}: writable" + ("" if out.exists() else " (made by the first run)")
    return Check("files", "run folder", OK, found, details={"path": str(out)})


def download_host() -> tuple[str, int]:
    """The host Keras downloads data sets and backbone weights from."""
    url = urlparse(next(iter(BACKBONES.values())).weights_url)
    return url.hostname or "storage.googleapis.com", url.port or 443


def reachable(host: str, port: int, timeout: float = NETWORK_TIMEOUT) -> tuple[bool, str]:
    """One TCP connection to host:port, name lookup included, given at most `timeout` seconds
    (a thread bounds the lookup too: an offline resolver can otherwise stall far longer)."""
    answer: list[tuple[bool, str]] = []

    def attempt() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                answer.append((True, "answers"))
        except OSError as e:
            answer.append((False, str(e.strerror or e)))

    worker = threading.Thread(target=attempt, daemon=True)
    worker.start()
    worker.join(timeout)
    return answer[0] if answer else (False, f"no answer within {timeout:g} s")


def network(probe: Callable[[str, int], tuple[bool, str]] = reachable) -> Check:
    host, port = download_host()
    up, why = probe(host, port)
    if up:
        return Check("network", "download host", OK, f"{host}:{port} answers", details={"up": True})
    return Check(
        "network",
        "download host",
        WARN,
        f"{host}:{port}: {why}",
        "offline: the data sets mnist-5k, digits and shapes work; others need the Keras cache "
        "or --data-dir",
        {"up": False},
    )


def diagnose(out: Path, probe: Callable[[str, int], tuple[bool, str]] = reachable) -> list[Check]:
    net = network(probe)
    return [
        *versions(),
        *devices(),
        *cache(net.details["up"]),
        writable(out),
        net,
    ]


def _text(checks: list[Check]) -> str:
    lines, area = [], None
    for check in checks:
        if check.area != area:
            area = check.area
            lines.append(f"{area}:")
        lines.append(f"  {check.status:<4}  {check.name}: {check.found}")
    problems = [c for c in checks if c.advice]
    if problems:
        lines.append("advice:")
        lines.extend(f"  - {c.name}: {c.advice}" for c in problems)
    else:
        lines.append("no problems found")
    return "\n".join(lines)


@app.command(
    "doctor",
    help="Check this machine for kcnn: versions, devices, the Keras cache, the run folder and "
    "the network, with one line of advice per problem.",
)
def doctor(
    out: Annotated[
        Path,
        typer.Option(help="The folder that receives run folders.", metavar="PATH"),
    ] = Path(defaults.OUT_DIR),
    as_json: AsJson = False,
) -> None:
    checks = diagnose(out)
    failed = any(c.status == FAIL for c in checks)
    if as_json:
        print_json({"checks": [asdict(c) for c in checks], "ok": not failed})
    else:
        typer.echo(_text(checks))
    if failed:
        raise typer.Exit(1)
