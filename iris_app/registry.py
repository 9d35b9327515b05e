"""The model registry on Kafka: `iris-models`, compacted, one partition (docs/SPEC.md, "The model's life").

A published model is keyed by its id; its value is its package (packages.py). The
key `serving` holds the roles: which ids serve and shadow, those served before, and
the SHA-256 of each one's package (roles.Roles). Every worker reads the whole topic
(no consumer group: each needs every model) and checks each record before it uses
it: a serving record that does not parse is refused with its reason (`problem`),
and the roles stay as they were.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from . import packages
from .connection import Connection
from .roles import RegistryError, Roles

__all__ = ["RegistryError", "Registry", "Roles", "read", "publish", "follow"]
from .settings import Settings

TOPIC = "iris-models"
SERVING_KEY = b"serving"
MAX_MESSAGE_BYTES = (
    packages.MAX_MODEL_BYTES + 2**20
)  # the topic's and the clients' limit: a model and its key
PENDING = 2  # packages a bounded registry keeps that no serving record names yet


@dataclass
class Registry:
    """What `iris-models` holds: the published models' packages, and the roles.

    A bounded registry (every worker's) keeps only the packages of the models the
    roles name (Roles.named) and the PENDING latest not named yet; one named later is
    read again from the topic (`missing`). An unbounded one (the commands') keeps all.
    """

    models: dict[str, bytes] = field(default_factory=dict)
    roles: Roles = Roles()
    bounded: bool = False
    published: set[str] = field(default_factory=set)  # every model id with a package on the topic
    problem: str | None = None  # why the latest serving record was refused, while it is the latest

    def apply(self, key: bytes | None, value: bytes | None) -> None:
        if key == SERVING_KEY:
            try:
                self.roles, self.problem = (Roles.decode(value) if value else Roles()), None
            except RegistryError as e:
                self.problem = str(e)
            self._forget_unnamed()
        elif key is not None:
            model_id = key.decode(errors="replace")
            self.models.pop(model_id, None)  # a package kept or not: the latest is the last one applied
            if value is None:
                self.published.discard(model_id)
            else:
                self.published.add(model_id)
                self.models[model_id] = value
                self._forget_unnamed()

    def missing(self) -> set[str]:
        """Models the roles name whose packages were published but are not kept: to read again."""
        return {m for m in self.roles.named if m in self.published and m not in self.models}

    def _forget_unnamed(self) -> None:
        if self.bounded:
            named = self.roles.named
            unnamed = [m for m in self.models if m not in named]
            for model_id in unnamed[: max(0, len(unnamed) - PENDING)]:
                del self.models[model_id]


def registry_consumer(kafka: Connection) -> AIOKafkaConsumer:
    """A consumer of no group that reads the topic from its start and takes a model of any allowed size."""
    return AIOKafkaConsumer(
        **kafka.client_options(),
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=MAX_MESSAGE_BYTES,
        fetch_max_bytes=MAX_MESSAGE_BYTES,
        fetch_max_wait_ms=500,
        metadata_max_age_ms=5000,
    )


async def read(kafka: Connection, timeout: float = 30.0, *, bounded: bool = False) -> Registry:
    """Everything `iris-models` holds now (an empty registry if the topic does not exist); `bounded`:
    only the packages a worker may need (Registry)."""
    registry = Registry(bounded=bounded)

    async def refill(consumer: AIOKafkaConsumer, tp: TopicPartition) -> None:
        await _read_missing(consumer, tp, registry)

    await read_topic(kafka, TOPIC, registry.apply, timeout, then=refill)
    return registry


async def read_topic(
    kafka: Connection,
    topic: str,
    apply: Callable[[bytes | None, bytes | None], None],
    timeout: float = 30.0,
    then: Callable[[AIOKafkaConsumer, TopicPartition], Awaitable[None]] | None = None,
) -> None:
    """`apply(key, value)` to each record of the one-partition `topic` from its start to its end now, in
    order (none if it does not exist); then `then(consumer, partition)`, before the consumer stops."""
    consumer = registry_consumer(kafka)
    try:  # stopped even when it fails to start: no "Unclosed AIOKafkaConsumer" at exit
        await consumer.start()
        async with asyncio.timeout(timeout):
            if topic not in await consumer.topics():
                return
            tp = TopicPartition(topic, 0)
            consumer.assign([tp])
            await consumer.seek_to_beginning(tp)
            end = (await consumer.end_offsets([tp]))[tp]
            await _read_to(consumer, tp, end, apply)
            if then is not None:
                await then(consumer, tp)
    finally:
        await consumer.stop()


async def _read_to(consumer: AIOKafkaConsumer, tp: TopicPartition, end: int, apply: Callable) -> None:
    while await consumer.position(tp) < end:
        for message in (await consumer.getmany(tp, timeout_ms=500)).get(tp, []):
            if message.offset < end:
                apply(message.key, message.value)


async def _read_missing(consumer: AIOKafkaConsumer, tp: TopicPartition, registry: Registry) -> None:
    """Read the topic again from its start for the packages the roles name and the registry let go."""
    wanted = registry.missing()
    if not wanted:
        return
    end = await consumer.position(tp)

    def refill(key: bytes | None, value: bytes | None) -> None:
        model_id = None if key is None or key == SERVING_KEY else key.decode(errors="replace")
        if model_id in wanted:
            if value is None:
                registry.models.pop(model_id, None)
            else:
                registry.models[model_id] = value

    await consumer.seek_to_beginning(tp)
    await _read_to(consumer, tp, end, refill)
    consumer.seek(tp, end)


async def ensure_topic(settings: Settings, name: str, config: dict[str, str]) -> None:
    """Create topic `name` if it is missing: one partition, replicated as the app's topics are."""
    admin = AIOKafkaAdminClient(**settings.kafka.client_options())
    try:
        await admin.start()
        replicas, min_insync = settings.replication(len((await admin.describe_cluster())["brokers"]))
        config = {**config, "min.insync.replicas": str(min_insync)}
        await admin.create_topics([NewTopic(name, 1, replicas, topic_configs=config)])
    except TopicAlreadyExistsError:
        pass
    finally:
        await admin.close()


async def publish(settings: Settings, records: list[tuple[bytes, bytes]], topic: str = TOPIC) -> None:
    """Send records to `topic` (`iris-models`, created if missing: compacted), one at a time, each
    acknowledged by every in-sync replica."""
    if topic == TOPIC:
        await ensure_topic(
            settings, TOPIC, {"cleanup.policy": "compact", "max.message.bytes": str(MAX_MESSAGE_BYTES)}
        )
    producer = AIOKafkaProducer(
        **settings.kafka.client_options(), acks="all", max_request_size=MAX_MESSAGE_BYTES
    )
    try:
        await producer.start()
        for key, value in records:  # each alone in its batch: end offsets stay exact on tansu (SPEC)
            await producer.send_and_wait(topic, value, key=key)
    finally:
        await producer.stop()


async def follow(kafka: Connection, on_change: Callable[[Registry], Awaitable[None]]) -> None:
    """Read `iris-models` from its start for ever, keeping what a worker may need (a bounded Registry);
    `on_change(registry)` after every fetch that changed it."""
    consumer = registry_consumer(kafka)
    registry = Registry(bounded=True)
    await consumer.start()
    try:
        while TOPIC not in await consumer.topics():
            await asyncio.sleep(5)  # not created yet: nothing published
        tp = TopicPartition(TOPIC, 0)
        consumer.assign([tp])
        while True:
            fetched = (await consumer.getmany(tp, timeout_ms=1000)).get(tp, [])
            for message in fetched:
                registry.apply(message.key, message.value)
            if fetched:
                await _read_missing(consumer, tp, registry)
                await on_change(registry)
    finally:
        await consumer.stop()
