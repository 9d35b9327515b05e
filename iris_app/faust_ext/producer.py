"""The app's Kafka producer: batches of records sent as whole record batches, and every topic's metadata.

What each piece changes in Faust and aiokafka, and why: the package's docstring (faust_ext/__init__.py).
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Iterable

import aiokafka as aiokafka_client
from aiokafka.admin.config_resource import ConfigResourceType
from aiokafka.errors import KafkaError
from aiokafka.producer.message_accumulator import BatchBuilder
from aiokafka.protocol.admin import DescribeConfigsRequest
from faust.transport.drivers import aiokafka

from ..dead_letters import KAFKA_MAX_MESSAGE_BYTES, Letter
from ..models import Output


class TopicTrackingProducer(aiokafka_client.AIOKafkaProducer):
    """aiokafka's producer, asking for the metadata of every topic it has sent to at each update."""

    def __init__(self, **options) -> None:
        super().__init__(**options)
        self._tracked: set[str] = set()

    async def send(self, topic: str, *args, **kwargs) -> asyncio.Future:
        self._track(topic)
        return await super().send(topic, *args, **kwargs)

    async def send_batch(self, batch, topic: str, *, partition: int) -> asyncio.Future:
        self._track(topic)
        return await super().send_batch(batch, topic, partition=partition)

    def _track(self, topic: str) -> None:
        if topic not in self._tracked:
            self._tracked.add(topic)
            self.client.add_topic(topic)


class Producer(aiokafka.Producer):
    _producer_type = TopicTrackingProducer

    def __post_init__(self) -> None:
        super().__post_init__()
        self._max_message_bytes: dict[str, int] = {}

    async def track(self, topics: Iterable[str]) -> None:
        """Keep `topics` in the producer's metadata from now on, as if sent to: the partitions of a topic
        made after the producer started (the app's, at start) are otherwise unknown to Faust's router
        (`key_store`) until the first record is sent to it."""
        producer = self._ensure_producer()
        for topic in topics:
            producer._track(topic)
        await producer.client.force_metadata_update()

    async def send_batches(self, topic: str, records: Iterable[Output]) -> list[asyncio.Future]:
        """Queue records as record batches, one or more per partition; the futures say when delivered.

        Partitioned as Faust's sends are (by default aiokafka's murmur2 of the key, as Kafka's Java clients).
        A batch is no larger than the topic takes (`max_message_bytes`), and a dead letter is fitted to it.
        """
        records = list(records)
        if not records:  # most batches have no dead letter: no metadata lookup for them
            return []
        producer = self._ensure_producer()
        partitions = sorted(await producer.partitions_for(topic))
        max_bytes = await self.max_message_bytes(topic)
        by_partition: defaultdict[int, list[Output]] = defaultdict(list)
        for record in records:
            if isinstance(record, Letter):
                record = record.fitted(max_bytes)
            by_partition[self.partitioner(record.key, partitions, partitions)].append(record)
        batch_size = min(self.max_request_size, max_bytes)
        delivered = []
        for partition, batch_records in by_partition.items():
            batch = self._new_batch(producer, batch_size)
            for key, value, timestamp, headers in batch_records:
                while (
                    batch.append(key=key, value=value, timestamp=timestamp, headers=headers) is None
                ):  # full
                    delivered.append(await producer.send_batch(batch, topic, partition=partition))
                    batch = self._new_batch(producer, batch_size)
            delivered.append(await producer.send_batch(batch, topic, partition=partition))
        return delivered

    async def max_message_bytes(self, topic: str) -> int:
        """The largest record batch `topic` takes (its max.message.bytes), asked of the brokers once;
        Kafka's default when they do not say, or cannot be asked."""
        if topic not in self._max_message_bytes:
            try:
                limit = await topic_max_message_bytes(self._ensure_producer().client, topic)
            except KafkaError as error:
                limit = KAFKA_MAX_MESSAGE_BYTES
                self.log.warning("%s: max.message.bytes unknown (%r), taken as %d", topic, error, limit)
            self._max_message_bytes[topic] = limit
        return self._max_message_bytes[topic]

    def _new_batch(self, producer: aiokafka_client.AIOKafkaProducer, size: int) -> BatchBuilder:
        """An empty record batch as `producer.create_batch()` makes (compressed as the producer
        compresses, by IRIS_COMPRESSION), of at most `size` bytes before compression."""
        return BatchBuilder(size, producer._message_accumulator._compression_type)


async def topic_max_message_bytes(client: aiokafka_client.AIOKafkaClient, topic: str) -> int:
    """`topic`'s max.message.bytes as a broker describes it (DescribeConfigs, on the producer's own
    connection); Kafka's default when the broker does not say (tansu describes no configs), or refuses.
    It asks for all the topic's configs: tansu drops a connection that asks for some by name."""
    request = DescribeConfigsRequest([(ConfigResourceType.TOPIC, topic, None)])
    response = await client.send(client.get_random_node(), request)
    for error_code, _, _, _, entries in response.resources:
        for name, value, *_ in entries if error_code == 0 else ():
            if name == "max.message.bytes" and value:
                return int(value)
    return KAFKA_MAX_MESSAGE_BYTES
