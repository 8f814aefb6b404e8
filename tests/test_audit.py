"""`kcnn audit` and the leakage check before training, as a user meets them (issue 31)."""

from __future__ import annotations

import io
import json
from itertools import combinations
from pathlib import Path

import numpy as np
import pytest
from conftest import kcnn, refused
from PIL import Image

from kcnn.data import image_hashes

# --- the hashes -------------------------------------------------------------------------------------


def test_phash_is_imagehash_phash():
    """The batched pHash is imagehash's, bit for bit: on grey and colour noise of several sizes,
    a gradient, a flat and a mirror-symmetric image (ties at the median), and 300 real digits."""
    import imagehash

    from kcnn.data import datasets

    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (28, 28, 1), dtype=np.uint8) for _ in range(20)]
    images += [rng.integers(0, 256, (37, 23, 3), dtype=np.uint8) for _ in range(20)]
    smooth = np.linspace(0, 255, 64 * 48).reshape(48, 64).astype(np.uint8)[..., None]
    symmetric = rng.integers(0, 256, (32, 16, 1), dtype=np.uint8)
    images += [smooth, np.full((20, 20, 1), 9, np.uint8), np.concatenate([symmetric,
               symmetric[:, ::-1]], axis=1)]  # fmt: skip
    images += list(datasets.load("mnist-5k").x_train[::17][:300])
    grey = [i for i in images if i.shape[-1] == 1 and i.shape[:2] == (28, 28)]
    batched = image_hashes.phashes(grey)  # on the decoding threads, as the audit computes them
    assert [int(h) for h in batched] == [int(image_hashes.phashes([i])[0]) for i in grey]
    for image in images:
        ours = image_hashes.phashes([image])[0]
        shown = Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)
        theirs = int(str(imagehash.phash(shown)), 16)
        assert int(ours) == theirs


def test_near_pairs_finds_every_pair_all_pairs_finds():
    """The pigeonhole search returns exactly the pairs a comparison of all pairs returns."""
    rng = np.random.default_rng(1)
    base = rng.integers(0, 2**63, 300, dtype=np.uint64)
    flips = np.uint64(1) << rng.integers(0, 64, (300, 3)).astype(np.uint64)
    near = base ^ flips[:, 0] ^ np.where(rng.random(300) < 0.5, flips[:, 1], np.uint64(0))
    hashes = np.unique(np.concatenate([base, near]))
    for distance in (1, 2, 4):
        i, j, capped = image_hashes.near_pairs(hashes, distance, 10**9)
        assert not capped
        found = set(zip(i.tolist(), j.tolist(), strict=True))
        every = {
            (a, b)
            for a, b in combinations(range(len(hashes)), 2)
            if bin(int(hashes[a]) ^ int(hashes[b])).count("1") <= distance
        }
        assert found == every and every


# --- planted duplicates -----------------------------------------------------------------------------


def _jpeg(image: np.ndarray) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(image[..., 0]).save(buffer, "JPEG", quality=75)
    return np.asarray(Image.open(buffer))[..., None]


EDITS = {
    "jpeg": _jpeg,  # re-encoded as a JPEG of quality 75
    "shift": lambda image: np.roll(image, 1, axis=1),  # moved one pixel down
    "brighter": lambda image: np.clip(image.astype(int) + 10, 0, 255).astype(np.uint8),
}


def _pairs(groups: list[dict]) -> set[tuple[str, str]]:
    return {
        tuple(sorted((a["image"], b["image"])))
        for g in groups
        for a, b in combinations(g["images"], 2)
    }


