"""The model registry on Kafka: `iris-models`, compacted, one partition (docs/SPEC.md, "The model's life").

A published model is keyed by its id: a zip of its MOJO, its card (model.json)
and, when training wrote them, H2O's own predictions (predictions.csv). The key
`serving` holds which ids serve and shadow, and those served before, oldest first:
{"serving", "shadow", "previous", "history"} (Roles).
Every worker reads the whole topic (no consumer group: each needs every model).
"""

from __future__ import annotations

import asyncio
import io
import zipfile
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from .connection import Connection
from .scoring import GENMODEL_JAR, ModelError, find_mojo
from .settings import Settings

TOPIC = "iris-models"
SERVING_KEY = b"serving"
MAX_MODEL_BYTES = 16 * 2**20
MAX_MESSAGE_BYTES = MAX_MODEL_BYTES + 2**20  # the topic's and the clients' limit: a model and its key
CARD, PREDICTIONS = "model.json", "predictions.csv"


class RegistryError(RuntimeError):
    """The registry cannot do what was asked; the message says why."""


class Roles(NamedTuple):
    """Which models serve and shadow, and which served before: the record at key `serving`."""

    serving: str | None = None
    shadow: str | None = None
    previous: str | None = None  # served before `serving`: what a rollback serves again
    earlier: tuple[str, ...] = ()  # served before `previous`, oldest first

    @property
    def history(self) -> tuple[str, ...]:
        """Every model served before the serving one, oldest first."""
        return self.earlier if self.previous is None else (*self.earlier, self.previous)

    @classmethod
    def of(cls, serving: str | None, shadow: str | None, history: Sequence[str]) -> Roles:
        return cls(serving, shadow, history[-1] if history else None, tuple(history[:-1]))

    def encode(self) -> bytes:
        """{"serving", "shadow", "previous", "history"}: "previous" for readers that know only it."""
        return orjson.dumps(
            {
                "serving": self.serving,
                "shadow": self.shadow,
                "previous": self.previous,
                "history": list(self.history),
            }
        )

    @classmethod
    def decode(cls, raw: bytes) -> Roles:
        """A record of any version: one without "history" has served only "previous" before."""
        value = orjson.loads(raw)
        previous = value.get("previous")
        history = value.get("history")
        if not isinstance(history, list) or not all(isinstance(h, str) for h in history):
            history = [previous] if isinstance(previous, str) else []
        return cls.of(value.get("serving"), value.get("shadow"), history)

    def deploy(self, model_id: str) -> Roles:
        """`model_id` serves (and shadows no more); the model serving until now joins the history."""
        if model_id == self.serving:
            return self
        history = self.history if self.serving is None else (*self.history, self.serving)
        return Roles.of(model_id, None if self.shadow == model_id else self.shadow, history)

    def with_shadow(self, model_id: str) -> Roles:
        if model_id == self.serving:
            raise RegistryError(f"{model_id} serves already: a model cannot shadow itself")
        return self._replace(shadow=model_id)

    def promote(self) -> Roles:
        if self.shadow is None:
            raise RegistryError("no shadow model to promote: deploy one with --shadow first")
        return self.deploy(self.shadow)

    def rollback(self) -> Roles:
        """The model served before serves again, and leaves the history: rollbacks walk back in order."""
        if self.previous is None:
            raise RegistryError(
                f"nothing served before {self.serving or 'IRIS_MOJO'}: nothing to roll back to"
            )
        shadow = None if self.shadow == self.previous else self.shadow
        return Roles.of(self.previous, shadow, self.earlier)

    def in_words(self) -> str:
        """What serves and what shadows: `serving A; shadow B`, `serving A; no shadow`."""
        serving = self.serving or "IRIS_MOJO (nothing published serves)"
        return f"serving {serving}; " + (f"shadow {self.shadow}" if self.shadow else "no shadow")


@dataclass
class Registry:
    """What `iris-models` holds: each published model's package, and the roles."""

    models: dict[str, bytes] = field(default_factory=dict)
    roles: Roles = Roles()

    def apply(self, key: bytes | None, value: bytes | None) -> None:
        if key == SERVING_KEY:
            self.roles = Roles.decode(value) if value else Roles()
        elif key is not None:
            if value is None:
                self.models.pop(key.decode(), None)
            else:
                self.models[key.decode()] = value


