"""The app's settings: read once from the environment, checked, and passed in."""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from .connection import Connection, SettingsError

__all__ = ["Settings", "SettingsError"]


COMPRESSIONS = ("none", "gzip", "snappy", "lz4", "zstd")
# A Kafka group instance id: what Kafka takes (JoinGroupRequest.validateGroupInstanceId).
INSTANCE_ID = re.compile(r"[a-zA-Z0-9._-]{1,249}")
BOOLEANS = {
    **dict.fromkeys(("1", "true", "yes", "on"), True),
    **dict.fromkeys(("0", "false", "no", "off"), False),
}


@dataclass(frozen=True)
class Settings:
    kafka: Connection = Connection()
    mojo: Path = Path("mojo")  # relative to the working directory, as data/ is
    generator_interval: float = 1.0
    window_seconds: int = 60
    window_grace_seconds: int = 3600
    partitions: int = 4
    stall_seconds: float = 30.0
    max_clock_skew_seconds: int = 300
    producer_max_batch_size: int | None = None
    replication_factor: int | None = None  # None: 3 on a cluster of three brokers or more, else 1
    min_insync_replicas: int | None = None  # None: the replication factor less one, at least 1
    compression: str | None = None  # of the app's own outputs: gzip, snappy, lz4, zstd
    min_accuracy: float = 0.9  # a model must label this share of the bundled data right to serve
    model_check_seconds: float = 60.0  # a model's check may take this long
    faust_pages: bool = False  # Faust's own pages (/router/, /table/, ...) served beside the app's
    # The worker's static group membership: None, the id kept in its data directory; "none", no static
    # membership (a new member at each start).
    group_instance_id: str | None = None

    @property
    def window_ms(self) -> int:
        return self.window_seconds * 1000

    def replication(self, brokers: int) -> tuple[int, int]:
        """(replication factor, min.insync.replicas) of the topics the app creates on a cluster of
        `brokers` brokers: IRIS_REPLICATION_FACTOR (default 3, or 1 below three brokers) and
        IRIS_MIN_INSYNC_REPLICAS (default one less, at least 1), so one broker may be lost at a time."""
        replicas = self.replication_factor or (3 if brokers >= 3 else 1)
        return replicas, self.min_insync_replicas or max(1, replicas - 1)

    @property
    def broker(self) -> str:
        """Every broker in Faust's form (kafka://a:9092;kafka://b:9092)."""
        return self.kafka.url

    @property
    def bootstrap_servers(self) -> list[str]:
        """host:port of each broker, for plain Kafka clients of a plaintext cluster (benchmarks)."""
        return list(self.kafka.servers)

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Settings:
        """Build the settings from `env`; an unset or empty variable takes its default."""
        defaults = cls()

        def get(name: str) -> str | None:
            value = env.get(name, "").strip()
            return value or None

        def number(name: str, default: float, *, integer: bool, minimum: float) -> float:
            text = get(name)
            if text is None:
                return default
            try:
                value = int(text) if integer else float(text)
            except ValueError:
                kind = "an integer" if integer else "a number"
                raise SettingsError(f"{name}={text!r} is not {kind}") from None
            if not math.isfinite(value) or value < minimum:
                raise SettingsError(f"{name}={text!r} must be >= {minimum}")
            return value

        def fraction(name: str, default: float) -> float:
            value = number(name, default, integer=False, minimum=0)
            if value > 1:
                raise SettingsError(f"{name}={get(name)!r} must be between 0 and 1")
            return value

        def flag(name: str, default: bool) -> bool:
            text = get(name)
            if text is None:
                return default
            if text.lower() not in BOOLEANS:
                raise SettingsError(f"{name}={text!r} is not a boolean (true or false, 1 or 0)")
            return BOOLEANS[text.lower()]

        mojo = Path(get("IRIS_MOJO") or defaults.mojo)
        batch = get("IRIS_PRODUCER_MAX_BATCH_SIZE")
        replicas = get("IRIS_REPLICATION_FACTOR")
        min_insync = get("IRIS_MIN_INSYNC_REPLICAS")
        instance = get("IRIS_GROUP_INSTANCE_ID")
        if instance is not None and (not INSTANCE_ID.fullmatch(instance) or instance in (".", "..")):
            raise SettingsError(
                f"IRIS_GROUP_INSTANCE_ID={instance!r}: up to 249 letters, digits, '.', '_' and '-' (or none)"
            )
        compression = (get("IRIS_COMPRESSION") or "none").lower()
        if compression not in COMPRESSIONS:
            raise SettingsError(f"IRIS_COMPRESSION={compression!r} is not one of {', '.join(COMPRESSIONS)}")
        return cls(
            kafka=Connection.from_env(env),
            mojo=mojo,
            generator_interval=number(
                "IRIS_GENERATOR_INTERVAL", defaults.generator_interval, integer=False, minimum=0
            ),
            window_seconds=int(
                number("IRIS_WINDOW_SECONDS", defaults.window_seconds, integer=True, minimum=1)
            ),
            window_grace_seconds=int(
                number(
                    "IRIS_WINDOW_GRACE_SECONDS",
                    defaults.window_grace_seconds,
                    integer=True,
                    minimum=0,
                )
            ),
            partitions=int(number("IRIS_PARTITIONS", defaults.partitions, integer=True, minimum=1)),
            stall_seconds=number("IRIS_STALL_SECONDS", defaults.stall_seconds, integer=False, minimum=1),
            max_clock_skew_seconds=int(
                number(
                    "IRIS_MAX_CLOCK_SKEW_SECONDS", defaults.max_clock_skew_seconds, integer=True, minimum=0
                )
            ),
            producer_max_batch_size=None
            if batch is None
            else int(number("IRIS_PRODUCER_MAX_BATCH_SIZE", 0, integer=True, minimum=1)),
            replication_factor=None
            if replicas is None
            else int(number("IRIS_REPLICATION_FACTOR", 0, integer=True, minimum=1)),
            min_insync_replicas=None
            if min_insync is None
            else int(number("IRIS_MIN_INSYNC_REPLICAS", 0, integer=True, minimum=1)),
            compression=None if compression == "none" else compression,
            min_accuracy=fraction("IRIS_MIN_ACCURACY", defaults.min_accuracy),
            model_check_seconds=number(
                "IRIS_MODEL_CHECK_SECONDS", defaults.model_check_seconds, integer=False, minimum=0.001
            ),
            faust_pages=flag("IRIS_FAUST_PAGES", defaults.faust_pages),
            group_instance_id=instance,
        )
