"""The topology: generate → classify (score, forward, or dead-letter) → count per window.

iris ─► classify ─► iris-classified          (each record with predictedSpecies; its source in headers)
           ├─────► iris-dlq                  (bad records, and rows the model failed on, with the reason)
           ├─────► iris-window-deltas        (per batch: +n per window and species/predictedSpecies)
           │          ─► count ─► window-counts table ─► iris-classified-window-counts
           └─────► iris-accuracy-deltas      (per batch: +correct/+total per window, labelled records)
                      ─► tally_accuracy ─► window-accuracy table ─► iris-classified-window-accuracy

The agents only wire the steps (plain functions: classifying.py, counting.py,
dead_letters.py) and send. Every event is acknowledged once everything it caused
is delivered, table changelog writes included; a failure anywhere stops the worker
(CrashingSupervisor, application.py), so no offset is ever committed past a record
that was not handled.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator
from typing import NamedTuple

import faust
import orjson

from . import classifying, counting, metrics, registry
from .application import (
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
from .dead_letters import dead_letter
from .faust_ext.batches import batches
from .faust_ext.fetches import Fetch
from .models import AccuracyDelta, WindowDelta
from .pipeline import Delivery, ahead
from .samples import Samples
from .scoring import Failure, Prediction
from .tables import ACCURACY_KEY, WINDOW_MS, count_key, window_accuracy, window_counts
from .windows import EventClocks

BATCH_SIZE = 1000  # records scored and sent together
BATCH_WITHIN = 0.02  # seconds to wait for a batch to fill, once one Fetch has come

if settings.generator_interval > 0:
    samples = Samples()
    app.loaders.append(samples.load)

    @app.timer(settings.generator_interval)
    async def generate() -> None:
        """Stream a random iris record (a row of data/iris.csv) to `iris`."""
        await iris_topic.send(value=random.choice(samples.encoded))


@app.task
async def follow_models() -> None:
    """Serve what `iris-models` says, switching between two batches (serving.py)."""
    while True:
        try:
            await registry.follow(settings.kafka, app.models.on_change)
        except Exception as e:  # the broker went away, say: read the registry again from its start
            app.log.warning("Reading %s failed, again in 5 s: %r", registry.TOPIC, e)
            await asyncio.sleep(5)


class Scored(NamedTuple):
    fetches: list[Fetch]
    checked: classifying.Checked
    predictions: list[Prediction | Failure]
    model_id: str
    shadow: classifying.Shadow | None  # the shadow model's predictions, while one is set


async def check_and_score(fetches: list[Fetch]) -> Scored:
    """Check a batch of input records (SPEC) and score the valid ones on the scorer's thread, with the
    serving model and, while one is set, the shadow model."""
    checked = classifying.check(record for fetch in fetches for record in fetch.records)
    serving, shadow = app.models.scorers()  # one pair for the whole batch: a switch happens between batches
    rows = classifying.feature_rows(checked.valid)
    with metrics.scoring_seconds.time():
        predictions = await serving.predict_aside(rows)
        shadowed = classifying.Shadow(shadow.model_id, await shadow.predict_aside(rows)) if shadow else None
    return Scored(fetches, checked, predictions, serving.model_id, shadowed)


clocks = EventClocks(WINDOW_MS, settings.window_grace_seconds * 1000, settings.max_clock_skew_seconds * 1000)


@app.agent(iris_topic)
async def classify(stream: faust.StreamT) -> None:
    """Score each batch of input records in-process and forward them; bad ones go to the DLQ.

    A batch is one or more fetches, a partition's records each (faust_ext.fetches). The next
    batch is checked and scored (on the scorer's thread) while this one is forwarded.
    """
    scored: AsyncIterator[Scored] = ahead(batches(stream, BATCH_SIZE, within=BATCH_WITHIN), check_and_score)
    async for fetches, checked, predictions, model_id, shadow in scored:
        classified = classifying.label(checked.valid, predictions, model_id, shadow)
        counted = classifying.tally(
            classified.labelled,
            clocks,
            now_ms=int(time.time() * 1000),
            serving=model_id,
            shadow=shadow and shadow.model_id,
        )
        rejected = [*checked.invalid, *classified.failed]
        letters = [dead_letter(source, error) for source, error in rejected]

        delivery = Delivery(fetches)
        delivery.add(*await app.producer.send_batches(dlq_topic.get_topic_name(), letters))
        delivery.add(*await app.producer.send_batches(classified_topic.get_topic_name(), classified.outputs))
        for delta in classifying.window_deltas(counted):
            delivery.add(
                await window_deltas_topic.send(
                    key=count_key(delta.species, delta.predictedSpecies), value=delta
                )
            )
        for delta in classifying.accuracy_deltas(counted):
            delivery.add(await accuracy_deltas_topic.send(key=ACCURACY_KEY, value=delta))
        metrics.observe_batch(
            len(classified.outputs), [error.reason for _, error in rejected], counted, shadow
        )
        await delivery.settle()


# REPLAYED_WRITES: a delta is only replayed after a worker stopped or lost its partition. One
# killed after its RocksDB store took a new value (Faust writes it at once) but before the
# changelog record and the published count were delivered restarts with that value: the replay
# then adds nothing, yet writing and publishing it again is what gets them out. Both are idempotent.


@app.agent(window_deltas_topic)
async def count(deltas: faust.StreamT[WindowDelta]) -> None:
    """Add each delta to its window's count, once however often replayed, and publish the new count."""
    delivery = Delivery()
    async for event in deltas.noack().events():
        delta: WindowDelta = event.value
        key = count_key(delta.species, delta.predictedSpecies)
        if window_counts.table.expired(event.message.partition, delta.startMs):
            metrics.expired_deltas.inc()  # its window is gone: counting it would start it again at zero
        else:  # written and published even when a replay adds nothing (REPLAYED_WRITES)
            window_counts[key] = value = counting.add_count(window_counts[key].value(), delta)
            out_key, out = counting.window_count(delta, value["count"], WINDOW_MS)
            delivery.add(
                await window_counts_topic.send(key=out_key, value=out), *window_counts.table.take_writes()
            )
        await delivery.settle_when_idle(event, deltas.channel.queue)


@app.agent(accuracy_deltas_topic)
async def tally_accuracy(deltas: faust.StreamT[AccuracyDelta]) -> None:
    """Add each delta to its window's tallies, once however often replayed; publish each model's accuracy."""
    delivery = Delivery()
    async for event in deltas.noack().events():
        delta: AccuracyDelta = event.value
        if window_accuracy.table.expired(event.message.partition, delta.startMs):
            metrics.expired_deltas.inc()
        else:  # (REPLAYED_WRITES)
            window_accuracy[ACCURACY_KEY] = value = counting.add_accuracy(
                window_accuracy[ACCURACY_KEY].value(), delta
            )
            metrics.observe_accuracy(value)
            for out_key, out in counting.window_accuracies(delta.startMs, value, WINDOW_MS):
                delivery.add(await window_accuracy_topic.send(key=out_key, value=orjson.dumps(out)))
            delivery.add(*window_accuracy.table.take_writes())
        await delivery.settle_when_idle(event, deltas.channel.queue)
