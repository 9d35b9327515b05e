"""How every Kafka client of the app reaches the cluster: broker addresses, TLS and SASL.

One `Connection`, read once from the environment with the other settings, is handed to
Faust (its broker URL and credentials) and to every client the app makes itself (the
registry's reader and follower, `deploy`, `watch`, the watchdog's probe), so that all of
them reach the same cluster the same way. The password is never part of a repr or a log line.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import faust
from aiokafka.conn import create_conn
from aiokafka.errors import KafkaError, SaslAuthenticationFailed, UnsupportedSaslMechanismError
from aiokafka.helpers import create_ssl_context

DEFAULT_BROKER = "kafka://localhost:9092"
PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


class SettingsError(ValueError):
    """A setting has a value the app cannot run with; the message names it."""


def broker_addresses(value: str) -> list[str]:
    """host:port of each broker in KAFKA_BROKER: `kafka://a:9092;kafka://b:9092`, `kafka://a:9092;b:9092`
    (Faust's form, the scheme given once) or `a:9092,b:9092` (Kafka's), mixed as one likes."""
    addresses = []
    for part in value.replace(",", ";").split(";"):
        part = part.strip()
        if not part:
            continue
        scheme, sep, rest = part.rpartition("://")
        host, colon, port = rest.rpartition(":")
        if (sep and scheme != "kafka") or not host or not colon or not port.isdigit() or "/" in rest:
            raise SettingsError(
                f"KAFKA_BROKER={value!r}: {part!r} is not a broker address such as kafka://host:9092"
            )
        addresses.append(f"{host}:{port}")
    if not addresses:
        raise SettingsError(f"KAFKA_BROKER={value!r} names no broker, e.g. {DEFAULT_BROKER}")
    return addresses


@dataclass(frozen=True)
class Connection:
    servers: tuple[str, ...] = ("localhost:9092",)
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None

    @property
    def url(self) -> str:
        """Every broker in Faust's form, the scheme on each: kafka://a:9092;kafka://b:9092."""
        return ";".join(f"kafka://{server}" for server in self.servers)

    @property
    def bootstrap(self) -> str:
        """Every broker in Kafka's form: a:9092,b:9092."""
        return ",".join(self.servers)

    @property
    def uses_tls(self) -> bool:
        return self.security_protocol in ("SSL", "SASL_SSL")

    @property
    def uses_sasl(self) -> bool:
        return self.security_protocol.startswith("SASL_")

    def ssl_context(self) -> ssl.SSLContext | None:
        """A TLS context trusting KAFKA_SSL_CA_FILE (else the system's CAs), with the client certificate."""
        if not self.uses_tls:
            return None
        return create_ssl_context(
            cafile=str(self.ca_file) if self.ca_file else None,
            certfile=str(self.cert_file) if self.cert_file else None,
            keyfile=str(self.key_file) if self.key_file else None,
        )

    def client_options(self) -> dict[str, Any]:
        """Keyword arguments for an aiokafka consumer, producer or admin client of this cluster."""
        options: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap,
            "security_protocol": self.security_protocol,
        }
        if self.uses_tls:
            options["ssl_context"] = self.ssl_context()
        if self.uses_sasl:
            options |= {
                "sasl_mechanism": self.sasl_mechanism,
                "sasl_plain_username": self.username,
                "sasl_plain_password": self.password,
            }
        return options

    def faust_credentials(self) -> faust.types.auth.CredentialsT | None:
        """The same, as Faust's `broker_credentials`."""
        if self.uses_sasl:
            return faust.SASLCredentials(
                username=self.username,
                password=self.password,
                ssl_context=self.ssl_context(),
                mechanism=self.sasl_mechanism,
            )
        if self.uses_tls:
            return faust.SSLCredentials(self.ssl_context())
        return None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Connection:
        """The connection settings (docs/SPEC.md, "Settings"); an unset or empty variable: its default."""

        def get(name: str) -> str | None:
            value = env.get(name, "").strip()
            return value or None

        def path(name: str) -> Path | None:
            text = get(name)
            if text is not None and not Path(text).is_file():
                raise SettingsError(f"{name}={text!r}: no such file")
            return Path(text) if text else None

        servers = tuple(broker_addresses(get("KAFKA_BROKER") or DEFAULT_BROKER))
        protocol = (get("KAFKA_SECURITY_PROTOCOL") or "PLAINTEXT").upper()
        if protocol not in PROTOCOLS:
            raise SettingsError(f"KAFKA_SECURITY_PROTOCOL={protocol!r} is not one of {', '.join(PROTOCOLS)}")
        mechanism = username = password = None
        if protocol.startswith("SASL_"):
            mechanism = (get("KAFKA_SASL_MECHANISM") or "PLAIN").upper()
            if mechanism not in MECHANISMS:
                raise SettingsError(
                    f"KAFKA_SASL_MECHANISM={mechanism!r} is not one of {', '.join(MECHANISMS)}"
                )
            username = get("KAFKA_SASL_USERNAME")
            password = env.get("KAFKA_SASL_PASSWORD") or None
            password_file = path("KAFKA_SASL_PASSWORD_FILE")
            if password_file is not None:
                password = password_file.read_text().rstrip("\r\n")
            if not username or not password:
                raise SettingsError(
                    f"KAFKA_SECURITY_PROTOCOL={protocol} needs KAFKA_SASL_USERNAME and"
                    " KAFKA_SASL_PASSWORD (or KAFKA_SASL_PASSWORD_FILE)"
                )
        ca_file, cert_file, key_file = (
            path("KAFKA_SSL_CA_FILE"),
            path("KAFKA_SSL_CERT_FILE"),
            path("KAFKA_SSL_KEY_FILE"),
        )
        if (cert_file is None) != (key_file is None):
            raise SettingsError("KAFKA_SSL_CERT_FILE and KAFKA_SSL_KEY_FILE go together: set both or neither")
        connection = cls(servers, protocol, mechanism, username, password, ca_file, cert_file, key_file)
        try:
            connection.ssl_context()
        except (OSError, ssl.SSLError) as e:
            raise SettingsError(
                f"the TLS files (KAFKA_SSL_CA_FILE, _CERT_FILE, _KEY_FILE) cannot be used: {e}"
            ) from None
        return connection


