"""An HTTP proxy on loopback that notes each request's path and headers, then passes the request on (with
none of its headers): what one worker's web server receives from another, seen from the receiving side."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import aiohttp
from aiohttp import web

from iris_app.broker import free_port


class HeaderTap:
    """Listens at `url` in a thread of its own; each request is noted in `requests` as (path, headers)
    and answered with `upstream`'s answer to the same path, once `upstream` is set. Within `silent()`, each
    connection is closed on its request without an answer, as a worker that dies would."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.upstream: str | None = None  # the address passed on to, set once the worker behind has one
        self.requests: list[tuple[str, dict[str, str]]] = []
        self._silent = False
        self._loop = asyncio.new_event_loop()
        started = threading.Event()
        threading.Thread(target=self._run, args=(started,), daemon=True).start()
        started.wait()

    def _run(self, started: threading.Event) -> None:
        asyncio.set_event_loop(self._loop)
        server = web.Application()
        server.router.add_route("*", "/{path:.*}", self._pass_on)
        runner = web.AppRunner(server, access_log=None)
        self._loop.run_until_complete(runner.setup())
        self._loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", self.port).start())
        started.set()
        self._loop.run_forever()

    @contextmanager
    def silent(self) -> Iterator[None]:
        self._silent = True
        try:
            yield
        finally:
            self._silent = False

    async def _pass_on(self, request: web.Request) -> web.StreamResponse:
        self.requests.append((request.path_qs, dict(request.headers)))
        if self._silent:
            request.transport.close()
            raise asyncio.CancelledError  # nothing more is said on this connection
        if self.upstream is None:
            return web.json_response({"error": "nothing behind the tap yet"}, status=503)
        async with aiohttp.ClientSession() as session:
            async with session.get(self.upstream + request.path_qs, allow_redirects=False) as answer:
                body = await answer.read()
                return web.Response(body=body, status=answer.status, content_type=answer.content_type)
