"""The app's settings: read once from the environment, checked, and passed in."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

DEFAULT_BROKER = "kafka://localhost:9092"


class SettingsError(ValueError):
    """A setting has a value the app cannot run with; the message names it."""


@dataclass(frozen=True)
class Settings:
    broker: str = DEFAULT_BROKER
    mojo: Path = Path("mojo")  # relative to the working directory, as data/ is
    generator_interval: float = 1.0
    window_seconds: int = 60
    window_grace_seconds: int = 3600
    partitions: int = 4
    stall_seconds: float = 30.0
    max_clock_skew_seconds: int = 300
    producer_max_batch_size: int | None = None

    @property
    def window_ms(self) -> int:
        return self.window_seconds * 1000

    @property
    def bootstrap_servers(self) -> list[str]:
        """host:port of each broker URL, for plain Kafka clients."""
        return [url.split("://", 1)[1] for url in self.broker.split(";")]

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

        broker = get("KAFKA_BROKER") or defaults.broker
        for url in broker.split(";"):
            if not url.partition("://")[2]:
                raise SettingsError(f"KAFKA_BROKER={broker!r} is not a broker URL such as {DEFAULT_BROKER}")
        mojo = Path(get("IRIS_MOJO") or defaults.mojo)
        batch = get("IRIS_PRODUCER_MAX_BATCH_SIZE")
        return cls(
            broker=broker,
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
        )
