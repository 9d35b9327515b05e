"""The classify agent's steps, as plain functions: no I/O, no Faust, each tested on its own.

check ─► (score, on the scorer) ─► label ─► tally ─► deltas for the counting agents
  └─► dead_letter                    └─► dead_letter (rows the model failed on)
"""

from __future__ import annotations

import base64
from collections import defaultdict
from collections.abc import Iterable, Sequence
from functools import cache
from typing import Any, NamedTuple, Protocol

import orjson

from .models import (
    FEATURES,
    UNKNOWN_SPECIES,
    AccuracyDelta,
    InvalidRecord,
    Offsets,
    Output,
    WindowAccuracy,
    WindowCount,
    WindowDelta,
    parse_iris,
)
from .scoring import Failure, Prediction
from .windows import EventClocks, Verdict, window_start

# A dead letter fits Kafka's default message size (1 MiB, also aiokafka's largest request)
# with room to spare: its key and value are cut to these sizes, as JSON text.
MAX_LETTER_KEY_BYTES = 64 * 1024
MAX_LETTER_VALUE_BYTES = 512 * 1024


class Source(Protocol):
    """An input message as Faust's consumer hands it over (timestamp in seconds)."""

    key: bytes | None
    value: bytes | None
    topic: str
    partition: int
    offset: int
    timestamp: float
    headers: Any


class Checked(NamedTuple):
    valid: list[tuple[Source, dict[str, Any]]]
    invalid: list[tuple[Source, InvalidRecord]]


def check(messages: Iterable[Source]) -> Checked:
    """Each input decoded and checked (SPEC): records to score, and bad ones with the reason."""
    valid, invalid = [], []
    for message in messages:
        try:
            valid.append((message, parse_iris(message.value)))
        except InvalidRecord as error:
            invalid.append((message, error))
    return Checked(valid, invalid)


def feature_rows(valid: Sequence[tuple[Source, dict[str, Any]]]) -> list[list[float]]:
    """The model's input: the four measurements of each valid record."""
    return [[record[name] for name in FEATURES] for _, record in valid]


class Labelled(NamedTuple):
    source: Source
    species: str | None  # the true label, when the record has one
    predicted: str


class Classified(NamedTuple):
    outputs: list[Output]  # for iris-classified
    labelled: list[Labelled]  # for the tallies
    failed: list[tuple[Source, InvalidRecord]]  # rows the model could not score


def label(
    valid: Sequence[tuple[Source, dict[str, Any]]], predictions: Sequence[Prediction | Failure], model_id: str
) -> Classified:
    """Each scored record with its `predictedSpecies` and the `modelId` that scored it (SPEC), its source
    in headers."""
    outputs, labelled, failed = [], [], []
    for (source, record), prediction in zip(valid, predictions, strict=True):
        if isinstance(prediction, Failure):
            failed.append((source, InvalidRecord("model", f"model: {prediction.error}")))
            continue
        record["predictedSpecies"] = prediction.label
        record["modelId"] = model_id
        outputs.append(
            Output(source.key, orjson.dumps(record), round(source.timestamp * 1000), source_headers(source))
        )
        labelled.append(Labelled(source, record.get("species"), prediction.label))
    return Classified(outputs, labelled, failed)


def source_headers(source: Source) -> list[tuple[str, bytes]]:
    """Where a classified record came from: a consumer drops the duplicates of at-least-once by these."""
    return [
        *_partition_headers(source.topic, source.partition),
        ("iris-source-offset", b"%d" % source.offset),
    ]


@cache
def _partition_headers(topic: str, partition: int) -> tuple[tuple[str, bytes], ...]:
    return ("iris-source-topic", topic.encode()), ("iris-source-partition", b"%d" % partition)


class Tally(NamedTuple):
    counts: defaultdict[tuple[str, str, int], Offsets]  # (species, predictedSpecies, startMs) -> records
    labelled: defaultdict[int, Offsets]  # startMs -> labelled records
    correct: defaultdict[int, Offsets]  # startMs -> labelled records predicted right
    late: int
    skewed: int


def offsets() -> defaultdict[str, list[int]]:
    return defaultdict(list)


def tally(labelled: Iterable[Labelled], clocks: EventClocks, now_ms: int) -> Tally:
    """Add up a batch per window, naming each record by its input offset: what the counting agents receive."""
    result = Tally(defaultdict(offsets), defaultdict(offsets), defaultdict(offsets), 0, 0)
    late = skewed = 0
    for source, species, predicted in labelled:
        timestamp_ms = round(source.timestamp * 1000)
        verdict = clocks.judge(source.partition, timestamp_ms, now_ms)
        if verdict is Verdict.LATE:
            late += 1
            continue
        if verdict is Verdict.SKEWED:
            skewed += 1
            continue
        start_ms = window_start(timestamp_ms, clocks.size_ms)
        partition = _partition_key(source.partition)
        result.counts[species or UNKNOWN_SPECIES, predicted, start_ms][partition].append(source.offset)
        if species:
            result.labelled[start_ms][partition].append(source.offset)
            if species == predicted:
                result.correct[start_ms][partition].append(source.offset)
    return result._replace(late=late, skewed=skewed)


