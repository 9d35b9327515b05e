"""The workers that run the app and its commands.

- Ctrl-C stops a worker or a command without mode's `-INT- -INT- -INT- -INT- -INT- -INT-`
  line. mode's Worker prints that line on every SIGINT (`Worker._on_sigint`), then schedules
  the stop that SIGTERM schedules too; here SIGINT schedules the same stop and prints nothing
  (the stop itself is logged at info level, "Signal received: SIGINT").
- `faust worker` runs the app's `preflight()` as its Worker is made, before the command
  prints its banner: a worker that cannot start says so in one line, not under forty.
"""

from __future__ import annotations

import signal

import faust
import mode
from faust.cli import AppCommand as FaustAppCommand


class Worker(faust.Worker):
    """`faust worker`'s worker (the app's `Worker` setting)."""

    def __init__(self, app: faust.App, *services, **kwargs) -> None:
        app.preflight()
        super().__init__(app, *services, **kwargs)

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
