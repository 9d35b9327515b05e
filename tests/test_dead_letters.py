"""Dead letters: why and where a record came from, with its bytes; always small enough to send."""

from __future__ import annotations

import orjson
from support.records import Source

from iris_app.dead_letters import dead_letter
from iris_app.models import InvalidRecord

SOURCE_MS = 1_700_000_000_000  # the timestamp of fixtures.Source (1_700_000_000.0 s), in ms


def test_a_dead_letter_says_why_and_where_from():
    """A dead letter says why and where the record came from, with its bytes and headers."""
    source = Source(b"\xff\xfe not utf-8", key=b"k1", partition=2, offset=42, headers=[("trace", b"abc")])

    letter = dead_letter(source, InvalidRecord("not_json", "not JSON: unexpected character"))

    assert orjson.loads(letter.value) == {
        "error": "not JSON: unexpected character",
        "topic": "iris",
        "partition": 2,
        "offset": 42,
        "timestamp": SOURCE_MS,
        "key": "k1",
        "value": "//4gbm90IHV0Zi04",  # base64: the bytes are not UTF-8
    }
    assert (letter.key, letter.timestamp_ms, letter.headers) == (b"k1", SOURCE_MS, [("trace", b"abc")])


KAFKA_MAX_MESSAGE_BYTES = 1_048_576


def test_a_dead_letter_always_fits_a_kafka_message():
    """A dead letter always fits a Kafka message: cut, it says the original sizes."""
    cases = {
        "control bytes, escaped six times over in JSON": Source(b"\x01" * 170_000),
        "non-UTF-8 bytes, in base64": Source(b"\xff" * 760_000),
        "a huge key": Source(b"{}", key=b"k" * 500_000),
        "huge headers, and the rest": Source(
            b"\xff" * 760_000, key=b"k" * 500_000, headers=[("h", b"x" * 600_000), ("i", b"y" * 300_000)]
        ),
    }
    for case, source in cases.items():
        letter = dead_letter(source, InvalidRecord("too_large", "message too large"))

        fields = orjson.loads(letter.value)
        headers = sum(len(name) + len(value) for name, value in letter.headers)
        assert len(letter.value) + len(letter.key or b"") + headers < KAFKA_MAX_MESSAGE_BYTES, case
        assert fields["truncated"] is True, case
        assert (fields["keyBytes"], fields["valueBytes"]) == (len(source.key), len(source.value)), case
    assert (letter.headers, fields["headerBytes"]) == ([], 900_002)  # the last case's headers: dropped
