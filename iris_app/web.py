"""The worker's HTTP pages (Faust web): table state, the model card, health and metrics; each path
answers with and without its trailing slash. Keys another worker holds are asked of it (peers.py)."""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web as aiohttp_web
from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from yarl import URL

from . import counting, metrics, peers
from .application import accuracy_deltas_topic, app, iris_topic, settings, window_deltas_topic
from .health import Watchdog
from .models import SPECIES, UNKNOWN_SPECIES, InvalidCounts, count_rows
from .peers import PeerError
from .tables import ACCURACY_KEY, WINDOW_MS, count_key, window_accuracy, window_counts

log = logging.getLogger(__name__)

WATCH_EVERY = 5.0  # seconds between two looks of the watchdog

watchdog = Watchdog(
    app,
    [t.get_topic_name() for t in (iris_topic, window_deltas_topic, accuracy_deltas_topic)],
    settings.stall_seconds,
    settings.kafka,
)


@app.timer(WATCH_EVERY)
async def watch() -> None:
    """The watchdog's look at every assigned input partition, and at the broker (health.py)."""
    await watchdog.check()


DASHBOARD = Path(__file__).with_name("dashboard.html")
COUNT_KEYS = [(s, p) for s in (*SPECIES, UNKNOWN_SPECIES) for p in SPECIES]


def page(path: str) -> Callable[[Callable], type[View]]:
    """`app.page` at `path` and at its twin with or without the trailing slash: both answer alike."""
    twin = path[:-1] if path.endswith("/") else path + "/"

    def register(handler: Callable) -> type[View]:
        if twin:  # "/" has none
            app.page(twin, name=f"{handler.__name__}-twin")(handler)
        return app.page(path)(handler)

    return register


def json_response(web: View, value: Any, status: int = 200) -> Response:
    return web.bytes(orjson.dumps(value), content_type="application/json", status=status)


def local_windows(table) -> dict[str, list[tuple[int, Any]]]:
    """(startMs, value) of every window held by this worker, by key, newest first: one table scan."""
    windows: dict[str, list[tuple[int, Any]]] = defaultdict(list)
    for (key, (start, _end)), value in table.table.items():
        windows[key].append((round(start * 1000), value))
    for key_windows in windows.values():
        key_windows.sort(reverse=True)
    return windows


def counts_of(species: str, predicted: str, windows: dict[str, list[tuple[int, Any]]]) -> list[dict]:
    return [
        {
            "species": species,
            "predictedSpecies": predicted,
            "startMs": start,
            "endMs": start + WINDOW_MS,
            "count": value["count"],
        }
        for start, value in windows.get(count_key(species, predicted), [])
    ]


async def routed(web: View, path: str, table, key: str, local: Callable[[], Any]) -> Response:
    """Answer from the worker owning `key` of `table`: here, or with that worker's answer at `path`."""
    try:
        owner = peers.owner(app, table.table.name, key)
        if owner is None:
            return json_response(web, local())
        status, body = await peers.get(app.http_client, owner, path, peers.members(app))
    except PeerError as e:
        return peer_failed(web, e)
    return web.bytes(body, content_type="application/json", status=status)


def peer_failed(web: View, error: PeerError) -> Response:
    """503 naming what failed; the peer's address and the error's details are in the log (peers.py)."""
    return json_response(web, {"error": str(error)}, 503)


@page("/")
async def dashboard(web: View, request: Request) -> Response:
    """The live dashboard: the current window's confusion matrix, accuracy over time, records/s."""
    return web.bytes(dashboard_html(), content_type="text/html")


@cache
def dashboard_html() -> bytes:
    return DASHBOARD.read_bytes()


@page("/counts/{species}/{predicted}/")
async def key_counts(web: View, request: Request, species: str, predicted: str) -> Response:
    """The windows of one (species, predictedSpecies), answered by the worker that owns it."""
    if species not in (*SPECIES, UNKNOWN_SPECIES) or predicted not in SPECIES:
        return json_response(
            web, {"error": f"no such (species, predictedSpecies): {species}/{predicted}"}, 404
        )
    return await routed(
        web,
        f"/counts/{species}/{predicted}/",
        window_counts,
        count_key(species, predicted),
        lambda: counts_of(species, predicted, local_windows(window_counts)),
    )


