"""The records on the app's topics (SPEC, "Records"): their fields, and how input is checked."""

from __future__ import annotations

import math
from typing import Any, NamedTuple, Protocol

import faust
import orjson

# The four measurements: each record field (SPEC) with its column in data/iris.csv and the model.
FEATURES = {
    "sepalLength": "sepal_length",
    "sepalWidth": "sepal_width",
    "petalLength": "petal_length",
    "petalWidth": "petal_width",
}
SPECIES = ("setosa", "versicolor", "virginica")
UNKNOWN_SPECIES = "unknown"  # counted under this when a record has no true label
MAX_RECORD_BYTES = 16 * 1024  # an iris record is under 200 bytes; far larger is a producer's mistake
# Its key goes out again with the classified record: one near Kafka's message limit would make that
# record too large to send, and stop the worker on it over and over.
MAX_KEY_BYTES = 16 * 1024


class InvalidRecord(ValueError):
    """An input record that cannot be classified; the message is the DLQ's `error`.

    `reason` names the kind of fault in a word or two, for metrics.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def parse_iris(raw: bytes | None) -> dict[str, Any]:
    """Decode and check one `iris` message; return the record with only the SPEC keys."""
    if raw is None or not raw:
        raise InvalidRecord("empty", "empty message")
    if len(raw) > MAX_RECORD_BYTES:
        raise InvalidRecord(
            "too_large", f"message too large: {len(raw)} bytes, the limit is {MAX_RECORD_BYTES}"
        )
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise InvalidRecord("not_json", f"not JSON: {e}") from None
    if not isinstance(value, dict):
        raise InvalidRecord("not_an_object", f"not a JSON object but {type(value).__name__}")
    record: dict[str, Any] = {}
    for name in FEATURES:
        if name not in value:
            raise InvalidRecord("missing", f"{name}: missing")
        number = value[name]
        if isinstance(number, bool) or not isinstance(number, (int, float)):
            raise InvalidRecord("not_a_number", f"{name}: not a number: {orjson.dumps(number).decode()}")
        if not math.isfinite(number):
            raise InvalidRecord("not_finite", f"{name}: not finite: {number}")
        if number < 0:
            raise InvalidRecord("negative", f"{name}: negative: {number}")
        record[name] = number
    species = value.get("species")
    if species is not None:
        if species not in SPECIES:
            raise InvalidRecord(
                "unknown_species",
                f"species: unknown {orjson.dumps(species).decode()}, expected one of {', '.join(SPECIES)}",
            )
        record["species"] = species
    return record


class Output(NamedTuple):
    """A message the app produces as it is: raw key and value, event time, headers."""

    key: bytes | None
    value: bytes
    timestamp_ms: int
    headers: list[tuple[str, bytes]] = []


class Source(Protocol):
    """An input record as aiokafka fetches it (timestamp in milliseconds)."""

    key: bytes | None
    value: bytes | None
    topic: str
    partition: int
    offset: int
    timestamp: int
    headers: Any


def event_time_ms(source: Source) -> int:
    """An input record's timestamp in milliseconds: its event time, and the time of what it causes."""
    return source.timestamp


# Input offsets by source partition of `iris` (as text: JSON object keys are strings). A delta
# names the records it counts, so a count recognises one it has counted already (a replay).
Offsets = dict[str, list[int]]


class WindowDelta(faust.Record, serializer="json", include_metadata=False):
    """The records of one (species, predictedSpecies) a batch adds to one window, by their input offsets.

    The classify agent sends these to the counting side; startMs carries the
    input records' event time across the repartition.
    """

    species: str
    predictedSpecies: str  # noqa: N815 -- the SPEC's field names
    startMs: int  # noqa: N815
    offsets: dict  # Offsets


class WindowCount(faust.Record, serializer="json", include_metadata=False):
    """A window's count after an update: one message on iris-classified-window-counts."""

    species: str
    predictedSpecies: str  # noqa: N815
    startMs: int  # noqa: N815
    endMs: int  # noqa: N815
    count: int


class AccuracyDelta(faust.Record, serializer="json", include_metadata=False):
    """What a batch adds to one window's accuracy, by input offsets: per model (the serving one, and
    the shadow while one is set) its role and its labelled records and those it predicted right;
    and the records both models scored (`compared`), and those they agreed on."""

    startMs: int  # noqa: N815
    models: dict  # modelId -> {"role": "serving" | "shadow", "labelled": Offsets, "correct": Offsets}
    compared: dict  # Offsets
    agreed: dict  # Offsets


COUNT_FIELDS = {"species": str, "predictedSpecies": str, "startMs": int, "endMs": int, "count": int}


class InvalidCounts(ValueError):
    """Count rows from another worker that are not what a worker sends."""


def count_rows(rows: Any, species: str, predicted: str, window_ms: int) -> list[dict[str, Any]]:
    """Rows another worker sent for one (species, predictedSpecies), if they are exactly count rows."""
    if not isinstance(rows, list):
        raise InvalidCounts(f"counts of {species}/{predicted}: {type(rows).__name__}, not a list")
    for row in rows:
        if (
            not isinstance(row, dict)
            or row.keys() != COUNT_FIELDS.keys()
            or not all(type(row[name]) is kind for name, kind in COUNT_FIELDS.items())
            or (row["species"], row["predictedSpecies"]) != (species, predicted)
            or row["endMs"] != row["startMs"] + window_ms
            or row["count"] < 0
        ):
            raise InvalidCounts(f"counts of {species}/{predicted}: not a count row: {row!r:.200}")
    return rows
