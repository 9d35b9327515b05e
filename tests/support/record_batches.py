"""Kafka record batches (format v2) from any bytes, as a hostile or buggy producer writes them, a way to
send them as they are (aiokafka's builder takes header names only as text, and computes the CRC), and
to read them as the app's consumer does."""

from __future__ import annotations

import struct
from typing import NamedTuple

from aiokafka import AIOKafkaProducer
from aiokafka.codec import gzip_encode, lz4_encode, snappy_encode, zstd_encode
from aiokafka.consumer.fetcher import READ_UNCOMMITTED
from aiokafka.producer.message_accumulator import BatchBuilder
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from aiokafka.record.util import calc_crc32c, encode_varint
from aiokafka.structs import ConsumerRecord, TopicPartition

from iris_app.faust_ext.records import KeptBatches, TolerantPartitionRecords
from iris_app.models import Output

CODECS = {"none": (0, bytes), "gzip": (1, gzip_encode), "snappy": (2, snappy_encode)}
CODECS |= {"lz4": (3, lz4_encode), "zstd": (4, zstd_encode)}
# After a batch's CRC: attributes, last offset delta, first and max timestamps, producer id, epoch,
# base sequence, record count.
AFTER_CRC = struct.Struct(">hiqqqhii")
CRC_AT = 17  # base offset (8), length (4), partition leader epoch (4), magic (1)
HEADER_SIZE = CRC_AT + 4 + AFTER_CRC.size  # 61
TIMESTAMP_MS = 1_700_000_000_000
IRIS_0 = TopicPartition("iris", 0)


class Record(NamedTuple):
    """A record's bytes, header names as bytes."""

    key: bytes | None
    value: bytes | None
    headers: list[tuple[bytes, bytes | None]] = []


def varint(value: int) -> bytes:
    out = bytearray()
    encode_varint(value, out.append)
    return bytes(out)


def nullable(data: bytes | None) -> bytes:
    return varint(-1) if data is None else varint(len(data)) + data


def encode_record(delta: int, record: Record) -> bytes:
    body = b"\x00" + varint(0) + varint(delta) + nullable(record.key) + nullable(record.value)
    encoded: dict[tuple[bytes, bytes | None], bytes] = {}  # many headers are often the same few
    for name, value in record.headers:
        if (name, value) not in encoded:
            encoded[name, value] = varint(len(name)) + name + nullable(value)
    body += varint(len(record.headers)) + b"".join([encoded[header] for header in record.headers])
    return varint(len(body)) + body


def encode_batch(
    records: list[Record], codec: str = "none", timestamp_ms: int = TIMESTAMP_MS, base_offset: int = 0
) -> bytes:
    """The record batch of `records`, compressed with `codec` (a broker sets the base offset anew)."""
    encoded = b"".join(encode_record(i, record) for i, record in enumerate(records))
    return batch_of(encoded, len(records), codec, timestamp_ms, base_offset)


def batch_of(
    records: bytes, count: int, codec: str = "none", timestamp_ms: int = TIMESTAMP_MS, base_offset: int = 0
) -> bytes:
    """The record batch of `count` records already encoded, whatever their bytes."""
    code, compress = CODECS[codec]
    fields = AFTER_CRC.pack(code, count - 1, timestamp_ms, timestamp_ms, -1, -1, -1, count)
    after_crc = fields + compress(records)
    after_length = struct.pack(">ibI", -1, 2, calc_crc32c(after_crc)) + after_crc
    return struct.pack(">qi", base_offset, len(after_length)) + after_length


def with_crc(batch: bytes | bytearray) -> bytes:
    """`batch` with its CRC made right again (after its records' bytes were changed)."""
    batch = bytearray(batch)
    batch[CRC_AT : CRC_AT + 4] = struct.pack(">I", calc_crc32c(bytes(batch[CRC_AT + 4 :])))
    return bytes(batch)


class RawBatch(BatchBuilder):
    """A batch for `AIOKafkaProducer.send_batch` that sends the given bytes as they are."""

    def __init__(self, data: bytes, count: int) -> None:
        super().__init__(len(data), 0)
        self._data, self._relative_offset = data, count

    def _build(self) -> bytearray:
        self.close()
        return bytearray(self._data)


async def send_raw(producer: AIOKafkaProducer, topic: str, partition: int, batch: bytes, count: int) -> int:
    """Send `batch` (of `count` records) as it is; the offset of its first record."""
    return (await (await producer.send_batch(RawBatch(batch, count), topic, partition=partition))).offset


def read(data: bytes, records_class: type = TolerantPartitionRecords, start: int = 0) -> list[ConsumerRecord]:
    """Every record of a fetch's bytes of `iris` partition 0 from offset `start`, as the app's consumer
    reads them."""
    return list(records_class(IRIS_0, KeptBatches(data), [], start, None, None, True, READ_UNCOMMITTED))


def batch_bytes(*records: Output) -> int:
    """The size of a record batch of `records` as aiokafka's producer builds it (it raises on what it
    cannot encode)."""
    builder = DefaultRecordBatchBuilder(2, 0, 0, -1, -1, -1, batch_size=2**31 - 1)
    for i, (key, value, timestamp, headers) in enumerate(records):
        assert builder.append(i, timestamp, key, value, headers) is not None
    return len(builder.build())