@page("/counts/")
async def all_counts(web: View, request: Request) -> Response:
    """Every (species, predictedSpecies)'s windows, gathered from the workers that own them."""
    windows = local_windows(window_counts)
    counts: list[dict] = []
    elsewhere: list[tuple[str, str, URL]] = []

    async def fetch(species: str, predicted: str, owner: URL, known: set[URL]) -> list[dict]:
        path = f"/counts/{species}/{predicted}/"
        status, body = await peers.get(app.http_client, owner, path, known)
        try:
            if status != 200:
                raise InvalidCounts(f"counts of {species}/{predicted}: status {status}")
            return count_rows(orjson.loads(body), species, predicted, WINDOW_MS)
        except (orjson.JSONDecodeError, InvalidCounts) as e:
            log.warning("%s answered %s with no counts: %r", owner, path, e)
            raise PeerError("the worker holding the key did not answer with counts") from None

    try:
        for species, predicted in COUNT_KEYS:
            owner = peers.owner(app, window_counts.table.name, count_key(species, predicted))
            if owner is None:
                counts += counts_of(species, predicted, windows)
            else:
                elsewhere.append((species, predicted, owner))
        known = peers.members(app)
        for remote in await asyncio.gather(*(fetch(*each, known) for each in elsewhere)):
            counts += remote
    except PeerError as e:
        return peer_failed(web, PeerError(f"some counts are missing: {e}"))
    counts.sort(key=lambda c: (-c["startMs"], c["species"], c["predictedSpecies"]))
    return json_response(web, counts)


@page("/accuracy/")
async def accuracy(web: View, request: Request) -> Response:
    """Each model's accuracy per window over the labelled records (and, with a shadow, the two models'
    agreement), newest first: the messages of iris-classified-window-accuracy."""

    def local() -> list[dict]:
        return [
            message
            for start, value in local_windows(window_accuracy).get(ACCURACY_KEY, [])
            for _, message in counting.window_accuracies(start, value, WINDOW_MS)
        ]

    return await routed(web, "/accuracy/", window_accuracy, ACCURACY_KEY, local)


@page("/model/")
async def model_card(web: View, request: Request) -> Response:
    """The serving and shadow models' cards (their model.json; null: no shadow) and the last model refused."""
    return web.bytes(app.models.describe(), content_type="application/json")


@page("/health")
async def health(web: View, request: Request) -> Response:
    """200 when the worker classifies; 503 with the reason while it cannot."""
    if app.models is None:
        reason = "loading the model"
    elif watchdog.reason is not None:
        reason = watchdog.reason
    elif app.rebalancing:
        reason = "rebalancing partitions"
    elif app.tables.recovery.in_recovery:
        reason = "recovering table state"
    else:
        ready = {"status": "ready", "model": app.models.scorer.model_id}
        if watchdog.cluster_note is not None:
            ready["cluster"] = watchdog.cluster_note
        if app.models.refused is not None:  # serving, but not what iris-models says
            refused = app.models.refused
            ready["refused"] = f"{refused['modelId']} as {refused['role']}: {refused['reason']}"
        return json_response(web, ready)
    return json_response(web, {"status": "not ready", "reason": reason}, 503)


@page("/metrics")
async def prometheus_metrics(web: View, request: Request) -> Response:
    """Prometheus text: records classified, dead letters by reason, scoring time, lag, stalls, accuracy."""
    return web.bytes(generate_latest(metrics.registry), content_type=CONTENT_TYPE_LATEST.split(";")[0])


@aiohttp_web.middleware
async def json_not_found(request: aiohttp_web.Request, handler):
    """Unknown paths answer 404 with a JSON error, like unknown species do."""
    try:
        return await handler(request)
    except aiohttp_web.HTTPNotFound:
        return aiohttp_web.json_response({"error": f"no such page: {request.path}"}, status=404)


@app.on_worker_init.connect
def add_json_not_found(sender, **kwargs) -> None:
    app.web.web_app.middlewares.append(json_not_found)