@cache
def _partition_key(partition: int) -> str:
    return str(partition)  # JSON object keys are strings


def window_deltas(counted: Tally) -> list[WindowDelta]:
    return [
        WindowDelta(species=species, predictedSpecies=predicted, startMs=start_ms, offsets=dict(offsets))
        for (species, predicted, start_ms), offsets in counted.counts.items()
    ]


def accuracy_deltas(counted: Tally) -> list[AccuracyDelta]:
    return [
        AccuracyDelta(
            startMs=start_ms, labelled=dict(labelled), correct=dict(counted.correct.get(start_ms, {}))
        )
        for start_ms, labelled in counted.labelled.items()
    ]


# The counting agents' steps. A table value keeps, next to its figures, the highest input offset it
# has counted from each source partition ("seen"), and both change in one changelog record. A record
# is counted when its offset is above that mark: each source partition's records reach the counting
# agent in offset order (a batch's outputs are delivered before the next batch is sent, and a new
# owner of a partition starts from its committed offset, after every delta its records caused), so
# a record at or below the mark has been counted, and a replay of it is recognised and skipped.


def unseen(seen: dict[str, int], offsets: Offsets) -> tuple[dict[str, int], dict[str, set[int]]]:
    """The offsets above the marks of `seen`, by partition, and the marks moved past them."""
    marks, fresh = dict(seen), {}
    for partition, listed in offsets.items():
        mark = seen.get(partition, -1)
        fresh[partition] = {offset for offset in listed if offset > mark}
        if listed:
            marks[partition] = max(mark, *listed)
    return marks, fresh


def add_count(value: dict[str, Any] | None, delta: WindowDelta) -> dict[str, Any]:
    """A window count (`{"count", "seen"}`) after a delta, each record counted once however often replayed."""
    value = value or {"count": 0, "seen": {}}
    seen, fresh = unseen(value["seen"], delta.offsets)
    return {"count": value["count"] + sum(map(len, fresh.values())), "seen": seen}


def add_accuracy(value: dict[str, Any] | None, delta: AccuracyDelta) -> dict[str, Any]:
    """A window's accuracy tally (`{"correct", "total", "seen"}`) after a delta, each record once."""
    value = value or {"correct": 0, "total": 0, "seen": {}}
    seen, fresh = unseen(value["seen"], delta.labelled)
    correct = sum(
        len(offsets & set(delta.correct.get(partition, ()))) for partition, offsets in fresh.items()
    )
    return {
        "correct": value["correct"] + correct,
        "total": value["total"] + sum(map(len, fresh.values())),
        "seen": seen,
    }


def window_count(delta: WindowDelta, count: int, window_ms: int) -> tuple[bytes, WindowCount]:
    """The key and message of a window's count after an update (SPEC: the key names the triple)."""
    return orjson.dumps([delta.species, delta.predictedSpecies, delta.startMs]), WindowCount(
        species=delta.species,
        predictedSpecies=delta.predictedSpecies,
        startMs=delta.startMs,
        endMs=delta.startMs + window_ms,
        count=count,
    )


def window_accuracy(start_ms: int, correct: int, total: int, window_ms: int) -> tuple[bytes, WindowAccuracy]:
    """The key and message of a window's accuracy after an update."""
    return str(start_ms).encode(), WindowAccuracy(
        startMs=start_ms, endMs=start_ms + window_ms, correct=correct, total=total, accuracy=correct / total
    )


def dead_letter(source: Source, error: InvalidRecord) -> Output:
    """The DLQ record (SPEC): the reason, where the record came from, its bytes; cut to always fit."""
    key, key_cut = fitted_text(source.key, MAX_LETTER_KEY_BYTES)
    value, value_cut = fitted_text(source.value, MAX_LETTER_VALUE_BYTES)
    timestamp_ms = round(source.timestamp * 1000)
    letter: dict[str, Any] = {
        "error": str(error),
        "topic": source.topic,
        "partition": source.partition,
        "offset": source.offset,
        "timestamp": timestamp_ms,
        "key": key,
        "value": value,
    }
    if key_cut or value_cut:
        letter |= {
            "truncated": True,
            "keyBytes": len(source.key or b""),
            "valueBytes": len(source.value or b""),
        }
    key_bytes = None if source.key is None else source.key[:MAX_LETTER_KEY_BYTES]
    return Output(key_bytes, orjson.dumps(letter), timestamp_ms, list(source.headers or []))


def fitted_text(data: bytes | None, limit: int) -> tuple[str | None, bool]:
    """Bytes as text (base64 when not UTF-8) whose JSON encoding takes at most `limit` bytes; cut or not."""
    if data is None:
        return None, False
    try:
        text = data.decode()
    except UnicodeDecodeError:
        text = base64.b64encode(data).decode()
    size = len(orjson.dumps(text))
    if size <= limit:
        return text, False
    while size > limit:  # a character takes 1 to 6 bytes of JSON: shrink in proportion until it fits
        text = text[: len(text) * limit // size - 1]
        size = len(orjson.dumps(text))
    return text, True
