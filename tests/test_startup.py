"""A worker that cannot do its job stops at start-up with one readable line and a non-zero exit."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import pytest
from support.checkout import FAUST, REPO


def start_worker(tmp_path: Path, *options: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [FAUST, "-A", "iris_app", "--datadir", str(tmp_path / "data"), "worker", "-l", "info", *options],
        cwd=REPO,
        # No broker listens on port 1: the worker must stop before it needs one.
        env={**os.environ, "KAFKA_BROKER": "kafka://127.0.0.1:1", **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def the_one_error_line(run: subprocess.CompletedProcess) -> str:
    """The worker's whole output, which must be one line: no banner, no "Stopping..." lines after it."""
    lines = (run.stdout + run.stderr).splitlines()
    assert len(lines) == 1 and lines[0].startswith("iris_app: "), "\n".join(lines)
    return lines[0]


def test_a_missing_model_stops_the_worker(tmp_path):
    run = start_worker(tmp_path, IRIS_MOJO=str(tmp_path / "nowhere"))
    assert run.returncode == 2
    assert "iris_app: cannot start: no MOJO at" in the_one_error_line(run)


def test_a_corrupt_model_stops_the_worker(tmp_path):
    (tmp_path / "broken.zip").write_bytes(b"not a zip at all")
    (tmp_path / "h2o-genmodel.jar").symlink_to(REPO / "mojo" / "h2o-genmodel.jar")
    run = start_worker(tmp_path, IRIS_MOJO=str(tmp_path / "broken.zip"))
    assert run.returncode == 2
    assert "iris_app: cannot start: cannot load the MOJO" in the_one_error_line(run)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("IRIS_PARTITIONS", "many"),
        ("KAFKA_BROKER", "localhost"),
        ("IRIS_WINDOW_SECONDS", "-60"),
        ("BROKER_SESSION_TIMEOUT", "ten"),  # one of Faust's own, by its environment name
    ],
)
def test_a_bad_setting_stops_the_worker(tmp_path, name, value):
    run = start_worker(tmp_path, **{name: value})
    assert run.returncode == 1
    assert the_one_error_line(run).startswith(f"iris_app: bad setting: {name}={value!r}")


def test_an_unreachable_broker_stops_the_worker_in_one_line(tmp_path):
    run = start_worker(tmp_path)
    assert run.returncode == 1
    assert the_one_error_line(run).endswith("check KAFKA_BROKER, or start a broker (`make run` starts one)")


def test_a_model_below_the_accuracy_floor_stops_the_worker(tmp_path):
    run = start_worker(tmp_path, IRIS_MOJO=str(REPO / "tests" / "models" / "poor"))
    assert run.returncode == 2
    assert "of the bundled data right: at least 90.0% is needed (IRIS_MIN_ACCURACY)" in the_one_error_line(
        run
    )


def test_a_busy_web_port_stops_the_worker_in_one_line(tmp_path):
    with socket.create_server(("0.0.0.0", 0)) as busy:
        port = busy.getsockname()[1]
        run = start_worker(tmp_path, "--web-port", str(port))
    assert run.returncode == 1
    assert the_one_error_line(run) == (
        f"iris_app: cannot serve the pages on port {port} (Address already in use):"
        " choose another with --web-port after `worker`"
    )
