"""The classify agent's steps, as plain functions: no I/O, no Faust, each tested on its own.

check ─► (score, on the scorer) ─► label ─► tally ─► deltas for the counting agents (counting.py)
  └─► dead_letter                  └─► dead_letter (rows the model failed on; dead_letters.py)
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from functools import cache
from typing import Any, NamedTuple

import orjson

from .faust_ext.records import Undecoded
from .models import (
    FEATURES,
    MAX_KEY_BYTES,
    UNKNOWN_SPECIES,
    AccuracyDelta,
    InvalidRecord,
    Offsets,
    Output,
    Source,
    WindowDelta,
    event_time_ms,
    parse_iris,
)
from .scoring import Failure, Prediction
from .windows import EventClocks, Verdict, window_start


class Checked(NamedTuple):
    valid: list[tuple[Source, dict[str, Any]]]
    invalid: list[tuple[Source, InvalidRecord]]


def check(messages: Iterable[Source]) -> Checked:
    """Each input decoded and checked (SPEC): records to score, and bad ones with the reason (a record
    the client could not decode comes with `Undecoded` headers saying why)."""
    valid, invalid = [], []
    for message in messages:
        try:
            if type(message.headers) is Undecoded:
                raise InvalidRecord(message.headers.reason, message.headers.error)
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
            Output(source.key, orjson.dumps(record), event_time_ms(source), source_headers(source))
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
    judge, size_ms = clocks.judge, clocks.size_ms
    for source, species, predicted, shadow_predicted in labelled:
        timestamp_ms = event_time_ms(source)
        verdict = judge(source.partition, timestamp_ms, now_ms)
        if verdict is not Verdict.COUNTED:
            if verdict is Verdict.LATE:
                late += 1
            else:
                skewed += 1
            continue
        start_ms = window_start(timestamp_ms, size_ms)
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
    """One delta per window and (species, predictedSpecies): the records the count agent adds."""
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
