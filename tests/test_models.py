"""A model's roles, as the registry moves them and a model server follows them in process, and the models
refused before they are published. On Kafka, with workers: test_deploy.py and test_shadow.py."""

from __future__ import annotations

import asyncio
import os

import pytest
from support.checkout import REPO
from support.models import DEFAULT_ID, SECOND, SECOND_ID, deploy

from iris_app import packages, registry
from iris_app.model_checks import Check
from iris_app.registry import RegistryError, Roles
from iris_app.scoring import ModelError
from iris_app.serving import ModelServer


def test_roles_move_as_each_command_says():
    """deploy, with_shadow and promote move the roles; a rollback with nothing to go back to, a promotion
    with no shadow refused (rollbacks through the history: test_history.py)."""
    roles = Roles().deploy("a")
    assert (roles.serving, roles.shadow, roles.previous) == ("a", None, None)
    roles = roles.deploy("b").with_shadow("c")
    assert (roles.serving, roles.shadow, roles.previous) == ("b", "c", "a")
    promoted = roles.promote()
    assert (promoted.serving, promoted.shadow, promoted.previous) == ("c", None, "b")
    rolled_back = roles.rollback()
    assert (rolled_back.serving, rolled_back.shadow, rolled_back.previous) == ("a", "c", None)
    assert Roles.decode(roles.encode()) == roles
    with pytest.raises(RegistryError, match="nothing to roll back to"):
        Roles().deploy("a").rollback()
    with pytest.raises(RegistryError, match="no shadow model"):
        Roles().deploy("a").promote()


def test_a_model_server_follows_the_roles(tmp_path):
    """In process: a shadow, then its promotion (no second load), then a broken shadow refused."""
    server = ModelServer(REPO / "mojo", tmp_path / "models", Check.bundled())
    second_id, package = packages.pack(SECOND)
    published = registry.Registry(models={second_id: package, "broken": b"not a package"})

    def serving_and_shadow() -> tuple[str, str | None]:
        serving, shadow = server.scorers()
        return serving.model_id, shadow and shadow.model_id

    server.start(published)  # nothing published serves: IRIS_MOJO
    assert serving_and_shadow() == (DEFAULT_ID, None)

    published.roles = Roles(DEFAULT_ID, second_id, None)
    asyncio.run(server.on_change(published))
    assert serving_and_shadow() == (DEFAULT_ID, SECOND_ID)
    shadow = server.shadow

    published.roles = published.roles.promote()
    asyncio.run(server.on_change(published))
    assert serving_and_shadow() == (SECOND_ID, None)
    assert server.scorer is shadow  # the model loaded as the shadow serves: no second load

    published.roles = published.roles.with_shadow("broken")
    asyncio.run(server.on_change(published))
    assert serving_and_shadow() == (SECOND_ID, None)  # refused: nothing changes
    assert (server.refused["modelId"], server.refused["role"]) == ("broken", "shadow")
    assert "not a zip" in server.refused["reason"]


def test_deploy_refuses_a_non_iris_model_locally():
    """Before it reaches the broker: none listens where the command is pointed."""
    refused = deploy("kafka://127.0.0.1:1", str(REPO / "tests" / "models" / "regression"))  # no broker there

    assert refused.returncode != 0
    assert refused.stderr.strip().endswith(
        "is a regression model (it predicts a number), not an iris classifier"
    )
    assert refused.stderr.startswith("iris_app: deploy refused: ") and "Traceback" not in refused.stderr


def test_a_model_over_16_mib_is_refused(tmp_path):
    """Before it is published: packages.pack refuses it."""
    (tmp_path / "big.zip").write_bytes(os.urandom(packages.MAX_MODEL_BYTES))  # and its card: over the limit
    (tmp_path / "h2o-genmodel.jar").symlink_to(REPO / "mojo" / "h2o-genmodel.jar")

    with pytest.raises(
        ModelError, match=r"^big is 16,777,\d+ bytes packed: models are limited to 16,777,216$"
    ):
        packages.pack(tmp_path)
