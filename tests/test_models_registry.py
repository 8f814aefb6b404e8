"""The architecture registry: decorator registration, duplicate names, discovery of a new file."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import kcnn
from kcnn.models import architectures
from kcnn.models.architectures import ARCHITECTURES, Architecture, get, register
from kcnn.models.layers import Dense, Flatten


def _tiny(name: str) -> Architecture:
    return Architecture(name=name, family="test", year=2026, paper="-", input_shape=(4, 4, 1))


def test_a_taken_name_is_an_error_and_changes_nothing():
    before = dict(ARCHITECTURES)
    with pytest.raises(ValueError, match="'lenet5'.*registered twice"):
        register(_tiny("brand-new-net"), _tiny("lenet5"))(lambda classes: [])
    with pytest.raises(ValueError, match="registered twice"):
        register(_tiny("twin"), _tiny("twin"))(lambda classes: [])
    assert ARCHITECTURES == before and get("lenet5").module.endswith(".lenet5")


def test_register_at_runtime():
    @register(_tiny("runtime-net"))
    def describe(classes):
        return [Flatten(name="flatten"), Dense(classes, activation="softmax", name="out")]

    try:
        assert get("runtime-net").describe(3)[-1].units == 3
        assert get("runtime-net").min_size(1, 3) == 1
    finally:
        del architectures.REGISTRY["runtime-net"]


NEW_MODULE = '''"""A network written for this test: one new file, no list edited."""

from kcnn.models.architectures import Architecture, register
from kcnn.models.layers import Conv, Dense, Flatten, Pool


@register(
    Architecture(
        name="tiny-net",
        family="Tiny",
        year=2026,
        paper="-",
        input_shape=(11, 11, 1),  # 9×9 after the conv: ceil mode pools it to 5×5
        reference_params=8 * 9 + 8 + 8 * 25 * 4 + 4,
    )
)
def describe(classes: int):
    return [
        Conv(8, 3, name="conv"),
        Pool(2, ceil=True, name="pool"),
        Flatten(name="flatten"),
        Dense(classes, activation="softmax", name="out"),
    ]
'''


def test_a_new_architecture_is_one_new_file(tmp_path: Path):
    """Copy kcnn, drop a module into its architectures package, and ask the registry (in a
    fresh interpreter, which must not load TensorFlow to answer)."""
    shutil.copytree(Path(kcnn.__file__).parent, tmp_path / "kcnn")
    (tmp_path / "kcnn" / "models" / "architectures" / "tiny_net.py").write_text(NEW_MODULE)
    script = (
        "import json, sys\n"
        "from kcnn.models import geometry\n"
        "from kcnn.models.architectures import get\n"
        "a = get('tiny-net')\n"
        "t = geometry.totals(geometry.trace(a.describe(4), a.input_shape))\n"
        "print(json.dumps({'params': t.params, 'ref': a.reference_params,\n"
        "  'min': a.min_size(1, 4), 'tf': 'tensorflow' in sys.modules}))\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,  # `python -c` puts the working directory first on sys.path
        env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    found = json.loads(r.stdout)
    assert found["params"] == found["ref"] == 884 and found["min"] == 3 and not found["tf"]
