"""`kcnn audit`: what is in a data set before a network trains on it.

The data set is loaded by kcnn's own loaders (`datasets.load`) and split as training splits it
(`splits.make_splits`, same seed and fractions), so the audit sees the very images and splits a
run would. Each image is named as its user knows it: its file, or its place in the array it came
from (`x_train[17]`, `x_test[3]`). An image folder is read a chunk of files at a time, on the
decoding thread pool: what is kept of each image is its digest, its hashes and a grey 32×32
picture (1 KB), never the folder's pixels.

Findings: exact duplicates (same decoded pixels), near duplicates (`image_hashes`: pHash
candidates checked on the pictures), with the groups that span train / validation / test
(leakage) first; class counts and their imbalance; image sizes and modes; blank, tiny and
unreadable images.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from kcnn.data import image_hashes

# Candidate pairs: pHashes (of the image or of a one-pixel shift) this many bits apart. A pHash
# has 32 of its 64 bits set (those above the median) unless frequencies tie, so distances are
# even: 2 is the first step. On mnist-5k's planted copies it already finds every one (a shift is
# matched by the shifted hashes, not by a wider radius), with far fewer candidates than 4 gives.
NEAR_BITS = 2
NEAR_DIFFERENCE = 0.11  # ... kept when their pictures differ this little (image_hashes.difference)
MOST_CANDIDATES = 20_000_000  # candidate comparisons before the near search stops and says so
MEMBERS_LISTED = 100  # images named per group in the JSON (its size says how many there are)
TINY_SIDE = 8  # an image narrower or lower than this many pixels is tiny...
TINY_SHARE = 0.25  # ... as is one under a quarter of the data set's common width or height
CHUNK = 512  # images decoded and hashed at a time
SPLIT_ORDER = {"train": 0, "val": 1, "test": 2, "unused": 3}  # unused: left out by --limit


@dataclass
class Seen:
    """Every image of a data set as the audit saw it, one row each in the data set's order."""

    names: list[str]
    splits: list[str]  # where training puts it: train, val or test
    labels: np.ndarray
    class_names: list[str]
    digests: list[bytes | None]  # None: unreadable
    greys: np.ndarray  # (N, 32, 32) uint8, the picture the hashes are of
    hashes: np.ndarray  # (len(SHIFTS), N) uint64
    sizes: list[tuple[int, int]]  # (width, height), as stored
    modes: list[str]
    blank: np.ndarray  # bool: every pixel the same
    unreadable: list[tuple[int, str]] = field(default_factory=list)  # (row, why)
    left_out: list[tuple[str, str]] = field(default_factory=list)  # not images: (path, why)
    pixels_of: Any = None  # row -> uint8 (H, W, C), for the report's pictures

    def __len__(self) -> int:
        return len(self.names)

    @property
    def readable(self) -> np.ndarray:
        return np.array([d is not None for d in self.digests], dtype=bool)


# --- reading ---------------------------------------------------------------------------------------


def split_places(
    data, seed: int, val_split: float, test_split: float, limit: int | None = None
) -> tuple[list, list]:
    """Where training puts each image of the data's training and test sources: the same
    `make_splits` call a run makes, on positions instead of images (with `--limit`, the images
    it leaves out are `unused`)."""
    from kcnn.data import splits

    n_train = len(data.y_train)
    n_test = 0 if data.x_test is None else len(data.y_test)
    index = dataclasses.replace(
        data,
        x_train=np.arange(n_train),
        x_test=None if data.x_test is None else np.arange(n_test),
    )
    parts = splits.make_splits(index, val_split, seed, limit, test_split)
    train_side = np.full(n_train, "unused", dtype=object)
    test_side = np.full(n_test, "unused", dtype=object)
    train_side[np.asarray(parts.x_train, dtype=np.int64)] = "train"
    train_side[np.asarray(parts.x_val, dtype=np.int64)] = "val"
    tested = train_side if data.x_test is None else test_side
    tested[np.asarray(parts.x_test, dtype=np.int64)] = "test"
    return list(train_side), list(test_side)


def _array_chunks(x):
    for start in range(0, len(x), CHUNK):
        yield start, np.asarray(x[start : start + CHUNK])


def _stats(pixels: list[np.ndarray]):
    """Digests, grey pictures and blankness of a chunk of decoded images."""
    digests = [image_hashes.digest(p) for p in pixels]
    greys = image_hashes.greys_32(pixels)
    blank = np.array([p.min() == p.max() for p in pixels], dtype=bool)
    return digests, greys, blank


def _read_arrays(data, places) -> Seen:
    names, digests, greys, blank = [], [], [], []
    sources = [("x_train", data.x_train)] + (
        [("x_test", data.x_test)] if data.x_test is not None else []
    )
    for prefix, x in sources:
        names += [f"{prefix}[{i}]" for i in range(len(x))]
        for _, chunk in _array_chunks(x):
            d, g, b = _stats(list(chunk))
            digests += d
            greys.append(g)
            blank.append(b)
    height, width, channels = data.x_train.shape[1:]
    count = len(names)
    arrays = [x for _, x in sources]
    offsets = np.cumsum([0] + [len(x) for x in arrays])

    def pixels_of(row: int) -> np.ndarray:
        k = int(np.searchsorted(offsets, row, side="right") - 1)
        return np.asarray(arrays[k][row - offsets[k]])

    return Seen(
        names,
        places[0] + places[1],
        _labels(data),
        list(data.class_names),
        digests,
        np.concatenate(greys),
        image_hashes.shifted_phashes(np.concatenate(greys)),
        [(width, height)] * count,
        ["RGB" if channels == 3 else "L"] * count,
        np.concatenate(blank),
        pixels_of=pixels_of,
    )


