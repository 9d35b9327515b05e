"""A fuzz test of the record path (hypothesis): any record bytes (key, value, headers), in batches of any
codec, through decoding (aiokafka's reader and faust_ext.records), the record check and the dead letter.
Each record is classified, or gives a letter that fits its topic, with its position; reading never stops.

A short run is part of the normal test run (40 examples of each property, a few seconds). A longer one:

    HYPOTHESIS_PROFILE=long python -m pytest -p no:cacheprovider tests/test_fuzz.py

(HYPOTHESIS_PROFILE=long HYPOTHESIS_EXAMPLES=100000 for longer still). The seed corpus: the @example
cases below, and tests/fuzz_corpus/*.bin, record batches as producers wrote them (made with
tests/support/record_batches.py), each read as it is and with its records' bytes changed.
"""

from __future__ import annotations

import os
from pathlib import Path

import orjson
import pytest
from aiokafka.structs import ConsumerRecord
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from support.record_batches import (
    CODECS,
    HEADER_SIZE,
    Record,
    batch_bytes,
    encode_batch,
    read,
    with_crc,
)

from iris_app.classifying import check, label
from iris_app.dead_letters import KAFKA_MAX_MESSAGE_BYTES, as_text, dead_letter
from iris_app.models import MAX_RECORD_BYTES
from iris_app.scoring import Prediction

PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "short")
EXAMPLES = {"short": 40, "long": int(os.environ.get("HYPOTHESIS_EXAMPLES", 5000))}[PROFILE]
# No example database: the corpus is what this file and tests/fuzz_corpus/ hold.
RUN = settings(
    max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)
CORPUS = {
    path.stem: path.read_bytes() for path in sorted((Path(__file__).parent / "fuzz_corpus").glob("*.bin"))
}
IRIS = {"sepalLength": 5.1, "sepalWidth": 3.5, "petalLength": 1.4, "petalWidth": 0.2}
LIMITS = [2048, 16_384, 65_536, KAFKA_MAX_MESSAGE_BYTES]  # max.message.bytes of the DLQ topic
NEXT = Record(b"next", orjson.dumps(IRIS))  # a good record after each batch: reading goes on

header_names = st.binary(max_size=12) | st.sampled_from([b"\xff\xfe", b"\xed\xa0\x80", b"\xc0\x80", b""])
header_values = st.none() | st.binary(max_size=40)
headers = st.lists(st.tuples(header_names, header_values), max_size=6) | st.builds(
    lambda header, n: [header] * n, st.tuples(header_names, header_values), st.integers(0, 30_000)
)
iris_values = st.fixed_dictionaries(
    {name: st.floats(0, 10) | st.integers(0, 10) for name in IRIS},
    optional={"species": st.sampled_from(["setosa", "virginica", "versicolor", "rose", 1])},
).map(orjson.dumps)
values = (
    st.none()
    | st.binary(max_size=200)
    | iris_values
    | st.builds(
        lambda n, b: bytes([b]) * n, st.integers(MAX_RECORD_BYTES - 2, 1_100_000), st.integers(0, 255)
    )
)
keys = st.none() | st.binary(max_size=40) | st.builds(lambda n: b"k" * n, st.integers(16_000, 80_000))
records = st.builds(Record, keys, values, headers)


def classified_or_letters(
    fetched: list[ConsumerRecord], max_bytes: int
) -> tuple[list[bytes | None], list[dict]]:
    """The keys of the records classified and the letters of the others, each letter fitting `max_bytes`."""
    checked = check(fetched)
    scored = label(checked.valid, [Prediction("setosa", [1.0, 0, 0])] * len(checked.valid), "fuzz")
    assert not scored.failed
    batch_bytes(*scored.outputs)
    letters = []
    for source, error in checked.invalid:
        letter = dead_letter(source, error).fitted(max_bytes)
        assert batch_bytes(letter) <= max_bytes
        fields = orjson.loads(letter.value)
        assert (fields["topic"], fields["partition"], fields["offset"]) == ("iris", 0, source.offset)
        assert fields["error"] and error.reason
        if not fields.get("truncated"):  # the record's bytes as they were
            assert (fields["key"], fields["value"]) == (as_text(source.key), as_text(source.value))
        letters.append(fields)
    assert len(checked.valid) + len(letters) == len(fetched)
    return [source.key for source, _ in checked.valid], letters


