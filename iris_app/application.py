"""The Faust app and its topics, built from the settings read once at start."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import faust
import mode

from . import registry
from .faust_ext import IncompatibleVersion, check_env_settings, check_versions
from .faust_ext.app import App
from .faust_ext.schema import raw_schema
from .models import AccuracyDelta, WindowCount, WindowDelta
from .samples import feature_rows
from .scoring import ModelError
from .serving import ModelServer
from .settings import Settings


class IrisApp(App):
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
            # Windows expire by event time (faust_ext.tables): look for them at least once a window.
            table_cleanup_interval=min(30.0, settings.window_seconds),
            # An agent that fails stops the worker: restarted in place, it would go on past the
            # events it took and never acknowledged, and Faust would never commit beyond them.
            agent_supervisor=mode.CrashingSupervisor,
            **producer_options,
        )
        self.settings = settings
        self.models: ModelServer | None = None  # the model(s) scored with, from the start on
        # Loaded once at start, before any record is read; an OSError stops the worker with one line.
        self.loaders: list[Callable[[], None]] = []

    async def on_first_start(self) -> None:
        """Load the model (what `iris-models` serves, else IRIS_MOJO) and what the agents need, first."""
        await super().on_first_start()
        try:
            published = await registry.read(self.settings.bootstrap_servers, timeout=10)
        except Exception as e:  # no broker yet: the worker follows the registry once it can reach it
            self.log.warning("Cannot read %s yet (%r): serving %s", registry.TOPIC, e, self.settings.mojo)
            published = registry.Registry()
        try:
            self.models = ModelServer(self.settings.mojo, Path(self.conf.appdir) / "models", feature_rows())
            self.models.start(published)
            for load in self.loaders:
                load()
        except (ModelError, OSError) as e:
            stop(f"cannot start: {e}", code=2)
        scorer = self.models.scorer
        self.log.info(
            "Scoring with %s from %s (classes %s)", scorer.model_id, scorer.path, ", ".join(scorer.labels)
        )


def stop(message: str, code: int) -> None:
    """Stop start-up with one line saying why."""
    sys.stderr.write(f"iris_app: {message}\n")
    sys.stderr.flush()
    raise SystemExit(code)


try:
    check_versions()
    settings = Settings.from_env()
    app = IrisApp(settings)
    check_env_settings(app)
except (IncompatibleVersion, ValueError) as e:  # SettingsError is a ValueError
    stop(str(e) if isinstance(e, IncompatibleVersion) else f"bad setting: {e}", code=1)


def declare(name: str, **options) -> faust.TopicT:
    """A topic the app creates if it is missing, with IRIS_PARTITIONS partitions."""
    return app.topic(name, partitions=settings.partitions, internal=True, **options)


# JSON bytes the app encodes and decodes itself (orjson).
RAW = {"schema": raw_schema()}
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
window_accuracy_topic = declare(
    "iris-classified-window-accuracy", **COMPACTED, value_type=bytes, value_serializer="raw"
)
