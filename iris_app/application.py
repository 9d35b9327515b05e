"""The Faust app and its topics, built from the settings read once at start."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import sys
from collections.abc import Callable
from pathlib import Path

import faust
import mode

from . import registry
from .cluster import Cluster, describe_cluster, wait_for_topics
from .connection import BrokerUnreachable, check_reachable
from .faust_ext import IncompatibleVersion, check_env_settings, check_versions
from .faust_ext.app import App
from .faust_ext.membership import instance_id
from .faust_ext.schema import raw_schema
from .model_checks import Check, checked_scorer
from .models import AccuracyDelta, WindowCount, WindowDelta
from .partitioner import partition_of
from .scoring import ModelError, Scorer
from .serving import ModelServer
from .settings import Settings

# Faust's own pages (faust.web.apps): /router/, /table/, /graph/, the sensor statistics at / with
# /assignment/, and /performance/. They show the cluster's web addresses and the tables' data.
FAUST_PAGES = (
    "web_router_enabled",
    "web_tables_enabled",
    "web_graph_enabled",
    "web_stats_enabled",
    "web_metrics_enabled",
)


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
            broker=settings.kafka.url,
            broker_credentials=settings.kafka.faust_credentials(),
            producer_acks=-1,  # every in-sync replica has each record: a broker may be lost at any time
            producer_compression_type=settings.compression,
            store="rocksdb://",
            topic_partitions=settings.partitions,
            # Kafka's own former default: a new worker joins in seconds, not half a minute.
            broker_session_timeout=10.0,
            # A worker learns of a rebalance at its next heartbeat: one that stops hands over in a second or
            # two (faust_ext.handover), not Faust's three.
            broker_heartbeat_interval=1.0,
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
            # Kafka's default partitioning (murmur2 of the key), computed a few times faster than aiokafka's.
            producer_partitioner=partition_of,
            **producer_options,
        )
        self.settings = settings
        self.min_insync_replicas = 1  # of the topics the app creates: set at start (adapt_to)
        self.declared: list[faust.TopicT] = []  # the app's own topics (declare), made at start
        self.models: ModelServer | None = None  # the model(s) scored with, from the start on
        self.fallback: Scorer | None = None  # IRIS_MOJO's model, checked before the worker starts
        # Loaded once at start, before any record is read; an OSError stops the worker with one line.
        self.loaders: list[Callable[[], None]] = []

    def preflight(self) -> None:
        """Before the worker prints or starts anything: IRIS_MOJO's model must pass its check (else exit 2),
        then the web port must be free and a broker answer (else exit 1), each failure one line."""
        check = Check.bundled(self.settings.min_accuracy, self.settings.model_check_seconds)
        try:
            self.fallback = checked_scorer(self.settings.mojo, check)
        except (ModelError, OSError) as e:
            stop(f"cannot start: {e}", code=2)
        if self.conf.web_enabled and self.conf.web_transport.scheme == "tcp":
            try:
                socket.create_server((self.conf.web_bind, self.conf.web_port)).close()
            except OSError as e:
                stop(
                    f"cannot serve the pages on port {self.conf.web_port} ({os.strerror(e.errno or 0)}):"
                    " choose another with --web-port after `worker`",
                    code=1,
                )
        loop = asyncio.new_event_loop()  # its own: the worker's loop is not made yet
        try:
            loop.run_until_complete(check_reachable(self.settings.kafka))
        except BrokerUnreachable as e:
            stop(str(e), code=1)
        finally:
            loop.close()

    def hide_faust_pages(self) -> None:
        """Turn every one of Faust's own pages off, unless IRIS_FAUST_PAGES turns them on (then Faust's
        defaults and its APP_WEB_*_ENABLED variables decide, as in any Faust app). Set on the built
        settings, as Faust's variables override the app's arguments; before the web server is made."""
        if not self.settings.faust_pages:
            for name in FAUST_PAGES:
                setattr(self.conf, name, False)

    async def on_first_start(self) -> None:
        """Load the model (what `iris-models` serves, else IRIS_MOJO) and what the agents need, first.

        A model that cannot serve stops the worker (exit 2) before a broker out of reach does (exit 1).
        """
        await super().on_first_start()
        unreachable = None
        published = registry.Registry()
        try:
            self.adapt_to(await describe_cluster(self.settings.kafka))
            await self.declare_topics()
            published = await registry.read(self.settings.kafka, timeout=10, bounded=True)
        except BrokerUnreachable as e:
            unreachable = e
        except Exception as e:  # the broker went away meanwhile: the worker follows the registry later
            self.log.warning("Cannot read %s yet (%r): serving %s", registry.TOPIC, e, self.settings.mojo)
        try:
            check = Check.bundled(self.settings.min_accuracy, self.settings.model_check_seconds)
            self.models = ModelServer(self.settings.mojo, Path(self.conf.appdir) / "models", check)
            self.models.start(published, self.fallback)
            for load in self.loaders:
                load()
        except (ModelError, OSError) as e:
            stop(f"cannot start: {e}", code=2)
        if unreachable is not None:
            stop(str(unreachable), code=1)
        scorer = self.models.scorer
        self.log.info(
            "Scoring with %s from %s (classes %s)", scorer.model_id, scorer.path, ", ".join(scorer.labels)
        )

    async def declare_topics(self) -> None:
        """Make every topic the app uses (its own, the tables' changelogs) as Faust makes them, each with
        min.insync.replicas, and wait until the brokers list them: on Apache Kafka a topic made while
        the group forms is left out of its assignment until the consumer's next metadata refresh."""
        topics = [*self.declared, *(table.changelog_topic for table in self.tables.values())]
        for topic in topics:
            topic.config = {**(topic.config or {}), "min.insync.replicas": str(self.min_insync_replicas)}
            await topic.maybe_declare()
        names = [name for topic in topics for name in topic.topics]
        await wait_for_topics(self.settings.kafka, names)
        await self.producer.track(names)

    def adapt_to(self, cluster: Cluster) -> None:
        """Replicate the topics the app creates as the cluster allows (Settings.replication); on tansu,
        send Faust's own records one per batch, as its end offsets need (docs/SPEC.md, "The local broker")."""
        replicas, min_insync = self.settings.replication(cluster.brokers)
        self.conf.topic_replication_factor = replicas
        self.min_insync_replicas = min_insync
        if cluster.is_tansu and self.settings.producer_max_batch_size is None:
            self.producer.max_batch_size = 1
        self.join_as(cluster)
        self.log.info(
            "Kafka cluster %s: %d broker(s); topics made with %d replica(s), min.insync.replicas %d",
            cluster.cluster_id,
            cluster.brokers,
            replicas,
            min_insync,
        )

    def join_as(self, cluster: Cluster) -> None:
        """Join the group as a static member, with IRIS_GROUP_INSTANCE_ID or the id of the data directory
        and web address (faust_ext.membership.instance_id), where every broker takes one (not tansu: it
        rebalances on a static member's return and ignores its leave); else as a new member at each
        start. Before the consumer starts."""
        wanted = self.settings.group_instance_id
        if wanted == "none":
            return
        if not cluster.static_membership or cluster.is_tansu:
            self.log.info("The brokers take no static members: the worker joins as a new member")
            return
        url = str(self.conf.canonical_url)
        self.conf.consumer_group_instance_id = wanted or instance_id(Path(self.conf.appdir), url)
        self.log.info("Joining the group as static member %s", self.conf.consumer_group_instance_id)


def stop(message: str, code: int) -> None:
    """Stop start-up with one line saying why; the services' "Stopping..." lines that follow are not
    logged (warnings and errors still are)."""
    sys.stderr.write(f"iris_app: {message}\n")
    sys.stderr.flush()
    logging.disable(logging.INFO)
    raise SystemExit(code)


try:
    check_versions()
    settings = Settings.from_env()
    app = IrisApp(settings)
    check_env_settings(app)
    app.hide_faust_pages()
except (IncompatibleVersion, ValueError) as e:  # SettingsError is a ValueError
    stop(str(e) if isinstance(e, IncompatibleVersion) else f"bad setting: {e}", code=1)


def declare(name: str, **options) -> faust.TopicT:
    """A topic the app creates at start if it is missing, with IRIS_PARTITIONS partitions."""
    topic = app.topic(name, partitions=settings.partitions, internal=True, **options)
    app.declared.append(topic)
    return topic


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
