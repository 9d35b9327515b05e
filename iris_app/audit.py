"""Who changed which models serve, and when: `iris-models-audit`, one record per deploy, shadow, promote
and rollback, in a topic that is not compacted (every record is kept); `deploy --history` prints it."""

from __future__ import annotations

import getpass
import re
import socket
import time

import orjson

from . import registry
from .connection import Connection
from .roles import Roles
from .settings import Settings

TOPIC = "iris-models-audit"
CONTROL = re.compile(r"[\x00-\x1f\x7f]")  # not printed: an entry could hold terminal escapes
CONFIG = {"cleanup.policy": "delete", "retention.ms": "-1"}  # an audit trail is kept


def entry(action: str, model_id: str | None, roles: Roles) -> bytes:
    """What was done, to which model, by whom (user and host), when, and what serves after it."""
    return orjson.dumps(
        {
            "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "user": _user(),
            "host": socket.gethostname(),
            "action": action,
            "model": model_id,
            "sha256": roles.pins.get(model_id) if model_id else None,
            "serving": roles.serving,
            "shadow": roles.shadow,
        }
    )


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a container, say)
        return "unknown"


async def record(settings: Settings, action: str, model_id: str | None, roles: Roles) -> None:
    """Append one entry to the audit topic (created if missing)."""
    await registry.ensure_topic(settings, TOPIC, CONFIG)
    await registry.publish(settings, [(action.encode(), entry(action, model_id, roles))], topic=TOPIC)


async def history(kafka: Connection, timeout: float = 30.0) -> list[bytes | None]:
    """Every entry of the audit topic, oldest first."""
    entries: list[bytes | None] = []
    await registry.read_topic(kafka, TOPIC, lambda key, value: entries.append(value), timeout)
    return entries


def line(number: int, value: bytes | None) -> str:
    """One entry as a line: `2026-12-01T22:50:00Z  alice@build-1  deploy  GBM_1 (sha256 1f0c2a9b7d3e):
    serving GBM_1; no shadow`; an entry that does not parse says so."""
    try:
        e = orjson.loads(value or b"")
        who = f"{e['user']}@{e['host']}"
        pin = f" (sha256 {e['sha256'][:12]})" if e.get("sha256") else ""
        what = Roles(e.get("serving"), e.get("shadow")).in_words()
        return CONTROL.sub("?", f"{e['at']}  {who}  {e['action']}  {e.get('model') or '-'}{pin}: {what}")
    except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
        return f"(entry {number} is not an audit record)"
