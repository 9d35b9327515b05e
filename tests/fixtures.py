"""What the tests share: test records, a Kafka client, a worker process, and small helpers.

pytest's fixtures (conftest.py) build on these; tests import them from here.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from iris_app.broker import free_port, stop_process
from iris_app.models import FEATURES
from iris_app.scoring import Scorer
from iris_app.settings import Settings

REPO = Path(__file__).resolve().parent.parent
FAUST = str(Path(sys.executable).with_name("faust"))
MINUTE_MS = 60_000
# Workers whose tables move between them, or are restored from their changelogs: tansu needs one
# record per producer batch (docs/SPEC.md, "The local broker"); the tests produce their own records.
TABLES_MOVE = {"IRIS_GENERATOR_INTERVAL": "0", "IRIS_PRODUCER_MAX_BATCH_SIZE": "1"}
# Faust's own settings, by environment, for every process the tests start (conftest.py; benchmarks run
# with the app's): tansu holds a JoinGroup for half the session timeout, and a killed worker stays in
# the group for one. 6 s, not the app's 10, about halves the time the multi-worker tests spend
# rebalancing (the heartbeat stays a third of it, as Kafka advises).
QUICK_REBALANCE = {"BROKER_SESSION_TIMEOUT": "6", "BROKER_HEARTBEAT_INTERVAL": "2"}

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


@dataclass
class Message:
    key: bytes | None
    value: bytes | None
    timestamp: int
    partition: int
    headers: tuple
    offset: int

    def json(self) -> dict:
        return orjson.loads(self.value)


class Kafka:
    """A plain aiokafka client: produce records, and read a topic until a condition holds."""

    def __init__(self, url: str) -> None:
        self.bootstrap = url.removeprefix("kafka://")

    def produce(self, topic: str, records: list[tuple[bytes | None, bytes, int | None]]) -> None:
        """Send (key, value, timestamp_ms) records in order and wait until all are acknowledged."""

        async def run() -> None:
            producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap)
            await producer.start()
            try:
                futures = [
                    await producer.send(topic, value, key=key, timestamp_ms=ts) for key, value, ts in records
                ]
                await asyncio.gather(*futures)
            finally:
                await producer.stop()

        asyncio.run(run())

    def read_until(
        self, topic: str, done: Callable[[list[Message]], bool], timeout: float = 60.0
    ) -> list[Message]:
        """Every message of `topic` from the start, read until `done(messages)` is true."""

        async def run() -> list[Message]:
            consumer = AIOKafkaConsumer(
                bootstrap_servers=self.bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
            )
            await consumer.start()
            try:
                # The worker created the topic, with the default partition count, before it was ready.
                consumer.assign([TopicPartition(topic, p) for p in range(Settings().partitions)])
                await consumer.seek_to_beginning()
                messages: list[Message] = []
                async with asyncio.timeout(timeout):
                    while not done(messages):
                        batches = await consumer.getmany(timeout_ms=500)
                        for batch in batches.values():
                            messages += [
                                Message(m.key, m.value, m.timestamp, m.partition, m.headers, m.offset)
                                for m in batch
                            ]
                return messages
            finally:
                await consumer.stop()

        try:
            return asyncio.run(run())
        except TimeoutError:
            raise AssertionError(f"{topic}: condition not met within {timeout} s") from None

    def read_all(self, topic: str, quiet: float = 3.0) -> list[Message]:
        """Every message of `topic`, read until nothing new comes for `quiet` seconds (tansu's end
        offsets are not to be trusted: docs/SPEC.md)."""
        last = [time.monotonic(), 0]

        def settled(messages: list[Message]) -> bool:
            if len(messages) != last[1]:
                last[:] = time.monotonic(), len(messages)
            return time.monotonic() - last[0] > quiet

        return self.read_until(topic, settled, timeout=600)


def whereabouts(url: str, keys: list[bytes]) -> str:
    """Where records are on the input, output and dead-letter topics: lost, or missed by a reader?"""
    wanted, kafka, lines = set(keys), Kafka(url), []
    for topic in ("iris", "iris-classified", "iris-dlq"):
        places: dict[bytes, list[str]] = {key: [] for key in keys}
        for m in kafka.read_all(topic):
            if m.key in wanted:
                source = dict(m.headers).get("iris-source-offset")
                places[m.key].append(
                    f"{m.partition}@{m.offset}" + (f" from @{source.decode()}" if source else "")
                )
        lines.append(
            f"{topic}: " + "; ".join(f"{key.decode()} {', '.join(at) or '-'}" for key, at in places.items())
        )
    return "\n".join(lines)


class Worker:
    """A `faust -A iris_app worker` process; its output is kept and watched for a line."""

    def __init__(self, env: dict[str, str], datadir: Path, checkout: Path = REPO) -> None:
        self.lines: list[str] = []
        self.datadir = datadir
        self._ready = threading.Event()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = f"{datadir}-{self.port}.log"  # its whole output, kept beside its data directory
        self.process = subprocess.Popen(
            [
                FAUST,
                "-A",
                "iris_app",
                "--datadir",
                str(datadir),
                "worker",
                "-l",
                "info",
                "--web-port",
                str(self.port),
            ],
            cwd=checkout,
            # PYTHONFAULTHANDLER: SIGABRT prints every thread's stack (see dump_stacks).
            env={**os.environ, "PYTHONFAULTHANDLER": "1", "PYTHONPATH": str(checkout), **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        with open(self.log, "w") as log:
            for line in self.process.stdout:
                log.write(line)
                self.lines.append(line)
                if "[^Worker]: Ready" in line:
                    self._ready.set()
        self._ready.set()

    def wait_ready(self, timeout: float = 120) -> None:
        assert self._ready.wait(timeout), "worker not ready in time:\n" + "".join(self.lines[-30:])
        assert self.process.poll() is None, "worker exited:\n" + "".join(self.lines[-30:])

    def get(self, path: str) -> tuple[int, str, bytes]:
        """(status, content type, body) of an HTTP GET on the worker's web server."""
        try:
            with urllib.request.urlopen(self.url + path, timeout=30) as response:
                return response.status, response.headers.get_content_type(), response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.headers.get_content_type(), error.read()

    def health_within(self, status: int, timeout: float) -> tuple[int, dict]:
        """Poll /health until it answers `status` or `timeout` passes; its last status and JSON (an HTTP
        status has no event to wait on)."""
        deadline = time.monotonic() + timeout
        while (answer := self.get("/health"))[0] != status and time.monotonic() < deadline:
            time.sleep(0.5)
        return answer[0], orjson.loads(answer[2])

    def dump_stacks(self) -> str:
        """Abort a hung worker, and return its last lines with every thread's stack."""
        self.process.send_signal(signal.SIGABRT)
        self.process.wait(timeout=30)
        self._reader.join(timeout=30)  # it has read to the end of the output
        return "".join(self.lines[-120:])

    def stop(self) -> None:
        stop_process(self.process, timeout=30)


