"""`kcnn inspect --robustness`'s corruptions against CIFAR-10-C's own definitions.

The reference below is written here from Hendrycks & Dietterich's make_cifar_c.py (the script that
made CIFAR-10-C), one 32×32×3 image at a time as it runs: pixels / 255, the corruption, clipped
to 0..1, × 255, truncated by np.uint8. Its Gaussian is skimage's `gaussian` spelled out (a kernel
exp(−j²/2σ²) out to int(4σ + 0.5), edges repeated), its HSV skimage's rgb2hsv / hsv2rgb.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from kcnn.use import corruptions as C
from kcnn.use import robustness as R

ROOT = Path(__file__).resolve().parent.parent
RECORD = ROOT / "docs" / "robustness-lenet5-digits.json"
CITED = ("gaussian_noise", "gaussian_blur", "contrast", "brightness", "jpeg_compression")


# --- the reference, from make_cifar_c.py ------------------------------------------------------


def _finish(x):
    return np.uint8(np.clip(x, 0, 1) * 255)


def _gaussian(x, sigma):
    radius = int(4.0 * sigma + 0.5)
    j = np.arange(-radius, radius + 1)
    w = np.exp(-0.5 * (j / sigma) ** 2)
    w /= w.sum()
    for axis in (0, 1):
        pad = [(0, 0)] * x.ndim
        pad[axis] = (radius, radius)
        padded = np.pad(x, pad, mode="edge")
        n = x.shape[axis]
        x = sum(w[i] * np.take(padded, np.arange(i, i + n), axis=axis) for i in range(len(w)))
    return x


def _rgb2hsv(arr):
    out = np.empty_like(arr)
    v = arr.max(-1)
    delta = np.ptp(arr, -1)
    with np.errstate(invalid="ignore", divide="ignore"):
        s = delta / v
        s[delta == 0.0] = 0.0
        for channel, offset, (a, b) in ((0, 0.0, (1, 2)), (1, 2.0, (2, 0)), (2, 4.0, (0, 1))):
            idx = arr[..., channel] == v
            out[idx, 0] = offset + (arr[idx, a] - arr[idx, b]) / delta[idx]
        h = (out[..., 0] / 6.0) % 1.0
        h[delta == 0.0] = 0.0
    out[..., 0], out[..., 1], out[..., 2] = h, s, v
    out[np.isnan(out)] = 0
    return out


def _hsv2rgb(arr):
    hi = np.floor(arr[..., 0] * 6)
    f = arr[..., 0] * 6 - hi
    v = arr[..., 2]
    p, q, t = v * (1 - arr[..., 1]), v * (1 - f * arr[..., 1]), v * (1 - (1 - f) * arr[..., 1])
    hi = np.stack([hi, hi, hi], axis=-1).astype(np.uint8) % 6
    choices = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)]
    return np.choose(hi, np.stack([np.stack(c, axis=-1) for c in choices]))


def _reference_float(name, image, c, rng):
    """make_cifar_c.py's corruption of one H×W×3 uint8 image, before np.uint8."""
    x = np.array(image) / 255.0
    if name == "gaussian_noise":
        return np.clip(x + rng.normal(size=x.shape, scale=c), 0, 1) * 255
    if name == "gaussian_blur":
        return np.clip(_gaussian(x, c), 0, 1) * 255
    if name == "contrast":
        means = np.mean(x, axis=(0, 1), keepdims=True)
        return np.clip((x - means) * c + means, 0, 1) * 255
    if name == "brightness":
        x = _rgb2hsv(x)
        x[:, :, 2] = np.clip(x[:, :, 2] + c, 0, 1)
        return np.clip(_hsv2rgb(x), 0, 1) * 255
    raise AssertionError(name)


def _reference_jpeg(image, quality):
    import io

    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(image).save(out, "JPEG", quality=quality)
    return np.uint8(Image.open(out))


# --- test images: crops of real photographs, and real 8×8 digits -------------------------------


