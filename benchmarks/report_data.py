"""RESULTS.md's data section (benchmarks/data_bench.py's figures): every figure from
results.json, with its target and whether it is met; a target whose run did not happen at the
stated size is said to be not measured, never met."""

from __future__ import annotations

DECODE_TARGET = 4.0  # × the full-decode Pillow loop, per core
MEMORY_TARGET_MIB = 2.5 * 1024  # 1,000 photos
FLAT_TARGET = 0.10  # 5,000 photos' peak within 10 % of 1,000's
SPEEDUP_TARGET = 10.0  # the 100-photo run against the code before streaming


def met(ok: bool) -> str:
    return "**met**" if ok else "**not met**"


def _ratio(r: dict) -> str:
    if r.get("median") is None:
        return "–"
    return f"{r['median']:.2f}× ({r['low']:.2f}–{r['high']:.2f})"


def data_section(s: dict, note) -> list[str]:
    p, d = s["photos"], s["decoding"]
    ips = d["median_images_per_second"]
    one = d["one_core"]
    out = [
        "## 9. Image folders read from disk",
        "",
        note(s),
        "",
        f"Generated photos: {p['size'][0]}×{p['size'][1]} JPEGs, {p['mean_bytes'] / 1e6:.1f} MB "
        f"each on average ({p['how']}; generated in {p['generated_seconds']:.0f} s).",
        "",
        f"**Decoding to {d['target'][0]}×{d['target'][1]}**, {d['images']} photos per "
        "contestant and repeat, images/s (medians; ratios per repeat):",
        "",
        "| contestant | cores | images/s |",
        "|---|---|---|",
        f"| kcnn's decoder (DCT-scaled JPEG, EXIF, exact resize) | 1 | {ips['kcnn-1']:.1f} |",
        f"| Pillow, full decode then resize (timm's path) | 1 | {ips['pillow']:.1f} |",
        f"| keras.utils.image_dataset_from_directory | 1 | {ips['keras-1']:.1f} |",
        f"| kcnn's decoder on its thread pool | {d['cores']} | {ips['kcnn-pool']:.1f} |",
        f"| keras.utils.image_dataset_from_directory | {d['cores']} | {ips['keras']:.1f} |",
        "",
        "| ratio | value | target | |",
        "|---|---|---|---|",
        f"| kcnn ÷ Pillow full decode, one core | {_ratio(one['pillow'])} | >= 4× | "
        f"{met((one['pillow']['median'] or 0) >= DECODE_TARGET)} |",
        f"| kcnn ÷ Keras, one core | {_ratio(one['keras-1'])} | | |",
        f"| kcnn ÷ Keras, every core | {_ratio(d['every_core']['keras'])} | | |",
        "",
    ]
    out += _memory(s["memory"])
    out += _against_old(s.get("against_old") or {})
    out += _input_wait(s.get("input_wait") or {})
    return out


def _memory(rows: list[dict]) -> list[str]:
    out = [
        "**Peak resident memory** of `kcnn transfer mobilenetv2 --weights none --image-size 96 "
        "--epochs 1` (the child's own peak, ru_maxrss):",
        "",
        "| photos | peak RSS MiB | whole run s | test accuracy | load before / after |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        out.append(
            f"| {r['photos']:,} | {r['peak_rss_mib']:.0f} | {r['wall']:.0f} | "
            f"{r['test_accuracy']:.3f} | {r['load_before']} / {r['load_after']} |"
        )
    by = {r["photos"]: r for r in rows}
    out += ["", "| target | value | |", "|---|---|---|"]
    if 1000 in by:
        peak = by[1000]["peak_rss_mib"]
        out.append(
            f"| 1,000 photos under 2.5 GB | {peak:.0f} MiB | {met(peak < MEMORY_TARGET_MIB)} |"
        )
    else:
        out.append("| 1,000 photos under 2.5 GB | not measured at 1,000 photos | |")
    if 1000 in by and 5000 in by:
        growth = by[5000]["peak_rss_mib"] / by[1000]["peak_rss_mib"] - 1
        out.append(
            f"| 5,000 photos within 10 % of 1,000's peak | {growth:+.1%} | "
            f"{met(growth <= FLAT_TARGET)} |"
        )
    else:
        out.append("| 5,000 photos within 10 % of 1,000's peak | not measured at both sizes | |")
    return [*out, ""]


def _against_old(s: dict) -> list[str]:
    if "skipped" in s or not s:
        return [
            f"**Against the code before streaming**: not run ({s.get('skipped', 'no run')}).",
            "",
        ]
    new, old = s["new"], s["old"]
    whole = s["photos"] >= 100
    if s["photos"] < s["photos_wanted"]:
        why = (
            f" (not the {s['photos_wanted']} asked for: the old code holds every photo decoded at "
            "full size, and the machine had too little memory available for more)"
        )
    else:
        why = "" if whole else " (fewer than the target's 100, as asked)"
    out = [
        f"**Against the code before streaming** (commit {s['old_commit']}, unpacked with `git "
        "archive` and run by its checkout's virtual environment), the same command over "
        f"{s['photos']} photos{why}, one after the other:",
        "",
        "| code | whole run s | peak RSS MiB | test accuracy | load before / after |",
        "|---|---|---|---|---|",
        f"| streaming (this) | {new['wall']:.0f} | {new['peak_rss_mib']:.0f} | "
        f"{new['test_accuracy']:.3f} | {new['load_before']} / {new['load_after']} |",
        f"| before | {old['wall']:.0f} | {old['peak_rss_mib']:.0f} | {old['test_accuracy']:.3f} | "
        f"{old['load_before']} / {old['load_after']} |",
        "",
        f"Speed-up {s['speedup']:.1f}×, peak memory {s['memory_ratio']:.1f}× lower. Target: the "
        f"100-photo run at least 10× faster: "
        + (met(s["speedup"] >= SPEEDUP_TARGET) if whole else "**not measured at 100 photos**")
        + ".",
        "",
    ]
    return out


def _input_wait(s: dict) -> list[str]:
    if not s:
        return []
    out = [
        "**Waiting on input**: the share of step time spent waiting for batches, "
        "1 − (epoch s with the same batches already prepared in memory, a tf.data cache) / "
        "(epoch s with kcnn's pipeline), the two alternated epoch by epoch (medians; the "
        "photos' pipeline reads its image cache, as a run does after its first epoch); "
        "median (lowest–highest) over repeats in fresh processes:",
        "",
        "| case | input-wait share | epoch s, pipeline | epoch s, in memory |",
        "|---|---|---|---|",
    ]
    for name, r in s.items():
        share = r["input_wait_share"]
        runs = r["runs"]
        pipe = sorted(x["epoch_seconds"]["pipeline"] for x in runs)[len(runs) // 2]
        held = sorted(x["epoch_seconds"]["in memory"] for x in runs)[len(runs) // 2]
        out.append(
            f"| {name} | {share['median']:.0%} ({share['low']:.0%}–{share['high']:.0%}) | "
            f"{pipe:.2f} | {held:.2f} |"
        )
    return [*out, ""]