def _labels(data) -> np.ndarray:
    parts = [data.y_train] + ([data.y_test] if data.y_test is not None else [])
    return np.concatenate([np.asarray(p, dtype=np.int64) for p in parts])


def _read_folders(data, places) -> Seen:
    """An image folder (or its train/ and test/), decoded a chunk of files at a time at each
    file's own size, in the mode training reads the folder at."""
    from kcnn.data import decode

    sources = [data.x_train] + ([data.x_test] if data.x_test is not None else [])
    mode = data.x_train.mode
    files = [f for x in sources for f in x.folder.files]
    headers = [h for x in sources for h in x.folder.headers]
    digests: list[bytes | None] = []
    greys, blank, unreadable = [], [], []

    def one(i: int):
        try:
            return decode.decode(files[i], mode, headers[i].size)
        except decode.ImageError as e:
            return e

    for start in range(0, len(files), CHUNK):
        decoded = list(decode.pool().map(one, range(start, min(start + CHUNK, len(files)))))
        good = [p for p in decoded if not isinstance(p, decode.ImageError)]
        d, g, b = _stats(good) if good else ([], np.zeros((0, 32, 32), np.uint8), [])
        it_d, it_g, it_b = iter(d), iter(g), iter(b)
        for k, p in enumerate(decoded):
            if isinstance(p, decode.ImageError):
                unreadable.append((start + k, str(p)))
                digests.append(None)
                greys.append(np.zeros((32, 32), np.uint8))
                blank.append(False)
            else:
                digests.append(next(it_d))
                greys.append(next(it_g))
                blank.append(bool(next(it_b)))
    grey = np.stack(greys) if greys else np.zeros((0, 32, 32), np.uint8)
    return Seen(
        files,
        places[0] + places[1],
        _labels(data),
        list(data.class_names),
        digests,
        grey,
        image_hashes.shifted_phashes(grey),
        [h.size for h in headers],
        [h.mode for h in headers],
        np.array(blank, dtype=bool),
        unreadable,
        [lo for x in sources for lo in (*x.folder.left_out, *x.folder.unreadable)],
        pixels_of=lambda row: decode.decode(files[row], mode, headers[row].size),
    )


def read(data, seed: int, val_split: float, test_split: float, limit: int | None = None) -> Seen:
    """Every image of a loaded data set (`datasets.load`), as the audit sees it."""
    from kcnn.data.files import is_files

    places = split_places(data, seed, val_split, test_split, limit)
    if is_files(data.x_train):
        return _read_folders(data, places)
    return _read_arrays(data, places)


# --- finding ---------------------------------------------------------------------------------------


def exact_groups(seen: Seen) -> list[list[int]]:
    """Rows with the same decoded pixels, two or more to a group."""
    by: dict[bytes, list[int]] = {}
    for row, d in enumerate(seen.digests):
        if d is not None:
            by.setdefault(d, []).append(row)
    return [rows for rows in by.values() if len(rows) > 1]