@pytest.fixture(scope="module")
def photos():
    """Thirty 32×32 crops of the two photographs scikit-learn ships (offline)."""
    from sklearn.datasets import load_sample_images

    crops = [
        photo[top : top + 32, left : left + 32]
        for photo in load_sample_images().images
        for top in (0, 100, 200, 300, 380)
        for left in (0, 200, 400)
    ]
    return np.stack(crops)


@pytest.fixture(scope="module")
def digits():
    from sklearn.datasets import load_digits

    images = load_digits().images[:40]
    return np.clip(images * 16, 0, 255).astype(np.uint8)[..., None]  # 0..16 -> 0..255


@pytest.mark.parametrize("name", CITED[:4])
@pytest.mark.parametrize("severity", range(1, 6))
def test_cited_corruptions_are_make_cifar_c_value_for_value(photos, name, severity):
    c = C.BY_NAME[name].parameters[severity - 1]
    mine = C.corrupt(photos, name, severity, np.random.default_rng(7))
    rng = np.random.default_rng(7)  # the reference draws image after image, as theirs does
    wanted = np.stack([_reference_float(name, image, c, rng) for image in photos])
    differ = mine != np.uint8(wanted)
    # truncation turns a last-bit difference at a whole number into one level: only there may
    # the reference (its sums in another order) and kcnn differ, and by one level at most
    at_a_whole_number = np.abs(wanted - np.round(wanted)) < 1e-9
    assert not np.any(differ & ~at_a_whole_number), name
    assert np.abs(mine.astype(int) - np.uint8(wanted)).max() <= 1
    assert differ.mean() < 0.01


@pytest.mark.parametrize("severity", range(1, 6))
def test_blur_is_skimages_gaussian_bit_for_bit(photos, severity):
    """skimage.filters.gaussian(x, σ, channel_axis=-1) is scipy's gaussian_filter with σ 0 on the
    channels, edges 'nearest', truncate 4: the very call make_cifar_c.py's blur makes."""
    from scipy.ndimage import gaussian_filter

    c = C.BY_NAME["gaussian_blur"].parameters[severity - 1]
    wanted = [
        np.uint8(
            np.clip(gaussian_filter(x / 255.0, (c, c, 0), mode="nearest", truncate=4.0), 0, 1) * 255
        )
        for x in photos
    ]
    mine = C.corrupt(photos, "gaussian_blur", severity, np.random.default_rng(0))
    np.testing.assert_array_equal(mine, np.stack(wanted))


@pytest.mark.parametrize("severity", range(1, 6))
def test_jpeg_is_make_cifar_c_s(photos, severity):
    quality = int(C.BY_NAME["jpeg_compression"].parameters[severity - 1])
    mine = C.corrupt(photos, "jpeg_compression", severity, np.random.default_rng(0))
    np.testing.assert_array_equal(mine, np.stack([_reference_jpeg(x, quality) for x in photos]))


def test_truncated_not_rounded(photos):
    """A contrast that lands on x.6 gives x, as np.uint8 does, not x + 1."""
    mine = C.corrupt(photos, "contrast", 1, np.random.default_rng(0))
    wanted = np.stack([_reference_float("contrast", x, 0.75, None) for x in photos])
    assert np.any(np.round(wanted) != np.floor(wanted))  # the case arises in these images
    assert np.mean(mine == np.floor(wanted)) > 0.99


@pytest.mark.parametrize("name", ["gaussian_blur", "contrast", "brightness"])
def test_a_grey_image_is_the_grey_rgb_image_it_stands_for(digits, name):
    for severity in (1, 5):
        grey = C.corrupt(digits, name, severity, np.random.default_rng(0))
        rgb = C.corrupt(np.repeat(digits, 3, axis=-1), name, severity, np.random.default_rng(0))
        np.testing.assert_array_equal(grey[..., 0], rgb[..., 0])
        np.testing.assert_array_equal(rgb[..., 0], rgb[..., 2])  # and it stays grey


def test_contrast_is_each_channels_own_mean():
    image = np.zeros((1, 4, 4, 3), dtype=np.uint8)
    image[..., 0] = 200  # a red channel far brighter than the others
    image[0, 0, 0, 1] = 100
    out = C.corrupt(image, "contrast", 5, np.random.default_rng(0))
    assert np.all(out[..., 0] == 200)  # a flat channel keeps its own level ...
    assert np.all(out[..., 2] == 0)  # ... not pulled towards the mean of all channels