def _score(found: set, planted: set) -> tuple[float, float]:
    hit = len(found & planted)
    return hit / len(planted), (hit / len(found) if found else 0.0)


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """mnist-5k as an .npz, 4,000 training and 1,000 test images, with planted into the test
    split: 50 exact copies of training images, and 50 near copies of each kind of `EDITS` (a
    JPEG re-encoding, a one-pixel shift, 10 levels brighter), each of another training image.
    Returns the file and the planted pairs by kind, named as the audit names images."""
    from kcnn.data import datasets

    mnist = datasets.load("mnist-5k")
    order = np.random.default_rng(5).permutation(len(mnist.y_train))  # it comes sorted by class
    x, y = mnist.x_train[order], mnist.y_train[order]
    x_train, y_train = x[:4000].copy(), y[:4000].copy()
    x_test, y_test = x[4000:].copy(), y[4000:].copy()
    rng = np.random.default_rng(31)
    sources = rng.choice(4000, 200, replace=False)
    targets = rng.choice(1000, 200, replace=False)
    kinds = {"exact": lambda image: image.copy(), **EDITS}
    pairs: dict[str, set] = {}
    for k, (kind, edit) in enumerate(kinds.items()):
        pairs[kind] = set()
        for s, t in zip(
            sources[k * 50 : (k + 1) * 50], targets[k * 50 : (k + 1) * 50], strict=True
        ):
            x_test[t], y_test[t] = edit(x_train[s]), y_train[s]
            pairs[kind].add(tuple(sorted((f"x_train[{s}]", f"x_test[{t}]"))))
    path = tmp_path_factory.mktemp("planted") / "planted.npz"
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    return path, pairs


def test_planted_duplicates_are_found(planted, tmp_path):
    """Recall and precision of both kinds of copy, at least 0.95 each, and the planted leakage
    counted: every planted copy is a test image copying a training one."""
    path, pairs = planted
    result = kcnn("audit", path, "--out", tmp_path, "--json")
    assert result.returncode == 0, result.stderr[-2000:]
    record = json.loads(result.stdout)
    exact = _pairs(record["exact_duplicates"]["groups"])
    recall, precision = _score(exact, pairs["exact"])
    assert recall >= 0.95 and precision >= 0.95, (recall, precision)
    near = _pairs(record["near_duplicates"]["groups"])
    planted_near = set().union(*(pairs[k] for k in EDITS))
    for kind in EDITS:
        recall, _ = _score(near, pairs[kind])
        touching = {p for p in near if p[1] in {b for _, b in pairs[kind]}}
        _, precision = _score(touching, pairs[kind])
        assert recall >= 0.95 and precision >= 0.95, (kind, recall, precision)
    recall, precision = _score(near, planted_near)
    assert precision >= 0.95, precision
    leak = record["leakage"]
    assert leak["test_images_with_exact_copy_in_training"] == 50
    assert leak["test_images_with_near_copy_in_training"] >= 0.95 * 150
    cross = [g["cross_split"] for g in record["exact_duplicates"]["groups"]]
    assert cross == sorted(cross, reverse=True)  # groups across splits are listed first
    report = Path(record["report"])
    assert report.is_file() and "data:image/png;base64," in report.read_text()


# --- image folders, hostile and plain -----------------------------------------------------------------


def _folder(root: Path, classes: dict[str, list[np.ndarray]]) -> Path:
    for name, images in classes.items():
        (root / name).mkdir(parents=True)
        for i, image in enumerate(images):
            Image.fromarray(image).save(root / name / f"{i:03d}.png")
    return root


def _noise(count: int, seed: int, side: int = 16) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (side, side), dtype=np.uint8) for _ in range(count)]


def test_folder_with_a_copy_of_every_image(tmp_path):
    """Each image twice (under another name): one exact group per image, named by file."""
    a, b = _noise(10, 1), _noise(10, 2)
    root = _folder(tmp_path / "twice", {"a": a + a, "b": b + b})
    result = kcnn("audit", root, "--out", tmp_path / "out", "--json")
    assert result.returncode == 0, result.stderr[-2000:]
    record = json.loads(result.stdout)
    groups = record["exact_duplicates"]["groups"]
    assert len(groups) == 20 and all(g["size"] == 2 for g in groups)
    names = {m["image"] for g in groups for m in g["images"]}
    assert str(root / "a" / "000.png") in names and str(root / "a" / "010.png") in names
    assert record["near_duplicates"]["groups"] == []