def pack(folder: Path) -> tuple[str, bytes]:
    """A model folder (its MOJO zip, model.json, predictions.csv) as (model id, package bytes)."""
    mojo = find_mojo(folder)
    card_path = mojo.parent / CARD
    card = orjson.loads(card_path.read_bytes()) if card_path.is_file() else {}
    model_id = card.get("modelId") or mojo.stem
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as package:
        package.write(mojo, mojo.name)
        for name in (CARD, PREDICTIONS):
            if (mojo.parent / name).is_file():
                package.write(mojo.parent / name, name)
    data = buffer.getvalue()
    if len(data) > MAX_MODEL_BYTES:
        raise RegistryError(
            f"{model_id} is {len(data):,} bytes packed: models are limited to {MAX_MODEL_BYTES:,}"
        )
    return model_id, data


def unpack(package: bytes, dest: Path, genmodel_jar: Path) -> Path:
    """Write a package's files into `dest` beside the running h2o-genmodel.jar; the folder, for a Scorer."""
    dest.mkdir(parents=True, exist_ok=True)
    try:
        with zipfile.ZipFile(io.BytesIO(package)) as archive:
            for name in archive.namelist():
                if Path(name).name != name or name == GENMODEL_JAR:
                    raise ModelError(f"the package holds an unexpected file {name!r}")
                (dest / name).write_bytes(archive.read(name))
    except zipfile.BadZipFile as e:
        raise ModelError(f"the package is not a zip: {e}") from None
    jar = dest / GENMODEL_JAR
    if not jar.exists():
        jar.symlink_to(genmodel_jar.resolve())
    return dest


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


async def read(kafka: Connection, timeout: float = 30.0) -> Registry:
    """Everything `iris-models` holds now (an empty registry if the topic does not exist)."""
    consumer = registry_consumer(kafka)
    registry = Registry()
    try:  # stopped even when it fails to start: no "Unclosed AIOKafkaConsumer" at exit
        await consumer.start()
        async with asyncio.timeout(timeout):
            if TOPIC not in await consumer.topics():
                return registry
            tp = TopicPartition(TOPIC, 0)
            consumer.assign([tp])
            end = (await consumer.end_offsets([tp]))[tp]
            while await consumer.position(tp) < end:
                for message in (await consumer.getmany(tp, timeout_ms=500)).get(tp, []):
                    registry.apply(message.key, message.value)
    finally:
        await consumer.stop()
    return registry


async def publish(settings: Settings, records: list[tuple[bytes, bytes]]) -> None:
    """Send records to `iris-models` (created if missing: compacted, one partition, replicated as the
    app's topics are), one at a time, each acknowledged by every in-sync replica."""
    admin = AIOKafkaAdminClient(**settings.kafka.client_options())
    try:
        await admin.start()
        replicas, min_insync = settings.replication(len((await admin.describe_cluster())["brokers"]))
        config = {
            "cleanup.policy": "compact",
            "max.message.bytes": str(MAX_MESSAGE_BYTES),
            "min.insync.replicas": str(min_insync),
        }
        await admin.create_topics([NewTopic(TOPIC, 1, replicas, topic_configs=config)])
    except TopicAlreadyExistsError:
        pass
    finally:
        await admin.close()
    producer = AIOKafkaProducer(
        **settings.kafka.client_options(), acks="all", max_request_size=MAX_MESSAGE_BYTES
    )
    try:
        await producer.start()
        for key, value in records:  # each alone in its batch: end offsets stay exact on tansu (SPEC)
            await producer.send_and_wait(TOPIC, value, key=key)
    finally:
        await producer.stop()


async def follow(kafka: Connection, on_change: Callable[[Registry], Awaitable[None]]) -> None:
    """Read `iris-models` from its start for ever; `on_change(registry)` after every fetch that changed it."""
    consumer = registry_consumer(kafka)
    registry = Registry()
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
                await on_change(registry)
    finally:
        await consumer.stop()
