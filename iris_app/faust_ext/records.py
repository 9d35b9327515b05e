"""Fetched records aiokafka cannot decode reach the consumer, marked, instead of stopping their partition.

aiokafka's record reader raises on a record it cannot decode, and the error ends its iterator over
the fetch: the drain loop re-raises it, the worker stops reading, and every worker that takes the
partition reads the same record and stops. Its C extension raises UnicodeDecodeError and its
pure-Python reader (AIOKAFKA_NO_EXTENSIONS) CorruptRecordException on a header name that is not UTF-8,
which Apache Kafka accepts from any producer (its Java clients decode header names with
replacement); both raise on a v2 batch whose CRC does not match, whose codec is unknown, or whose
bytes do not parse, which tansu (the local broker) stores as it gets them.

`read_past_undecodable()` replaces two names in aiokafka.consumer.fetcher, for every consumer of the process:
- `MemoryRecords` by `KeptBatches`: the same batches, aiokafka's own reader (C or Python) decoding
  them, with where the batch being read lies in the fetch's bytes;
- `PartitionRecords` by `TolerantPartitionRecords`: when aiokafka's reader fails in a v2 batch, the
  rest of the batch is read from its bytes by `read_batch`. A record whose header names are not all
  UTF-8 comes with `Undecoded` headers; from the first record that does not parse (or the first
  unread one, for a batch that cannot be read at all), each offset up to the batch's last comes as a
  record with `Undecoded` headers saying why, the first of them carrying the batch's bytes as its
  value. Reading then goes on with the next batch, in aiokafka's reader. An error `read_batch` finds
  no cause for in the batch (a deserializer's, say; or in a batch of the pre-0.11 formats) is raised
  as before.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from typing import NamedTuple

from aiokafka import codec
from aiokafka.consumer import fetcher
from aiokafka.record import memory_records
from aiokafka.record.default_records import DefaultRecordBase
from aiokafka.record.util import calc_crc32c, decode_varint
from aiokafka.structs import ConsumerRecord

HEADER = DefaultRecordBase.HEADER_STRUCT  # a v2 record batch's header, from its base offset on
LOG_OVERHEAD = 12  # the base offset and the length before a batch's `length` bytes
DECOMPRESS = {
    DefaultRecordBase.CODEC_NONE: ("none", bytes),
    DefaultRecordBase.CODEC_GZIP: ("gzip", codec.gzip_decode),
    DefaultRecordBase.CODEC_SNAPPY: ("snappy", codec.snappy_decode),
    DefaultRecordBase.CODEC_LZ4: ("lz4", codec.lz4_decode),
    DefaultRecordBase.CODEC_ZSTD: ("zstd", codec.zstd_decode),
}


class Undecoded(tuple):
    """The headers of a record aiokafka could not decode, as far as they were read: (name, value) pairs,
    names that are not UTF-8 decoded with surrogateescape (`name.encode("utf-8", "surrogateescape")`
    gives their bytes back). `reason` names the fault in a word, `error` says what it is."""

    reason: str
    error: str

    def __new__(cls, headers: Iterable[tuple[str, bytes | None]], reason: str, error: str) -> Undecoded:
        self = super().__new__(cls, headers)
        self.reason, self.error = reason, error
        return self


class RawRecord(NamedTuple):
    """A record as aiokafka's reader gives it (what `PartitionRecords._consumer_record` reads)."""

    offset: int
    timestamp: int
    timestamp_type: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes | None]] | Undecoded
    checksum: None = None


class Unreadable(Exception):
    """Bytes of a batch that do not parse as records."""


class BatchReading(NamedTuple):
    """What `read_batch` made of a batch: its records from the start offset on, up to the first that
    does not parse; the offsets from there to its last (empty: none), the fault found (None: none), and
    the batch's first timestamp (the unread offsets' own)."""

    records: list[RawRecord]
    unread: range
    fault: str | None
    timestamp: int


def read_batch(raw: bytes, start: int) -> BatchReading | None:
    """The records of the v2 record batch `raw` at offset `start` or later, as far as they parse;
    None when `raw` is not a v2 batch whose offsets can be read."""
    if len(raw) < HEADER.size or raw[16] != 2:  # the magic byte
        return None
    base, _, _, _, crc, attributes, last_delta, first_ts, max_ts, *_, count = HEADER.unpack_from(raw)
    first, end = max(start, base), base + last_delta + 1
    if calc_crc32c(raw[DefaultRecordBase.ATTRIBUTES_OFFSET :]) != crc:
        return BatchReading([], range(first, end), "CRC mismatch", first_ts)
    name, decompress = DECOMPRESS.get(attributes & DefaultRecordBase.CODEC_MASK, (None, None))
    if decompress is None:
        return BatchReading([], range(first, end), f"unknown codec {attributes & 7}", first_ts)
    try:
        body = decompress(raw[HEADER.size :])
    except Exception as error:  # each codec library raises its own errors
        return BatchReading([], range(first, end), f"cannot decompress ({name}): {error!r}", first_ts)
    log_append_time = attributes & DefaultRecordBase.TIMESTAMP_TYPE_MASK
    records: list[RawRecord] = []
    fault, pos, next_offset = None, 0, first
    try:
        for _ in range(count):
            record, pos = read_record(body, pos, base, first_ts)
            if log_append_time:
                record = record._replace(timestamp=max_ts, timestamp_type=1)
            if record.offset >= next_offset:
                records.append(record)
                next_offset = record.offset + 1
            # aiokafka's reader decodes the records before the start too (then skips them): one of
            # them may be what it failed on, after a restart within a batch, say.
            fault = fault or (record.headers.error if isinstance(record.headers, Undecoded) else None)
        if pos != len(body):
            raise Unreadable(f"{len(body) - pos} bytes after its {count} records")
    except Unreadable as error:
        return BatchReading(records, range(next_offset, end), f"offset {next_offset}: {error}", first_ts)
    return BatchReading(records, range(next_offset, end), fault, first_ts)


