"""iris_app: score a Kafka stream of iris records with an H2O MOJO, and count the results per window.

`faust -A iris_app worker` asks this package for `app`: only then is the Faust app
built (settings read, agents, tables, commands and pages registered). The pure
modules (models, scoring, classifying, counting, dead_letters, windows,
settings) import without it.
"""

from __future__ import annotations

from typing import Any

__all__ = ["app"]


def __getattr__(name: str) -> Any:
    if name != "app":
        raise AttributeError(f"module 'iris_app' has no attribute {name!r}")
    from . import agents, commands, web  # noqa: F401 -- registers agents, tables, commands, pages
    from .application import app

    return app
