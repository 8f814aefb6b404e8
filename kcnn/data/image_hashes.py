"""Two fingerprints of an image for finding the same picture twice in a data set:

- `digest`: of its decoded pixels (shape and bytes): equal only for exact copies, whatever file
  format or name each copy has;
- `phashes`: the perceptual hash of `imagehash.phash` (64 bits: the signs of the low 8×8 DCT
  frequencies of the image in grey at 32×32, against their median), equal or a few bits apart
  for a copy re-encoded as JPEG, shifted by a pixel or brightened. Pillow makes each 32×32 grey
  image exactly as imagehash does; the DCTs, medians and bits of a whole batch are then one NumPy
  call each, not one Python call per image (tests/test_audit.py checks it equals imagehash's).

`near_pairs` finds the pairs within a Hamming distance without comparing all pairs: by the
pigeonhole principle, two 64-bit hashes at most `d` bits apart agree exactly on at least one of
any `d + 1` disjoint chunks of their bits, so only images sharing a chunk value are compared.

pHash alone does not tell near copies from different images of small, sparse pictures: on
mnist-5k a one-pixel shift moves it further than most digits are from another digit
(benchmarks/audit.py measures both; README.md, "Know your data", shows the figures). So the audit hashes each image and its four
one-pixel shifts (`shifted_phashes`), takes the pairs whose hashes are within NEAR_BITS as
candidates, and keeps those whose grey 32×32 pictures differ little (`difference`).
"""

from __future__ import annotations

import hashlib

import numpy as np

SHIFTS = ((0, 0), (0, 1), (0, -1), (1, 0), (-1, 0))  # the image, then moved a pixel each way
HASH_SIDE = 32  # imagehash.phash's image size (hash_size 8 × highfreq_factor 4)
LOW = 8  # the low frequencies kept: 8 × 8 = 64 bits


def digest(pixels: np.ndarray) -> bytes:
    """A digest of one image's decoded pixels (its shape included: a 4×8 and an 8×4 image of the
    same bytes differ)."""
    h = hashlib.blake2b(str(pixels.shape).encode(), digest_size=16)
    h.update(np.ascontiguousarray(pixels).data)
    return h.digest()


def grey_32(pixels: np.ndarray) -> np.ndarray:
    """One uint8 (H, W, 1 or 3) image as imagehash sees it: Pillow's grey, resized to 32×32
    with Lanczos."""
    from PIL import Image

    image = Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels)
    small = image.convert("L").resize((HASH_SIDE, HASH_SIDE), Image.Resampling.LANCZOS)
    return np.asarray(small)


def _dct_rows(size: int = HASH_SIDE, kept: int = LOW) -> np.ndarray:
    """The first `kept` rows of scipy.fftpack's unnormalised DCT-II matrix of `size` points."""
    k = np.arange(kept)[:, None]
    n = np.arange(size)[None, :]
    return 2 * np.cos(np.pi * k * (2 * n + 1) / (2 * size))


def greys_32(images) -> np.ndarray:
    """`grey_32` of each image (N, 32, 32), on the decoding threads (Pillow releases the GIL)."""
    from kcnn.data import decode

    images = [np.asarray(image) for image in images]
    if len(images) < 64:
        return np.stack([grey_32(image) for image in images])
    return np.stack(list(decode.pool().map(grey_32, images, chunksize=64)))


def phash_bits(greys: np.ndarray) -> np.ndarray:
    """imagehash.phash's 64 bits (N, 8, 8) bool of N grey 32×32 images (N, 32, 32).

    Only the 8×8 lowest frequencies are kept, so they are computed as two small matrix
    products rather than two whole DCTs; an image with a frequency within rounding of the
    median (a tie that rounding could break either way: a flat image, a symmetric one) is
    computed again exactly as imagehash does, with scipy.fftpack's DCT."""
    from scipy import fftpack

    rows = _dct_rows()
    pixels = greys.astype(np.float64)
    low = rows @ pixels @ rows.T
    median = np.median(low.reshape(len(low), -1), axis=1)[:, None, None]
    scale = np.abs(low).max(axis=(1, 2), keepdims=True) + 1.0
    tied = np.flatnonzero((np.abs(low - median) <= 1e-9 * scale).any(axis=(1, 2)))
    if len(tied):
        exact = fftpack.dct(fftpack.dct(pixels[tied], axis=1), axis=2)[:, :LOW, :LOW]
        low[tied] = exact
        median[tied] = np.median(exact.reshape(len(tied), -1), axis=1)[:, None, None]
    return low > median


