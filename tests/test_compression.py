"""Batches of every codec Kafka has are read and classified, and the app's own outputs are compressed as
IRIS_COMPRESSION says: its record batches (send_batches) and Faust's own sends alike."""

from __future__ import annotations

import asyncio
import uuid

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.consumer import fetcher
from aiokafka.record.default_records import DefaultRecordBase

from iris_app.faust_ext.app import App
from iris_app.faust_ext.records import KeptBatches
from iris_app.models import Output
from iris_app.settings import Settings

CODECS = ["gzip", "snappy", "lz4", "zstd"]
CODE = {
    "gzip": DefaultRecordBase.CODEC_GZIP,
    "snappy": DefaultRecordBase.CODEC_SNAPPY,
    "lz4": DefaultRecordBase.CODEC_LZ4,
    "zstd": DefaultRecordBase.CODEC_ZSTD,
}
IRIS = {"sepalLength": 6.4, "sepalWidth": 3.2, "petalLength": 4.5, "petalWidth": 1.5, "species": "versicolor"}


def test_batches_of_every_codec_are_classified(kafka, worker):
    """Good records a producer compresses (librdkafka's and Java's often do) are read and classified."""
    tag = uuid.uuid4().hex[:8]
    keys = {codec: [f"{codec}-{tag}-{i}".encode() for i in range(20)] for codec in CODECS}

    async def produce() -> None:
        for codec in CODECS:
            producer = AIOKafkaProducer(
                bootstrap_servers=kafka.bootstrap, compression_type=codec, linger_ms=50
            )
            await producer.start()
            try:
                await asyncio.gather(
                    *[await producer.send("iris", orjson.dumps(IRIS), key=k) for k in keys[codec]]
                )
            finally:
                await producer.stop()

    asyncio.run(produce())
    wanted = {key for codec_keys in keys.values() for key in codec_keys}
    classified = kafka.read_until("iris-classified", lambda ms: wanted <= {m.key for m in ms})
    predicted = {m.key: m.json()["predictedSpecies"] for m in classified if m.key in wanted}
    assert set(predicted.values()) <= {"setosa", "versicolor", "virginica"} and len(predicted) == len(wanted)
    assert worker.process.poll() is None


class CodecsRead(KeptBatches):
    """The fetched batches of a consumer, each batch's codec noted as it is read."""

    codecs: list[int] = []

    def next_batch(self):
        batch = super().next_batch()
        self.codecs.append(batch.compression_type)
        return batch


@pytest.mark.parametrize("codec", CODECS)
def test_the_apps_outputs_are_compressed_as_the_setting_says(broker, codec, monkeypatch):
    """IRIS_COMPRESSION compresses what the app sends: record batches (send_batches, of the classify
    agent's outputs) and Faust's own sends (deltas, counts, changelogs)."""
    bootstrap = broker.url.removeprefix("kafka://")
    topic = f"compressed-{codec}-{uuid.uuid4().hex[:6]}"
    settings = Settings.from_env({"IRIS_COMPRESSION": codec.upper()})
    records = [Output(b"k%d" % i, orjson.dumps(IRIS), 1_700_000_000_000, [("h", b"1")]) for i in range(50)]
    monkeypatch.setattr(CodecsRead, "codecs", [])
    monkeypatch.setattr(fetcher, "MemoryRecords", CodecsRead)

    async def run() -> int:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(topic, 1, 1)])
        finally:
            await admin.close()
        producer = App(
            "compression", broker=broker.url, producer_compression_type=settings.compression
        ).producer
        await producer.start()
        try:
            await asyncio.gather(*await producer.send_batches(topic, records))
            await (await producer.send(topic, b"faust", orjson.dumps(IRIS), 0, None, None))
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest")
        await consumer.start()
        try:
            consumer.assign([TopicPartition(topic, 0)])
            read = 0
            async with asyncio.timeout(30):
                while read < len(records) + 1:
                    read += sum(len(batch) for batch in (await consumer.getmany(timeout_ms=500)).values())
            return read
        finally:
            await consumer.stop()

    assert asyncio.run(run()) == len(records) + 1
    assert len(CodecsRead.codecs) >= 2 and set(CodecsRead.codecs) == {CODE[codec]}
