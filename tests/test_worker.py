"""The app's Faust worker (faust_ext/worker.py), without a broker."""

from __future__ import annotations

import asyncio
import gc

from iris_app.faust_ext.app import App
from iris_app.faust_ext.worker import Worker


def test_a_ready_worker_keeps_its_start_up_objects_out_of_the_garbage_collectors_scans():
    """JPype runs a full collection at each of the JVM's: frozen, start-up's objects are not walked again."""
    app = App("worker-test", broker="kafka://localhost:9")
    made_at_start_up = [app]  # a container: the collector tracks it
    try:
        asyncio.run(Worker(app, loglevel="warning").on_startup_finished())
        assert gc.get_freeze_count() > 0
        assert not any(obj is made_at_start_up for obj in gc.get_objects())  # its three generations
    finally:
        gc.unfreeze()
