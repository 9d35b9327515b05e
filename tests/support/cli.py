"""The app's commands run as a user runs them: `faust -A iris_app ...` in a process of its own."""

from __future__ import annotations

import os
import subprocess

from .checkout import FAUST, REPO


def command_env(broker_url: str, **env: str) -> dict[str, str]:
    """The environment of a command: this checkout's code, the broker at `broker_url`, and `env`."""
    return {**os.environ, "PYTHONPATH": str(REPO), "KAFKA_BROKER": broker_url, **env}


def run(broker_url: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`faust -A iris_app ARGS` against `broker_url`; stdout and stderr together, as a terminal shows them."""
    return subprocess.run(
        [FAUST, "-A", "iris_app", *args],
        cwd=REPO,
        env=command_env(broker_url, **(env or {})),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=120,
    )


def start(broker_url: str, *args: str) -> subprocess.Popen:
    """`faust -A iris_app ARGS` started, its output (stdout and stderr together) to read as it comes."""
    return subprocess.Popen(
        [FAUST, "-A", "iris_app", *args],
        cwd=REPO,
        env=command_env(broker_url),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
