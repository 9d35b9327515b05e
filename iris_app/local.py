"""The embedded default: run a worker, on a local broker when KAFKA_BROKER is not set.

`iris-app-local [faust worker options]` starts tansu on 127.0.0.1 (port 9092 when free),
runs `faust -A iris_app worker -l info` against it with a fresh data directory (its web
pages on 127.0.0.1 only; `--web-bind 0.0.0.0` opens them to the network), and
stops the broker when the worker stops. With KAFKA_BROKER set it only runs the worker.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

from .broker import BrokerError, LocalBroker, free_port

DEFAULT_PORT = 9092


def worker_command(args: list[str]) -> list[str]:
    """The worker's command line; its web pages on loopback only, unless `args` bind them elsewhere."""
    faust = Path(sys.executable).with_name("faust")
    binds = any(arg in ("-b", "--web-bind") or arg.startswith("--web-bind=") for arg in args)
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


def main() -> None:
    command = worker_command(sys.argv[1:])
    if os.environ.get("KAFKA_BROKER"):
        os.execv(command[0], command)
    port = DEFAULT_PORT if port_is_free(DEFAULT_PORT) else free_port()
    try:
        # The broker keeps nothing, so neither may the worker: its table state lives in a fresh datadir.
        with LocalBroker(port) as broker, tempfile.TemporaryDirectory(prefix="iris_app-data-") as datadir:
            print(
                f"iris_app: local tansu broker (memory only) on {broker.url}; watch the output with\n"
                f"  KAFKA_BROKER={broker.url} .venv/bin/faust -A iris_app watch iris-classified",
                file=sys.stderr,
                flush=True,
            )
            worker = subprocess.Popen(
                command, env={**os.environ, "KAFKA_BROKER": broker.url, "F_DATADIR": datadir}
            )
            # Ctrl-C reaches the worker through the terminal; SIGTERM is passed on.
            signal.signal(signal.SIGTERM, lambda *_: worker.terminate())
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            code = worker.wait()
    except BrokerError as e:
        sys.exit(f"iris_app: {e}")
    sys.exit(code)
