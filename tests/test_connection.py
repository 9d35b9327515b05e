"""Every Kafka client reaches the cluster as the settings say: broker lists, TLS and SASL."""

from __future__ import annotations

import asyncio

import pytest

from iris_app.broker import free_port
from iris_app.connection import BrokerUnreachable, Connection, broker_addresses, check_reachable
from iris_app.settings import Settings, SettingsError

SASL = {"KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "KAFKA_SASL_USERNAME": "iris"}


@pytest.mark.parametrize(
    "value",
    ["kafka://a:9092;kafka://b:9093", "kafka://a:9092;b:9093", "a:9092,b:9093", "kafka://a:9092, b:9093;"],
)
def test_broker_lists_in_faust_or_kafka_form(value):
    assert broker_addresses(value) == ["a:9092", "b:9093"]


def test_faust_gets_every_broker_with_its_scheme():
    settings = Settings.from_env({"KAFKA_BROKER": "a:9092,b:9093"})
    assert settings.broker == "kafka://a:9092;kafka://b:9093"
    assert settings.kafka.client_options()["bootstrap_servers"] == "a:9092,b:9093"


def test_sasl_settings_reach_the_clients():
    kafka = Connection.from_env(
        {**SASL, "KAFKA_SASL_PASSWORD": "pw", "KAFKA_SASL_MECHANISM": "scram-sha-512"}
    )
    options = kafka.client_options()
    assert options["security_protocol"] == "SASL_PLAINTEXT"
    assert options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert (options["sasl_plain_username"], options["sasl_plain_password"]) == ("iris", "pw")
    assert kafka.faust_credentials().password == "pw"


def test_the_password_can_come_from_a_file(tmp_path):
    secret = tmp_path / "password"
    secret.write_text("from-a-file\n")
    kafka = Connection.from_env({**SASL, "KAFKA_SASL_PASSWORD_FILE": str(secret)})
    assert kafka.password == "from-a-file"


def test_the_password_is_in_no_repr():
    settings = Settings.from_env({**SASL, "KAFKA_SASL_PASSWORD": "hunter2-secret"})
    assert "hunter2-secret" not in repr(settings)
    assert "hunter2-secret" not in repr(settings.kafka.faust_credentials())


@pytest.mark.parametrize(
    ("env", "error"),
    [
        ({"KAFKA_SECURITY_PROTOCOL": "TLS"}, "KAFKA_SECURITY_PROTOCOL='TLS' is not one of"),
        (
            {**SASL, "KAFKA_SASL_MECHANISM": "GSSAPI", "KAFKA_SASL_PASSWORD": "x"},
            "KAFKA_SASL_MECHANISM='GSSAPI'",
        ),
        (SASL, "KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT needs KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD"),
        (
            {"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_CA_FILE": "/nowhere.pem"},
            "KAFKA_SSL_CA_FILE='/nowhere.pem'",
        ),
        ({"KAFKA_SSL_CERT_FILE": "/etc/hostname"}, "KAFKA_SSL_CERT_FILE and KAFKA_SSL_KEY_FILE go together"),
    ],
)
def test_a_bad_connection_setting_is_named(env, error):
    with pytest.raises(SettingsError, match="^" + error.replace("(", r"\(").replace(".", r"\.")):
        Settings.from_env(env)


def test_an_unreachable_broker_is_named_with_what_to_check():
    kafka = Connection((f"127.0.0.1:{free_port()}",))
    with pytest.raises(BrokerUnreachable, match="nothing listens there: check KAFKA_BROKER"):
        asyncio.run(check_reachable(kafka, timeout=5))
