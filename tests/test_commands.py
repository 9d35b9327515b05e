"""The commands as a user meets them: one line for each failure the user can fix, watch's binary values,
and Ctrl-C."""

from __future__ import annotations

import asyncio
import hashlib
import re
import shutil
import signal
import socket
import subprocess
import threading
import uuid
from collections.abc import Iterator

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from support.checkout import REPO
from support.cli import run, start
from support.kafka import Kafka

from iris_app import packages
from iris_app.broker import free_port
from iris_app.kafka_server import KafkaCluster

SECOND = REPO / "tests" / "models" / "second"
NO_BROKER = (
    "iris_app: cannot reach the Kafka broker at 127.0.0.1:{port}: nothing listens there:"
    " check KAFKA_BROKER, or start a broker (`make run` starts one)\n"
)


@pytest.mark.parametrize(
    "args",
    [
        ["deploy", "--list"],
        ["deploy", "--rollback"],
        ["deploy", "--promote"],
        ["deploy", str(SECOND)],
        ["deploy", "--shadow", str(SECOND)],
        ["watch", "iris-classified"],
        ["train", "--deploy", "--out", "/nonexistent/never-written"],
    ],
    ids=lambda args: " ".join(a.rpartition("/")[2] for a in args),
)
def test_a_command_without_a_broker_says_so_in_one_line(args):
    port = free_port()
    done = run(f"kafka://127.0.0.1:{port}", *args)

    assert done.returncode != 0
    assert done.stdout == NO_BROKER.format(port=port)


@pytest.fixture
def silent_listener() -> Iterator[int]:
    """A port that accepts connections and never answers: something other than a Kafka broker."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        accepted: list[socket.socket] = []

        def accept() -> None:
            while True:
                try:
                    accepted.append(server.accept()[0])
                except OSError:
                    return

        threading.Thread(target=accept, daemon=True).start()
        yield server.getsockname()[1]
    for connection in accepted:
        connection.close()


def test_a_command_against_something_other_than_kafka_says_so_in_one_line(silent_listener):
    done = run(f"kafka://127.0.0.1:{silent_listener}", "deploy", "--list")

    assert done.returncode != 0
    assert done.stdout.count("\n") == 1, done.stdout
    assert done.stdout.startswith(f"iris_app: cannot reach the Kafka broker at 127.0.0.1:{silent_listener}: ")
    assert "check KAFKA_BROKER" in done.stdout


def test_log_level_debug_shows_the_traceback_above_the_one_line():
    port = free_port()
    done = run(f"kafka://127.0.0.1:{port}", "-l", "debug", "deploy", "--list")

    assert done.returncode != 0
    assert "Traceback (most recent call last)" in done.stdout and "BrokerUnreachable" in done.stdout
    assert done.stdout.endswith(NO_BROKER.format(port=port))


def test_a_missing_or_corrupt_model_is_refused_in_one_line(tmp_path):
    corrupt = tmp_path / "corrupt"
    shutil.copytree(SECOND, corrupt)
    zips = list(corrupt.glob("*.zip"))
    zips[0].write_bytes(b"not a zip")
    no_broker = f"kafka://127.0.0.1:{free_port()}"  # refused before the broker is asked anything

    missing = run(no_broker, "deploy", str(tmp_path / "nothing"))
    broken = run(no_broker, "deploy", str(corrupt))
    no_mojo = run(no_broker, "deploy", env={"IRIS_MOJO": str(tmp_path / "nothing")})

    assert missing.returncode != 0 and missing.stdout == (
        f"iris_app: deploy refused: no MOJO at {tmp_path / 'nothing'}:"
        " train one with `faust -A iris_app train` or set IRIS_MOJO\n"
    )
    assert broken.returncode != 0 and broken.stdout.count("\n") == 1
    assert broken.stdout.startswith(f"iris_app: deploy refused: cannot load the MOJO {zips[0]}: ")
    assert no_mojo.returncode != 0 and no_mojo.stdout.count("\n") == 1
    assert no_mojo.stdout.startswith("iris_app: deploy refused: no MOJO at ")


FAUST_BANNER = re.compile(r"^(\x1b\[\?25[lh])*([+|]|$)")  # Faust's table of the worker's settings


@pytest.mark.parametrize("model", ["missing", "corrupt"])
def test_a_worker_with_a_missing_or_corrupt_model_stops_with_one_line(model, tmp_path):
    mojo = tmp_path / "mojo"
    if model == "corrupt":
        shutil.copytree(SECOND, mojo)
        for package in mojo.glob("*.zip"):
            package.write_bytes(b"not a zip")
    done = run(
        f"kafka://127.0.0.1:{free_port()}",
        *("--datadir", str(tmp_path / "data"), "worker", "--web-port", str(free_port())),
        env={"IRIS_MOJO": str(mojo)},
    )

    said = [line for line in done.stdout.splitlines() if not FAUST_BANNER.match(line)]
    assert done.returncode == 2
    assert len(said) == 1, done.stdout
    cause = "no MOJO at" if model == "missing" else "cannot load the MOJO"
    assert f"iris_app: cannot start: {cause} {mojo}" in said[0]


def make_topic(url: str, name: str) -> None:
    async def make() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=url.removeprefix("kafka://"))
        await admin.start()
        try:
            await admin.create_topics([NewTopic(name, 1, 1)])
        finally:
            await admin.close()

    asyncio.run(make())


def interrupted(process: subprocess.Popen) -> str:
    """Ctrl-C, as a terminal sends it; everything the process printed."""
    process.send_signal(signal.SIGINT)
    try:
        output, _ = process.communicate(timeout=60)
    finally:
        process.kill()
    return output


def test_watch_shows_a_binary_value_as_its_size_and_hash_and_stops_on_ctrl_c_quietly(broker, kafka: Kafka):
    topic = f"watched-{uuid.uuid4().hex[:8]}"
    make_topic(broker.url, topic)
    model_id, package = packages.pack(SECOND)
    kafka.produce(topic, [(model_id.encode(), package, None), (b"text", b'{"a": 1}', None)])
    watching = start(broker.url, "watch", topic)
    lines = [watching.stdout.readline() for _ in range(2)]
    rest = interrupted(watching)

    digest = hashlib.sha256(package).hexdigest()[:12]
    assert lines == [f"{model_id}\t<{len(package):,} bytes, sha256 {digest}>\n", 'text\t{"a": 1}\n']
    assert "-INT-" not in rest and "Traceback" not in rest


@pytest.mark.slow
def test_a_worker_stops_on_ctrl_c_without_int_lines(tmp_path):
    with KafkaCluster() as broker:
        worker = start(
            broker.url, "--datadir", str(tmp_path), "worker", "-l", "info", "--web-port", str(free_port())
        )
        try:
            before = []
            while "[^Worker]: Ready" not in (line := worker.stdout.readline()):
                assert line, "the worker exited:\n" + "".join(before[-30:])
                before.append(line)
            output = interrupted(worker)
        finally:
            worker.kill()

    assert worker.returncode == 0, output[-3000:]
    assert f"Signal received: {signal.SIGINT.value}" in output
    assert "-INT-" not in output