def test_brightness_raises_hsv_value_not_each_channel():
    image = np.array([[[[100, 50, 25], [200, 100, 50]]]], dtype=np.uint8)
    out = C.corrupt(image, "brightness", 5, np.random.default_rng(0))  # V + 0.3, at most 1
    for pixel, got in zip(image[0, 0], out[0, 0], strict=True):
        value = min(1.0, pixel.max() / 255 + 0.3)  # hue and saturation kept: each channel
        np.testing.assert_array_equal(got, np.uint8(pixel / pixel.max() * value * 255))
    assert list(out[0, 0, 0]) == [176, 88, 44]  # not 100 + 76, 50 + 76, 25 + 76


# --- sized by the image, up and down --------------------------------------------------------------


def test_blur_scales_with_the_image_in_both_directions(photos, digits):
    from scipy.ndimage import gaussian_filter

    # 64×64: σ twice CIFAR's, no resampling
    big = np.repeat(np.repeat(photos[:4], 2, axis=1), 2, axis=2)
    mine = C.corrupt(big, "gaussian_blur", 2, np.random.default_rng(0))
    wanted = [
        np.uint8(
            np.clip(gaussian_filter(x / 255.0, (1.2, 1.2, 0), mode="nearest", truncate=4.0), 0, 1)
            * 255
        )
        for x in big
    ]
    np.testing.assert_array_equal(mine, np.stack(wanted))
    # 8×8: CIFAR's σ on the copy 4× larger (each pixel a 4×4 block), averaged back
    mine = C.corrupt(digits, "gaussian_blur", 2, np.random.default_rng(0))
    wanted = []
    for x in digits:
        up = np.repeat(np.repeat(x / 255.0, 4, axis=0), 4, axis=1)
        blurred = gaussian_filter(up, (0.6, 0.6, 0), mode="nearest", truncate=4.0)
        wanted.append(_finish(blurred.reshape(8, 4, 8, 4, 1).mean(axis=(1, 3))))
    np.testing.assert_array_equal(mine, np.stack(wanted))


@pytest.mark.parametrize("shape", [(8, 8, 1), (13, 20, 3), (28, 28, 1), (32, 32, 3), (70, 50, 3)])
def test_every_severity_changes_the_image_at_every_size(photos, shape):
    from PIL import Image

    images = np.stack(
        [
            np.asarray(
                Image.fromarray(x).resize(shape[1::-1]).convert("L" if shape[2] == 1 else "RGB")
            ).reshape(shape)
            for x in photos[:12]
        ]
    )
    for name in C.CORRUPTIONS:
        before = 0.0
        for severity in range(1, 6):
            out = C.corrupt(images, name, severity, R.generator(3, name, severity))
            assert out.dtype == np.uint8 and out.shape == images.shape
            change = np.abs(out.astype(int) - images).mean()
            assert change > 0, (name, severity, shape)
            before = max(before, change)
        assert change >= 0.5 * before, (name, shape)  # severity 5 is not the mildest


def test_translation_at_severity_1_moves_an_8x8_digit(digits):
    one = np.zeros((1, 8, 8, 1), dtype=np.uint8)
    one[0, 3:5, 3:5] = 255  # a 2×2 square in the middle
    for draw in range(10):
        out = C.corrupt(one, "translation", 1, R.generator(0, "translation", 1, draw))
        assert not np.array_equal(out, one)
        assert int(out.sum()) == pytest.approx(int(one.sum()), rel=0.02)  # moved, not lost (0.4 px)
    moved = C.corrupt(digits, "translation", 1, R.generator(0, "translation", 1))
    assert np.all(np.any(moved != digits, axis=(1, 2, 3)))  # every digit


def test_occlusion_covers_its_share_of_the_image(digits):
    flat = np.zeros((50, 8, 8, 1), dtype=np.uint8)
    for severity, fraction in enumerate(C.BY_NAME["occlusion"].parameters, 1):
        out = C.corrupt(flat, "occlusion", severity, R.generator(0, "occlusion", severity))
        grey = out.astype(float).sum(axis=(1, 2, 3)) / (C.GREY * 64)  # covered share
        side = round(fraction * 32) / 32  # the square's side on the 32-pixel copy
        assert grey == pytest.approx(np.full(50, side**2), abs=0.01)


