"""The generator's records: the rows of data/iris.csv, as `iris` records (SPEC field names)."""

from __future__ import annotations

import csv
from pathlib import Path

import orjson

from .models import FEATURES

IRIS_DATA = Path("data/iris.csv")  # relative to the working directory, as mojo/ is


def read_samples(path: Path = IRIS_DATA) -> list[dict[str, float | str]]:
    """The rows of the iris data set (columns as FEATURES, then species) as records."""
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    return [
        {**{field: float(row[column]) for field, column in FEATURES.items()}, "species": row["species"]}
        for row in rows
    ]


class Samples:
    """The encoded records the generator picks from, read once at start."""

    def __init__(self, path: Path = IRIS_DATA) -> None:
        self.path = path
        self.encoded: list[bytes] = []

    def load(self) -> None:
        self.encoded = [orjson.dumps(record) for record in read_samples(self.path)]