class Source(NamedTuple):
    """An input message, as Faust's consumer hands it to the classify agent's steps."""

    value: bytes | None
    key: bytes | None = b"key"
    topic: str = "iris"
    partition: int = 0
    offset: int = 0
    timestamp: float = 1_700_000_000.0  # seconds, as Faust's messages have it
    headers: list[tuple[str, bytes]] = []


class Proxy:
    """A TCP proxy on loopback, in a thread of its own: `cut()` drops every connection and refuses new ones
    until `restore()`, as a broker outage or a network partition would."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = free_port()
        self._loop = asyncio.new_event_loop()
        self._up = True
        self._writers: set[asyncio.StreamWriter] = set()
        started = threading.Event()
        threading.Thread(target=self._run, args=(started,), daemon=True).start()
        started.wait()

    def _run(self, started: threading.Event) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(asyncio.start_server(self._serve, "127.0.0.1", self.port))
        started.set()
        self._loop.run_forever()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self._up:
            writer.close()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            writer.close()
            return
        self._writers |= {writer, up_writer}

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            try:
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            except OSError:
                pass
            finally:
                sink.close()
                self._writers.discard(sink)

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    def cut(self) -> None:
        def close_all() -> None:
            self._up = False
            for writer in list(self._writers):
                writer.transport.abort()
            self._writers.clear()

        self._loop.call_soon_threadsafe(close_all)

    def restore(self) -> None:
        self._loop.call_soon_threadsafe(setattr, self, "_up", True)


class Traffic:
    """Records flowing: a thread producing `rate` iris records a second (keys b"t0", b"t1", ...) while a
    second one reads iris-classified from the start, until `stop_producing()` and `close()`."""

    def __init__(self, url: str, rate: float, samples: list[dict]) -> None:
        self.bootstrap = url.removeprefix("kafka://")
        self.rate = rate
        self.samples = samples
        self.sent: list[bytes] = []  # keys whose record the broker acknowledged, in order
        self.produced = 0  # records handed to the producer so far: t0 … t<produced - 1>
        self.classified: Counter[bytes] = Counter()  # key -> times seen on iris-classified
        self._positions: dict[TopicPartition, int] = {}
        self._seen = threading.Condition()
        self._producing, self._reading = threading.Event(), threading.Event()
        self._producing.set()
        self._reading.set()
        self._threads = [
            threading.Thread(target=asyncio.run, args=(self._produce(),), daemon=True),
            threading.Thread(target=asyncio.run, args=(self._read(),), daemon=True),
        ]
        self._started = threading.Barrier(2, timeout=60)  # the producer connected, and the caller
        for thread in self._threads:
            thread.start()
        self._started.wait()

    async def _produce(self) -> None:
        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, request_timeout_ms=120_000)
        await producer.start()
        self._started.wait()
        pending: list[tuple[bytes, asyncio.Future]] = []
        try:
            i = 0
            started = time.monotonic()
            while self._producing.is_set():
                key = b"t%d" % i
                value = orjson.dumps(self.samples[i % len(self.samples)])
                self.produced = i + 1  # before the send: a record numbered at or above it comes later
                pending.append((key, await producer.send("iris", value, key=key)))
                i += 1
                pending = self._settle(pending)
                await asyncio.sleep(max(0.0, started + i / self.rate - time.monotonic()))
            await asyncio.wait([future for _, future in pending])
            self._settle(pending)
        finally:
            await producer.stop()

    def _settle(self, pending: list[tuple[bytes, asyncio.Future]]) -> list[tuple[bytes, asyncio.Future]]:
        left = []
        for key, future in pending:
            if not future.done():
                left.append((key, future))
            elif future.exception() is None:
                self.sent.append(key)
        return left

    async def _read(self) -> None:
        while self._reading.is_set():
            try:
                await self._read_classified()
            except KafkaError:  # the broker is out of reach (an outage under test): again
                await asyncio.sleep(0.5)

    async def _read_classified(self) -> None:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
        )
        await consumer.start()
        try:
            while self._reading.is_set() and "iris-classified" not in await consumer.topics():
                await asyncio.sleep(0.5)  # the workers create it: there is no event to wait on
            # Created by the workers, with the default partition count; read on from where it got to.
            partitions = [TopicPartition("iris-classified", p) for p in range(Settings().partitions)]
            consumer.assign(partitions)
            for tp in partitions:
                consumer.seek(tp, self._positions.get(tp, 0))
            while self._reading.is_set():
                batches = await consumer.getmany(timeout_ms=200)
                with self._seen:
                    for tp, batch in batches.items():
                        self.classified.update(m.key for m in batch)
                        self._positions[tp] = batch[-1].offset + 1
                    self._seen.notify_all()
        finally:
            await consumer.stop()

    def sent_from(self, number: int) -> list[bytes]:
        """The keys sent so far whose number (t<number>) is `number` or above: produced after it was read."""
        return [key for key in self.sent if int(key[1:]) >= number]

    def wait_count(self, n: int, timeout: float) -> None:
        """Wait until `n` records came out classified (records flow: a test may go on)."""
        with self._seen:
            assert self._seen.wait_for(lambda: len(self.classified) >= n, timeout), "records do not flow"

    def missing(self, upto: int | None = None) -> list[bytes]:
        """Keys sent (the first `upto` of them) and not seen classified."""
        with self._seen:
            return [key for key in self.sent[:upto] if key not in self.classified]

    def wait_classified(self, timeout: float) -> list[bytes]:
        """Wait until every record sent so far is classified; the keys still missing at the timeout."""
        upto = len(self.sent)
        with self._seen:
            self._seen.wait_for(lambda: not self.missing(upto), timeout)
        return self.missing(upto)

    def stop_producing(self) -> None:
        self._producing.clear()
        self._threads[0].join(timeout=150)

    def close(self) -> None:
        self.stop_producing()
        self._reading.clear()
        self._threads[1].join(timeout=10)
