"""The yardstick: the app's work as a minimal hand-written aiokafka loop, with the same scorer.

consume `iris` → check → score → produce `iris-classified` (or `iris-dlq`) → count per
window in a dict → produce the changed counts; flush and commit after each batch.
No table, no changelog, no repartition: what a plain loop would do on one process.
"""

from __future__ import annotations

import asyncio
import os
from collections import Counter

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from iris_app.models import MEASUREMENTS, UNKNOWN_SPECIES, InvalidRecord, parse_iris
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
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await consumer.start()
    await producer.start()
    counts: Counter[tuple[str, str, int]] = Counter()
    try:
        while True:
            batches = await consumer.getmany(timeout_ms=100, max_records=1000)
            for messages in batches.values():
                good = []
                for m in messages:
                    try:
                        good.append((m, parse_iris(m.value)))
                    except InvalidRecord as e:
                        await producer.send("iris-dlq", orjson.dumps({"error": str(e)}), key=m.key)
                predictions = scorer.predict([[r[f] for f in MEASUREMENTS] for _, r in good])
                changed = set()
                for (m, record), prediction in zip(good, predictions):
                    record["predictedSpecies"] = prediction.label
                    await producer.send(
                        "iris-classified", orjson.dumps(record), key=m.key, timestamp_ms=m.timestamp
                    )
                    window = (
                        record.get("species", UNKNOWN_SPECIES),
                        prediction.label,
                        window_start(m.timestamp, window_ms),
                    )
                    counts[window] += 1
                    changed.add(window)
                for species, predicted, start in changed:
                    count = {
                        "species": species,
                        "predictedSpecies": predicted,
                        "startMs": start,
                        "endMs": start + window_ms,
                        "count": counts[species, predicted, start],
                    }
                    await producer.send(
                        "iris-classified-window-counts",
                        orjson.dumps(count),
                        key=orjson.dumps([species, predicted, start]),
                    )
            if batches:
                await producer.flush()
                await consumer.commit()
    finally:
        await producer.stop()
        await consumer.stop()


if __name__ == "__main__":
    os.environ.setdefault("KAFKA_BROKER", "kafka://localhost:9092")
    asyncio.run(main())