@RUN
@given(st.lists(records, min_size=1, max_size=4), st.sampled_from(list(CODECS)), st.sampled_from(LIMITS))
@example([Record(b"k", orjson.dumps(IRIS), [(b"\xff\xfe", b"x")])], "none", KAFKA_MAX_MESSAGE_BYTES)
@example([Record(None, None, [(b"", None)] * 300_000)], "lz4", 2048)
@example([Record(b"k" * 1000, b"\xff" * 1_040_000, [(b"", b"")] * 30_000)], "zstd", KAFKA_MAX_MESSAGE_BYTES)
@example([Record(b"", b"", [(b"", b""), (b"\xc0\x80", None)])], "snappy", 16_384)
@example([Record(b"a", b'{"sepalLength": "' + b"x" * 16_000 + b'"}', [])], "gzip", 2048)
def test_any_records_are_classified_or_dead_lettered(batch, codec, max_bytes):
    """Records of any bytes, in a batch of any codec: each read at its offset, then classified or
    dead-lettered within the DLQ's limit; a header name not UTF-8 always gives a letter."""
    data = encode_batch(batch, codec=codec) + encode_batch([NEXT], base_offset=len(batch))

    fetched = read(data)

    assert [r.offset for r in fetched] == list(range(len(batch) + 1))
    keys, letters = classified_or_letters(fetched, max_bytes)
    assert keys[-1] == b"next"
    for record, fetched_record in zip(batch, fetched, strict=False):
        if any(not is_utf8(name) for name, _ in record.headers):
            assert fetched_record.offset in {letter["offset"] for letter in letters}


def is_utf8(data: bytes) -> bool:
    try:
        data.decode()
    except UnicodeDecodeError:
        return False
    return True


@pytest.mark.parametrize("name", CORPUS)
def test_the_corpus_is_read_past(name):
    """Each corpus batch as a producer wrote it: read to its end and the next batch's record."""
    batch = CORPUS[name]
    count = int.from_bytes(batch[HEADER_SIZE - 4 : HEADER_SIZE], "big")

    fetched = read(batch + encode_batch([NEXT], base_offset=count))

    assert [r.offset for r in fetched] == list(range(count + 1))
    assert classified_or_letters(fetched, 2048)[0][-1] == b"next"


@RUN
@given(
    st.sampled_from(sorted(CORPUS)),
    st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), min_size=1, max_size=8),
    st.booleans(),
)
@example("header_name_not_utf8", [(HEADER_SIZE + 1, 0x7F)], True)  # the first record's length
@example("lz4", [(HEADER_SIZE + 8, 0)], True)  # inside the compressed records
@example("header_name_not_utf8", [(104, 0)], True)  # the bad record's offset delta: a duplicate offset
@example("empty_and_null", [(11, 0), (147, 6)], True)  # an offset delta past the batch
def test_changed_record_bytes_never_stop_reading(name, changes, crc_right):
    """A corpus batch with some of its records' bytes changed, its CRC made right or not: reading never
    raises, every record it gives is classified or dead-lettered within the limit, and the next batch
    is read."""
    batch = bytearray(CORPUS[name])
    for position, byte in changes:
        batch[HEADER_SIZE + position % (len(batch) - HEADER_SIZE)] = byte
    batch = with_crc(batch) if crc_right else bytes(batch)
    count = int.from_bytes(batch[HEADER_SIZE - 4 : HEADER_SIZE], "big")

    fetched = read(batch + encode_batch([NEXT], base_offset=count))

    keys, _ = classified_or_letters(fetched, 2048)
    # A changed offset delta may give a record the next batch's offset (aiokafka then skips that one).
    assert b"next" in keys or any(r.offset >= count for r in fetched)
