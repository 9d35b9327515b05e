"""Settings come from the environment, with the SPEC's defaults, and bad values are named."""

from __future__ import annotations

from pathlib import Path

import pytest

from iris_app.connection import Connection
from iris_app.settings import Settings, SettingsError


def test_defaults_are_the_specs():
    settings = Settings.from_env({})
    assert settings.broker == "kafka://localhost:9092"
    assert settings.mojo == Path("mojo")
    assert settings.generator_interval == 1.0
    assert (settings.window_seconds, settings.window_grace_seconds) == (60, 3600)
    assert settings.partitions == 4
    assert settings.producer_max_batch_size is None
    assert settings.faust_pages is False
    assert settings.group_instance_id is None  # the id of the data directory


def test_every_setting_is_read():
    settings = Settings.from_env(
        {
            "KAFKA_BROKER": "kafka://a:9092;kafka://b:9092",
            "IRIS_MOJO": "/models/x.zip",
            "IRIS_GENERATOR_INTERVAL": "0",
            "IRIS_WINDOW_SECONDS": "10",
            "IRIS_WINDOW_GRACE_SECONDS": "0",
            "IRIS_PARTITIONS": "8",
            "IRIS_PRODUCER_MAX_BATCH_SIZE": "1",
            "IRIS_FAUST_PAGES": "true",
            "IRIS_GROUP_INSTANCE_ID": "rack-1.worker_2",
        }
    )
    assert settings == Settings(
        kafka=Connection(("a:9092", "b:9092")),
        mojo=Path("/models/x.zip"),
        generator_interval=0,
        window_seconds=10,
        window_grace_seconds=0,
        partitions=8,
        producer_max_batch_size=1,
        faust_pages=True,
        group_instance_id="rack-1.worker_2",
    )


@pytest.mark.parametrize(
    ("name", "value", "error"),
    [
        (
            "KAFKA_BROKER",
            "http://localhost:9092",
            "KAFKA_BROKER='http://localhost:9092': 'http://localhost:9092'",
        ),
        ("KAFKA_BROKER", "kafka://localhost", "KAFKA_BROKER='kafka://localhost': 'kafka://localhost' is not"),
        ("IRIS_GENERATOR_INTERVAL", "fast", "IRIS_GENERATOR_INTERVAL='fast' is not a number"),
        ("IRIS_GENERATOR_INTERVAL", "-1", "IRIS_GENERATOR_INTERVAL='-1' must be >= 0"),
        ("IRIS_GENERATOR_INTERVAL", "nan", "IRIS_GENERATOR_INTERVAL='nan' must be >= 0"),
        ("IRIS_WINDOW_SECONDS", "0", "IRIS_WINDOW_SECONDS='0' must be >= 1"),
        ("IRIS_WINDOW_SECONDS", "1.5", "IRIS_WINDOW_SECONDS='1.5' is not an integer"),
        ("IRIS_PARTITIONS", "four", "IRIS_PARTITIONS='four' is not an integer"),
        ("IRIS_PRODUCER_MAX_BATCH_SIZE", "0", "IRIS_PRODUCER_MAX_BATCH_SIZE='0' must be >= 1"),
        ("IRIS_FAUST_PAGES", "maybe", "IRIS_FAUST_PAGES='maybe' is not a boolean"),
        ("IRIS_GROUP_INSTANCE_ID", "worker 1", "IRIS_GROUP_INSTANCE_ID='worker 1': up to 249 letters"),
        ("IRIS_GROUP_INSTANCE_ID", "..", "IRIS_GROUP_INSTANCE_ID='..': up to 249 letters"),
    ],
)
def test_a_bad_value_is_refused_with_its_name(name, value, error):
    with pytest.raises(SettingsError, match="^" + error.replace("(", r"\(").replace(".", r"\.")):
        Settings.from_env({name: value})
