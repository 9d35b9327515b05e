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
    MAX_KEY_BYTES,
    UNKNOWN_SPECIES,
    AccuracyDelta,
    InvalidRecord,
    Offsets,
    Output,
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
MAX_LETTER_HEADER_BYTES = 256 * 1024  # the record's headers, kept whole or not at all


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
            if message.key is not None and len(message.key) > MAX_KEY_BYTES:
                raise InvalidRecord(
                    "too_large", f"key too large: {len(message.key)} bytes, the limit is {MAX_KEY_BYTES}"
                )
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
    shadow_predicted: str | None = None  # the shadow model's label, while one is set and scored the row


class Classified(NamedTuple):
    outputs: list[Output]  # for iris-classified
    labelled: list[Labelled]  # for the tallies
    failed: list[tuple[Source, InvalidRecord]]  # rows the model could not score


class Shadow(NamedTuple):
    """A shadow model's predictions for the rows the serving model scored: compared, never forwarded."""

    model_id: str
    predictions: Sequence[Prediction | Failure]


def label(
    valid: Sequence[tuple[Source, dict[str, Any]]],
    predictions: Sequence[Prediction | Failure],
    model_id: str,
    shadow: Shadow | None = None,
) -> Classified:
    """Each scored record with its `predictedSpecies` and the `modelId` that scored it (SPEC), its source
    in headers; a row the shadow failed on is only not compared."""
    outputs, labelled, failed = [], [], []
    shadow_labels = (
        [p.label if isinstance(p, Prediction) else None for p in shadow.predictions]
        if shadow
        else [None] * len(valid)
    )
    for (source, record), prediction, shadow_label in zip(valid, predictions, shadow_labels, strict=True):
        if isinstance(prediction, Failure):
            failed.append((source, InvalidRecord("model", f"model: {prediction.error}")))
            continue
        record["predictedSpecies"] = prediction.label
        record["modelId"] = model_id
        outputs.append(
            Output(source.key, orjson.dumps(record), round(source.timestamp * 1000), source_headers(source))
        )
        labelled.append(Labelled(source, record.get("species"), prediction.label, shadow_label))
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
    labelled: defaultdict[tuple[int, str], Offsets]  # (startMs, modelId) -> labelled records
    correct: defaultdict[tuple[int, str], Offsets]  # (startMs, modelId) -> labelled records predicted right
    compared: defaultdict[int, Offsets]  # startMs -> records both the serving and the shadow model scored
    agreed: defaultdict[int, Offsets]  # startMs -> compared records both models gave the same label
    roles: dict[str, str]  # modelId -> "serving" or "shadow"
    late: int
    skewed: int


def offsets() -> defaultdict[str, list[int]]:
    return defaultdict(list)


def tally(
    labelled: Iterable[Labelled], clocks: EventClocks, now_ms: int, serving: str, shadow: str | None = None
) -> Tally:
    """Add up a batch per window, naming each record by its input offset: what the counting agents receive."""
    roles = {serving: "serving"} | ({shadow: "shadow"} if shadow else {})
    result = Tally(*(defaultdict(offsets) for _ in range(5)), roles, 0, 0)
    counts, labelled_by, correct_by, compared, agreed = result[:5]
    late = skewed = 0
    for source, species, predicted, shadow_predicted in labelled:
        timestamp_ms = round(source.timestamp * 1000)
        verdict = clocks.judge(source.partition, timestamp_ms, now_ms)
        if verdict is Verdict.LATE:
            late += 1
            continue
        if verdict is Verdict.SKEWED:
            skewed += 1
            continue
        start_ms = window_start(timestamp_ms, clocks.size_ms)
        partition, offset = _partition_key(source.partition), source.offset
        counts[species or UNKNOWN_SPECIES, predicted, start_ms][partition].append(offset)
        if species:
            labelled_by[start_ms, serving][partition].append(offset)
            if species == predicted:
                correct_by[start_ms, serving][partition].append(offset)
        if shadow_predicted is not None:
            compared[start_ms][partition].append(offset)
            if shadow_predicted == predicted:
                agreed[start_ms][partition].append(offset)
            if species:
                labelled_by[start_ms, shadow][partition].append(offset)
                if species == shadow_predicted:
                    correct_by[start_ms, shadow][partition].append(offset)
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
    """One delta per window with labelled or compared records: each model's part, and the comparison."""
    windows = {start_ms for start_ms, _ in counted.labelled} | counted.compared.keys()
    return [
        AccuracyDelta(
            startMs=start_ms,
            models={
                model_id: {
                    "role": role,
                    "labelled": dict(counted.labelled.get((start_ms, model_id), {})),
                    "correct": dict(counted.correct.get((start_ms, model_id), {})),
                }
                for model_id, role in counted.roles.items()
                if (start_ms, model_id) in counted.labelled or start_ms in counted.compared
            },
            compared=dict(counted.compared.get(start_ms, {})),
            agreed=dict(counted.agreed.get(start_ms, {})),
        )
        for start_ms in sorted(windows)
    ]