def near_groups(seen: Seen, exact: list[list[int]]) -> tuple[list[list[int]], bool, int]:
    """Clusters of images that are near copies of one another (each cluster holds at least two
    different images; their exact copies come along), whether the search was cut short at
    MOST_CANDIDATES, and how many pairs were confirmed.

    One image stands for its exact copies, and one for the images of the same pHash: those are
    checked against it alone (a data set of thousands of images with one hash costs thousands
    of checks, not millions), and the search runs on the hashes that differ."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    copies = {rows[0]: rows for rows in exact}
    twin = {r for rows in exact for r in rows[1:]}
    stand = np.array(
        [r for r in range(len(seen)) if seen.digests[r] is not None and not seen.blank[r]
         and r not in twin], dtype=np.int64,
    )  # fmt: skip
    _, first, same_hash = np.unique(seen.hashes[0, stand], return_index=True, return_inverse=True)
    star = np.stack([first[same_hash], np.arange(len(stand))], axis=1)
    star = star[star[:, 0] != star[:, 1]]  # each image and the first of its hash
    shifts = len(image_hashes.SHIFTS)
    hashes = seen.hashes[:, stand[first]].reshape(-1)
    owner = np.tile(first, shifts)
    i, j, capped = image_hashes.near_pairs(hashes, NEAR_BITS, MOST_CANDIDATES)
    a, b = owner[i], owner[j]
    keep = a != b
    found = np.stack([np.minimum(a, b)[keep], np.maximum(a, b)[keep]], axis=1)
    pairs = np.unique(np.concatenate([star, found]), axis=0)
    pairs = pairs[_confirmed(seen, stand, pairs)]
    graph = coo_matrix(
        (np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(len(stand), len(stand))
    )
    _, component = connected_components(graph, directed=False)
    sizes = np.bincount(component)
    groups: dict[int, list[int]] = {}
    for k, c in enumerate(component):
        if sizes[c] > 1:
            row = int(stand[k])
            groups.setdefault(int(c), []).extend(copies.get(row, [row]))
    return [sorted(g) for g in groups.values()], capped, len(pairs)


def _confirmed(seen: Seen, stand: np.ndarray, pairs: np.ndarray, chunk: int = 4096) -> np.ndarray:
    close = np.zeros(len(pairs), dtype=bool)
    for s in range(0, len(pairs), chunk):
        p = pairs[s : s + chunk]
        a, b = seen.greys[stand[p[:, 0]]], seen.greys[stand[p[:, 1]]]
        close[s : s + chunk] = image_hashes.difference(a, b) <= NEAR_DIFFERENCE
    return close


def group_record(seen: Seen, rows: list[int]) -> dict[str, Any]:
    """One group of copies as the report and --json say it: its images (the first
    MEMBERS_LISTED), their splits and classes, and whether it spans splits (leakage)."""
    splits = sorted({seen.splits[r] for r in rows}, key=SPLIT_ORDER.get)
    labels = {int(seen.labels[r]) for r in rows}
    return {
        "size": len(rows),
        "splits": splits,
        "cross_split": len(set(splits) - {"unused"}) > 1,  # leakage
        "labels_differ": len(labels) > 1,
        "images": [
            {
                "image": seen.names[r],
                "split": seen.splits[r],
                "class": seen.class_names[int(seen.labels[r])],
            }
            for r in rows[:MEMBERS_LISTED]
        ],
        "rows": rows,  # for the report's pictures; dropped from --json
    }


def _ordered(records: list[dict]) -> list[dict]:
    """Groups that span splits (leakage) first, then the largest."""
    return sorted(records, key=lambda g: (not g["cross_split"], -g["size"]))


def class_counts(seen: Seen) -> list[dict[str, Any]]:
    counts = []
    for k, name in enumerate(seen.class_names):
        mine = [s for s, y in zip(seen.splits, seen.labels, strict=True) if y == k]
        by = Counter(mine)
        counts.append(
            {"class": name, "images": len(mine), **{s: by.get(s, 0) for s in SPLIT_ORDER}}
        )
    return counts


def tiny_rows(seen: Seen) -> list[int]:
    (w, h), _ = Counter(seen.sizes).most_common(1)[0]
    return [
        r
        for r, (width, height) in enumerate(seen.sizes)
        if min(width, height) < TINY_SIDE or width < TINY_SHARE * w or height < TINY_SHARE * h
    ]


def leaked_test_images(seen: Seen, groups: list[list[int]]) -> int:
    """Test images with a copy among the training or validation images."""
    leaked = set()
    for rows in groups:
        if any(seen.splits[r] in ("train", "val") for r in rows):
            leaked.update(r for r in rows if seen.splits[r] == "test")
    return len(leaked)


def findings(seen: Seen) -> dict[str, Any]:
    """Everything the audit found, as one record (`rows` of each group kept for the report)."""
    exact = exact_groups(seen)
    near, capped, confirmed = near_groups(seen, exact)
    counts = class_counts(seen)
    totals = [c["images"] for c in counts]
    sizes = Counter(seen.sizes)
    return {
        "images": len(seen),
        "splits": {s: n for s in SPLIT_ORDER if (n := seen.splits.count(s)) or s != "unused"},
        "leakage": {
            "test_images_with_exact_copy_in_training": leaked_test_images(seen, exact),
            "test_images_with_near_copy_in_training": leaked_test_images(seen, near),
        },
        "exact_duplicates": {
            "groups": _ordered([group_record(seen, g) for g in exact]),
            "images": sum(len(g) for g in exact),
        },
        "near_duplicates": {
            "groups": _ordered([group_record(seen, g) for g in near]),
            "images": sum(len(g) for g in near),
            "pairs_confirmed": confirmed,
            "search_cut_short": capped,
            "method": (
                f"pHash (imagehash's, of the image and its one-pixel shifts) within {NEAR_BITS} "
                f"bits, then a picture difference of at most {NEAR_DIFFERENCE}"
            ),
        },
        "classes": counts,
        "imbalance": (max(totals) / min(totals)) if min(totals) else None,
        "sizes": [{"width": w, "height": h, "images": n} for (w, h), n in sizes.most_common()],
        "modes": dict(Counter(seen.modes).most_common()),
        "blank": _named(seen, np.flatnonzero(seen.blank)),
        "tiny": _named(seen, tiny_rows(seen)),
        "unreadable": [
            {"image": seen.names[r], "split": seen.splits[r], "reason": why}
            for r, why in seen.unreadable
        ]
        + [{"image": p, "split": None, "reason": why} for p, why in seen.left_out],
    }


def _named(seen: Seen, rows) -> list[dict[str, Any]]:
    return [{"image": seen.names[r], "split": seen.splits[r], "row": int(r)} for r in rows]
