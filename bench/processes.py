"""The processes a benchmark runs (the app's workers, or the reference loop), their CPU time and peak RSS."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from iris_app.broker import free_port

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


class Processes:
    """The implementation's processes; their CPU time and peak RSS are read when they are reaped."""

    def __init__(
        self,
        kind: str,
        workers: int,
        broker: str,
        datadir: Path,
        checkout: Path = REPO,
        env: dict | None = None,
    ) -> None:
        env = {**os.environ, "KAFKA_BROKER": broker, "IRIS_GENERATOR_INTERVAL": "0", **(env or {})}
        env["PYTHONPATH"] = str(checkout)
        self.started = time.monotonic()
        self.procs = []
        for i in range(workers):
            if kind.startswith("app"):
                command = [
                    str(BIN / "faust"),
                    "-A",
                    "iris_app",
                    "--datadir",
                    str(datadir / str(i)),
                    "worker",
                    "-l",
                    "info",  # as the README runs it (at "warn" Faust sets the root logger to DEBUG)
                    "--web-port",
                    str(free_port()),
                ]
            else:
                command = [sys.executable, str(REPO / "bench" / "reference.py")]
            quiet = {
                "stdout": subprocess.DEVNULL,
                "stderr": subprocess.DEVNULL if kind.startswith("app") else None,
            }
            self.procs.append(subprocess.Popen(command, cwd=checkout, env=env, **quiet))

    def exited(self) -> bool:
        return any(proc.poll() is not None for proc in self.procs)

    def stop(self) -> tuple[float, float]:
        """Stop them all; return (CPU seconds in all, the largest peak RSS in MB)."""
        cpu, rss = 0.0, 0.0
        for proc in self.procs:
            rss = max(rss, peak_rss_mb(proc.pid))
            proc.terminate()
            _, _, usage = os.wait4(proc.pid, 0)
            proc.returncode = 0
            cpu += usage.ru_utime + usage.ru_stime
        return cpu, rss


def peak_rss_mb(pid: int) -> float:
    """VmHWM: the process's own peak (getrusage's counts the parent's pages it was forked with)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")
