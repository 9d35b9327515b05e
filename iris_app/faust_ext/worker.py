"""The workers that run the app and its commands.

- Ctrl-C stops a worker or a command without mode's `-INT- -INT- -INT- -INT- -INT- -INT-`
  line. mode's Worker prints that line on every SIGINT (`Worker._on_sigint`), then schedules
  the stop that SIGTERM schedules too; here SIGINT schedules the same stop and prints nothing
  (the stop itself is logged at info level, "Signal received: SIGINT").
- `faust worker` runs the app's `preflight()` as its Worker is made, before the command
  prints its banner: a worker that cannot start says so in one line, not under forty.
- Once the worker is ready, what its start-up made (Faust, the app, the JVM bridge) is moved
  out of the reach of Python's cyclic garbage collector (`gc.freeze`). JPype (1.7.1) runs a
  full collection from its reference-queue thread each time the JVM collects, which scoring
  makes it do every few thousand records; each one walked every object of the process. Frozen,
  a worker working off a backlog spends about a fifth less CPU per record.
"""

from __future__ import annotations

import gc
import signal

import faust
import mode
from faust.cli import AppCommand as FaustAppCommand


class Worker(faust.Worker):
    """`faust worker`'s worker (the app's `Worker` setting)."""

    def __init__(self, app: faust.App, *services, **kwargs) -> None:
        app.preflight()
        super().__init__(app, *services, **kwargs)

    async def on_startup_finished(self) -> None:
        """Faust's ("Ready"), then start-up's objects frozen out of the garbage collector's scans."""
        await super().on_startup_finished()
        gc.collect()  # start-up's garbage goes first: frozen, it would never be freed
        gc.freeze()

    def _on_sigint(self) -> None:
        self._flag_as_shutdown_by_signal()  # as faust.Worker does on SIGINT and SIGTERM
        self._schedule_shutdown(signal.SIGINT)


class CommandWorker(mode.Worker):
    """The worker an app command runs in."""

    def _on_sigint(self) -> None:
        self._schedule_shutdown(signal.SIGINT)


class AppCommand(FaustAppCommand):
    """The base of the app's commands (`app.command(base=...)`): they run in a CommandWorker."""

    abstract = True

    @property
    def _Worker(self) -> type[mode.Worker]:
        return CommandWorker
