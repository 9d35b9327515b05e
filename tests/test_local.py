"""The embedded default: with no KAFKA_BROKER, one command runs a broker, a worker and the generator."""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import signal
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from support.checkout import REPO
from support.kafka import Kafka

from iris_app import broker
from iris_app.broker import free_port
from iris_app.local import worker_command

LAUNCHER = str(Path(sys.executable).with_name("iris-app-local"))


@pytest.mark.slow
def test_run_command_streams_on_its_own_broker(tmp_path):
    """It starts a broker, streams generated records through a worker, and stops the broker on SIGTERM."""
    env = {k: v for k, v in os.environ.items() if k != "KAFKA_BROKER"}
    process = subprocess.Popen(
        [LAUNCHER, "--web-port", str(free_port())],
        cwd=REPO,
        env={**env, "IRIS_GENERATOR_INTERVAL": "0.02"},
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    try:
        banner = process.stderr.readline()
        url = re.search(r"local tansu broker \(memory only\) on (kafka://127\.0\.0\.1:\d+)", banner).group(1)
        kafka = Kafka(url)

        classified = kafka.read_until("iris-classified", lambda ms: len(ms) >= 20, timeout=120)
        counts = kafka.read_until("iris-classified-window-counts", lambda ms: len(ms) >= 1)
    finally:
        process.send_signal(signal.SIGTERM)
        returncode = process.wait(timeout=60)

    assert returncode == 0
    for message in classified:
        record = message.json()
        assert record["species"] in {"setosa", "versicolor", "virginica"}
        assert record["predictedSpecies"] in {"setosa", "versicolor", "virginica"}
    assert counts[0].json()["count"] >= 1
    port = int(url.rsplit(":", 1)[1])
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0, "the broker outlived the worker"


def test_run_command_serves_web_pages_on_loopback():
    """Unless told otherwise (--web-bind)."""
    assert worker_command([])[-2:] == ["--web-bind", "127.0.0.1"]
    opened = worker_command(["--web-bind", "0.0.0.0"])
    assert opened.count("--web-bind") == 1 and opened[-1] == "0.0.0.0"


def launch(*args: str, **env: str) -> subprocess.CompletedProcess:
    """The run command, without KAFKA_BROKER, to its end (or 60 s)."""
    clean = {k: v for k, v in os.environ.items() if k != "KAFKA_BROKER"}
    return subprocess.run(
        [LAUNCHER, *args], cwd=REPO, env={**clean, **env}, capture_output=True, text=True, timeout=60
    )


def test_run_command_answers_help_without_a_broker():
    done = launch("--help")
    assert done.returncode == 0 and "--web-port" in done.stdout, done.stdout + done.stderr
    assert "local tansu broker" not in done.stderr, "a broker was started for --help"


def test_run_command_checks_settings_before_a_broker():
    done = launch(IRIS_PARTITIONS="four")
    assert done.returncode == 1
    assert done.stderr.strip() == "iris_app: bad setting: IRIS_PARTITIONS='four' is not an integer"


def test_run_command_takes_a_free_web_port_when_6066_is_busy(tmp_path):
    with socket.socket() as busy:
        busy.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            busy.bind(("127.0.0.1", 6066))
        except OSError:
            pass  # taken already: all the better
        else:
            busy.listen()
        process = subprocess.Popen(
            [LAUNCHER],
            cwd=REPO,
            env={k: v for k, v in os.environ.items() if k != "KAFKA_BROKER"},
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            text=True,
        )
        try:
            banner = process.stderr.readline()
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=60)
    port = re.search(r"the dashboard is at http://127\.0\.0\.1:(\d+)/", banner)
    assert port and port.group(1) != "6066", f"expected a free port other than 6066 in: {banner!r}"


def processes_with(marker: str) -> list[int]:
    """The processes whose environment holds `marker` (the launcher's broker and worker inherit it)."""
    pids = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        with contextlib.suppress(OSError):
            if marker.encode() in environ.read_bytes().split(b"\0"):
                pids.append(int(environ.parent.name))
    return pids


def test_a_launcher_stopped_as_it_starts_leaves_no_broker_or_worker_behind():
    """SIGTERM right after the banner, as the worker starts: both the worker and the broker are stopped."""
    marker = f"IRIS_TEST_LAUNCH={uuid.uuid4().hex}"
    env = {k: v for k, v in os.environ.items() if k != "KAFKA_BROKER"}
    env[marker.split("=")[0]] = marker.split("=")[1]
    process = subprocess.Popen(
        [LAUNCHER], cwd=REPO, env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True
    )
    try:
        assert "the dashboard is at" in process.stderr.readline()
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
    left = processes_with(marker)
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert left == [], "processes left running after the launcher stopped"


def test_free_ports_lie_below_the_kernels_ephemeral_range():
    """No outgoing connection can take a port between free_port's answer and its listener's bind."""
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    assert all(port < low for port in (free_port() for _ in range(50)))


def test_free_port_passes_over_a_port_in_use(monkeypatch):
    with socket.socket() as listener:
        taken = free_port()
        listener.bind(("127.0.0.1", taken))
        listener.listen()
        monkeypatch.setattr(broker, "_LOW", taken)
        monkeypatch.setattr(broker, "_HIGH", taken + 2000)
        monkeypatch.setattr(broker, "_candidates", itertools.count(0))
        assert taken < free_port() < taken + 2000
