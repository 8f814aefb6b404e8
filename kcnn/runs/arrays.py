"""Records kept as .npz archives of plain arrays (`test_predictions.npz`, `oof_probabilities.npz`,
`training_features.npz`), read as untrusted: loaded without pickles, every array's name, dtype and
shape checked from its header before its data is read, and the archive's declared sizes bounding
what decompression may produce. What the values mean is checked by each record's own module.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np

from kcnn.runs.records import Damaged

PATH_MAX = 4096  # characters of one string held in an array (a file name)


def to_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return buffer.getvalue()


def from_bytes(
    data: bytes,
    where: Path,
    kinds: dict[str, tuple[str, int]],
    required: tuple[str, ...],
    unpacked_max: int,
) -> dict[str, np.ndarray]:
    """The arrays in `data`: only names in `kinds` (name -> the dtype kinds it may have and its
    number of dimensions), every one of `required`, all unpacking to at most `unpacked_max`
    bytes. Damaged, naming `where`, if any of that fails."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            headers = _headers(archive, where, kinds, required, unpacked_max)
        with np.load(io.BytesIO(data), allow_pickle=False) as loaded:
            return {key: loaded[key] for key in headers}
    except Damaged:
        raise
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as e:
        raise Damaged(where, f"not a readable .npz archive ({str(e)[:80]})") from None


def _headers(
    archive: zipfile.ZipFile,
    where: Path,
    kinds: dict[str, tuple[str, int]],
    required: tuple[str, ...],
    unpacked_max: int,
) -> dict[str, tuple]:
    """Each array's declared shape and dtype, read from its header alone and checked."""
    members = archive.infolist()
    names = [m.filename.removesuffix(".npy") for m in members]
    unknown = [n for n in names if n not in kinds]
    if unknown or len(set(names)) != len(names):
        raise Damaged(where, f"holds arrays kcnn does not write: {', '.join(unknown)[:80]}")
    missing = [k for k in required if k not in names]
    if missing:
        raise Damaged(where, f"lacks the array(s) {', '.join(missing)}")
    if sum(m.file_size for m in members) > unpacked_max:
        raise Damaged(where, f"unpacks to over {unpacked_max:,} bytes")
    headers = {}
    for member, name in zip(members, names, strict=True):
        with archive.open(member) as stream:
            version = np.lib.format.read_magic(stream)
            read = (
                np.lib.format.read_array_header_1_0
                if version == (1, 0)
                else np.lib.format.read_array_header_2_0
            )
            shape, _, dtype = read(stream)
        allowed, dimensions = kinds[name]
        if dtype.hasobject or dtype.kind not in allowed or len(shape) != dimensions:
            raise Damaged(where, f"its {name} array is {dtype} of shape {shape}")
        if dtype.kind == "U" and dtype.itemsize > 4 * PATH_MAX:
            raise Damaged(where, f"its file names are over {PATH_MAX} characters")
        if int(np.prod(shape, dtype=np.int64)) * dtype.itemsize > member.file_size:
            raise Damaged(where, f"its {name} array declares more than it holds")
        headers[name] = (shape, dtype)
    return headers
