"""Loading a model kcnn saved (model.keras, checkpoint.keras): one place that registers every
custom object kcnn writes into them, and loads in Keras safe mode, so that a saved model can never
run arbitrary Python code through a lambda.

Only the `.keras` format is loaded (a zip archive), on a Keras with the published loader fixes
(`keras_version`). A legacy HDF5 model file is refused, whatever it is named: Keras would load it
through its legacy loader, and a file named `model.keras` that is not a zip is not one kcnn wrote.
The file's first bytes decide, not its name.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

from kcnn.errors import KcnnError
from kcnn.models import keras_version

# HDF5's signature starts the file, or a user block of 512, 1024, 2048, ... bytes before it.
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
HDF5_OFFSETS = (0, 512, 1024, 2048, 4096, 8192)
ZIP_SIGNATURE = b"PK\x03\x04"


def _is_hdf5(path: Path) -> bool:
    with open(path, "rb") as f:
        for offset in HDF5_OFFSETS:
            f.seek(offset)
            if f.read(len(HDF5_SIGNATURE)) == HDF5_SIGNATURE:
                return True
    return False


def check_format(path: Path, fix: str) -> None:
    """Refuse, in one line, a model file that is not a `.keras` zip archive (HDF5 above all)."""
    if path.suffix.lower() in (".h5", ".hdf5") or _is_hdf5(path):
        raise KcnnError(
            f"{path} is an HDF5 (.h5) model file; kcnn loads only the .keras format, whose loader "
            f"has Keras's safe mode (re-save the model with model.save('model.keras')); {fix}"
        )
    with open(path, "rb") as f:
        head = f.read(len(ZIP_SIGNATURE))
    if path.suffix.lower() != ".keras" or head != ZIP_SIGNATURE or not zipfile.is_zipfile(path):
        raise KcnnError(f"{path} is not a .keras model file (a zip archive); {fix}")
    check_members(path, fix)


MiB, GiB = 1024**2, 1024**3
# What a member of a .keras archive may unpack to. Keras reads config.json and metadata.json
# whole into memory: a few MB for any network kcnn builds. Weights are as big as the model (VGG16
# holds 528 MB) but barely compress, so a member that unpacks to far more than it takes in the
# archive is a zip bomb, not weights.
MEMBER_CAPS = {"config.json": 64 * MiB, "metadata.json": 1 * MiB}
MEMBER_CAP = 16 * GiB
BOMB_RATIO, BOMB_SIZE = 100, 64 * MiB  # unpacks over 100× its packed size, and to over 64 MiB
MAX_MEMBERS = 10_000


def check_members(path: Path, fix: str) -> None:
    """Refuse, before Keras unpacks anything, an archive whose members would unpack to more than
    a model holds (sizes as the archive declares them, which bound what Python's zipfile ever
    unpacks: it stops at the declared size)."""
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, ValueError, NotImplementedError) as e:
        raise KcnnError(f"{path} is not a readable .keras archive ({e}); {fix}") from None
    if len(members) > MAX_MEMBERS:
        raise KcnnError(f"{path} holds {len(members):,} files: not a .keras model; {fix}")
    for m in members:
        cap = MEMBER_CAPS.get(m.filename, MEMBER_CAP)
        bomb = m.file_size > BOMB_SIZE and m.file_size > BOMB_RATIO * max(m.compress_size, 1)
        if m.file_size > cap or bomb:
            raise KcnnError(
                f"{path}: its {m.filename[:80]} unpacks to {m.file_size / MiB:,.0f} MiB from "
                f"{m.compress_size / MiB:,.1f} MiB, more than a model holds (at most "
                f"{cap / MiB:,.0f} MiB, and never {BOMB_RATIO}× its packed size): not loaded; {fix}"
            )


def register_custom_objects() -> None:
    """Make kcnn's own layers, models and losses known to Keras's deserialiser."""
    import kcnn.models.blocks  # noqa: F401  Block (and the padding layer it uses)
    import kcnn.models.forms  # noqa: F401  DescribedCNN, the subclassed form
    from kcnn.models.losses import smoothed_loss_class, target_classes

    smoothed_loss_class()  # the label-smoothed loss a compiled model may name
    target_classes()  # the loss and accuracy of mixed labels and distillation


def load(path: Path, fix: str):
    """The model saved at `path`; a missing, damaged or unsafe file is a KcnnError that names it
    and ends with `fix` (what the user can do)."""
    keras_version.require()
    if not path.is_file():
        raise KcnnError(f"{path.parent} has no {path.name}; {fix}")
    try:
        check_format(path, fix)
    except OSError as e:
        raise KcnnError(f"cannot read {path}: {e.strerror or e}; {fix}") from None
    import keras

    register_custom_objects()
    try:
        return keras.saving.load_model(path, safe_mode=True)
    except Exception as e:  # a zip that is not one, a config Keras cannot rebuild, a lambda, ...
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise KcnnError(
            f"cannot load {path}: it is damaged or unsafe ({first[:120]}); {fix}"
        ) from None
