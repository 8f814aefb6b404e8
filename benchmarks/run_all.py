"""`make bench`: every benchmark against its baselines in the same run, written to
benchmarks/RESULTS.md (and results.json, scaling.png, README.md's marked figures).

    python benchmarks/run_all.py [--repeats 3] [--skip memory ...] [--only levers] [--out DIR]

Comparisons follow benchmarks/protocol.py: at least 3 repeats, every contestant once per repeat
in a shuffled order, ratios taken per repeat (paired) and given as median and range. The
machine's load average is recorded before and after each section, because other processes on a
shared machine move these timings. On a machine with a GPU, TensorFlow and PyTorch both run
there, and the GPU section (benchmarks/gpu.py) runs too; without one it is recorded as not run.

A partial run keeps the other sections of the last run in results.json (each with its date),
never those of an earlier protocol; the lever survey runs only when asked for (`--only levers`).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402
import protocol  # noqa: E402

HERE = Path(__file__).resolve().parent
PY = common.PYTHON
KCNN = [PY, "-m", "kcnn.cli"]
# Results of an earlier protocol are never mixed with this one's (run_all refuses to merge them).
PROTOCOL = "issue-23: >=3 shuffled repeats, paired ratios"
SECTIONS = (
    "startup",
    "throughput",
    "scaleout",
    "transfer",
    "memory",
    "scaling",
    "evaluation",
    "gpu",
    "levers",
    "data",
)


def load() -> str:
    return "/".join(f"{v:.1f}" for v in os.getloadavg())


def startup(repeats: int) -> dict:
    commands = {
        "python -c pass": [PY, "-c", "pass"],
        "python -c 'import typer'": [PY, "-c", "import typer"],
        "kcnn --help": [*KCNN, "--help"],
        "kcnn list": [*KCNN, "list"],
    }
    walls = {k: [] for k in commands}
    for _ in range(repeats + 2):  # alternately
        for k, cmd in commands.items():
            walls[k].append(common.run(cmd)["wall"])
    probe = "import sys, kcnn.cli; print('tensorflow' in sys.modules)"
    loads_tf = common.run([PY, "-c", probe])["stdout"].strip() == "True"
    return {
        "median_seconds": {k: common.median(v) for k, v in walls.items()},
        "runs": walls,
        "imports_tensorflow": loads_tf,
    }


def kcnn_train(arch: str, dataset: str, epochs: int, out: str) -> dict:
    name = f"{arch}-{time.monotonic_ns()}"
    cmd = [PY, str(HERE / "kcnn_timed.py"), "train", arch, "--dataset", dataset]
    cmd += ["--epochs", str(epochs), "--out", out, "--name", name]
    r = common.run(cmd)
    timed = common.last_json(r["stdout"])
    run_dir = glob.glob(os.path.join(out, f"*{name}"))[0]
    m = json.loads(Path(run_dir, "metrics.json").read_text())
    s = timed["epoch_seconds"]
    n = m["train_images_per_second"] * m["train_seconds"] / len(s) if s else None
    return {
        "contestant": "kcnn",
        "params": m.get("params", {}).get("total") if isinstance(m.get("params"), dict) else None,
        "images_per_second": m["train_images_per_second"],
        "first_epoch_images_per_second": n / s[0] if s else None,
        "later_images_per_second": n * (len(s) - 1) / sum(s[1:]) if len(s) > 1 else None,
        "test_accuracy": m["test_accuracy"],
        "epoch_seconds": s,
    }


def has_torch() -> bool:
    return (
        common.run([PY, "-c", "import importlib.util as u; print(bool(u.find_spec('torch')))"])[
            "stdout"
        ].strip()
        == "True"
    )


# Every contestant of the throughput section: its command-line flags for its script.
KERAS = {"keras": [], "keras with kcnn's settings": ["--kcnn-settings"]}
TORCH = {
    "pytorch": [],
    "pytorch channels_last": ["--channels-last"],
    "pytorch compiled": ["--compile"],
}


def baseline(script: str, args: list[str]) -> Callable[[], dict]:
    def run() -> dict:
        try:
            return common.last_json(common.run([PY, HERE / script, *args])["stdout"])
        except (RuntimeError, ValueError) as e:  # recorded, not fatal: the others still count
            return {"error": str(e).strip().splitlines()[-1][:300]}

    return run


def first_epoch_gap(run: dict) -> float | None:
    """Seconds the first epoch took beyond the median later epoch."""
    s = run.get("epoch_seconds") or []
    return s[0] - common.median(s[1:]) if len(s) > 1 else None


def throughput(repeats: int, cases=(("lenet5", "mnist-5k", 10), ("simple-cnn", "shapes", 3))):
    """Every contestant once per repeat, in a shuffled order (benchmarks/protocol.py); kcnn's
    ratio to each, per repeat."""
    torch_names = list(TORCH) if has_torch() else []
    results = {"repeats": repeats, "torch_contestants": torch_names}
    with tempfile.TemporaryDirectory() as out:
        for arch, dataset, epochs in cases:
            args = [arch, "--dataset", dataset, "--epochs", str(epochs)]
            contestants = {"kcnn": lambda a=arch, d=dataset, e=epochs: kcnn_train(a, d, e, out)}
            contestants |= {k: baseline("baseline_keras.py", [*args, *f]) for k, f in KERAS.items()}
            contestants |= {
                k: baseline("baseline_torch.py", [*args, *f])
                for k, f in TORCH.items()
                if k in torch_names
            }
            runs = protocol.shuffled_repeats(
                contestants,
                repeats,
                seed=len(results),
                progress=lambda m, a=arch: print(f"  {a} {m} (load {load()})", file=sys.stderr),
            )
            for r in runs:  # the best PyTorch contestant of each repeat, by whole-run speed
                best = protocol.best_of(runs=[r], names=torch_names, key="images_per_second")[0]
                r["best pytorch"] = {**best, "which": best.get("contestant")}
            names = [*contestants, *(["best pytorch"] if torch_names else [])]
            results[f"{arch} on {dataset}"] = {
                "epochs": epochs,
                "contestants": {
                    name: {
                        key: common.median([r[name][key] for r in runs if r[name].get(key)])
                        for key in (
                            "images_per_second",
                            "first_epoch_images_per_second",
                            "later_images_per_second",
                            "test_accuracy",
                        )
                    }
                    | {
                        "params": next((r[name].get("params") for r in runs), None),
                        "errors": [r[name]["error"] for r in runs if "error" in r[name]],
                    }
                    for name in names
                },
                "ratios": {
                    key: protocol.paired_ratios(runs, "kcnn", names[1:], key)
                    for key in ("images_per_second", "later_images_per_second")
                },
                "pytorch_devices": sorted(
                    {r[n]["device"] for r in runs for n in torch_names if "device" in r[n]}
                ),
                "kcnn_first_epoch_gap_seconds": protocol.spread(
                    [first_epoch_gap(r["kcnn"]) for r in runs]
                ),
                "runs": runs,
            }
    return results


# The README's "What each costs" (Scaling out): the same LeNet-5 run under each option. Each
# configuration's later epochs give its seconds per epoch; the first epoch's excess over them is
# the tracing (and, with XLA, compiling).
SCALEOUT = {
    "one device": [],
    "mirrored, 2 logical CPUs": ["--strategy", "mirrored", "--devices", "2"],
    "mixed precision": ["--mixed-precision"],
    "XLA": ["--jit-compile"],
}
SCALEOUT_RUN = ("lenet5", "mnist-5k", 4)

# `--quick`: every section at a tiny size, to check that the harness works (into a scratch
# --out, never the committed results: these figures mean nothing)
QUICK = {
    "throughput": (("lenet5", "mnist-5k", 2),),
    "scaleout_epochs": 2,
    "transfer": ["--epochs", "2", "--shapes-count", "200", "--backbone", "mobilenetv2"],
    "memory_images": 200,
    "scaling": (300, 600),
    "evaluation": ["--images", "300", "--predict-images", "30"],
    "data": ["--counts", "6,12", "--old-photos", "10", "--pool", "6"],
}
quick = False


def scaleout(repeats: int) -> dict:
    arch, dataset, epochs = SCALEOUT_RUN
    epochs = QUICK["scaleout_epochs"] if quick else epochs

    def one(flags):
        def run():
            try:
                return attempt()
            except (RuntimeError, ValueError, IndexError) as e:  # recorded; the others count
                return {"error": str(e).strip().splitlines()[-1][:300]}

        def attempt():
            name = f"scaleout-{time.monotonic_ns()}"
            cmd = [PY, str(HERE / "kcnn_timed.py"), "train", arch, "--dataset", dataset]
            cmd += ["--epochs", str(epochs), "--out", out, "--name", name, *flags]
            timed = common.last_json(common.run(cmd)["stdout"])
            run_dir = glob.glob(os.path.join(out, f"*{name}"))[0]
            m = json.loads(Path(run_dir, "metrics.json").read_text())
            s = timed["epoch_seconds"]
            later = common.median(s[1:])
            return {
                "epoch_seconds": s,
                "later_epoch_seconds": later,
                "first_epoch_extra_seconds": s[0] - later,
                "test_accuracy": m["test_accuracy"],
                "precision_policy": m.get("precision_policy"),
            }

        return run

    with tempfile.TemporaryDirectory() as out:
        runs = protocol.shuffled_repeats(
            {k: one(f) for k, f in SCALEOUT.items()},
            repeats,
            seed=1,
            progress=lambda m: print(f"  scale-out {m} (load {load()})", file=sys.stderr),
        )
    names = list(SCALEOUT)
    return {
        "arch": arch,
        "dataset": dataset,
        "epochs": epochs,
        "batch_size": 128,
        "repeats": repeats,
        "configurations": {
            k: {
                key: common.median([r[k][key] for r in runs if key in r[k]])
                for key in ("later_epoch_seconds", "first_epoch_extra_seconds", "test_accuracy")
            }
            | {"errors": [r[k]["error"] for r in runs if "error" in r[k]]}
            for k in names
        },
        # per repeat, each configuration's later epoch over one device's (paired)
        "epoch_time_ratios": protocol.paired_ratios(
            [{k: {"t": r[k].get("later_epoch_seconds")} for k in names} for r in runs],
            "one device",
            names[1:],
            "t",
        ),
        "runs": runs,
    }


def levers(repeats: int) -> dict:
    r = common.run([PY, HERE / "levers.py", "--epochs", "8", "--repeats", str(repeats)])
    return common.last_json(r["stdout"])


def transfer() -> dict:
    args = QUICK["transfer"] if quick else ["--epochs", "10", "--shapes-count", "2000"]
    r = common.run([PY, HERE / "feature_cache.py", *args])
    return json.loads(r["stdout"][r["stdout"].index("\n{") :])


def memory(backbone: str) -> dict:
    with tempfile.TemporaryDirectory() as out:
        images = QUICK["memory_images"] if quick else MEMORY_IMAGES
        r = common.run([PY, "-c", MEMORY_RUN, out, backbone, str(images)])
    return {**common.last_json(r["stdout"]), "peak_rss_mib": r["rss_mib"], "wall": r["wall"]}


# The case: a frozen backbone at 224×224 over 10,000 generated 32×32 images, kcnn's
# defaults otherwise (features cached, seed head, batch 128), 1 epoch. make bench runs it with
# MobileNetV2 (about 2 minutes on 2 cores); VGG16 (`--memory-backbone vgg16`) computes the same
# 10,000 feature maps at about 10 images/s: some 18 minutes.
MEMORY_IMAGES = 10_000
MEMORY_RUN = """
import json, sys
from kcnn.commands.transfer import TransferConfig, transfer
out, backbone, images = sys.argv[1], sys.argv[2], int(sys.argv[3])
config = TransferConfig([backbone], dataset="shapes", shapes_count=images, weights="none",
                        image_size=224, epochs=1, out=out, name="memory")