def read_record(body: bytes, pos: int, base_offset: int, first_ts: int) -> tuple[RawRecord, int]:
    """The record at `pos` of a batch's records, as aiokafka's reader reads it, and where the next one
    begins; Unreadable if it does not parse. Header names that are not UTF-8 make its headers `Undecoded`."""
    try:
        length, pos = decode_varint(body, pos)
        record_start = pos
        _, pos = decode_varint(body, pos)  # attributes: none are defined
        ts_delta, pos = decode_varint(body, pos)
        offset_delta, pos = decode_varint(body, pos)
        key, pos = _read_bytes(body, pos)
        value, pos = _read_bytes(body, pos)
        count, pos = decode_varint(body, pos)
        if count < 0:
            raise Unreadable(f"{count} headers")
        headers, not_utf8 = [], []
        for i in range(count):
            name, pos = _read_bytes(body, pos)
            if name is None:
                raise Unreadable(f"header {i + 1}: its name is null")
            header_value, pos = _read_bytes(body, pos)
            try:
                text = name.decode()
            except UnicodeDecodeError:
                text = name.decode("utf-8", "surrogateescape")
                not_utf8.append(i + 1)
            headers.append((text, header_value))
    except (IndexError, ValueError) as error:  # decode_varint past the end, or an overlong varint
        raise Unreadable(f"varint: {error!r}") from None
    if pos - record_start != length:
        raise Unreadable(f"record of {length} bytes, read {pos - record_start}")
    if not_utf8:
        headers = Undecoded(
            headers,
            "header_not_utf8",
            f"header name not UTF-8: header {', '.join(map(str, not_utf8[:5]))}"
            f"{' …' if len(not_utf8) > 5 else ''} of {count}",
        )
    return RawRecord(base_offset + offset_delta, first_ts + ts_delta, 0, key, value, headers), pos


def _read_bytes(body: bytes, pos: int) -> tuple[bytes | None, int]:
    size, pos = decode_varint(body, pos)
    if size < 0:
        return None, pos
    if pos + size > len(body):
        raise Unreadable(f"{size} bytes past the end of the batch")
    return body[pos : pos + size], pos + size


class KeptBatches:
    """aiokafka's MemoryRecords over a fetch's bytes, knowing where the batch it gave last lies in them."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._records = memory_records.MemoryRecords(data)  # C, or Python with AIOKAFKA_NO_EXTENSIONS
        self._end = 0
        self._last = (0, 0)

    def size_in_bytes(self) -> int:
        return self._records.size_in_bytes()

    def has_next(self) -> bool:
        return self._records.has_next()

    def next_batch(self):
        start = self._end
        length = int.from_bytes(self._data[start + 8 : start + 12], "big", signed=True)
        self._end = start + LOG_OVERHEAD + length
        self._last = (start, self._end)
        return self._records.next_batch()

    def last_batch(self) -> bytes:
        """The bytes of the batch `next_batch` gave last."""
        start, end = self._last
        return self._data[start:end]


class TolerantPartitionRecords(fetcher.PartitionRecords):
    """aiokafka's PartitionRecords, reading on past a record its reader cannot decode (module docstring)."""

    def __next__(self) -> ConsumerRecord:
        try:
            return next(self._records_iterator)
        except StopIteration:
            self._records_iterator = None
            raise
        except Exception:
            if self._records_iterator is None or not isinstance(self._records, KeptBatches):
                raise
            reading = read_batch(self._records.last_batch(), self.next_fetch_offset)
            if reading is None or reading.fault is None:
                raise  # not a fault of the batch's bytes
            self._records_iterator = itertools.chain(self._read(reading), self._unpack_records())
            return next(self)

    def _read(self, reading: BatchReading) -> Iterator[ConsumerRecord]:
        """The rest of a batch aiokafka's reader failed on, as `read_batch` read it (module docstring)."""
        tp = self._tp
        for record in reading.records:
            consumer_record = self._consumer_record(tp, record)
            if isinstance(record.headers, Undecoded):
                consumer_record.headers = record.headers  # the mark: _consumer_record makes a plain tuple
            self.next_fetch_offset = record.offset + 1
            yield consumer_record
        raw = self._records.last_batch() if reading.unread else None
        for offset in reading.unread:
            headers = Undecoded((), "corrupt_batch", f"record batch unreadable: {reading.fault}")
            value = raw if offset == reading.unread.start else None
            self.next_fetch_offset = offset + 1
            yield ConsumerRecord(
                tp.topic, tp.partition, offset, reading.timestamp, 0, None, value, None, -1, -1, headers
            )
        self.next_fetch_offset = reading.unread.stop  # the batch's next offset, as aiokafka sets it


def read_past_undecodable() -> None:
    """Read every fetch of this process's aiokafka consumers with KeptBatches and TolerantPartitionRecords."""
    fetcher.MemoryRecords = KeptBatches
    fetcher.PartitionRecords = TolerantPartitionRecords
