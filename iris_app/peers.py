"""Requests from one worker's pages to another's: only to the web addresses of the consumer group's
members, as the last assignment names them, and with none of the client's headers.

An answer a peer fails to give is a PeerError whose message names the cause but not the peer's address;
the log says which peer, and what went wrong.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection

import aiohttp
import faust
from yarl import URL

log = logging.getLogger(__name__)

PEER_TIMEOUT = 5.0  # seconds another worker may take to answer a forwarded request


class PeerError(RuntimeError):
    """Another worker did not answer in time, or answered something other than what was asked."""


def members(app: faust.App) -> set[URL]:
    """The web address of every member of the consumer group, as the last assignment names them."""
    return {URL(url) for url in app.router.tables_metadata()}


def owner(app: faust.App, table: str, key: str) -> URL | None:
    """The web address of the member that holds `key` of the table named `table`; None: this worker."""
    try:
        url = app.router.key_store(table, key)
    except KeyError:  # no assignment yet
        raise PeerError("no worker holds this key yet: partitions are being assigned") from None
    here = app.conf.canonical_url
    if (url.host, url.port) == (here.host, here.port):
        return None
    return url


async def get(
    session: aiohttp.ClientSession, url: URL, path: str, known: Collection[URL]
) -> tuple[int, bytes]:
    """GET `path` of the member at `url` with the session's own headers only: its status and JSON body.

    A `url` not among the `known` members' addresses is refused before any connection is made.
    """
    if url not in known:
        log.warning("Not forwarding %s to %s: not a member of the group's last assignment", path, url)
        raise PeerError("the worker holding the key is not a member of the group")
    try:
        async with asyncio.timeout(PEER_TIMEOUT):
            async with session.get(url.with_path(path), allow_redirects=False) as response:
                body = await response.read()
                content_type = response.content_type
                status = response.status
    except TimeoutError:
        log.warning("%s did not answer %s within %.0f s", url, path, PEER_TIMEOUT)
        raise PeerError(f"the worker holding the key did not answer within {PEER_TIMEOUT:.0f} s") from None
    except aiohttp.ClientError as e:
        log.warning("%s did not answer %s: %r", url, path, e)
        raise PeerError("the worker holding the key did not answer") from None
    if content_type != "application/json":
        log.warning("%s answered %s with %d %s, not JSON", url, path, status, content_type)
        raise PeerError("the worker holding the key did not answer with JSON")
    return status, body
