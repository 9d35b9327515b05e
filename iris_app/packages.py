"""A model's package, as `iris-models` carries it: a zip of its MOJO, its card (model.json) and, when
training wrote them, H2O's own predictions (predictions.csv). Made by `deploy`; checked and unpacked by
every worker, which trusts nothing in it.

A package is checked from its zip directory before a byte is inflated: the entry
names (one MOJO `*.zip`, model.json, predictions.csv, nothing else, no folders),
their number, and their inflated sizes summed (at most MAX_INFLATED_BYTES; zipfile
never inflates an entry past the size its directory gives). It is pinned by the
SHA-256 of its bytes (the serving record names it: registry.Roles.pins).
"""

from __future__ import annotations

import hashlib
import io
import shutil
import tempfile
import zipfile
from pathlib import Path

import orjson

from .scoring import GENMODEL_JAR, ModelError, find_mojo

CARD, PREDICTIONS = "model.json", "predictions.csv"
MAX_MODEL_BYTES = 16 * 2**20  # a package, as published
MAX_INFLATED_BYTES = 64 * 2**20  # its entries, inflated
MAX_ENTRIES = 3  # the MOJO, its card, H2O's predictions


def pack(folder: Path) -> tuple[str, bytes]:
    """A model folder (its MOJO zip, model.json, predictions.csv) as (model id, package bytes)."""
    mojo = find_mojo(folder)
    card_path = mojo.parent / CARD
    card = orjson.loads(card_path.read_bytes()) if card_path.is_file() else {}
    model_id = card.get("modelId") or mojo.stem
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as package:
        package.write(mojo, mojo.name)
        for name in (CARD, PREDICTIONS):
            if (mojo.parent / name).is_file():
                package.write(mojo.parent / name, name)
    data = buffer.getvalue()
    if len(data) > MAX_MODEL_BYTES:
        raise ModelError(
            f"{model_id} is {len(data):,} bytes packed: models are limited to {MAX_MODEL_BYTES:,}"
        )
    return model_id, data


def digest(package: bytes) -> str:
    """The SHA-256 of a package's bytes, in hex: what the serving record pins it by."""
    return hashlib.sha256(package).hexdigest()


def entries(archive: zipfile.ZipFile) -> list[zipfile.ZipInfo]:
    """The package's entries, once their names, number and inflated sizes pass; a ModelError otherwise."""
    infos = archive.infolist()
    if len(infos) > MAX_ENTRIES:
        raise ModelError(f"the package holds {len(infos)} entries: at most {MAX_ENTRIES} are expected")
    names = [info.filename for info in infos]
    mojos = [name for name in names if name.endswith(".zip")]
    for name in names:
        if name not in (CARD, PREDICTIONS) and name not in mojos:
            raise ModelError(f"the package holds an unexpected entry {name[:80]!r}")
        if Path(name).name != name or name in (".zip", GENMODEL_JAR) or "\\" in name:
            raise ModelError(f"the package holds an unexpected entry {name[:80]!r}")
    if len(mojos) != 1 or len(set(names)) != len(names):
        raise ModelError(
            f"the package holds {len(mojos)} MOJO zips and {len(names)} entries: one MOJO is expected"
        )
    inflated = sum(info.file_size for info in infos)
    if inflated > MAX_INFLATED_BYTES:
        raise ModelError(
            f"the package would inflate to {inflated:,} bytes: models are limited to {MAX_INFLATED_BYTES:,}"
        )
    return infos


def unpack(package: bytes, store: Path, prefix: str, genmodel_jar: Path) -> Path:
    """The package's entries written into a fresh folder under `store` (named from `prefix`), beside a
    link to the running h2o-genmodel.jar: the folder, for a Scorer. Nothing is written unless the
    package's directory passes (entries)."""
    try:
        with zipfile.ZipFile(io.BytesIO(package)) as archive:
            infos = entries(archive)
            store.mkdir(parents=True, exist_ok=True)
            folder = Path(tempfile.mkdtemp(prefix=f"{prefix}-", dir=store))
            try:
                for info in infos:
                    with archive.open(info) as src, (folder / info.filename).open("wb") as dst:
                        shutil.copyfileobj(src, dst)
            except Exception:
                shutil.rmtree(folder, ignore_errors=True)
                raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, EOFError) as e:
        raise ModelError(f"the package is not a readable zip: {e}") from None
    (folder / GENMODEL_JAR).symlink_to(genmodel_jar.resolve())
    return folder


def card_of(package: bytes) -> dict:
    """A package's card (its model.json), {} when it has none; a ModelError when it is not a package."""
    try:
        with zipfile.ZipFile(io.BytesIO(package)) as archive:
            names = [info.filename for info in entries(archive)]
            card = orjson.loads(archive.read(CARD)) if CARD in names else {}
    except (zipfile.BadZipFile, orjson.JSONDecodeError) as e:
        raise ModelError(f"not a model package: {e}") from None
    return card if isinstance(card, dict) else {}
