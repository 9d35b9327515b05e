"""The Faust app and its topics, built from the settings read once at start."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import faust

from .models import MEASUREMENTS, AccuracyDelta, WindowAccuracy, WindowCount, WindowDelta
from .scoring import ModelError, Scorer
from .settings import Settings, SettingsError
from .transport import Transport

IRIS_DATA = Path("data/iris.csv")  # the generator's source of records


class IrisApp(faust.App):
    """The Faust app, holding the settings and, once started, the loaded model."""

    def __init__(self, settings: Settings) -> None:
        producer_options = (
            {}
            if settings.producer_max_batch_size is None
            else {"producer_max_batch_size": settings.producer_max_batch_size}
        )
        super().__init__(
            "iris_app",
            broker=settings.broker,
            store="rocksdb://",
            topic_partitions=settings.partitions,
            # Kafka's own former default: a new worker joins in seconds, not half a minute.
            broker_session_timeout=10.0,
            # Don't wait for streams to drain before a rebalance or shutdown: the classify agent
            # holds events unacknowledged in its batches, and the wait can then last forever. Offsets
            # are committed only up to acknowledged events, so nothing is lost: the next owner
            # reads the rest again (at least once).
            stream_wait_empty=False,
            **producer_options,
        )
        self.settings = settings
        self.scorer: Scorer | None = None
        self.samples: list[dict[str, float | str]] = []

    def _new_transport(self) -> Transport:
        """Faust's aiokafka transport, made for batches (transport.py)."""
        return Transport(self.conf.broker_consumer, self)

    def _new_producer_transport(self) -> Transport:
        return Transport(self.conf.broker_producer, self)

    async def on_first_start(self) -> None:
        """Load the model (and the generator's data) once, before any record is read."""
        await super().on_first_start()
        try:
            self.scorer = Scorer(self.settings.mojo)
            if self.settings.generator_interval > 0:
                self.samples = read_samples(IRIS_DATA)
        except (ModelError, OSError) as e:
            sys.stderr.write(f"iris_app: cannot start: {e}\n")
            sys.stderr.flush()
            raise SystemExit(2) from None
        self.log.info("Scoring with %s (classes %s)", self.scorer.path, ", ".join(self.scorer.labels))


def read_samples(path: Path) -> list[dict[str, float | str]]:
    """The rows of data/iris.csv as iris records (SPEC field names)."""
    with path.open(newline="") as f:
        rows = list(csv.reader(f))[1:]
    return [{**dict(zip(MEASUREMENTS, map(float, row[:4]))), "species": row[4]} for row in rows if row]


try:
    settings = Settings.from_env()
except SettingsError as e:
    sys.exit(f"iris_app: bad setting: {e}")

app = IrisApp(settings)


def declare(name: str, **options) -> faust.TopicT:
    """A topic the app creates if it is missing, with IRIS_PARTITIONS partitions."""
    return app.topic(name, partitions=settings.partitions, internal=True, **options)


class BytesSchema(faust.Schema):
    """Keys and values as the broker's bytes, handed over without Faust's codec lookups per message."""

    def loads_key(self, app: faust.App, message: faust.types.Message, **_) -> bytes | None:
        return message.key

    def loads_value(self, app: faust.App, message: faust.types.Message, **_) -> bytes | None:
        return message.value


# JSON bytes the app encodes and decodes itself (orjson).
RAW = {"schema": BytesSchema(key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")}
# Repartitions keyed like the tables they feed (JSON keys, as the tables' changelogs), so that a
# key's table partition is the one Faust's router computes for it.
REPARTITION = {"key_type": str, "key_serializer": "json"}
# Outputs whose latest message per key is the state: keyed by bytes the agents build, compacted.
COMPACTED = {"key_type": bytes, "key_serializer": "raw", "compacting": True}

iris_topic = declare("iris", **RAW)
classified_topic = declare("iris-classified", **RAW)
dlq_topic = declare("iris-dlq", **RAW)
window_deltas_topic = declare("iris-window-deltas", value_type=WindowDelta, **REPARTITION)
accuracy_deltas_topic = declare("iris-accuracy-deltas", value_type=AccuracyDelta, **REPARTITION)
window_counts_topic = declare("iris-classified-window-counts", value_type=WindowCount, **COMPACTED)
window_accuracy_topic = declare("iris-classified-window-accuracy", value_type=WindowAccuracy, **COMPACTED)
