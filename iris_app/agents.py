"""The topology: generate → classify (score, forward, or dead-letter) → count per window.

iris ─► classify ─► iris-classified
           │  └──► iris-dlq                  (bad records, with the reason)
           ├─────► iris-window-deltas        (per batch: +n per window and species/predictedSpecies)
           │          ─► count ─► window-counts table ─► iris-classified-window-counts
           └─────► iris-accuracy-deltas      (per batch: +correct/+total per window, labelled records)
                      ─► score_accuracy ─► window-accuracy table ─► iris-classified-window-accuracy
"""

from __future__ import annotations

import asyncio
import base64
import random
from collections import Counter
from typing import NamedTuple

import faust
import orjson

from . import metrics
from .app import (
    accuracy_deltas_topic,
    app,
    classified_topic,
    dlq_topic,
    iris_topic,
    settings,
    window_accuracy_topic,
    window_counts_topic,
    window_deltas_topic,
)
from .batches import ahead, batches
from .models import (
    MEASUREMENTS,
    UNKNOWN_SPECIES,
    AccuracyDelta,
    InvalidRecord,
    WindowAccuracy,
    WindowCount,
    WindowDelta,
    parse_iris,
)
from .scoring import Prediction
from .tables import ACCURACY_KEY, count_key, window_accuracy, window_counts
from .transport import Record
from .windows import EventClock, window_start

BATCH_SIZE = 1000  # records scored and sent together
BATCH_WITHIN = 0.05  # seconds to wait for a batch to fill

WINDOW_MS = settings.window_ms
clock = EventClock(WINDOW_MS, settings.window_grace_seconds * 1000)


if settings.generator_interval > 0:

    @app.timer(settings.generator_interval)
    async def generate() -> None:
        """Stream a random iris record (a row of data/iris.csv) to `iris`."""
        await iris_topic.send(value=orjson.dumps(random.choice(app.samples)))


class Scored(NamedTuple):
    """A batch of input events, checked, with the predictions for its valid records."""

    events: list[faust.EventT]
    valid: list[tuple[faust.EventT, dict]]
    invalid: list[tuple[faust.EventT, InvalidRecord]]
    predictions: list[Prediction]


@app.agent(iris_topic)
async def classify(stream: faust.StreamT) -> None:
    """Score each batch of input records in-process and forward them; bad ones go to the DLQ.

    The next batch is checked and scored (on the scorer's thread) while this one is forwarded.
    """
    async for batch in ahead(batches(stream, BATCH_SIZE, within=BATCH_WITHIN), check_and_score):
        delivered: list[asyncio.Future] = []  # every output of the batch, awaited before it is acked
        for event, error in batch.invalid:
            metrics.dead_lettered.labels(error.reason).inc()
            letter = dead_letter(event, str(error))
            delivered.append(
                await dlq_topic.send(key=event.key, value=letter, timestamp=event.message.timestamp)
            )
        classified: list[Record] = []
        counts: Counter[tuple[str, str, int]] = Counter()
        correct: Counter[int] = Counter()
        labelled: Counter[int] = Counter()
        for (event, record), prediction in zip(batch.valid, batch.predictions):
            record["predictedSpecies"] = prediction.label
            timestamp_ms = round(event.message.timestamp * 1000)
            classified.append((event.key, orjson.dumps(record), timestamp_ms))
            clock.observe(timestamp_ms)
            start_ms = window_start(timestamp_ms, WINDOW_MS)
            if clock.is_late(start_ms):
                metrics.late.inc()
                continue
            species = record.get("species")
            counts[species or UNKNOWN_SPECIES, prediction.label, start_ms] += 1
            if species:
                labelled[start_ms] += 1
                correct[start_ms] += species == prediction.label
        # As whole record batches: Topic.send's per-message machinery costs more than the scoring.
        delivered += await app.producer.send_batches(classified_topic.get_topic_name(), classified)
        metrics.classified.inc(len(classified))
        for (species, predicted, start_ms), count in counts.items():
            delivered.append(
                await window_deltas_topic.send(
                    key=count_key(species, predicted),
                    value=WindowDelta(
                        species=species, predictedSpecies=predicted, startMs=start_ms, count=count
                    ),
                )
            )
        for start_ms, total in labelled.items():
            delivered.append(
                await accuracy_deltas_topic.send(
                    key=ACCURACY_KEY,
                    value=AccuracyDelta(startMs=start_ms, correct=correct[start_ms], total=total),
                )
            )
        # The batch's offsets are acknowledged (and later committed) only once its output is delivered.
        await asyncio.gather(*delivered)
        for event in batch.events:
            event.ack()


async def check_and_score(events: list[faust.EventT]) -> Scored:
    """Check each input record (SPEC) and score the valid ones on the scorer's thread."""
    valid, invalid = [], []
    for event in events:
        try:
            valid.append((event, parse_iris(event.value)))
        except InvalidRecord as error:
            invalid.append((event, error))
    rows = [[record[m] for m in MEASUREMENTS] for _, record in valid]
    with metrics.scoring_seconds.time():
        predictions = await app.scorer.predict_aside(rows)
    return Scored(events, valid, invalid, predictions)


@app.agent(window_deltas_topic)
async def count(deltas: faust.StreamT[WindowDelta]) -> None:
    """Add each delta to its window's count and publish the new count (compactable by key)."""
    async for delta in deltas:
        key = count_key(delta.species, delta.predictedSpecies)
        window_counts[key] += delta.count
        await window_counts_topic.send(
            key=orjson.dumps([delta.species, delta.predictedSpecies, delta.startMs]),
            value=WindowCount(
                species=delta.species,
                predictedSpecies=delta.predictedSpecies,
                startMs=delta.startMs,
                endMs=delta.startMs + WINDOW_MS,
                count=window_counts[key].value(),
            ),
        )


@app.agent(accuracy_deltas_topic)
async def score_accuracy(deltas: faust.StreamT[AccuracyDelta]) -> None:
    """Add each delta to its window's tally and publish the window's accuracy (keyed by startMs)."""
    async for delta in deltas:
        correct, total = window_accuracy[ACCURACY_KEY].value() or (0, 0)
        correct, total = correct + delta.correct, total + delta.total
        window_accuracy[ACCURACY_KEY] = [correct, total]
        metrics.window_accuracy.set(correct / total)
        await window_accuracy_topic.send(
            key=str(delta.startMs).encode(),
            value=WindowAccuracy(
                startMs=delta.startMs,
                endMs=delta.startMs + WINDOW_MS,
                correct=correct,
                total=total,
                accuracy=correct / total,
            ),
        )


def dead_letter(event: faust.EventT, error: str) -> bytes:
    """The DLQ record (SPEC): the reason, where the record came from, and its original bytes."""
    message = event.message
    return orjson.dumps(
        {
            "error": error,
            "topic": message.topic,
            "partition": message.partition,
            "offset": message.offset,
            "timestamp": round(message.timestamp * 1000),
            "key": as_text(message.key),
            "value": as_text(message.value),
        }
    )


def as_text(data: bytes | None) -> str | None:
    """Bytes as text, or base64 when they are not UTF-8."""
    if data is None:
        return None
    try:
        return data.decode()
    except UnicodeDecodeError:
        return base64.b64encode(data).decode()
