"""The serving record of `iris-models` (key `serving`): which models serve and shadow, which served
before, and the SHA-256 of each one's package; how each command moves it; and its checks, as a worker
reads it from a topic anyone with write access may fill.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any, NamedTuple

import orjson

from . import packages

MAX_ID_CHARS = 256
SHA256 = re.compile(r"[0-9a-f]{64}")
NO_PINS: Mapping[str, str] = MappingProxyType({})


class RegistryError(RuntimeError):
    """The registry cannot do what was asked, or holds a record it refuses; the message says why."""


class Roles(NamedTuple):
    """Which models serve and shadow, which served before, and their packages' SHA-256: the record at
    key `serving`."""

    serving: str | None = None
    shadow: str | None = None
    previous: str | None = None  # served before `serving`: what a rollback serves again
    earlier: tuple[str, ...] = ()  # served before `previous`, oldest first
    pins: Mapping[str, str] = NO_PINS  # model id -> SHA-256 of its package; none in older records

    @property
    def history(self) -> tuple[str, ...]:
        """Every model served before the serving one, oldest first."""
        return self.earlier if self.previous is None else (*self.earlier, self.previous)

    @property
    def named(self) -> set[str]:
        """The models a worker may need next: serving, shadow, and what a rollback serves."""
        return {m for m in (self.serving, self.shadow, self.previous) if m is not None}

    @classmethod
    def of(
        cls,
        serving: str | None,
        shadow: str | None,
        history: Sequence[str],
        pins: Mapping[str, str] = NO_PINS,
    ) -> Roles:
        return cls(serving, shadow, history[-1] if history else None, tuple(history[:-1]), pins)

    def encode(self) -> bytes:
        """{"serving", "shadow", "previous", "history", "sha256"}; "previous" for readers knowing only it."""
        return orjson.dumps(
            {
                "serving": self.serving,
                "shadow": self.shadow,
                "previous": self.previous,
                "history": list(self.history),
                "sha256": dict(self.pins),
            }
        )

    @classmethod
    def decode(cls, raw: bytes) -> Roles:
        """A record of any version (one without "history" has served only "previous" before); a
        RegistryError saying what is wrong with one that is not a serving record."""
        try:
            value = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise RegistryError("the serving record is not JSON") from None
        if not isinstance(value, dict):
            raise RegistryError("the serving record is not a JSON object")
        serving, shadow, previous = (_model_id(value, role) for role in ("serving", "shadow", "previous"))
        history = value.get("history", [previous] if previous else [])
        if not isinstance(history, list) or not all(_is_id(h) for h in history):
            raise RegistryError("the serving record's history is not a list of model ids")
        pins = value.get("sha256", {})
        if not isinstance(pins, dict) or not all(
            _is_id(k) and isinstance(v, str) and SHA256.fullmatch(v) for k, v in pins.items()
        ):
            raise RegistryError("the serving record's sha256 is not a map of model ids to SHA-256 digests")
        return cls.of(serving, shadow, history, MappingProxyType(pins))

    def pinned(self, packages_by_id: Mapping[str, bytes]) -> Roles:
        """These roles, each named model pinned by the SHA-256 of its package in `packages_by_id`."""
        named = {self.serving, self.shadow, *self.history} - {None}
        pins = {m: packages.digest(packages_by_id[m]) for m in sorted(named) if m in packages_by_id}
        return self._replace(pins=MappingProxyType(pins))

    def check_pin(self, model_id: str, package: bytes) -> None:
        """A RegistryError unless `package` is the one the record pins for `model_id` (a record with no
        pins at all, written before pins were, pins nothing)."""
        if not self.pins:
            return
        pin = self.pins.get(model_id)
        if pin is None:
            raise RegistryError(f"the serving record pins no package for {model_id}")
        if packages.digest(package) != pin:
            raise RegistryError(f"the package of {model_id} is not the one the serving record pins (SHA-256)")

    def deploy(self, model_id: str) -> Roles:
        """`model_id` serves (and shadows no more); the model serving until now joins the history."""
        if model_id == self.serving:
            return self
        history = self.history if self.serving is None else (*self.history, self.serving)
        return Roles.of(model_id, None if self.shadow == model_id else self.shadow, history, self.pins)

    def with_shadow(self, model_id: str) -> Roles:
        if model_id == self.serving:
            raise RegistryError(f"{model_id} serves already: a model cannot shadow itself")
        return self._replace(shadow=model_id)

    def promote(self) -> Roles:
        if self.shadow is None:
            raise RegistryError("no shadow model to promote: deploy one with --shadow first")
        return self.deploy(self.shadow)

    def rollback(self) -> Roles:
        """The model served before serves again, and leaves the history: rollbacks walk back in order."""
        if self.previous is None:
            raise RegistryError(
                f"nothing served before {self.serving or 'IRIS_MOJO'}: nothing to roll back to"
            )
        shadow = None if self.shadow == self.previous else self.shadow
        return Roles.of(self.previous, shadow, self.earlier, self.pins)

    def in_words(self) -> str:
        """What serves and what shadows: `serving A; shadow B`, `serving A; no shadow`."""
        serving = self.serving or "IRIS_MOJO (nothing published serves)"
        return f"serving {serving}; " + (f"shadow {self.shadow}" if self.shadow else "no shadow")


def _is_id(value: Any) -> bool:
    return isinstance(value, str) and 0 < len(value) <= MAX_ID_CHARS


def _model_id(record: dict, role: str) -> str | None:
    value = record.get(role)
    if value is not None and not _is_id(value):
        raise RegistryError(f"the serving record's {role} is not a model id or null: {str(value)[:80]!r}")
    return value