def test_corruptions_are_deterministic_and_named_by_their_source():
    images = np.random.default_rng(0).integers(0, 256, (6, 16, 16, 3), dtype=np.uint8)
    for name in C.CORRUPTIONS:
        np.testing.assert_array_equal(C.corrupt(images, name, 0, R.generator(1, name, 0)), images)
        once = C.corrupt(images, name, 3, R.generator(1, name, 3))
        np.testing.assert_array_equal(once, C.corrupt(images, name, 3, R.generator(1, name, 3)))
    assert [c.name for c in C.TABLE if c.source == C.CIFAR_10_C] == list(CITED)
    assert [c.name for c in C.TABLE if c.source == C.KCNN] == [
        "rotation",
        "translation",
        "occlusion",
    ]
    assert {c.name for c in C.TABLE if c.random} == {
        "gaussian_noise",
        "rotation",
        "translation",
        "occlusion",
    }
    with pytest.raises(ValueError):
        C.corrupt(images, "blur", 1, R.generator(1, "contrast", 1))
    with pytest.raises(ValueError):
        C.corrupt(images, "contrast", 6, R.generator(1, "contrast", 1))


# --- the record: several draws, their mean and spread ---------------------------------------------


def test_the_record_is_the_mean_and_spread_of_its_draws():
    rng = np.random.default_rng(0)
    per_draw = {
        spec.name: [
            list(rng.uniform(0.5, 0.9, 3 if spec.random else 1)) for _ in range(C.SEVERITIES)
        ]
        for spec in C.TABLE
    }
    r = R.summarize(per_draw, clean=0.95, draws=3)
    for name, runs in per_draw.items():
        assert r["accuracy"][name] == pytest.approx([np.mean(a) for a in runs])
        spread = [np.std(a, ddof=1) if len(a) > 1 else 0.0 for a in runs]
        assert r["accuracy_sd"][name] == pytest.approx(spread)
        assert r["corruptions"][name]["draws"] == len(runs[0])
    errors = np.array([[1 - np.mean(a) for a in runs] for runs in per_draw.values()])
    assert r["mean_corruption_error"] == pytest.approx(errors.mean())
    assert r["relative_mean_corruption_error"] == pytest.approx(errors.mean() - 0.05)
    cited = np.array([[1 - np.mean(a) for a in per_draw[n]] for n in CITED])
    assert r["by_source"]["CIFAR-10-C"]["mean"] == pytest.approx(cited.mean())
    assert set(r["by_source"]) == {"CIFAR-10-C", "kcnn"}


def test_draws_differ_and_come_from_the_seed_alone():
    a = R.generator(83, "gaussian_noise", 3, 0).normal(size=5)
    b = R.generator(83, "gaussian_noise", 3, 1).normal(size=5)
    assert not np.allclose(a, b)
    np.testing.assert_array_equal(a, R.generator(83, "gaussian_noise", 3, 0).normal(size=5))


def test_readmes_robustness_is_the_kept_records_table():
    """README's robustness figure is what `python -m kcnn.use.robustness` makes of the record
    kept in docs/ (a real `kcnn inspect RUN --robustness` of LeNet-5 on digits), whose figures
    are the means and spreads of its own draws."""
    record = json.loads(RECORD.read_text(encoding="utf-8"))
    for name, runs in record["accuracy_draws"].items():
        assert record["accuracy"][name] == pytest.approx([np.mean(a) for a in runs])
        assert len(runs[0]) == (record["draws"] if C.BY_NAME[name].random else 1)
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = re.search(
        r"<!-- record:robustness -->\n(.*?)\n<!-- /record:robustness -->", readme, re.S
    )
    assert block, "README.md has no <!-- record:robustness --> block"
    made = subprocess.run(
        [sys.executable, "-m", "kcnn.use.robustness", str(RECORD)],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    assert made.stdout.strip() == block.group(1)
