"""Test records: valid `iris` records, keys no other test uses, and what the deployed model says of them."""

from __future__ import annotations

import time
import uuid
from typing import NamedTuple

from iris_app.models import FEATURES
from iris_app.scoring import Scorer

MINUTE_MS = 60_000

# Valid `iris` records: every species, ints, and one without a true label.
GOOD = [
    {"sepalLength": 5.1, "sepalWidth": 3.5, "petalLength": 1.4, "petalWidth": 0.2, "species": "setosa"},
    {"sepalLength": 6.4, "sepalWidth": 3.2, "petalLength": 4.5, "petalWidth": 1.5, "species": "versicolor"},
    {"sepalLength": 6.3, "sepalWidth": 3.3, "petalLength": 6.0, "petalWidth": 2.5, "species": "virginica"},
    {"sepalLength": 5.9, "sepalWidth": 3.2, "petalLength": 4.8, "petalWidth": 1.8, "species": "versicolor"},
    {"sepalLength": 7, "sepalWidth": 3, "petalLength": 5, "petalWidth": 2},  # ints, and no true label
]


def keyed(prefix: str, n: int) -> list[bytes]:
    """n message keys no other test uses."""
    return [f"{prefix}-{uuid.uuid4().hex[:8]}-{i}".encode() for i in range(n)]


def by_key(messages, keys) -> dict[bytes, object]:
    wanted = set(keys)
    return {m.key: m for m in messages if m.key in wanted}


def now_ms() -> int:
    return int(time.time() * 1000)


def predicted_labels(scorer: Scorer, records: list[dict]) -> list[str]:
    """What the deployed model says of each record, scored directly: the reference for the worker."""
    return [p.label for p in scorer.predict([[r[name] for name in FEATURES] for r in records])]


class Source(NamedTuple):
    """An input record, as the app's consumer hands it to the classify agent's steps."""

    value: bytes | None
    key: bytes | None = b"key"
    topic: str = "iris"
    partition: int = 0
    offset: int = 0
    timestamp: int = 1_700_000_000_000  # milliseconds, as aiokafka's records have it
    headers: list[tuple[str, bytes]] = []
