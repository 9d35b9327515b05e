"""iris_app: score a Kafka stream of iris records with an H2O MOJO, and count the results per minute."""

from . import agents, commands, tables, web  # noqa: F401 -- registers agents, tables, commands, pages
from .app import app

__all__ = ["app"]
