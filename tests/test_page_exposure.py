"""What a worker's pages give away: Faust's own pages only when a setting turns them on; requests to other
workers only to the group's members, with none of the client's headers; model cards re-encoded, never
their bytes; and error answers that name the cause without a directory or a worker's address."""

from __future__ import annotations

import asyncio
import io
import shutil
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from types import SimpleNamespace

import aiohttp
import orjson
import pytest
from support.checkout import REPO
from support.models import DEFAULT_ID
from support.tap import HeaderTap
from support.worker import NO_GENERATOR, Worker
from yarl import URL

from iris_app import peers, registry
from iris_app.broker import free_port
from iris_app.connection import Connection
from iris_app.health import Watchdog
from iris_app.kafka_server import KafkaCluster
from iris_app.model_checks import Check
from iris_app.models import SPECIES, UNKNOWN_SPECIES
from iris_app.serving import ModelServer

FAUST_PAGES = ["/router/", "/table/", "/graph/", "/assignment/", "/performance/"]
# Faust's own variables for its pages, all on: IRIS_FAUST_PAGES off must win over them.
FAUST_PAGES_ON = {
    f"APP_WEB_{name}_ENABLED": "true" for name in ("ROUTER", "TABLES", "GRAPH", "STATS", "METRICS")
}
# Every page a worker may answer with another worker's help.
SHARED_PAGES = [
    "/counts/",
    "/accuracy/",
    *(f"/counts/{s}/{p}/" for s in (*SPECIES, UNKNOWN_SPECIES) for p in SPECIES),
]
CLIENT_HEADERS = {
    "Cookie": "session=secret",
    "Authorization": "Bearer secret",
    "X-Forwarded-For": "203.0.113.7",
    "X-Client-Secret": "secret",
}


@dataclass
class Pair:
    front: Worker  # asked by the tests: IRIS_FAUST_PAGES off, Faust's own variables on
    behind: Worker  # IRIS_FAUST_PAGES on; the group reaches it through the tap
    tap: HeaderTap


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    """Two workers sharing the partitions; the second gives the group the tap's address, so what the first
    sends it passes through the tap."""
    tap = HeaderTap()
    with KafkaCluster() as broker:
        env = {"KAFKA_BROKER": broker.url, **NO_GENERATOR}
        front = Worker({**env, **FAUST_PAGES_ON}, tmp_path_factory.mktemp("front"))
        behind = Worker(
            {**env, "IRIS_FAUST_PAGES": "1"}, tmp_path_factory.mktemp("behind"), advertise=tap.url
        )
        tap.upstream = behind.url
        try:
            for worker in (front, behind):
                worker.wait_ready()
            for worker in (front, behind):  # both in the group, partitions assigned and recovered
                status, health = worker.health_within(200, timeout=120)
                assert status == 200, f"{worker.url}/health: {status} {health}"
            yield Pair(front, behind, tap)
        finally:
            front.stop()
            behind.stop()


@pytest.mark.parametrize("path", FAUST_PAGES)
def test_faust_pages_answer_a_json_404_by_default(pair, path):
    """Even with Faust's own APP_WEB_*_ENABLED variables set."""
    status, content_type, body = pair.front.get(path)
    assert (status, content_type) == (404, "application/json"), (path, body[:200])
    assert orjson.loads(body) == {"error": f"no such page: {path}"}


def test_iris_faust_pages_turns_faust_pages_on(pair):
    assert [pair.behind.get(path)[0] for path in ("/router/", "/table/")] == [200, 200]


def test_a_forwarded_request_carries_none_of_the_clients_headers(pair):
    pair.tap.requests.clear()
    answers = {path: pair.front.get(path, CLIENT_HEADERS)[0] for path in SHARED_PAGES}

    assert set(answers.values()) == {200}, answers
    assert pair.tap.requests, "no page asked the worker behind the tap: nothing was forwarded"
    client_names = {name.lower() for name in CLIENT_HEADERS}
    leaked = [
        (path, name)
        for path, headers in pair.tap.requests
        for name in headers
        if name.lower() in client_names
    ]
    assert not leaked, f"client headers the other worker received: {leaked}"


def test_a_worker_that_does_not_answer_is_named_without_its_address(pair):
    with pair.tap.silent():
        answers = [pair.front.get(path) for path in SHARED_PAGES]

    failed = [orjson.loads(body)["error"] for status, _, body in answers if status == 503]
    assert failed, "no page needed the worker behind the tap"
    for error in failed:
        assert "did not answer" in error, error
        assert "127.0.0.1" not in error and str(pair.tap.port) not in error, error


def test_a_request_to_an_address_outside_the_group_is_not_sent():
    tap = HeaderTap()
    member = URL(f"http://127.0.0.1:{free_port()}")

    async def ask() -> None:
        async with aiohttp.ClientSession() as session:
            await peers.get(session, URL(tap.url), "/counts/", known={member})

    with pytest.raises(peers.PeerError, match="^the worker holding the key is not a member of the group$"):
        asyncio.run(ask())
    assert tap.requests == []


def test_a_card_that_is_no_json_object_shows_as_the_model_id(tmp_path):
    """Its bytes never reach the page: here they would make the page's JSON say something else."""
    mojo = shutil.copytree(REPO / "mojo", tmp_path / "mojo")
    (mojo / "model.json").write_bytes(b'{"modelId": "forged"}, "refused": {"modelId": "forged"}')
    server = ModelServer(mojo, tmp_path / "models", Check.bundled())
    server.start(registry.Registry())

    page = orjson.loads(server.describe())

    model_id = server.scorer.model_id  # the MOJO's file name: the card gives none
    assert page == {
        "serving": {"modelId": model_id, "note": "invalid card: not a JSON object"},
        "shadow": None,
        "refused": None,
    }


def test_a_refusal_shows_no_directory_of_the_worker(tmp_path):
    """A package whose MOJO is no zip: the loader's reason names the folder it was unpacked into."""
    package = io.BytesIO()
    with zipfile.ZipFile(package, "w") as archive:
        archive.writestr("model.json", b'{"modelId": "hollow"}')
        archive.writestr("hollow.zip", b"not a zip")
    server = ModelServer(REPO / "mojo", tmp_path / "models", Check.bundled())
    published = registry.Registry(models={"hollow": package.getvalue()})
    server.start(published)
    published.roles = registry.Roles(DEFAULT_ID, "hollow", None)

    asyncio.run(server.on_change(published))

    refused = orjson.loads(server.describe())["refused"]
    assert refused["modelId"] == "hollow"
    assert "cannot load the MOJO hollow.zip" in refused["reason"], refused
    assert str(tmp_path) not in refused["reason"], refused


def test_health_names_an_unreachable_broker_without_its_address():
    port = free_port()  # nothing listens there
    app = SimpleNamespace(
        conf=SimpleNamespace(id="exposure-test"),
        consumer=SimpleNamespace(assignment=set),
        rebalancing=False,
        tables=SimpleNamespace(recovery=SimpleNamespace(in_recovery=False)),
    )
    watchdog = Watchdog(app, ["iris"], stall_seconds=30, kafka=Connection((f"127.0.0.1:{port}",)))

    async def look() -> None:
        await watchdog.check()
        await watchdog.probe.stop()

    asyncio.run(look())

    assert watchdog.reason is not None and watchdog.reason.startswith("cannot reach the broker: ")
    assert str(port) not in watchdog.reason and "127.0.0.1" not in watchdog.reason, watchdog.reason