# The counting agents' steps. A table value keeps, next to its figures, the highest input offset it
# has counted from each source partition ("seen"), and both change in one changelog record. A record
# is counted when its offset is above that mark: each source partition's records reach the counting
# agent in offset order (a batch's outputs are delivered before the next batch is sent, the consumer
# hands records over only in order from a seek, and a new owner of a partition starts from its
# committed offset, after every delta its records caused: no commit passes an unacknowledged
# record; faust_ext/transport.py), so a record at or below the mark has been counted, and a replay
# of it is recognised and skipped.
# A delta's lists all come from one batch, so they share the marks of the value they add to.


def above(seen: dict[str, int], offsets: Offsets) -> int:
    """How many distinct records of `offsets` lie above the marks of `seen`: those not counted yet.

    Distinct: a batch can hold a record twice (read again after a seek back), and it counts once."""
    return sum(
        len({offset for offset in listed if offset > seen.get(partition, -1)})
        for partition, listed in offsets.items()
    )


def marks_after(seen: dict[str, int], *offsets: Offsets) -> dict[str, int]:
    """The marks of `seen` moved past every offset of `offsets`."""
    marks = dict(seen)
    for each in offsets:
        for partition, listed in each.items():
            if listed:
                marks[partition] = max(marks.get(partition, -1), *listed)
    return marks


def add_count(value: dict[str, Any] | None, delta: WindowDelta) -> dict[str, Any]:
    """A window count (`{"count", "seen"}`) after a delta, each record counted once however often replayed."""
    value = value or {"count": 0, "seen": {}}
    seen = value["seen"]
    return {"count": value["count"] + above(seen, delta.offsets), "seen": marks_after(seen, delta.offsets)}


def add_accuracy(value: dict[str, Any] | None, delta: AccuracyDelta) -> dict[str, Any]:
    """A window's accuracy tallies (`{"models": {modelId: {"role", "correct", "total"}}, "compared", "agreed",
    "seen"}`) after a delta, each record once however often replayed."""
    value = value or {"models": {}, "compared": 0, "agreed": 0, "seen": {}}
    seen, models = value["seen"], dict(value["models"])
    for model_id, part in delta.models.items():
        before = models.get(model_id, {"correct": 0, "total": 0})
        models[model_id] = {
            "role": part["role"],
            "correct": before["correct"] + above(seen, part["correct"]),
            "total": before["total"] + above(seen, part["labelled"]),
        }
    return {
        "models": models,
        "compared": value["compared"] + above(seen, delta.compared),
        "agreed": value["agreed"] + above(seen, delta.agreed),
        "seen": marks_after(seen, delta.compared, *(part["labelled"] for part in delta.models.values())),
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


def window_accuracies(
    start_ms: int, value: dict[str, Any], window_ms: int
) -> list[tuple[bytes, dict[str, Any]]]:
    """The keys and messages of a window's accuracy after an update, one per model (SPEC): `accuracy` is
    null while the window has no labelled record; `agreement` comes while a shadow model is compared."""
    outputs = []
    for model_id, tallies in value["models"].items():
        correct, total = tallies["correct"], tallies["total"]
        message = {
            "startMs": start_ms,
            "endMs": start_ms + window_ms,
            "modelId": model_id,
            "role": tallies["role"],
            "correct": correct,
            "total": total,
            "accuracy": correct / total if total else None,
        }
        if value["compared"]:
            message["agreement"] = value["agreed"] / value["compared"]
        outputs.append((orjson.dumps([start_ms, model_id]), message))
    return outputs


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
    headers = list(source.headers or [])
    header_bytes = sum(len(name) + len(value or b"") for name, value in headers)
    headers_cut = header_bytes > MAX_LETTER_HEADER_BYTES
    if key_cut or value_cut or headers_cut:
        letter |= {
            "truncated": True,
            "keyBytes": len(source.key or b""),
            "valueBytes": len(source.value or b""),
        }
    if headers_cut:
        letter["headerBytes"] = header_bytes
        headers = []  # dropped: cut, a header would say something it did not
    key_bytes = None if source.key is None else source.key[:MAX_LETTER_KEY_BYTES]
    return Output(key_bytes, orjson.dumps(letter), timestamp_ms, headers)


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