def test_an_image_folder_holding_a_config_json_is_audited_as_images(tmp_path):
    """Only a folder with both of a run's first records is read as a run: an image folder that
    happens to hold a config.json (a labelling tool's, say) is audited as the images it holds."""
    root = _folder(tmp_path / "photos", {"a": _noise(6, 4), "b": _noise(6, 5)})
    (root / "config.json").write_text('{"tool": "a labeller"}')
    result = kcnn("audit", root, "--out", tmp_path / "out", "--json")
    assert result.returncode == 0, result.stderr[-2000:]
    counts = {c["class"]: c["images"] for c in json.loads(result.stdout)["classes"]}
    assert counts == {"a": 6, "b": 6}


def test_folder_of_one_image_over_and_over(tmp_path):
    """Every image the same: one group holding all of them (not a pair for each two), and the
    near search has nothing left to compare."""
    same = _noise(1, 3)[0]
    root = _folder(tmp_path / "same", {"a": [same] * 30, "b": [same] * 30})
    result = kcnn("audit", root, "--out", tmp_path / "out", "--json")
    assert result.returncode == 0, result.stderr[-2000:]
    record = json.loads(result.stdout)
    (group,) = record["exact_duplicates"]["groups"]
    assert group["size"] == 60 and group["labels_differ"] and group["cross_split"]
    assert record["near_duplicates"]["groups"] == []