class BrokerUnreachable(RuntimeError):
    """No broker of KAFKA_BROKER could be reached as configured; the message says why and what to change."""


def explain(error: BaseException) -> str:
    """What a failed connection means, and which setting to change."""
    if isinstance(error, SaslAuthenticationFailed):
        return (
            "the broker refused the user name or password: check KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD"
        )
    if isinstance(error, ssl.SSLCertVerificationError):
        return f"the broker's certificate is not trusted ({error.verify_message}): check KAFKA_SSL_CA_FILE"
    if isinstance(error, ssl.SSLError):
        return f"TLS failed ({error.reason}): check KAFKA_SECURITY_PROTOCOL and the KAFKA_SSL_ files"
    if isinstance(error, UnsupportedSaslMechanismError):
        return "the broker does not offer that SASL mechanism: check KAFKA_SASL_MECHANISM"
    if isinstance(error, ConnectionRefusedError):
        return "nothing listens there: check KAFKA_BROKER, or start a broker (`make run` starts one)"
    if isinstance(error, TimeoutError | asyncio.TimeoutError):
        return "no answer in time: check KAFKA_BROKER and KAFKA_SECURITY_PROTOCOL"
    return f"{error.__class__.__name__}: {error}"


async def check_reachable(kafka: Connection, timeout: float = 10.0) -> None:
    """Connect to the brokers of `kafka` one after the other, as the clients would, until one answers;
    raise BrokerUnreachable naming the cause when none does (aiokafka itself only says it could not
    bootstrap, and retries for ever)."""
    options = kafka.client_options()
    auth = {name: options[name] for name in options if name.startswith(("ssl_", "sasl_", "security_"))}
    causes = []
    for server in kafka.servers:
        host, _, port = server.rpartition(":")
        try:
            async with asyncio.timeout(timeout):
                conn = await create_conn(host, int(port), request_timeout_ms=int(timeout * 1000), **auth)
            conn.close()
            return
        except (OSError, KafkaError, TimeoutError) as error:
            causes.append(f"{server}: {explain(error)}")
    raise BrokerUnreachable("cannot reach the Kafka broker at " + "; ".join(causes))
