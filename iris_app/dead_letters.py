"""Dead letters: a record the classify agent cannot classify, with the reason, sent to iris-dlq (SPEC)."""

from __future__ import annotations

import base64
from typing import Any

import orjson

from .models import InvalidRecord, Output, Source, event_time_ms

# A dead letter fits Kafka's default message size (1 MiB, also aiokafka's largest request)
# with room to spare: its key and value are cut to these sizes, as JSON text.
MAX_LETTER_KEY_BYTES = 64 * 1024
MAX_LETTER_VALUE_BYTES = 512 * 1024
MAX_LETTER_HEADER_BYTES = 256 * 1024  # the record's headers, kept whole or not at all


def dead_letter(source: Source, error: InvalidRecord) -> Output:
    """The DLQ record (SPEC): the reason, where the record came from, its bytes; cut to always fit."""
    key, key_cut = fitted_text(source.key, MAX_LETTER_KEY_BYTES)
    value, value_cut = fitted_text(source.value, MAX_LETTER_VALUE_BYTES)
    timestamp_ms = event_time_ms(source)
    letter: dict[str, Any] = {
        "error": str(error),
        "topic": source.topic,
        "partition": source.partition,
        "offset": source.offset,
        "timestamp": timestamp_ms,
        "key": key,
        "value": value,
    }
    headers = list(source.headers or [])
    header_bytes = sum(len(name) + len(value or b"") for name, value in headers)
    headers_cut = header_bytes > MAX_LETTER_HEADER_BYTES
    if key_cut or value_cut or headers_cut:
        letter |= {
            "truncated": True,
            "keyBytes": len(source.key or b""),
            "valueBytes": len(source.value or b""),
        }
    if headers_cut:
        letter["headerBytes"] = header_bytes
        headers = []  # dropped: cut, a header would say something it did not
    key_bytes = None if source.key is None else source.key[:MAX_LETTER_KEY_BYTES]
    return Output(key_bytes, orjson.dumps(letter), timestamp_ms, headers)


def fitted_text(data: bytes | None, limit: int) -> tuple[str | None, bool]:
    """Bytes as text (base64 when not UTF-8) whose JSON encoding takes at most `limit` bytes; cut or not."""
    if data is None:
        return None, False
    try:
        text = data.decode()
    except UnicodeDecodeError:
        text = base64.b64encode(data).decode()
    size = len(orjson.dumps(text))
    if size <= limit:
        return text, False
    while size > limit:  # a character takes 1 to 6 bytes of JSON: shrink in proportion until it fits
        text = text[: len(text) * limit // size - 1]
        size = len(orjson.dumps(text))
    return text, True