m = transfer(config, quiet=True).runs[0].metrics
print(json.dumps({"backbone": backbone, "images": images, "image_size": 224, "epochs": 1,
                  "batch_size": config.batch_size, "train_seconds": m["train_seconds"],
                  "feature_seconds": m.get("feature_seconds"),
                  "feature_cache_note": m["feature_cache_note"],
                  "test_accuracy": m["test_accuracy"]}))
"""


def scaling(out: Path, sizes=(1_000, 5_000, 20_000, 60_000)) -> dict:
    sizes = QUICK["scaling"] if quick else sizes
    rows = []
    for n in sizes:
        r = common.run([PY, HERE / "scaling.py", str(n)])
        rows.append({**common.last_json(r["stdout"]), "peak_rss_mib": r["rss_mib"]})
        print(f"  scaling {n} done (load {load()})", file=sys.stderr)
    plot_scaling(rows, out / "scaling.png")
    return {"rows": rows}


def plot_scaling(rows, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = [r["images"] for r in rows]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    a.plot(n, [r["train_seconds"] for r in rows], "o-", label="training (1 epoch)")
    a.plot(n, [r["wall"] for r in rows], "s--", label="whole run")
    a.set(xlabel="images generated", ylabel="seconds", title="Time")
    a.legend()
    data_mib = [x * 32 * 32 * 3 / 1024**2 for x in n]
    b.plot(n, [r["peak_rss_mib"] for r in rows], "o-", label="peak RSS")
    b.plot(n, data_mib, ":", label="the uint8 images themselves")
    b.set(xlabel="images generated", ylabel="MiB", title="Peak memory")
    b.legend()
    fig.suptitle("kcnn train lenet5 --dataset shapes, 1 epoch")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def evaluation(repeats: int) -> dict:
    args = QUICK["evaluation"] if quick else []
    r = common.run([PY, HERE / "eval_predict.py", "--repeats", str(repeats), *args])
    return common.last_json(r["stdout"])


def data(repeats: int) -> dict:
    """Image folders read from disk (benchmarks/data_bench.py): decoding speed, peak memory over
    100 to 5,000 12-megapixel photos, against the code before streaming, and input waits."""
    args = QUICK["data"] if quick else []
    r = common.run([PY, HERE / "data_bench.py", "--repeats", str(repeats), *args])
    return common.last_json(r["stdout"])


def gpu_section() -> dict:
    """benchmarks/gpu.py, on a GPU machine only (it says so itself otherwise)."""
    return common.last_json(common.run([PY, HERE / "gpu.py"])["stdout"])


def gpu() -> str:
    probe = "import tensorflow as tf; print(len(tf.config.list_physical_devices('GPU')))"
    try:
        count = int(common.run([PY, "-c", probe])["stdout"].strip().splitlines()[-1])
    except (RuntimeError, ValueError):
        return "unknown"
    return f"{count} GPU(s) visible to TensorFlow" if count else "none"


def versions() -> dict:
    probe = (
        "import json, tensorflow as tf, keras, numpy\n"
        "v = {'tensorflow': tf.__version__, 'keras': keras.__version__, 'numpy': numpy.__version__}\n"
        "try:\n import torch; v['torch'] = torch.__version__\nexcept ImportError: v['torch'] = None\n"
        "print(json.dumps(v))"
    )
    return common.last_json(common.run([PY, "-c", probe])["stdout"])


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=protocol.MIN_REPEATS)
    # The lever survey takes longer than everything else together on 2 cores, scale-out
    # (README's "What each costs", not a comparison with a baseline) about 200 s, and the data
    # section (thousands of 12-megapixel photos) about 20 minutes, so `make bench` (under 15
    # minutes) leaves them out: run them with --only levers / --only scaleout / --only data.
    parser.add_argument("--skip", nargs="*", default=None, choices=SECTIONS)
    parser.add_argument(
        "--memory-backbone", default="mobilenetv2", choices=("mobilenetv2", "vgg16")
    )
    parser.add_argument("--only", nargs="*", default=None, choices=SECTIONS)
    parser.add_argument("--out", default=str(HERE))
    parser.add_argument("--quick", action="store_true", help="tiny sizes, to check the harness")
    args = parser.parse_args(argv)
    global quick
    quick = args.quick
    if quick and Path(args.out).resolve() == HERE:
        raise SystemExit("--quick figures mean nothing: give a scratch --out, not benchmarks/")
    if args.skip is None:  # the long sections are left out unless --only names them
        args.skip = ["levers", "scaleout", "data"] if args.only is None else []
    wanted = [s for s in SECTIONS if s not in args.skip and (args.only is None or s in args.only)]
    results_path = Path(args.out) / "results.json"
    # a partial run (--only) keeps the other sections of the last full one
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    if results.get("protocol") != PROTOCOL:  # an earlier protocol's figures: not kept beside these
        results = {}
    machine_gpu = gpu()
    if machine_gpu == "none" and "gpu" in wanted:  # recorded as not run, with the reason
        wanted.remove("gpu")
        results.setdefault("sections", {})["gpu"] = {
            "skipped": "no GPU visible to TensorFlow on the machine of the last run",
            "date": time.ctime(),
        }
    results.update(
        {
            "protocol": PROTOCOL,
            "quick": quick,
            "machine": {**common.machine(), "gpu": machine_gpu},
            "versions": versions(),
            "date": time.ctime(),
        }
    )
    sections = results.setdefault("sections", {})
    started = time.perf_counter()
    for section in wanted:
        before, t0 = load(), time.perf_counter()
        print(f"{section} (load {before}) ...", file=sys.stderr)
        run = {
            "startup": lambda: startup(args.repeats),
            "throughput": lambda: throughput(
                args.repeats, *([QUICK["throughput"]] if quick else [])
            ),
            "scaleout": lambda: scaleout(args.repeats),
            "levers": lambda: levers(1),
            "transfer": transfer,
            "memory": lambda: memory(args.memory_backbone),
            "scaling": lambda: scaling(Path(args.out)),
            "evaluation": lambda: evaluation(args.repeats),
            "gpu": gpu_section,
            "data": lambda: data(args.repeats),
        }[section]
        sections[section] = {
            **run(),
            "load_before": before,
            "load_after": load(),
            "seconds": time.perf_counter() - t0,
            "date": time.ctime(),
        }
        results_path.write_text(json.dumps(results, indent=1))
    results["total_seconds"] = time.perf_counter() - started
    results_path.write_text(json.dumps(results, indent=1))
    from report import write_report

    write_report(results, Path(args.out) / "RESULTS.md")
    if Path(args.out).resolve() == HERE:  # the committed results: README's figures follow them
        import readme_figures

        readme_figures.main([])
    print(
        f"wrote {Path(args.out) / 'RESULTS.md'} in {results['total_seconds']:.0f} s",
        file=sys.stderr,
    )
    return results


if __name__ == "__main__":
    main()
