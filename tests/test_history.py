"""A model's history is never lost: what serves is always published, and rollbacks walk back in order."""

from __future__ import annotations

import asyncio
import logging

import orjson
import pytest
from support.checkout import REPO
from support.cli import run
from support.models import DEFAULT_ID, SECOND, SECOND_ID

from iris_app import packages, registry
from iris_app.kafka_server import KafkaCluster
from iris_app.model_checks import Check
from iris_app.registry import RegistryError, Roles
from iris_app.serving import ModelServer
from iris_app.settings import Settings


def test_rollbacks_walk_back_through_every_model_served_before_in_order():
    roles = Roles().deploy("a").deploy("b").with_shadow("s").deploy("c").promote()
    assert (roles.serving, roles.shadow, roles.history) == ("s", None, ("a", "b", "c"))
    served = [roles.serving]
    while roles.previous is not None:
        roles = roles.rollback()
        served.append(roles.serving)
    assert served == ["s", "c", "b", "a"]
    with pytest.raises(RegistryError, match="^nothing served before a: nothing to roll back to$"):
        roles.rollback()


def test_the_roles_record_keeps_the_history_and_reads_a_record_without_one():
    roles = Roles().deploy("a").deploy("b").deploy("c").with_shadow("s")
    assert orjson.loads(roles.encode()) == {
        "serving": "c",
        "shadow": "s",
        "previous": "b",
        "history": ["a", "b"],
        "sha256": {},
    }
    assert Roles.decode(roles.encode()) == roles
    older = Roles.decode(b'{"serving": "c", "shadow": null, "previous": "b"}')
    assert (older.history, older.rollback().serving) == (("b",), "b")
    assert Roles.decode(b'{"serving": "c", "shadow": null, "previous": null}').history == ()


def test_the_roles_in_words_name_what_serves_and_shadows_never_none():
    assert Roles("a", "b").in_words() == "serving a; shadow b"
    assert Roles("a").in_words() == "serving a; no shadow"
    assert "None" not in Roles().in_words()
    with pytest.raises(RegistryError, match="a serves already"):
        Roles("a").with_shadow("a")


def test_every_role_change_of_a_worker_is_logged(tmp_path, caplog):
    server = ModelServer(REPO / "mojo", tmp_path / "models", Check.bundled())
    published = registry.Registry(models=dict([packages.pack(SECOND), packages.pack(REPO / "mojo")]))
    caplog.set_level(logging.INFO, logger="iris_app.serving")

    def logged() -> list[str]:
        lines = [r.getMessage() for r in caplog.records if r.name == "iris_app.serving"]
        caplog.clear()
        return lines

    server.start(published)
    assert logged() == [f"Serving model: {DEFAULT_ID}"]
    published.roles = Roles(DEFAULT_ID).with_shadow(SECOND_ID)
    asyncio.run(server.on_change(published))
    assert logged() == [f"Shadow model: {SECOND_ID}"]
    published.roles = published.roles.promote()
    asyncio.run(server.on_change(published))
    assert logged() == [
        f"Serving model: {SECOND_ID} (was {DEFAULT_ID})",
        f"No shadow model (was {SECOND_ID})",
    ]
    published.roles = published.roles.rollback()
    asyncio.run(server.on_change(published))
    assert logged() == [f"Serving model: {DEFAULT_ID} (was {SECOND_ID})"]


@pytest.mark.slow
def test_a_first_deploy_as_shadow_publishes_iris_mojo_serving_and_rollback_returns_to_it():
    with KafkaCluster() as broker:
        listed_before = run(broker.url, "deploy", "--list")
        shadowed = run(broker.url, "deploy", "--shadow", str(SECOND))
        pointer = asyncio.run(registry.read(Settings.from_env({"KAFKA_BROKER": broker.url}).kafka))
        listed = run(broker.url, "deploy", "--list")
        promoted = run(broker.url, "deploy", "--promote")
        rolled_back = run(broker.url, "deploy", "--rollback")
        beyond = run(broker.url, "deploy", "--rollback")
        redeployed = run(broker.url, "deploy", str(SECOND))

    outputs = [listed_before, shadowed, listed, promoted, rolled_back, redeployed]
    for done in outputs:
        assert done.returncode == 0, done.stdout
        assert "None" not in done.stdout
    assert listed_before.stdout.splitlines()[0].startswith(f"{DEFAULT_ID}\tserving\taccuracy 0.926")
    # The first deploy, a shadow, publishes the model served from IRIS_MOJO as serving.
    assert (pointer.roles.serving, pointer.roles.shadow) == (DEFAULT_ID, SECOND_ID)
    assert set(pointer.models) == {DEFAULT_ID, SECOND_ID}
    assert f"serving {DEFAULT_ID}; shadow {SECOND_ID}" in shadowed.stdout
    assert listed.stdout.splitlines() == [
        f"{DEFAULT_ID}\tserving\taccuracy 0.926, logloss 0.2223",
        f"{SECOND_ID}\tshadow\taccuracy 0.963, logloss 0.0869",
        f"serving {DEFAULT_ID}; shadow {SECOND_ID}",
    ]
    assert promoted.stdout.strip() == (
        f"Promoted {SECOND_ID}: serving {SECOND_ID}; no shadow; --rollback serves {DEFAULT_ID}"
    )
    assert rolled_back.stdout.strip() == (
        f"Rolled back from {SECOND_ID}: serving {DEFAULT_ID}; no shadow; nothing served before {DEFAULT_ID}"
    )
    # A second rollback walks no further back than the history goes: it does not swap forward again.
    assert beyond.returncode != 0
    assert beyond.stdout == (
        f"iris_app: deploy refused: nothing served before {DEFAULT_ID}: nothing to roll back to\n"
    )
    assert redeployed.stdout.strip() == (
        f"Published {SECOND_ID}: serving {SECOND_ID}; no shadow; --rollback serves {DEFAULT_ID}"
    )


@pytest.mark.slow
def test_a_record_naming_only_a_shadow_gets_iris_mojo_serving_to_roll_back_to():
    with KafkaCluster() as broker:
        second_id, package = packages.pack(SECOND)
        settings = Settings.from_env({"KAFKA_BROKER": broker.url})
        legacy = b'{"serving": null, "shadow": "%s", "previous": null}' % second_id.encode()
        asyncio.run(
            registry.publish(settings, [(second_id.encode(), package), (registry.SERVING_KEY, legacy)])
        )
        listed = run(broker.url, "deploy", "--list")
        promoted = run(broker.url, "deploy", "--promote")
        rolled_back = run(broker.url, "deploy", "--rollback")
        published = asyncio.run(registry.read(settings.kafka))

    assert f"{DEFAULT_ID}\tserving\t" in listed.stdout and f"{SECOND_ID}\tshadow\t" in listed.stdout
    assert promoted.returncode == 0 and f"--rollback serves {DEFAULT_ID}" in promoted.stdout
    assert rolled_back.returncode == 0, rolled_back.stdout
    assert published.roles.serving == DEFAULT_ID and published.roles.shadow is None
    assert DEFAULT_ID in published.models
