"""Dead letters: a record the classify agent cannot classify, with the reason, sent to iris-dlq (SPEC)."""

from __future__ import annotations

import base64
from typing import Any

import orjson
from aiokafka.record.default_records import DefaultRecordBatchBuilder

from .faust_ext.records import Undecoded
from .models import InvalidRecord, Output, Source, event_time_ms

# Kafka's default max.message.bytes: the largest record batch a topic takes when its broker does not say.
KAFKA_MAX_MESSAGE_BYTES = 1_048_588
# A letter's key and value are cut to these sizes (as JSON text), and its headers dropped above
# MAX_LETTER_HEADER_BYTES (as Kafka encodes them), however large the topic's limit: ample to see
# what a record held. Then the letter is cut further until it fits its topic (`fits`).
MAX_LETTER_KEY_BYTES = 64 * 1024
MAX_LETTER_VALUE_BYTES = 512 * 1024
MAX_LETTER_HEADER_BYTES = 256 * 1024

Headers = list[tuple[str, bytes | None]]


class Letter(Output):
    """A dead letter: the Output sent to iris-dlq, with the record and the error it was made from."""

    source: Source
    error: InvalidRecord

    def fitted(self, max_bytes: int) -> Letter:
        """This letter, or the same made again to fit a topic whose max.message.bytes is `max_bytes`."""
        return self if encoded_size(self) <= max_bytes else dead_letter(self.source, self.error, max_bytes)


def dead_letter(source: Source, error: InvalidRecord, max_bytes: int = KAFKA_MAX_MESSAGE_BYTES) -> Letter:
    """The DLQ record (SPEC): the reason, where the record came from, its bytes; cut to fit a topic whose
    max.message.bytes is `max_bytes`: headers dropped first, then the value cut, then the key, each
    stating the original sizes (then the error, when it quotes a long piece of the record)."""
    key_text, key_cut = cut_text(as_text(source.key), MAX_LETTER_KEY_BYTES)
    value_text, value_cut = cut_text(as_text(source.value), MAX_LETTER_VALUE_BYTES)
    fields: dict[str, Any] = {
        "error": str(error),
        "topic": source.topic,
        "partition": source.partition,
        "offset": source.offset,
        "timestamp": event_time_ms(source),
        "key": key_text,
        "value": value_text,
    }
    key = None if source.key is None else source.key[:MAX_LETTER_KEY_BYTES]
    headers, in_fields = letter_headers(source.headers)
    if in_fields is not None:
        fields["headers"] = in_fields
    if key_cut or value_cut:
        fields |= original_sizes(source)
    if (headers or in_fields) and headers_size(headers, in_fields) > MAX_LETTER_HEADER_BYTES:
        headers, fields = drop_headers(source, fields)
    letter = make_letter(key, fields, headers, source, error)
    while (excess := encoded_size(letter) - max_bytes) > 0:
        if headers or "headers" in fields:
            headers, fields = drop_headers(source, fields)
        elif fields["value"]:
            fields["value"] = shorter(fields["value"], excess)
            fields |= original_sizes(source)
        elif key:
            fields["key"], key = shorter(fields["key"], excess), key[: max(0, len(key) - excess)]
            fields |= original_sizes(source)
        elif len(fields["error"]) > 80:  # it quotes the record (a field's value, say): keep its start
            fields["error"] = shorter(fields["error"], min(excess, len(fields["error"]) - 80))
        else:
            break  # a limit below a letter's own fields: the broker refuses it, and says so
        letter = make_letter(key, fields, headers, source, error)
    return letter


def make_letter(
    key: bytes | None, fields: dict[str, Any], headers: Headers, source: Source, error: InvalidRecord
) -> Letter:
    letter = Letter(key, orjson.dumps(fields), fields["timestamp"], headers)
    letter.source, letter.error = source, error
    return letter


def encoded_size(record: Output) -> int:
    """How many bytes `record` takes as Kafka encodes it, alone in a record batch (batch header,
    record overhead, varint lengths): what a topic's max.message.bytes limits."""
    return DefaultRecordBatchBuilder.estimate_size_in_bytes(record.key, record.value, record.headers)


def letter_headers(headers: Any) -> tuple[Headers, list | None]:
    """A record's headers as the letter's headers; or, for a record the client could not decode (whose
    header names may not be UTF-8, and cannot be a letter's header names), as a field of the letter:
    [name, value] pairs, each text or base64 as the key and value are."""
    if type(headers) is not Undecoded:
        return list(headers or ()), None
    return [], [[as_text(name.encode("utf-8", "surrogateescape")), as_text(value)] for name, value in headers]


def headers_size(headers: Headers, in_fields: list | None) -> int:
    """What headers add to a letter: as Kafka encodes them, or as JSON text."""
    if in_fields is not None:
        return len(orjson.dumps(in_fields))
    return DefaultRecordBatchBuilder.size_of(None, None, headers) - 2  # no key, no value: 1 byte each


def drop_headers(source: Source, fields: dict[str, Any]) -> tuple[Headers, dict[str, Any]]:
    """No headers (a cut header would say something it did not), and the letter's fields saying so."""
    headers = list(source.headers or ())
    size = sum(len(name.encode("utf-8", "surrogateescape")) + len(value or b"") for name, value in headers)
    fields = {name: value for name, value in fields.items() if name != "headers"}
    return [], fields | original_sizes(source) | {"headerBytes": size, "headerCount": len(headers)}


def original_sizes(source: Source) -> dict[str, Any]:
    return {"truncated": True, "keyBytes": len(source.key or b""), "valueBytes": len(source.value or b"")}


def as_text(data: bytes | None) -> str | None:
    """Bytes as text, or base64 when they are not UTF-8."""
    if data is None:
        return None
    try:
        return data.decode()
    except UnicodeDecodeError:
        return base64.b64encode(data).decode()


def shorter(text: str, excess: int) -> str:
    """`text` cut so that its JSON encoding takes `excess` bytes fewer."""
    return cut_text(text, len(orjson.dumps(text)) - excess)[0]


def cut_text(text: str | None, limit: int) -> tuple[str | None, bool]:
    """`text` cut so that its JSON encoding takes at most `limit` bytes (at least ""); cut or not."""
    if text is None:
        return None, False
    size = len(orjson.dumps(text))
    if size <= limit:
        return text, False
    while size > max(limit, 2) and text:  # a character takes 1 to 6 bytes of JSON: shrink in proportion
        text = text[: max(0, len(text) * limit // size - 1)]
        size = len(orjson.dumps(text))
    return text, True
