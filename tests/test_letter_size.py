"""A dead letter always fits its topic: measured as Kafka encodes it (record and header overhead, varint
lengths, the batch header) against the topic's max.message.bytes as the brokers say it, and cut (headers
dropped, then the value, then the key cut, the original sizes stated) until it does."""

from __future__ import annotations

import asyncio

import orjson
import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from faust.types import Message
from support.record_batches import batch_bytes

from iris_app.dead_letters import KAFKA_MAX_MESSAGE_BYTES, Letter, dead_letter
from iris_app.faust_ext.app import App
from iris_app.faust_ext.records import Undecoded
from iris_app.kafka_server import LIB, KafkaCluster
from iris_app.models import InvalidRecord

ERROR = InvalidRecord("too_large", "message too large")


def source(value: bytes | None, key: bytes | None = b"key", headers=()) -> Message:
    """An `iris` message as the classify agent gets it."""
    return Message("iris", 2, 42, 1_700_000_000.0, 0, headers, key, value, None)


def test_a_letter_fits_with_its_headers_counted_as_kafka_encodes_them():
    """Header sizes count as Kafka encodes them: 300,000 empty headers take 600 KB, not nothing. Counted
    in characters, they stayed with a value near the limit, and the letter was larger than the broker
    takes: the send failed, and the worker stopped on that record, as will the next owner of its partition."""
    hostile = source(b"x" * 1_046_461, headers=[("", b"")] * 300_000)

    letter = dead_letter(hostile, ERROR)

    assert batch_bytes(letter) <= KAFKA_MAX_MESSAGE_BYTES
    fields = orjson.loads(letter.value)
    assert letter.headers == []
    assert (fields["truncated"], fields["valueBytes"], fields["headerBytes"], fields["headerCount"]) == (
        True,
        1_046_461,
        0,
        300_000,
    )


SOURCES = {
    "a large value": source(b"v" * 400_000),
    "a large key": source(b"{}", key=b"k" * 60_000),
    "large headers": source(b"{}", headers=[(f"h{i}", b"x" * 1000) for i in range(200)]),
    "many empty headers": source(b"{}", headers=[("", None)] * 100_000),
    "escaped text": source(b"\x01" * 100_000, key=b"\x02" * 10_000),
    "headers the client could not decode": source(
        b"{}", headers=Undecoded([("\udcff", b"x" * 5000)] * 30, "header_not_utf8", "name not UTF-8")
    ),
}


@pytest.mark.parametrize("max_bytes", [2048, 65_536, 300_000, KAFKA_MAX_MESSAGE_BYTES])
@pytest.mark.parametrize("case", SOURCES)
def test_a_letter_fits_any_limit_saying_what_was_cut(case, max_bytes):
    """A letter fits the topic's limit, stating the original sizes of what it cut."""
    hostile = SOURCES[case]

    letter = dead_letter(hostile, ERROR, max_bytes)

    assert batch_bytes(letter) <= max_bytes
    fields = orjson.loads(letter.value)
    assert (fields["topic"], fields["partition"], fields["offset"], fields["error"]) == (
        "iris",
        2,
        42,
        str(ERROR),
    )
    if fields.get("truncated"):
        assert (fields["keyBytes"], fields["valueBytes"]) == (len(hostile.key), len(hostile.value))
    if hostile.headers and not (letter.headers or "headers" in fields):
        assert fields["headerCount"] == len(hostile.headers)


def test_headers_go_first_then_the_value_then_the_key():
    """What a letter loses to fit: its headers first, then as much of its value as needed, then of its key."""
    hostile = source(b"v" * 20_000, key=b"k" * 10_000, headers=[("trace", b"t" * 10_000)])

    def cut(max_bytes: int) -> tuple[int, int, int]:
        letter = dead_letter(hostile, ERROR, max_bytes)
        fields = orjson.loads(letter.value)
        return len(letter.headers), len(fields["value"]), len(fields["key"])

    assert cut(60_000) == (1, 20_000, 10_000)
    assert cut(45_000) == (0, 20_000, 10_000)
    assert cut(30_000)[0:3:2] == (0, 10_000) and 0 < cut(30_000)[1] < 20_000
    assert cut(15_000)[1] == 0 and 0 < cut(15_000)[2] < 10_000


def test_a_letter_is_fitted_again_to_a_smaller_limit():
    """`Letter.fitted`: the same letter where it fits, made again to fit where it does not."""
    letter = dead_letter(source(b"v" * 100_000), ERROR)

    assert letter.fitted(KAFKA_MAX_MESSAGE_BYTES) is letter
    smaller = letter.fitted(10_000)
    assert isinstance(smaller, Letter) and batch_bytes(smaller) <= 10_000


def max_message_bytes(url: str, topic: str, config: dict[str, str]) -> int:
    """What the app's producer says `topic` (made with `config`) takes."""

    async def run() -> int:
        admin = AIOKafkaAdminClient(bootstrap_servers=url.replace("kafka://", "").replace(";", ","))
        await admin.start()
        try:
            await admin.create_topics([NewTopic(topic, 1, 1, topic_configs=config)])
        finally:
            await admin.close()
        producer = App("letter-size", broker=url).producer
        await producer.start()
        try:
            return await producer.max_message_bytes(topic)
        finally:
            await producer.stop()

    return asyncio.run(run())


def test_a_broker_that_does_not_say_means_kafkas_default(broker):
    """tansu describes no topic configs: a topic takes Kafka's default, 1,048,588 bytes."""
    assert max_message_bytes(broker.url, "letters-tansu", {}) == KAFKA_MAX_MESSAGE_BYTES


@pytest.mark.slow
@pytest.mark.skipif(not any(LIB.glob("kafka_2.13-*.jar")), reason="Apache Kafka's jars: make kafka/lib")
def test_letters_fit_a_topic_of_a_smaller_limit_on_kafka(tmp_path):
    """On Apache Kafka, a DLQ topic made with max.message.bytes 20,000 takes every letter the app sends it,
    several to a batch: each one fitted, and no batch larger than the topic takes."""
    hostile = [source(b"v" * 30_000), source(b"{}", headers=[("h", b"x" * 25_000)]), source(b"{}")]
    with KafkaCluster(folder=tmp_path / "kafka") as cluster:
        assert max_message_bytes(cluster.url, "small-dlq", {"max.message.bytes": "20000"}) == 20_000

        async def send() -> list:
            producer = App("letter-size", broker=cluster.url).producer
            await producer.start()
            try:
                letters = [dead_letter(s, ERROR) for s in hostile for _ in range(3)]
                return await asyncio.gather(*await producer.send_batches("small-dlq", letters))
            finally:
                await producer.stop()

        delivered = asyncio.run(send())
    assert sum(metadata.offset >= 0 for metadata in delivered) >= 3  # a batch's metadata per batch sent
