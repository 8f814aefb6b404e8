"""README.md's speed figures, written from benchmarks/results.json (never typed by hand).

    python benchmarks/readme_figures.py          # rewrite the marked blocks in README.md
    python benchmarks/readme_figures.py --check  # exit 1 if README.md differs from results.json

Each block sits between `<!-- figures:NAME -->` and `<!-- /figures:NAME -->` in README.md; the
text between the markers is what `BLOCKS[NAME](results)` makes. `make bench` rewrites them after
each run; tests/test_benchmarks.py checks that the committed README equals what this makes from
the committed results.json.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
README = HERE.parent / "README.md"
RESULTS = HERE / "results.json"


def scaleout(results: dict) -> str:
    """The "What each costs" bullet of README's "Scaling out"."""
    s = results.get("sections", {}).get("scaleout")
    if not s:
        return (
            "- **What each costs:** not measured yet: `python benchmarks/run_all.py --only "
            "scaleout` measures it."
        )
    c, r = s["configurations"], s["epoch_time_ratios"]
    one, mirrored = c["one device"], c["mirrored, 2 logical CPUs"]
    mixed, xla = c["mixed precision"], c["XLA"]
    accuracies = sorted({f"{x['test_accuracy']:.3f}" for x in c.values()})
    cores = results.get("machine", {}).get("cores", "?")
    return (
        f"- **What each costs** (`run_all.py --only scaleout`, {s['date']}, on {cores} CPU cores, load "
        f"{s['load_before']}; {s['arch']}, {s['dataset']}, {s['epochs']} epochs, batch "
        f"{s['batch_size']}; median of {s['repeats']} shuffled repeats; from "
        "benchmarks/results.json): mirrored over 2 logical CPUs "
        f"{mirrored['later_epoch_seconds']:.2f} s/epoch against "
        f"{one['later_epoch_seconds']:.2f} s on one device "
        f"({r['mirrored, 2 logical CPUs']['median']:.2f}× one device's speed: the same cores do the work); "
        f"mixed precision (bfloat16 on a CPU) {mixed['later_epoch_seconds']:.2f} s/epoch "
        f"({r['mixed precision']['median']:.2f}× the speed); XLA {xla['later_epoch_seconds']:.2f} s/epoch "
        f"({r['XLA']['median']:.2f}× the speed) plus {xla['first_epoch_extra_seconds']:.1f} s of "
        f"compiling in its first epoch (one device: {one['first_epoch_extra_seconds']:.1f} s of "
        f"tracing). Test accuracy: {', '.join(accuracies)}. On GPUs the trade goes the other "
        "way: float16 and XLA usually win, and mirrored scales with the number of GPUs. XLA "
        "with mirrored logical CPU devices is refused (XLA cannot place the replicas' variables "
        "there)."
    )


BLOCKS = {"scaleout": scaleout}


def render(readme: str, results: dict) -> str:
    """`readme` with every marked block rewritten from `results`."""
    for name, make in BLOCKS.items():
        pattern = re.compile(
            rf"(<!-- figures:{name} -->\n).*?(\n<!-- /figures:{name} -->)", flags=re.DOTALL
        )
        if not pattern.search(readme):
            raise SystemExit(f"README.md has no block <!-- figures:{name} -->")
        text = make(results)
        readme = pattern.sub(lambda m, text=text: m.group(1) + text + m.group(2), readme)
    return readme


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    results = json.loads(RESULTS.read_text())
    current = README.read_text()
    wanted = render(current, results)
    if "--check" in argv:
        if wanted != current:
            print("README.md's figures differ from benchmarks/results.json", file=sys.stderr)
            return 1
        return 0
    README.write_text(wanted)
    return 0


if __name__ == "__main__":
    sys.exit(main())