def test_blank_tiny_and_corrupt_images_are_named(tmp_path):
    """A constant image, a 4×4 one and a damaged file are each listed by their file; the audit
    still answers (exit 0)."""
    images = _noise(40, 4)
    images[0] = np.full((16, 16), 7, dtype=np.uint8)
    root = _folder(tmp_path / "odd", {"a": images[:20], "b": images[20:]})
    Image.fromarray(_noise(1, 5, side=4)[0]).save(root / "b" / "tiny.png")
    good = (root / "b" / "000.png").read_bytes()
    (root / "b" / "broken.png").write_bytes(good[: len(good) // 2])  # a header, half the data
    result = kcnn("audit", root, "--out", tmp_path / "out", "--json")
    assert result.returncode == 0, result.stderr[-2000:]
    record = json.loads(result.stdout)
    assert [i["image"] for i in record["blank"]] == [str(root / "a" / "000.png")]
    assert [i["image"] for i in record["tiny"]] == [str(root / "b" / "tiny.png")]
    assert [i["image"] for i in record["unreadable"]] == [str(root / "b" / "broken.png")]


def test_report_escapes_names(tmp_path):
    """A class folder named like markup is shown as text in audit.html, never as markup."""
    images = _noise(8, 6)
    root = _folder(
        tmp_path / "names", {"<img src=x onerror=alert(1)>": images[:4] * 2, "b": images[4:]}
    )
    result = kcnn("audit", root, "--out", tmp_path / "out", "--json")
    assert result.returncode == 0, result.stderr[-2000:]
    page = Path(json.loads(result.stdout)["report"]).read_text()
    assert "<img src=x" not in page and "&lt;img src=x onerror=alert(1)&gt;" in page


@pytest.mark.parametrize(
    "make, words",
    [
        (lambda tmp: tmp / "missing", ["does not exist"]),
        (lambda tmp: _folder(tmp / "one", {"only": _noise(4, 7)}), ["at least two"]),
        (lambda tmp: _empty_split(tmp), ["empty split"]),
        (lambda tmp: _text_file(tmp), ["not an .npz file or a folder"]),
    ],
    ids=["missing path", "one class", "empty split", "not a data set"],
)
def test_bad_input_is_refused_in_one_line(tmp_path, make, words):
    result = kcnn("audit", make(tmp_path), "--out", tmp_path / "out")
    refused(result, *words)
    assert not (tmp_path / "out").exists()  # nothing half-written


def _empty_split(tmp: Path) -> Path:
    x = np.arange(20 * 64, dtype=np.uint8).reshape(20, 8, 8, 1)
    path = tmp / "empty.npz"
    np.savez(path, x_train=x, y_train=np.arange(20) % 2, x_test=x[:0], y_test=np.zeros(0, int))
    return path


def _text_file(tmp: Path) -> Path:
    path = tmp / "notes.txt"
    path.write_text("not images")
    return path


# --- leakage before training --------------------------------------------------------------------------


def _digits_npz(path: Path, leaked: int) -> Path:
    """digits as an .npz: 1,400 training images, 300 test images, and `leaked` test images more
    that are copies of training images."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = np.round(bunch.images * (255 / 16)).astype(np.uint8)[..., None]
    y = bunch.target
    x_test = np.concatenate([x[1400:1700], x[:leaked]])
    y_test = np.concatenate([y[1400:1700], y[:leaked]])
    np.savez(path, x_train=x[:1400], y_train=y[:1400], x_test=x_test, y_test=y_test)
    return path


@pytest.mark.parametrize("leaked", [30, 0], ids=["leaked", "clean"])
def test_training_warns_of_test_images_copied_from_training(tmp_path, leaked):
    """One warning line when test images copy training ones, recorded in config.json; neither
    the warning nor a count for clean data. The run folder can then be audited itself."""
    data = _digits_npz(tmp_path / f"digits-{leaked}.npz", leaked)
    out = tmp_path / "runs"
    result = kcnn("train", "lenet5", "--dataset", data, "--epochs", "1", "--out", out)
    assert result.returncode == 0, result.stderr[-2000:]
    warnings = [line for line in result.stderr.splitlines() if "exact copies" in line]
    (run,) = out.iterdir()
    config = json.loads((run / "config.json").read_text())
    assert config["test_leakage"]["test_images_copied_from_training"] == leaked
    if leaked:
        assert len(warnings) == 1 and f"{leaked} of the 330 test images" in warnings[0]
        assert "kcnn audit" in warnings[0]
        audited = kcnn("audit", run, "--out", tmp_path / "audits", "--json")
        assert audited.returncode == 0, audited.stderr[-2000:]
        leak = json.loads(audited.stdout)["leakage"]
        assert leak["test_images_with_exact_copy_in_training"] == leaked
    else:
        assert warnings == []


def test_a_damaged_leakage_record_is_refused_safely(tmp_path):
    """A config.json whose test_leakage is not a table of counts is a damaged record, said in
    one line, never a traceback."""
    data = _digits_npz(tmp_path / "digits.npz", 3)
    out = tmp_path / "runs"
    assert kcnn("train", "lenet5", "--dataset", data, "--epochs", "1", "--out", out).returncode == 0
    (run,) = out.iterdir()
    config = json.loads((run / "config.json").read_text())
    config["test_leakage"] = {"test_images_copied_from_training": "<b>many</b>"}
    (run / "config.json").write_text(json.dumps(config))
    refused(kcnn("audit", run, "--out", tmp_path / "audits"), "damaged")


def test_training_on_a_folder_warns_of_copied_files(tmp_path):
    """An image folder's train/ and test/: test files with the content of training files are
    counted from the scan's digests (no file decoded for it), warned of and recorded."""
    images = _noise(24, 8)
    root = tmp_path / "photos"
    _folder(root / "train", {"a": images[:10], "b": images[10:20]})
    _folder(root / "test", {"a": images[20:22] + images[:1], "b": images[22:] + images[10:12]})
    out = tmp_path / "runs"
    result = kcnn("train", "lenet5", "--dataset", root, "--epochs", "1", "--out", out)
    assert result.returncode == 0, result.stderr[-2000:]
    warnings = [line for line in result.stderr.splitlines() if "exact copies" in line]
    assert len(warnings) == 1 and "3 of the 7 test images" in warnings[0]
    (run,) = out.iterdir()
    leak = json.loads((run / "config.json").read_text())["test_leakage"]
    assert leak["test_images_copied_from_training"] == 3 and leak["compared_by"] == "file content"


def test_audit_names_data_or_a_folds_group_not_both_nor_neither(tmp_path):
    refused(kcnn("audit", cwd=tmp_path), "name one thing to audit")
    refused(kcnn("audit", "digits", "--labels", tmp_path, cwd=tmp_path), "name one thing to audit")
    refused(kcnn("audit", "digits", "--top", "3", cwd=tmp_path), "use it with --labels")
    assert not any(tmp_path.iterdir())  # nothing written for a refusal
