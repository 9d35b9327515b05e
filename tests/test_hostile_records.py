"""Any bytes a producer can write end up classified or in iris-dlq: a record aiokafka cannot decode, or a
batch it cannot read, is dead-lettered with its bytes and position, and reading goes on after it."""

from __future__ import annotations

import asyncio
import base64
import uuid

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.consumer.fetcher import PartitionRecords
from aiokafka.errors import CorruptRecordException
from aiokafka.record import default_records, memory_records
from support.record_batches import (
    Record,
    batch_of,
    encode_batch,
    encode_record,
    read,
    send_raw,
    varint,
    with_crc,
)

from iris_app.classifying import check
from iris_app.dead_letters import dead_letter
from iris_app.faust_ext.records import Undecoded

IRIS = orjson.dumps({"sepalLength": 5.1, "sepalWidth": 3.5, "petalLength": 1.4, "petalWidth": 0.2})
NOT_UTF8 = b"\xff\xfe"


@pytest.fixture(params=["C", "Python"])
def reader(request, monkeypatch) -> str:
    """aiokafka's record reader: its C extension (the default), or its pure-Python one."""
    if request.param == "Python":
        monkeypatch.setattr(memory_records, "MemoryRecords", memory_records._MemoryRecordsPy)
        monkeypatch.setattr(memory_records, "DefaultRecordBatch", default_records._DefaultRecordBatchPy)
    else:
        assert memory_records.MemoryRecords.__module__.startswith("aiokafka.record._crecords")
    return request.param


def test_a_header_name_not_utf8_is_dead_lettered_and_reading_goes_on(reader):
    """A record whose header name is not UTF-8 (Kafka takes it) comes through marked, and is dead-lettered
    with its bytes; the records after it, in its batch and the next, are read and classified."""
    bad = Record(b"bad", IRIS, [(NOT_UTF8, b"x"), (b"", None)])
    data = encode_batch([Record(b"a", IRIS), bad, Record(b"b", IRIS)])
    data += encode_batch([Record(b"c", IRIS)], base_offset=3)
    with pytest.raises((UnicodeDecodeError, CorruptRecordException)):  # aiokafka's own reader stops
        read(data, PartitionRecords)

    records = read(data)

    assert [r.offset for r in records] == [0, 1, 2, 3]
    checked = check(records)
    assert [source.key for source, _ in checked.valid] == [b"a", b"b", b"c"]
    ((source, error),) = checked.invalid
    assert (source.offset, error.reason, str(error)) == (
        1,
        "header_not_utf8",
        "header name not UTF-8: header 1 of 2",
    )
    letter = dead_letter(source, error)
    assert orjson.loads(letter.value) == {
        "error": "header name not UTF-8: header 1 of 2",
        "topic": "iris",
        "partition": 0,
        "offset": 1,
        "timestamp": 1_700_000_000_000,
        "key": "bad",
        "value": IRIS.decode(),
        "headers": [[base64.b64encode(NOT_UTF8).decode(), "x"], ["", None]],  # names not UTF-8: base64
    }
    assert (letter.key, letter.headers) == (b"bad", [])  # such a name cannot be a letter's header name


def test_a_fetch_from_past_such_a_record_reads_on(reader):
    """A fetch from past such a record in its batch (a worker restarted there, say) reads the records after
    it: aiokafka's reader decodes the batch from its first record, and fails on it all the same."""
    data = encode_batch([Record(b"a", IRIS), Record(b"bad", IRIS, [(NOT_UTF8, b"x")]), Record(b"b", IRIS)])
    with pytest.raises((UnicodeDecodeError, CorruptRecordException)):
        read(data, PartitionRecords, start=2)

    assert [(r.offset, r.key) for r in read(data, start=2)] == [(2, b"b")]


def corrupt_batches() -> dict[str, tuple[bytes, int]]:
    """Batches of two records at offset 1 that tansu stores as it gets them and aiokafka cannot read,
    with how many of their records can be read."""
    records = [Record(b"x", IRIS), Record(b"y", IRIS)]
    good = encode_batch(records, base_offset=1)
    y = b"\x00" + varint(0) + varint(1) + varint(1) + b"y" + varint(len(IRIS)) + IRIS + varint(-5)
    negative_headers = batch_of(encode_record(0, records[0]) + varint(len(y)) + y, 2, base_offset=1)
    unknown_codec = bytearray(good)
    unknown_codec[22] |= 0x07  # the attributes' low byte: codec 7
    lz4 = bytearray(encode_batch(records, codec="lz4", base_offset=1))
    lz4[70:] = bytes(len(lz4) - 70)
    return {
        "a wrong CRC": (good[:-1] + bytes([good[-1] ^ 0xFF]), 0),
        "a record of -5 headers": (negative_headers, 1),
        "an unknown codec": (with_crc(unknown_codec), 0),
        "lz4 bytes that do not decompress": (with_crc(lz4), 0),
    }


