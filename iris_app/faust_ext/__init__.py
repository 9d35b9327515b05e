"""Everything in iris_app that reaches into Faust's or aiokafka's internals, in one place.

Each piece says what it changes and why; nothing outside this package uses a
private name of Faust or aiokafka. They were written against the versions in
WRITTEN_FOR, and `check_versions()` stops a worker on any other:

- `transport.py`: the consumer's drain loop without its per-message tasks and
  locks (speed), which never marks a record read across a rebalance (the
  stall) and delivers a partition's records only in order from where it was
  seeked to; commits that never pass an unacknowledged record (Faust's
  off-by-one, faust-streaming #606), and of revoked partitions; a producer
  that sends record batches and keeps every topic's metadata; the app's hooks
  that install them (`App`).
- `batches.py`: an agent's events taken a batch at a time from its channel
  buffer, tracked for acknowledgement as Faust's stream tracks them.
- `tables.py`: windowed tables that expire windows by event time, and whose
  changelog writes can be awaited.
- `schema.py`: raw bytes in and out, without Faust's codec lookups per message.

`check_env_settings()` builds Faust's own settings at start, so that a bad one
given by environment variable stops the worker with one line naming it.
"""

from __future__ import annotations

import os
from importlib.metadata import PackageNotFoundError, version

import faust

WRITTEN_FOR = {"faust-streaming": "0.15.3", "aiokafka": "0.14.0"}


class IncompatibleVersion(RuntimeError):
    """An installed library is not the version these extensions were written against."""


def check_versions(expected: dict[str, str] = WRITTEN_FOR) -> None:
    """Raise IncompatibleVersion unless every package in `expected` is installed at that version."""
    for package, wanted in expected.items():
        try:
            found = version(package)
        except PackageNotFoundError:
            found = "not installed"
        if found != wanted:
            raise IncompatibleVersion(
                f"iris_app.faust_ext was written for {package} {wanted}, found {found}:"
                f" pip install {package}=={wanted} (or check the extensions against {found} first)"
            )


def check_env_settings(app: faust.App) -> None:
    """Build the app's Faust settings now, so that a bad one given by environment (e.g.
    BROKER_SESSION_TIMEOUT) raises ValueError naming it: Faust reads them on first use, with a traceback."""
    try:
        app.conf
    except (TypeError, ValueError) as error:
        for setting in app.Settings.SETTINGS.values():
            name = setting.env_name
            if name and name in os.environ:
                try:  # the settings with this variable alone
                    app.Settings("check", env={name: os.environ[name]})
                except (TypeError, ValueError) as e:
                    raise ValueError(f"{name}={os.environ[name]!r}: {e}") from None
        raise ValueError(f"a Faust setting: {error}") from None
