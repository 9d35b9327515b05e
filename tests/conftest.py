"""Fixtures: a real tansu broker on a free port, a real worker process, and a Kafka client for tests."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from iris_app.broker import LocalBroker, free_port, stop_process
from iris_app.scoring import Scorer
from iris_app.settings import Settings

REPO = Path(__file__).resolve().parent.parent
FAUST = str(Path(sys.executable).with_name("faust"))


@dataclass
class Message:
    key: bytes | None
    value: bytes | None
    timestamp: int
    partition: int

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
                            messages += [Message(m.key, m.value, m.timestamp, m.partition) for m in batch]
                return messages
            finally:
                await consumer.stop()

        try:
            return asyncio.run(run())
        except TimeoutError:
            raise AssertionError(f"{topic}: condition not met within {timeout} s") from None


@pytest.fixture(scope="session")
def broker() -> Iterator[LocalBroker]:
    with LocalBroker() as local:
        yield local


@pytest.fixture(scope="session")
def kafka(broker: LocalBroker) -> Kafka:
    return Kafka(broker.url)


@pytest.fixture(scope="session")
def scorer() -> Scorer:
    """The deployed model, scored directly: the reference for the worker's labels."""
    return Scorer(REPO / "mojo")


class Worker:
    """A `faust -A iris_app worker` process; its output is kept and watched for a line."""

    def __init__(self, env: dict[str, str], datadir: Path) -> None:
        self.lines: list[str] = []
        self._ready = threading.Event()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
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
            cwd=REPO,
            # PYTHONFAULTHANDLER: SIGABRT prints every thread's stack (see dump_stacks).
            env={**os.environ, "PYTHONFAULTHANDLER": "1", **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:
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

    def dump_stacks(self) -> str:
        """Abort a hung worker, and return its last lines with every thread's stack."""
        self.process.send_signal(signal.SIGABRT)
        self.process.wait(timeout=30)
        self._reader.join(timeout=30)  # it has read to the end of the output
        return "".join(self.lines[-120:])

    def stop(self) -> None:
        stop_process(self.process, timeout=30)


@pytest.fixture(scope="session")
def worker(broker: LocalBroker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    """One worker for the end-to-end tests, the generator off; tests tell their records apart by key."""
    running = Worker(
        {"KAFKA_BROKER": broker.url, "IRIS_GENERATOR_INTERVAL": "0"}, tmp_path_factory.mktemp("worker")
    )
    running.wait_ready()
    yield running
    running.stop()
