"""Every record of `iris-models` is checked before a worker uses it: the serving record, each package, each
model (in process; on Kafka: test_registry_on_kafka.py)."""

from __future__ import annotations

import asyncio
import io
import zipfile

import pytest
from support.checkout import REPO
from support.models import DEFAULT_ID, SECOND, SECOND_ID

from iris_app import packages, registry
from iris_app.model_checks import Check, checked_scorer
from iris_app.registry import RegistryError, Roles
from iris_app.scoring import ModelError
from iris_app.serving import ModelServer

POOR = REPO / "tests" / "models" / "poor"  # an iris classifier trained on shuffled species


def zipped(entries: dict[str, bytes], compression: int = zipfile.ZIP_STORED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def serving_of(server: ModelServer) -> tuple[str, str | None]:
    serving, shadow = server.scorers()
    return serving.model_id, shadow and shadow.model_id


@pytest.fixture
def server(tmp_path) -> ModelServer:
    return ModelServer(REPO / "mojo", tmp_path / "models", Check.bundled())


@pytest.mark.parametrize(
    "record, says",
    [
        (b'{"serving": ["x"]}', "serving is not a model id"),
        (b'{"serving": "a", "shadow": 7}', "shadow is not a model id"),
        (b'{"serving": "a", "history": [null]}', "history is not a list of model ids"),
        (b'{"serving": "a", "sha256": {"a": "not hex"}}', "sha256 is not a map"),
        (b'["serving"]', "not a JSON object"),
        (b"\xff", "not JSON"),
    ],
)
def test_a_serving_record_of_the_wrong_shape_is_refused(record: bytes, says: str):
    with pytest.raises(RegistryError, match=says):
        Roles.decode(record)


def test_a_refused_serving_record_leaves_the_roles_and_the_next_one_applies():
    published = registry.Registry()
    published.apply(registry.SERVING_KEY, Roles("a").encode())
    published.apply(registry.SERVING_KEY, b'{"serving": ["x"]}')
    assert published.roles.serving == "a" and "serving is not a model id" in published.problem
    published.apply(registry.SERVING_KEY, Roles("b").encode())
    assert (published.roles.serving, published.problem) == ("b", None)


def test_a_worker_refuses_a_bad_serving_record_and_follows_the_next(server: ModelServer):
    second_id, package = packages.pack(SECOND)
    published = registry.Registry(models={second_id: package})
    server.start(published)
    published.apply(registry.SERVING_KEY, b'{"serving": ["x"]}')
    asyncio.run(server.on_change(published))
    assert server.refused["modelId"] == "the serving record" and serving_of(server) == (DEFAULT_ID, None)
    published.apply(registry.SERVING_KEY, Roles(second_id).pinned(published.models).encode())
    asyncio.run(server.on_change(published))
    assert serving_of(server) == (SECOND_ID, None)


@pytest.mark.parametrize("name", ["..", "../escape.zip", "sub/model.json", "h2o-genmodel.jar", "run.sh"])
def test_a_package_entry_of_an_unexpected_name_is_refused(tmp_path, name: str):
    package = zipped({"model.zip": b"x", name: b"y"})
    with pytest.raises(ModelError, match="unexpected entry"):
        packages.unpack(package, tmp_path / "store", "m", REPO / "mojo" / "h2o-genmodel.jar")
    assert not (tmp_path / "store").exists()


def test_a_package_of_more_entries_than_a_model_has_is_refused(tmp_path):
    package = zipped({"model.zip": b"x", "model.json": b"{}", "predictions.csv": b"", "other.zip": b""})
    with pytest.raises(ModelError, match="4 entries: at most 3"):
        packages.unpack(package, tmp_path / "store", "m", REPO / "mojo" / "h2o-genmodel.jar")


def test_a_package_inflating_past_64_mib_is_refused_before_a_byte_is_inflated(tmp_path):
    bomb = zipped({"model.zip": bytes(packages.MAX_INFLATED_BYTES + 1)}, zipfile.ZIP_DEFLATED)
    assert len(bomb) < 1_000_000  # a small package, as published
    with pytest.raises(ModelError, match="would inflate to 67,108,865 bytes"):
        packages.unpack(bomb, tmp_path / "store", "m", REPO / "mojo" / "h2o-genmodel.jar")
    assert not (tmp_path / "store").exists()


def test_each_unpacking_writes_a_fresh_folder(tmp_path):
    _, package = packages.pack(SECOND)
    jar = REPO / "mojo" / "h2o-genmodel.jar"
    first = packages.unpack(package, tmp_path, "m", jar)
    (first / "left-over").write_bytes(b"x")
    second = packages.unpack(package, tmp_path, "m", jar)
    assert second != first and not (second / "left-over").exists()


def test_a_package_other_than_the_pinned_one_is_refused(server: ModelServer):
    second_id, package = packages.pack(SECOND)
    _, other = packages.pack(REPO / "mojo")
    published = registry.Registry(models={second_id: package})
    server.start(published)
    published.roles = Roles(second_id).pinned({second_id: other})
    asyncio.run(server.on_change(published))
    assert serving_of(server) == (DEFAULT_ID, None)
    assert "not the one the serving record pins" in server.refused["reason"]


def test_a_model_below_the_accuracy_floor_is_refused():
    with pytest.raises(ModelError, match=r"labels \d+\.\d% of the bundled data right: at least 90\.0%"):
        checked_scorer(POOR, Check.bundled(min_accuracy=0.9))


def test_a_model_check_over_its_time_limit_is_refused():
    with pytest.raises(ModelError, match=r"took over 0\.001 s \(IRIS_MODEL_CHECK_SECONDS\)"):
        checked_scorer(SECOND, Check.bundled(seconds=0.001))


def test_a_worker_starting_on_a_refused_model_serves_the_one_served_before(server: ModelServer):
    second_id, package = packages.pack(SECOND)
    published = registry.Registry(models={second_id: package, "broken": b"not a package"})
    published.roles = Roles(DEFAULT_ID).deploy(second_id).deploy("broken").pinned(published.models)
    server.start(published)
    assert serving_of(server) == (SECOND_ID, None)
    assert server.refused["modelId"] == "broken" and "not a readable zip" in server.refused["reason"]


def test_a_bounded_registry_keeps_only_the_packages_a_worker_may_need():
    published, roles = registry.Registry(bounded=True), Roles()
    for model_id in "abcdef":
        published.apply(model_id.encode(), model_id.encode() * 1000)
        roles = roles.deploy(model_id)
        published.apply(registry.SERVING_KEY, roles.encode())
    # Serving, what a rollback serves, and the two latest named by neither.
    assert set(published.models) == {"c", "d", "e", "f"}
    published.apply(registry.SERVING_KEY, roles.rollback().rollback().rollback().encode())
    assert published.missing() == {"b"}  # named again: read again from the topic (registry.read)


def test_only_the_serving_and_shadow_models_stay_unpacked(server: ModelServer, tmp_path):
    second_id, package = packages.pack(SECOND)
    default_id, default = packages.pack(REPO / "mojo")
    published = registry.Registry(models={second_id: package, default_id: default})
    server.start(published)
    for roles in (Roles(second_id), Roles(second_id).deploy(default_id)):
        published.roles = roles.pinned(published.models)
        asyncio.run(server.on_change(published))
    assert serving_of(server) == (DEFAULT_ID, None)
    assert list((tmp_path / "models").iterdir()) == [server.scorer.path.parent]
