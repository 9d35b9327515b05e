"""The app's Kafka producer: batches of records sent as whole record batches, and every topic's metadata.

What each piece changes in Faust and aiokafka, and why: the package's docstring (faust_ext/__init__.py).
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Iterable

import aiokafka as aiokafka_client
from aiokafka.producer.message_accumulator import BatchBuilder
from faust.transport.drivers import aiokafka

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

    async def send_batches(self, topic: str, records: Iterable[Output]) -> list[asyncio.Future]:
        """Queue records as record batches, one or more per partition; the futures say when delivered.

        Partitioned as Faust's sends are (by default aiokafka's murmur2 of the key, as Kafka's Java clients).
        """
        records = list(records)
        if not records:  # most batches have no dead letter: no metadata lookup for them
            return []
        producer = self._ensure_producer()
        partitions = sorted(await producer.partitions_for(topic))
        by_partition: defaultdict[int, list[Output]] = defaultdict(list)
        for record in records:
            by_partition[self.partitioner(record.key, partitions, partitions)].append(record)
        delivered = []
        for partition, batch_records in by_partition.items():
            batch = self._new_batch(producer)
            for key, value, timestamp, headers in batch_records:
                while (
                    batch.append(key=key, value=value, timestamp=timestamp, headers=headers) is None
                ):  # full
                    delivered.append(await producer.send_batch(batch, topic, partition=partition))
                    batch = self._new_batch(producer)
            delivered.append(await producer.send_batch(batch, topic, partition=partition))
        return delivered

    def _new_batch(self, producer: aiokafka_client.AIOKafkaProducer) -> BatchBuilder:
        """An empty record batch as `producer.create_batch()` makes, up to a request's size
        (`producer_max_request_size`)."""
        return BatchBuilder(self.max_request_size, producer._message_accumulator._compression_type)