@pytest.mark.parametrize("case", corrupt_batches())
def test_a_batch_that_cannot_be_read_gives_a_letter_per_offset(reader, case):
    """A batch aiokafka cannot read gives one record per offset from the first it cannot read, each
    dead-lettered, the first with the batch's bytes; the next batch is read and classified."""
    batch, readable = corrupt_batches()[case]
    data = encode_batch([Record(b"a", IRIS)]) + batch + encode_batch([Record(b"c", IRIS)], base_offset=3)

    records = read(data)

    assert [r.offset for r in records] == [0, 1, 2, 3]
    checked = check(records)
    assert [source.key for source, _ in checked.valid] == ([b"a", b"x", b"c"] if readable else [b"a", b"c"])
    unread = [1, 2][readable:]
    assert [(s.offset, e.reason) for s, e in checked.invalid] == [(o, "corrupt_batch") for o in unread]
    assert all(type(s.headers) is Undecoded for s, _ in checked.invalid)
    first, *rest = (orjson.loads(dead_letter(s, e).value) for s, e in checked.invalid)
    assert first["error"].startswith("record batch unreadable: ")
    assert base64.b64decode(first["value"]) == batch
    assert [letter["value"] for letter in rest] == [None] * len(rest)


def test_hostile_records_stop_nothing(kafka, worker):
    """Records of every hostile kind, in batches as a producer writes them, among good ones on one
    partition: each good one is classified and each bad one is in iris-dlq with its position and
    reason, and the worker goes on."""
    tag = uuid.uuid4().hex[:8].encode()
    key = {name: b"hostile-%s-%s" % (tag, name) for name in (b"a", b"b", b"c", b"d", b"e", b"many")}
    batches = {
        "good": [Record(key[b"a"], IRIS)],
        "name not UTF-8": [
            Record(key[b"b"], IRIS),
            Record(b"not-utf8-" + tag, IRIS, [(NOT_UTF8, b"x")]),
            Record(key[b"c"], IRIS),
        ],
        "200,000 empty headers": [Record(key[b"many"], IRIS, [(b"", b"")] * 200_000)],
        "empty and null": [Record(b"", b"", [(b"", None), (b"n", b"")]), Record(None, None, [])],
        "at the broker's limit": [Record(b"k" * 1000, NOT_UTF8 * 520_000)],
        "wrong CRC": [encode_batch([Record(None, b"x"), Record(None, b"y")])],
        "good after": [Record(key[b"d"], IRIS), Record(key[b"e"], IRIS)],
    }

    async def produce() -> dict[str, int]:
        producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap, max_request_size=2_000_000)
        await producer.start()
        try:
            offsets = {}
            for case, records in batches.items():
                if case == "wrong CRC":  # Apache Kafka checks a batch's CRC and refuses it; tansu keeps it
                    crc_wrong = records[0][:-1] + bytes([records[0][-1] ^ 0xFF])
                    try:
                        offsets[case] = await send_raw(producer, "iris", 3, crc_wrong, 2)
                    except CorruptRecordException:
                        offsets[case] = None
                else:
                    offsets[case] = await send_raw(producer, "iris", 3, encode_batch(records), len(records))
            return offsets
        finally:
            await producer.stop()

    offsets = asyncio.run(produce())
    classified = kafka.read_until("iris-classified", lambda ms: set(key.values()) <= {m.key for m in ms})
    expected = {
        offsets["name not UTF-8"] + 1: "header_not_utf8",
        offsets["empty and null"]: "empty",
        offsets["empty and null"] + 1: "empty",
        offsets["at the broker's limit"]: "too_large",
    }
    if offsets["wrong CRC"] is not None:  # kept by the broker: both its offsets are dead-lettered
        expected |= {offsets["wrong CRC"]: "corrupt_batch", offsets["wrong CRC"] + 1: "corrupt_batch"}

    def letters_of(messages) -> dict[int, dict]:
        return {
            letter["offset"]: letter
            for m in messages
            if (letter := m.json())["partition"] == 3
            and letter["topic"] == "iris"
            and letter["offset"] in expected
        }

    letters = letters_of(kafka.read_until("iris-dlq", lambda ms: len(letters_of(ms)) == len(expected), 180))
    assert {m.key for m in classified} >= set(key.values())
    assert letters[offsets["name not UTF-8"] + 1]["error"] == "header name not UTF-8: header 1 of 1"
    assert letters[offsets["name not UTF-8"] + 1]["headers"] == [["//4=", "x"]]
    large = letters[offsets["at the broker's limit"]]
    assert (large["truncated"], large["keyBytes"], large["valueBytes"]) == (True, 1000, 1_040_000)
    if offsets["wrong CRC"] is not None:
        assert letters[offsets["wrong CRC"]]["error"] == "record batch unreadable: CRC mismatch"
    assert worker.process.poll() is None, "".join(worker.lines[-30:])
