"""The app's producer (faust_ext): record batches as large as a request, the metadata of every topic it
sends to, and Kafka's partitioning."""

from __future__ import annotations

import asyncio
import random

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.partitioner import DefaultPartitioner
from support.records import keyed, now_ms

from iris_app.faust_ext.app import App
from iris_app.faust_ext.producer import TopicTrackingProducer
from iris_app.models import Output
from iris_app.partitioner import partition_of


async def create_topic(bootstrap: str, name: str, partitions: int = 1) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, partitions, 1)])
    finally:
        await admin.close()


def test_every_topic_sent_to_keeps_its_metadata(broker):
    """A topic known from the first metadata fetch stays known after a new one is added."""
    bootstrap = broker.url.removeprefix("kafka://")

    async def run() -> None:
        await create_topic(bootstrap, "known-at-start")
        producer = TopicTrackingProducer(bootstrap_servers=bootstrap)
        await producer.start()  # its first metadata fetch asks for every topic
        try:
            await (await producer.send("known-at-start", b"1"))
            await create_topic(bootstrap, "created-later")
            # A topic new to the producer: from now on aiokafka asks only for the topics added to
            # its client, and plain aiokafka never added "known-at-start" (it knew it already):
            # the update drops it, and batches queued for it wait for a leader that never comes.
            await (await producer.send("created-later", b"1"))
            await producer.client.force_metadata_update()
            assert producer.client.cluster.partitions_for_topic("known-at-start") == {0}
        finally:
            await producer.stop()

    asyncio.run(run())


def test_a_batch_is_one_record_batch_per_partition(broker, kafka):
    """A batch of records goes out as one record batch per partition, up to a request's size. aiokafka
    sends one record batch per partition and request: in Faust's 16 KiB batches, the classify agent's
    1,000 records take one broker round trip after another."""
    records = [Output(key, b"x" * 200, now_ms(), [("iris-source-offset", b"1")]) for key in keyed("b", 1000)]

    async def send(max_request_size: int) -> list:
        producer = App("send-batches", broker=broker.url, producer_max_request_size=max_request_size).producer
        await producer.start()
        try:
            return await asyncio.gather(*await producer.send_batches("iris-batches", records))
        finally:
            await producer.stop()

    asyncio.run(create_topic(kafka.bootstrap, "iris-batches", partitions=4))
    assert len(asyncio.run(send(1_000_000))) == 4  # about 250 KB in all: one record batch per partition
    assert len(asyncio.run(send(32 * 1024))) > 4  # a request's size is the limit of a record batch
    read = kafka.read_until("iris-batches", lambda messages: len(messages) >= 2 * len(records))
    assert sorted((m.key, m.headers) for m in read) == sorted(
        (r.key, tuple(r.headers)) for r in records for _ in range(2)
    )


def test_records_are_partitioned_as_kafka_partitions_them():
    """The app's partitioner picks the partition aiokafka's (and Kafka's Java client's) picks, for keys of
    every length."""
    rng = random.Random(7)
    for length in range(70):
        for _ in range(50):
            key, partitions = rng.randbytes(length), list(range(rng.randint(1, 12)))
            assert partition_of(key, partitions, partitions) == DefaultPartitioner()(
                key, partitions, partitions
            )
