"""The repository stands on its own: no file points to material outside it."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Spelled in pieces, so that this file does not name them itself.
OUTSIDE = ("../" + "shared", "SPEC" + ".md", "shared" + "/seeds")


def test_no_file_points_outside_the_repository():
    offenders = []
    for folder in ("kcnn", "tests", "experiments", "benchmarks", "docs"):
        for path in (ROOT / folder).rglob("*"):
            if path.suffix in (".py", ".md", ".toml", ".txt"):
                text = path.read_text(encoding="utf-8", errors="replace")
                offenders += [f"{path.relative_to(ROOT)}: {o}" for o in OUTSIDE if o in text]
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    offenders += [f"README.md: {o}" for o in OUTSIDE if o in readme]
    assert not offenders, offenders
