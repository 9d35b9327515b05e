"""A `faust -A iris_app worker` process for the tests: started, watched for readiness, asked over HTTP."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path

import orjson

from iris_app.broker import free_port, stop_process
from iris_app.kafka_server import die_with_parent

from .checkout import FAUST, REPO

# Workers of the multi-worker tests: the tests produce their own records.
NO_GENERATOR = {"IRIS_GENERATOR_INTERVAL": "0"}
# Faust's own settings, by environment, for every process the tests start (conftest.py; benchmarks run
# with the app's): tansu holds a JoinGroup for half the session timeout, and a killed worker stays in
# the group for one. 6 s, not the app's 10, about halves the time the multi-worker tests spend
# rebalancing. The heartbeat is the app's (a worker learns of a rebalance at its next one).
QUICK_REBALANCE = {"BROKER_SESSION_TIMEOUT": "6", "BROKER_HEARTBEAT_INTERVAL": "1"}
REBALANCE = "Revoking previously assigned partitions"  # aiokafka's line as a worker's rebalance begins


class Worker:
    """A `faust -A iris_app worker` process; its output is kept and watched for a line."""

    def __init__(
        self,
        env: dict[str, str],
        datadir: Path,
        checkout: Path = REPO,
        advertise: str | None = None,
        port: int | None = None,
    ) -> None:
        """`advertise`: the web address the worker gives the group (Faust's NODE_CANONICAL_URL), for the
        other workers to reach it by; else its own. `port`: its web port (a worker restarted where it ran
        before, say); else a free one."""
        self.lines: list[str] = []
        self.datadir = datadir
        self._ready = threading.Event()
        self._line_read = threading.Condition()
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        # Its whole output, beside its data directory (one restarted on the same port: a log of its own).
        self.log = next(
            log
            for n in itertools.count()
            if not Path(log := f"{datadir}-{self.port}{f'-{n}' if n else ''}.log").exists()
        )
        if advertise is None:
            web = ["--web-port", str(self.port)]
        else:  # --web-port would set the advertised address too: the port goes by Faust's variable
            web, env = [], {**env, "WEB_PORT": str(self.port), "NODE_CANONICAL_URL": advertise}
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
                *web,
            ],
            cwd=checkout,
            # PYTHONFAULTHANDLER: SIGABRT prints every thread's stack (see dump_stacks).
            env={**os.environ, "PYTHONFAULTHANDLER": "1", "PYTHONPATH": str(checkout), **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            preexec_fn=die_with_parent,  # a test process killed (a timeout) leaves no worker behind
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        with open(self.log, "w") as log:
            for line in self.process.stdout:
                log.write(line)
                with self._line_read:
                    self.lines.append(line)
                    self._line_read.notify_all()
                if "[^Worker]: Ready" in line:
                    self._ready.set()
        self._ready.set()

    def wait_line(self, text: str, start: int, timeout: float) -> str | None:
        """The first line from `start` on that holds `text`, waited for up to `timeout`; None if none came."""
        deadline = time.monotonic() + timeout
        with self._line_read:
            while True:
                line = next((line for line in self.lines[start:] if text in line), None)
                if line is not None or not self._line_read.wait(deadline - time.monotonic()):
                    return line

    def wait_ready(self, timeout: float = 120) -> None:
        assert self._ready.wait(timeout), "worker not ready in time:\n" + "".join(self.lines[-30:])
        assert self.process.poll() is None, "worker exited:\n" + "".join(self.lines[-30:])

    def get(self, path: str, headers: Mapping[str, str] | None = None) -> tuple[int, str, bytes]:
        """(status, content type, body) of an HTTP GET on the worker's web server, with `headers`."""
        request = urllib.request.Request(self.url + path, headers=dict(headers or {}))
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
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

    def stop_within(self, timeout: float) -> tuple[int | None, str]:
        """SIGTERM, a clean stop: its exit status within `timeout`, or None and every thread's stack (it is
        aborted) when it hangs."""
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout), ""
        except subprocess.TimeoutExpired:
            return None, self.dump_stacks()

    def dump_stacks(self) -> str:
        """Abort a hung worker, and return its last lines with every thread's stack."""
        self.process.send_signal(signal.SIGABRT)
        self.process.wait(timeout=30)
        self._reader.join(timeout=30)  # it has read to the end of the output
        return "".join(self.lines[-120:])

    def stop(self) -> None:
        stop_process(self.process, timeout=30)


def report(workers: list[Worker]) -> str:
    """What each worker says of itself: its lag, stalls and expired deltas, its last log lines, and where its
    whole log is (beside its data directory)."""
    parts = []
    for i, worker in enumerate(workers):
        metrics = worker.get("/metrics")[2].decode().splitlines()
        said = [
            line
            for line in metrics
            if line.startswith(("iris_consumer_lag", "iris_partition", "iris_deltas"))
        ]
        parts.append(
            f"--- worker {i} ({worker.log}):\n" + "\n".join(said) + "\n" + "".join(worker.lines[-25:])
        )
    return "\n".join(parts)
