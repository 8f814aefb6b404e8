"""The corruptions of `kcnn inspect --robustness`, at five severities each.

Five are CIFAR-10-C's (Hendrycks & Dietterich 2019, arXiv:1903.12261), defined as the authors'
`make_cifar_c.py` defines them, with its parameters: `gaussian_noise` (σ added to pixels in
0..1), `gaussian_blur` (a true Gaussian, skimage's `gaussian`: scipy's `gaussian_filter`, edges
repeated, 4 σ wide), `contrast` (each channel's distance to its own mean scaled), `brightness`
(added to HSV's value, hue and saturation kept) and `jpeg_compression` (Pillow's JPEG at a
quality). Like theirs, a result is clipped to 0..1, times 255, and truncated to uint8 (not
rounded). A one-channel image is taken as the grey RGB image it stands for.

Three are kcnn's own, not in CIFAR-10-C: `rotation` (degrees, sign drawn per image, bilinear,
black corners), `translation` (a fraction of each side, direction drawn per image, black fill)
and `occlusion` (a grey square, its side a fraction of the image's, placed at random); their
results are rounded.

CIFAR-10-C's parameters are for 32×32 images. A spatial corruption (the blur and kcnn's three)
keeps its size relative to the image, up and down: the blur's σ is c × side / 32 pixels, a shift
or a square a fraction of the side. An image smaller than 32 pixels is corrupted on a copy
k = ⌈32 / side⌉ times larger (each pixel a k×k block) and averaged back, so that a blur, shift or
square of less than a pixel still changes the image by the share it covers: a translation of 5 %
moves an 8×8 digit by 0.4 of a pixel, not by 0. At 32 pixels and above k is 1 and nothing is
resampled; at exactly 32 the five cited corruptions give `make_cifar_c.py`'s values (its blur
is the very scipy call skimage's `gaussian` makes; tests/test_robustness.py checks each).
The others act on each pixel alone (noise, contrast, brightness) or on the codec's own 8×8 blocks
(JPEG), whatever the image's size.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np

SEVERITIES = 5
REFERENCE_SIDE = 32  # CIFAR-10's: the side the parameters are given for
CIFAR_10_C = "CIFAR-10-C"
KCNN = "kcnn"
GREY = 128


@dataclass(frozen=True)
class Corruption:
    name: str
    source: str  # CIFAR_10_C (make_cifar_c.py's definition) or KCNN (kcnn's own)
    parameters: tuple[float, ...]  # one per severity
    meaning: str
    random: bool  # drawn afresh each time: accuracy is averaged over several draws
    spatial: bool  # sized by the image: made on the enlarged copy below 32 pixels


TABLE = (
    Corruption("gaussian_noise", CIFAR_10_C, (0.04, 0.06, 0.08, 0.09, 0.10),
               "σ of the noise added to pixels in 0..1", True, False),
    Corruption("gaussian_blur", CIFAR_10_C, (0.4, 0.6, 0.7, 0.8, 1.0),
               "Gaussian σ in pixels of a 32-pixel side", False, True),
    Corruption("contrast", CIFAR_10_C, (0.75, 0.5, 0.4, 0.3, 0.15),
               "share of each channel's distance to its mean kept", False, False),
    Corruption("brightness", CIFAR_10_C, (0.05, 0.1, 0.15, 0.2, 0.3),
               "added to HSV's value (0..1)", False, False),
    Corruption("jpeg_compression", CIFAR_10_C, (80, 65, 58, 50, 40),
               "JPEG quality", False, False),
    Corruption("rotation", KCNN, (5, 10, 15, 20, 30),
               "degrees, sign drawn per image", True, True),
    Corruption("translation", KCNN, (0.05, 0.1, 0.15, 0.2, 0.25),
               "fraction of each side, direction drawn per image", True, True),
    Corruption("occlusion", KCNN, (0.1, 0.2, 0.3, 0.4, 0.5),
               "side of a grey square, fraction of the image's", True, True),
)  # fmt: skip
BY_NAME = {c.name: c for c in TABLE}
CORRUPTIONS = tuple(BY_NAME)


def corrupt(
    images: np.ndarray, corruption: str, severity: int, rng: np.random.Generator
) -> np.ndarray:
    """`images` (uint8 N×H×W×C) under `corruption` at `severity` 0..5 (0: unchanged)."""
    if corruption not in BY_NAME:
        raise ValueError(f"unknown corruption {corruption!r}: one of {', '.join(CORRUPTIONS)}")
    if not 0 <= severity <= SEVERITIES:
        raise ValueError(f"severity {severity}: 0 to {SEVERITIES}")
    if severity == 0 or len(images) == 0:
        return images.copy()
    spec = BY_NAME[corruption]
    c = spec.parameters[severity - 1]
    if corruption == "jpeg_compression":
        return _jpeg(images, int(c))
    if spec.source == KCNN:
        x = _enlarged(images.astype(np.float64))
        x = {"rotation": _rotate, "translation": _translate, "occlusion": _occlude}[corruption](
            x, c, rng
        )
        return np.clip(np.round(_reduced(x, images.shape)), 0, 255).astype(np.uint8)
    x = images.astype(np.float64) / 255.0
    if corruption == "gaussian_noise":
        x = x + rng.normal(size=x.shape, scale=c)
    elif corruption == "gaussian_blur":
        x = _reduced(_blur(_enlarged(x), c), images.shape)
    elif corruption == "contrast":
        means = x.mean(axis=(1, 2), keepdims=True)  # each image's, each channel's own
        x = (x - means) * c + means
    elif corruption == "brightness":
        x = _brightness(x, c)
    return np.uint8(np.clip(x, 0, 1) * 255)  # truncated, as make_cifar_c.py's np.uint8


def _factor(shape) -> int:
    """k: how many times larger a spatial corruption's copy is (1 from 32 pixels up)."""
    return max(1, -(-REFERENCE_SIDE // min(shape[1], shape[2])))


def _enlarged(x: np.ndarray) -> np.ndarray:
    k = _factor(x.shape)
    return x if k == 1 else np.repeat(np.repeat(x, k, axis=1), k, axis=2)


def _reduced(x: np.ndarray, shape) -> np.ndarray:
    """Each k×k block of the enlarged copy averaged back into its pixel."""
    k = _factor(shape)
    n, h, w, c = shape
    return x if k == 1 else x.reshape(n, h, k, w, k, c).mean(axis=(2, 4))


def _blur(x: np.ndarray, c: float) -> np.ndarray:
    """skimage's `gaussian(x, sigma, channel_axis=-1)`: scipy's filter over height and width,
    edges repeated ('nearest'), truncated at 4 σ; σ is c pixels of a 32-pixel side."""
    from scipy.ndimage import gaussian_filter

    sigma = c * min(x.shape[1], x.shape[2]) / REFERENCE_SIDE
    return gaussian_filter(x, sigma=(0, sigma, sigma, 0), mode="nearest", truncate=4.0)


def _brightness(x: np.ndarray, c: float) -> np.ndarray:
    """HSV's value raised by c and clipped to 1 (skimage's rgb2hsv / hsv2rgb, which Matplotlib's
    rgb_to_hsv / hsv_to_rgb compute step for step)."""
    from matplotlib.colors import hsv_to_rgb, rgb_to_hsv

    grey = x.shape[-1] == 1
    rgb = np.repeat(x, 3, axis=-1) if grey else x
    hsv = rgb_to_hsv(rgb)
    hsv[..., 2] = np.clip(hsv[..., 2] + c, 0, 1)
    out = hsv_to_rgb(hsv)
    return out[..., :1] if grey else out


def _jpeg(images: np.ndarray, quality: int) -> np.ndarray:
    from PIL import Image

    out = np.empty_like(images)
    for i, image in enumerate(images):
        im = Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)
        buffer = io.BytesIO()
        im.save(buffer, format="JPEG", quality=quality)
        with Image.open(io.BytesIO(buffer.getvalue())) as back:
            out[i] = np.asarray(back, dtype=np.uint8).reshape(image.shape)
    return out


# --- kcnn's own: on pixel values 0..255 of the enlarged copy ------------------------------------


def _rotate(x: np.ndarray, degrees: float, rng: np.random.Generator) -> np.ndarray:
    from scipy.ndimage import rotate

    signs = rng.choice([-1.0, 1.0], size=len(x))
    out = np.empty_like(x)
    for sign in (-1.0, 1.0):
        chosen = signs == sign
        if chosen.any():
            out[chosen] = rotate(
                x[chosen], sign * degrees, axes=(2, 1), reshape=False, order=1, cval=0.0
            )
    return out


def _translate(x: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    n, h, w = x.shape[:3]
    angles = rng.uniform(0, 2 * np.pi, size=n)
    dy = np.round(np.sin(angles) * fraction * h).astype(int)
    dx = np.round(np.cos(angles) * fraction * w).astype(int)
    out = np.zeros_like(x)
    for i in range(n):
        src = x[i, max(0, -dy[i]) : h - max(0, dy[i]), max(0, -dx[i]) : w - max(0, dx[i])]
        top, left = max(0, dy[i]), max(0, dx[i])
        out[i, top : top + src.shape[0], left : left + src.shape[1]] = src
    return out


def _occlude(x: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    n, h, w = x.shape[:3]
    size = max(1, round(fraction * min(h, w)))
    tops = rng.integers(0, h - size + 1, size=n)
    lefts = rng.integers(0, w - size + 1, size=n)
    out = x.copy()
    for i in range(n):
        out[i, tops[i] : tops[i] + size, lefts[i] : lefts[i] + size] = GREY
    return out