def pack(bits: np.ndarray) -> np.ndarray:
    """(N, 8, 8) bits as N uint64, the first bit highest (imagehash's hex order)."""
    packed = np.packbits(bits.reshape(len(bits), -1), axis=1)
    return packed.view(">u8").reshape(-1).astype(np.uint64)


def phashes(images) -> np.ndarray:
    """The perceptual hashes (uint64) of a sequence of uint8 (H, W, C) images."""
    if len(images) == 0:
        return np.zeros(0, dtype=np.uint64)
    return pack(phash_bits(greys_32(images)))


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Bits that differ between two arrays of uint64 hashes, element by element."""
    return np.bitwise_count(np.bitwise_xor(a, b)).astype(np.int64)


def _chunks(distance: int) -> list[tuple[int, int]]:
    """`distance + 1` disjoint (shift, width) bit chunks covering the 64 bits."""
    count = distance + 1
    edges = np.linspace(0, 64, count + 1).round().astype(int)
    return [(int(lo), int(hi - lo)) for lo, hi in zip(edges[:-1], edges[1:], strict=True)]


def near_pairs(hashes: np.ndarray, distance: int, most: int) -> tuple[np.ndarray, np.ndarray, bool]:
    """Pairs (i < j) of positions in `hashes` (distinct values: collapse equal hashes first) at
    most `distance` bits apart, and whether the search stopped at `most` candidate comparisons
    (a data set of thousands of near-identical images: what was found so far is kept)."""
    hashes = np.asarray(hashes, dtype=np.uint64)
    found_i, found_j, compared, capped = [], [], 0, False
    for shift, width in _chunks(distance):
        key = (hashes >> np.uint64(shift)) & np.uint64((1 << width) - 1)
        order = np.argsort(key, kind="stable")
        after = _after_in_run(key[order])
        active = np.flatnonzero(after > 0)  # sorted positions with a partner further on
        offset = 1
        while len(active):
            i, j = order[active], order[active + offset]
            compared += len(i)
            close = hamming(hashes[i], hashes[j]) <= distance
            found_i.append(np.minimum(i, j)[close])
            found_j.append(np.maximum(i, j)[close])
            if compared > most:
                capped = True
                break
            offset += 1
            active = active[after[active] >= offset]
        if capped:
            break
    if not found_i:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), capped
    pairs = np.unique(np.stack([np.concatenate(found_i), np.concatenate(found_j)], axis=1), axis=0)
    return pairs[:, 0], pairs[:, 1], capped


def _after_in_run(sorted_key: np.ndarray) -> np.ndarray:
    """For each position of a sorted array, how many equal values follow it."""
    n = len(sorted_key)
    starts = np.flatnonzero(np.r_[True, sorted_key[1:] != sorted_key[:-1]])
    ends = np.r_[starts[1:], n]  # one past each run
    run_end = np.repeat(ends, ends - starts)
    return run_end - np.arange(n) - 1


def shifted_phashes(greys: np.ndarray) -> np.ndarray:
    """(len(SHIFTS), N) uint64: the pHash of each grey 32×32 image, then of it rolled one pixel
    right, left, down and up (the first row is imagehash's own pHash)."""
    return np.stack([pack(phash_bits(np.roll(greys, s, axis=(1, 2)))) for s in SHIFTS])


def difference(a: np.ndarray, b: np.ndarray, margin: int = 2) -> np.ndarray:
    """How different pairs of grey 32×32 images (P, 32, 32) are, brightness aside and allowing
    one pixel of shift: the least mean absolute difference of the mean-removed pictures over the
    nine shifts (border of `margin` left out), relative to their mean contrast. A copy shifted,
    brightened or re-encoded scores low, different digits higher: the cut the audit uses
    (kcnn.data.audit.NEAR_DIFFERENCE) was read off mnist-5k's planted copies, and
    benchmarks/audit.py measures the recall and precision it gives."""
    a = a.astype(np.float32)
    b = b.astype(np.float32)
    a -= a.mean(axis=(1, 2), keepdims=True)
    b -= b.mean(axis=(1, 2), keepdims=True)
    contrast = (np.abs(a).mean(axis=(1, 2)) + np.abs(b).mean(axis=(1, 2))) / 2
    inner = (slice(None), slice(margin, -margin), slice(margin, -margin))
    best = np.full(len(a), np.inf, dtype=np.float32)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            moved = np.roll(a, (dy, dx), axis=(1, 2))[inner]
            best = np.minimum(best, np.abs(moved - b[inner]).mean(axis=(1, 2)))
    return best / np.maximum(contrast, 1e-6)
