"""The yardstick: the app's work as a minimal hand-written aiokafka loop, with the same scorer.

consume `iris` → check → score → produce `iris-classified` (or `iris-dlq`) → count per
window in a dict → produce the changed counts; commit once a fetch's output is delivered.
The classified records go out as one record batch per partition, as the app sends them, and
as the contract has them: with `modelId`, and their source in headers.
No table, no changelog, no repartition: what a plain loop would do on one process.
"""

from __future__ import annotations

import asyncio
import os
from collections import Counter, defaultdict

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner

from iris_app.models import FEATURES, UNKNOWN_SPECIES, InvalidRecord, parse_iris
from iris_app.scoring import Scorer
from iris_app.settings import Settings
from iris_app.windows import window_start


async def main() -> None:
    settings = Settings.from_env()
    bootstrap = settings.bootstrap_servers
    scorer = Scorer(settings.mojo)
    window_ms = settings.window_ms
    consumer = AIOKafkaConsumer(
        "iris",
        bootstrap_servers=bootstrap,
        group_id="bench-reference",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    # Record batches up to a request's size (Faust's default, 1,000,000 bytes), as the app's.
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, max_batch_size=1_000_000)
    partitioner = DefaultPartitioner()
    await consumer.start()
    await producer.start()
    partitions = sorted(await producer.partitions_for("iris-classified"))
    counts: Counter[tuple[str, str, int]] = Counter()
    try:
        while True:
            batches = await consumer.getmany(timeout_ms=100, max_records=1000)
            delivered = []
            for messages in batches.values():
                good = []
                for m in messages:
                    try:
                        good.append((m, parse_iris(m.value)))
                    except InvalidRecord as e:
                        letter = orjson.dumps({"error": str(e)})
                        delivered.append(await producer.send("iris-dlq", letter, key=m.key))
                predictions = scorer.predict([[r[f] for f in FEATURES] for _, r in good])
                classified = defaultdict(list)
                changed = set()
                for (m, record), prediction in zip(good, predictions):
                    record["predictedSpecies"] = prediction.label
                    record["modelId"] = scorer.model_id
                    partition = partitioner(m.key, partitions, partitions)
                    source = [
                        ("iris-source-topic", b"iris"),
                        ("iris-source-partition", b"%d" % m.partition),
                        ("iris-source-offset", b"%d" % m.offset),
                    ]
                    classified[partition].append((m.key, orjson.dumps(record), m.timestamp, source))
                    window = (
                        record.get("species", UNKNOWN_SPECIES),
                        prediction.label,
                        window_start(m.timestamp, window_ms),
                    )
                    counts[window] += 1
                    changed.add(window)
                for partition, records in classified.items():  # one record batch per partition
                    batch = producer.create_batch()
                    for key, value, timestamp, headers in records:
                        while (
                            batch.append(key=key, value=value, timestamp=timestamp, headers=headers) is None
                        ):
                            delivered.append(
                                await producer.send_batch(batch, "iris-classified", partition=partition)
                            )
                            batch = producer.create_batch()
                    delivered.append(await producer.send_batch(batch, "iris-classified", partition=partition))
                for species, predicted, start in changed:
                    count = {
                        "species": species,
                        "predictedSpecies": predicted,
                        "startMs": start,
                        "endMs": start + window_ms,
                        "count": counts[species, predicted, start],
                    }
                    key = orjson.dumps([species, predicted, start])
                    delivered.append(
                        await producer.send("iris-classified-window-counts", orjson.dumps(count), key=key)
                    )
            if batches:
                await asyncio.gather(*delivered)
                await consumer.commit()
    finally:
        await producer.stop()
        await consumer.stop()


if __name__ == "__main__":
    os.environ.setdefault("KAFKA_BROKER", "kafka://localhost:9092")
    asyncio.run(main())
