"""Keys and values as the broker's bytes, handed over without Faust's codec lookups per message."""

from __future__ import annotations

import faust


class BytesSchema(faust.Schema):
    """Faust's Schema decodes through its codec registry per message; raw topics need none of it."""

    def loads_key(self, app: faust.App, message: faust.types.Message, **_) -> bytes | None:
        return message.key

    def loads_value(self, app: faust.App, message: faust.types.Message, **_) -> bytes | None:
        return message.value


def raw_schema() -> BytesSchema:
    """The schema of a topic whose keys and values the app encodes and decodes itself."""
    return BytesSchema(key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")
