"""On a SASL_SSL cluster (SCRAM-SHA-512, the test's own CA) the app classifies, counts and deploys;
a wrong password or an untrusted certificate stops the worker with one line, and the password is
never shown: not in a log line, a page or a metric."""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from support.checkout import FAUST, REPO
from support.models import SECOND, SECOND_ID
from support.records import GOOD, keyed
from support.tls import make_broker_tls, make_ca
from support.worker import Worker

from iris_app.connection import Connection
from iris_app.kafka_server import PASSWORD, USER, KafkaCluster

PAGES = ("/", "/health", "/model/", "/metrics", "/counts/", "/accuracy/")


@dataclass
class Secure:
    cluster: KafkaCluster
    env: dict[str, str]  # the app's settings for it: SASL_SSL, the user, the password's file, the CA

    @property
    def kafka(self) -> Connection:
        return Connection.from_env(self.env)


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secure]:
    folder = tmp_path_factory.mktemp("secure")
    tls = make_broker_tls(folder / "tls")
    password_file = folder / "password"
    password_file.write_text(PASSWORD + "\n")
    with KafkaCluster(1, tls=tls, folder=folder / "cluster") as cluster:
        yield Secure(
            cluster,
            {
                "KAFKA_BROKER": cluster.url,
                "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
                "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
                "KAFKA_SASL_USERNAME": USER,
                "KAFKA_SASL_PASSWORD_FILE": str(password_file),
                "KAFKA_SSL_CA_FILE": str(tls.ca_file),
                "IRIS_GENERATOR_INTERVAL": "0",
            },
        )


@pytest.fixture(scope="module")
def secure_worker(secure: Secure, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    worker = Worker(secure.env, tmp_path_factory.mktemp("secure-worker"))
    worker.wait_ready()
    yield worker
    worker.stop()


def produce(kafka: Connection, keys: list[bytes]) -> None:
    async def run() -> None:
        producer = AIOKafkaProducer(**kafka.client_options(), acks="all")
        await producer.start()
        try:
            for i, key in enumerate(keys):
                await producer.send_and_wait("iris", orjson.dumps(GOOD[i % len(GOOD)]), key=key)
        finally:
            await producer.stop()

    asyncio.run(run())


def read_keys(kafka: Connection, topic: str, wanted: set[bytes], timeout: float = 60) -> set[bytes]:
    """Keys of `topic`'s messages, read from its start until all of `wanted` (and at least one) came,
    or `timeout` passed."""

    async def run() -> set[bytes]:
        consumer = AIOKafkaConsumer(topic, **kafka.client_options(), auto_offset_reset="earliest")
        await consumer.start()
        seen: set[bytes] = set()
        try:
            async with asyncio.timeout(timeout):
                while not seen or not wanted <= seen:
                    for batch in (await consumer.getmany(timeout_ms=500)).values():
                        seen |= {m.key for m in batch}
        except TimeoutError:
            pass
        finally:
            await consumer.stop()
        return seen

    return asyncio.run(run())


def start_worker(env: dict[str, str], datadir: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [FAUST, "-A", "iris_app", "--datadir", str(datadir), "worker", "-l", "info"],
        cwd=REPO,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def one_line(run: subprocess.CompletedProcess) -> str:
    output = run.stdout + run.stderr
    lines = [line for line in output.splitlines() if "iris_app: " in line]
    assert "Traceback" not in output and len(lines) == 1, f"expected one line, got:\n{output[-3000:]}"
    return lines[0]


def test_records_are_classified_and_counted(secure: Secure, secure_worker: Worker):
    keys = keyed("secure", 20)
    produce(secure.kafka, keys)
    assert read_keys(secure.kafka, "iris-classified", set(keys)) >= set(keys)
    assert read_keys(secure.kafka, "iris-classified-window-counts", set(), timeout=5)


def test_deploy_works_over_sasl_ssl(secure: Secure, secure_worker: Worker):
    run = subprocess.run(
        [FAUST, "-A", "iris_app", "deploy", str(SECOND)],
        cwd=REPO,
        env={**os.environ, **secure.env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert SECOND_ID in run.stdout


def test_a_wrong_password_stops_the_worker(secure: Secure, tmp_path):
    env = {**secure.env, "KAFKA_SASL_PASSWORD_FILE": "", "KAFKA_SASL_PASSWORD": "not-the-password"}
    run = start_worker(env, tmp_path / "data")
    assert run.returncode == 1
    assert "check KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD" in one_line(run)


def test_an_untrusted_certificate_stops_the_worker(secure: Secure, tmp_path):
    other_ca = make_ca(tmp_path / "other", "other-ca")
    run = start_worker({**secure.env, "KAFKA_SSL_CA_FILE": str(other_ca)}, tmp_path / "data")
    assert run.returncode == 1
    assert "certificate is not trusted" in one_line(run)


def test_the_password_is_never_shown(secure: Secure, secure_worker: Worker):
    shown = {path: secure_worker.get(path)[2].decode(errors="replace") for path in PAGES}
    shown["log"] = "".join(secure_worker.lines)
    assert [where for where, text in shown.items() if PASSWORD in text] == []
