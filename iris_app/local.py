"""The embedded default: run a worker, on a local broker when KAFKA_BROKER is not set.

`iris-app-local [faust worker options]` starts a local broker on 127.0.0.1 — tansu, memory only
(port 9092 when free), or with IRIS_LOCAL_BROKER=kafka Apache Kafka in KRaft mode (`make run
BROKER=kafka`) — runs `faust -A iris_app worker -l info` against it with a fresh data directory
(its web pages on 127.0.0.1 only, on port 6066 or a free one; `--web-bind 0.0.0.0` opens them to
the network), and stops the broker when the worker stops. With KAFKA_BROKER set it only runs the
worker. Settings are checked, and `--help` answered, before any broker starts.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

from .broker import BrokerError, LocalBroker, free_port
from .settings import Settings, SettingsError

DEFAULT_PORT = 9092
DEFAULT_WEB_PORT = 6066
BROKERS = ("tansu", "kafka")


def given(args: list[str], *names: str) -> bool:
    """Whether one of the options `names` is among `args` (as `--name value` or `--name=value`)."""
    return any(arg in names or arg.split("=", 1)[0] in names for arg in args)


def worker_command(args: list[str]) -> list[str]:
    """The worker's command line; its web pages on loopback only, unless `args` bind them elsewhere."""
    faust = Path(sys.executable).with_name("faust")
    binds = given(args, "-b", "--web-bind")
    return [
        str(faust),
        "-A",
        "iris_app",
        "worker",
        "-l",
        "info",
        *([] if binds else ["--web-bind", "127.0.0.1"]),
        *args,
    ]


def port_is_free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def local_broker(kind: str) -> contextlib.AbstractContextManager:
    """The broker `make run` starts (IRIS_LOCAL_BROKER): tansu on 9092 when free, or Apache Kafka."""
    if kind == "kafka":
        from .kafka_server import KafkaCluster

        return KafkaCluster(1)
    return LocalBroker(DEFAULT_PORT if port_is_free(DEFAULT_PORT) else free_port())


class Stop:
    """SIGTERM passed on to the worker: at once if it runs, as it starts if the broker is still starting
    (a launcher that only died would leave its broker and worker running)."""

    def __init__(self) -> None:
        self.requested = False
        self.worker: subprocess.Popen | None = None

    def __call__(self, signum: int, frame: object) -> None:
        self.requested = True
        if self.worker is not None:
            self.worker.terminate()

    def run(self, command: list[str], env: dict[str, str]) -> int:
        """Run the worker unless a stop came first; its exit code."""
        if self.requested:
            return 0
        self.worker = subprocess.Popen(command, env=env)
        if self.requested:  # came as it started
            self.worker.terminate()
        return self.worker.wait()


def main() -> None:
    args = sys.argv[1:]
    if not given(args, "-p", "--web-port"):
        web_port = DEFAULT_WEB_PORT if port_is_free(DEFAULT_WEB_PORT) else free_port()
        args = [*args, "--web-port", str(web_port)]
    command = worker_command(args)
    if os.environ.get("KAFKA_BROKER") or given(args, "-h", "--help"):
        os.execv(command[0], command)
    kind = os.environ.get("IRIS_LOCAL_BROKER", "tansu").strip() or "tansu"
    try:
        if kind not in BROKERS:
            raise SettingsError(f"IRIS_LOCAL_BROKER={kind!r} is not one of {', '.join(BROKERS)}")
        Settings.from_env()
    except SettingsError as e:
        sys.exit(f"iris_app: bad setting: {e}")
    web_port = args[args.index("--web-port") + 1] if "--web-port" in args else "the --web-port given"
    stop = Stop()
    signal.signal(signal.SIGTERM, stop)
    try:
        # The broker keeps nothing, so neither may the worker: its table state lives in a fresh datadir.
        with local_broker(kind) as broker, tempfile.TemporaryDirectory(prefix="iris_app-data-") as datadir:
            name = "Apache Kafka" if kind == "kafka" else "tansu broker (memory only)"
            print(
                f"iris_app: local {name} on {broker.url}; the dashboard is at http://127.0.0.1:{web_port}/\n"
                f"  watch the output with: KAFKA_BROKER={broker.url}"
                " .venv/bin/faust -A iris_app watch iris-classified",
                file=sys.stderr,
                flush=True,
            )
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the worker through the terminal
            code = stop.run(command, env={**os.environ, "KAFKA_BROKER": broker.url, "F_DATADIR": datadir})
    except BrokerError as e:
        sys.exit(f"iris_app: {e}")
    sys.exit(code)
