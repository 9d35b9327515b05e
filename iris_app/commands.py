"""The app's own commands: `train`, `deploy`, `watch TOPIC`, `topology` (`faust -A iris_app COMMAND`).

A failure the user can fix (no broker there, a model refused, training failed) stops a
command with one line naming the cause and the fix, and a non-zero exit; `-l debug` or
`--debug` (before the command) prints the traceback above it.
"""

from __future__ import annotations

import hashlib
import re
import sys
import traceback
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaConnectionError, KafkaError
from faust.cli import argument, option

from . import audit, packages, registry
from .application import app, settings
from .connection import BrokerUnreachable, check_reachable
from .faust_ext.worker import AppCommand
from .model_checks import Check, checked_scorer
from .scoring import ModelError
from .topology import as_mermaid, as_text, describe
from .training import TrainingError
from .training import train as train_model

CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


class Command(AppCommand):
    """A command of the app: a failure the user causes ends it with one line (`failure`)."""

    abstract = True

    async def execute(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return await super().execute(*args, **kwargs)
        except (BrokerUnreachable, KafkaError, TimeoutError, registry.RegistryError, ModelError) as e:
            if self.debug or (self.loglevel or "").lower() == "debug":
                traceback.print_exception(e, file=sys.stderr)
            raise SystemExit(f"iris_app: {failure(e)}") from None


def failure(error: Exception) -> str:
    """What went wrong, and what to change, in one line."""
    at = settings.kafka.bootstrap
    if isinstance(error, BrokerUnreachable):
        return str(error)
    if isinstance(error, KafkaConnectionError):  # a connection, but no Kafka answer on it
        return (
            f"no Kafka broker answers at {at} (it accepts connections, but does not speak Kafka as"
            " configured): check KAFKA_BROKER and KAFKA_SECURITY_PROTOCOL"
        )
    if isinstance(error, TimeoutError):
        return f"the Kafka broker at {at} did not answer in time: check KAFKA_BROKER, or try again"
    if isinstance(error, KafkaError):
        return f"the Kafka broker at {at} answered with an error: {error}"
    return f"deploy refused: {error}"


@app.command(
    option("--max-models", type=int, default=20, show_default=True, help="AutoML's max_models."),
    option(
        "--max-runtime-secs", type=int, default=0, show_default=True, help="AutoML's time budget; 0 for none."
    ),
    option("--data", type=Path, default=Path("data/iris.csv"), show_default=True),
    option("--out", type=Path, default=None, help="Where to write the model [default: IRIS_MOJO]."),
    option("--deploy", "deploy_it", is_flag=True, help="Then publish it to iris-models and serve it."),
    base=Command,
)
async def train(
    self: AppCommand, max_models: int, max_runtime_secs: int, data: Path, out: Path | None, deploy_it: bool
) -> None:
    """Train a model with H2O AutoML and write the leader's MOJO; with --deploy, serve it too."""
    out = out or settings.mojo
    if deploy_it:
        await check_reachable(settings.kafka)  # before training: the broker is known to answer
    try:
        card = train_model(data, out, max_models=max_models, max_runtime_secs=max_runtime_secs)
    except TrainingError as e:
        raise SystemExit(f"iris_app: training failed: {e}") from None
    holdout = card["holdout"]
    self.say(
        f"Wrote {card['modelId']} to {out}/ — holdout accuracy {holdout['accuracy']:.3f},"
        f" logloss {holdout['logloss']:.4f}"
    )
    if deploy_it:
        self.say(await publish_model(out, shadow=False))


@app.command(
    argument("path", required=False, type=Path),
    option("--shadow", is_flag=True, help="Publish it as the shadow model instead of serving it."),
    option("--promote", is_flag=True, help="Serve the shadow model."),
    option("--rollback", is_flag=True, help="Serve again the model served before; again: the one before it."),
    option("--list", "list_models", is_flag=True, help="List the published models, their roles and metrics."),
    option(
        "--history", is_flag=True, help="Print who deployed, shadowed, promoted and rolled back what, when."
    ),
    base=Command,
)
async def deploy(
    self: AppCommand,
    path: Path | None,
    shadow: bool,
    promote: bool,
    rollback: bool,
    list_models: bool,
    history: bool,
) -> None:
    """Publish a model (default IRIS_MOJO) to iris-models and serve it: workers switch without a restart."""
    if not (list_models or promote or rollback or history):
        self.say(await publish_model(path or settings.mojo, shadow=shadow))
        return
    await check_reachable(settings.kafka)
    if history:
        entries = await audit.history(settings.kafka)
        self.say("\n".join(audit.line(n, value) for n, value in enumerate(entries)) or "nothing deployed yet")
    elif list_models:
        self.say(listing(await registry.read(settings.kafka)))
    else:
        published = await registry.read(settings.kafka)
        roles, records = served(published)
        changed = roles.promote() if promote else roles.rollback()
        changed = await publish(published.models, records, changed)
        await audit.record(settings, "promote" if promote else "rollback", changed.serving, changed)
        done = f"Promoted {roles.shadow}" if promote else f"Rolled back from {roles.serving}"
        self.say(f"{done}: {changed.in_words()}; {served_before(changed)}")


def served(published: registry.Registry) -> tuple[registry.Roles, dict[str, bytes]]:
    """The roles, with IRIS_MOJO's model serving when nothing published does (the workers serve it
    then), and the packages to publish with them: IRIS_MOJO's, so that it can be served again."""
    roles = published.roles
    if roles.serving is not None:
        return roles, {}
    try:
        model_id, package = packages.pack(settings.mojo)
    except ModelError as e:
        raise registry.RegistryError(
            f"the workers serve IRIS_MOJO until a first deploy, which publishes it too (to roll back to): {e}"
        ) from None
    records = {} if model_id in published.models else {model_id: package}
    return roles.deploy(model_id), records


async def publish(known: dict[str, bytes], new: dict[str, bytes], roles: registry.Roles) -> registry.Roles:
    """Publish the `new` packages (by model id), then the roles, each model they name pinned by its
    package (among `known` and `new`): the roles as published."""
    records = [(model_id.encode(), package) for model_id, package in new.items()]
    pinned = roles.pinned({**known, **new})
    await registry.publish(settings, [*records, (registry.SERVING_KEY, pinned.encode())])
    return pinned


def served_before(roles: registry.Roles) -> str:
    """What a rollback would serve."""
    if roles.previous is None:
        return f"nothing served before {roles.serving}"
    return f"--rollback serves {roles.previous}"


async def publish_model(folder: Path, *, shadow: bool) -> str:
    """Check a model as a worker would, publish it, and make it serve (or shadow); what was done.

    The first deploy of any kind publishes IRIS_MOJO's model too, as the one serving until then."""
    checked_scorer(
        folder, Check.bundled(settings.min_accuracy, settings.model_check_seconds)
    )  # as workers do
    model_id, package = packages.pack(folder)
    await check_reachable(settings.kafka)
    published = await registry.read(settings.kafka)
    roles, records = served(published)
    first = next(iter(records), None)
    roles = roles.with_shadow(model_id) if shadow else roles.deploy(model_id)
    records[model_id] = package
    roles = await publish(published.models, records, roles)
    await audit.record(settings, "shadow" if shadow else "deploy", model_id, roles)
    published = f"Published {model_id}" + (
        f" and {first} (IRIS_MOJO, served until now)" if first not in (None, model_id) else ""
    )
    return f"{published}: {roles.in_words()}; {served_before(roles)}"


def listing(published: registry.Registry) -> str:
    """One line per model: id, role, holdout accuracy and logloss from its card; then the roles."""
    roles = published.roles
    models = dict(published.models)
    unpublished = ""
    if roles.serving is None:  # the workers serve IRIS_MOJO
        try:
            fallback_id, package = packages.pack(settings.mojo)
        except ModelError as e:
            return "\n".join([*model_lines(models, roles), f"IRIS_MOJO\tserving\t{e}"])
        roles = roles._replace(serving=fallback_id)
        models.setdefault(fallback_id, package)
        unpublished = f"; {fallback_id} is IRIS_MOJO's model, not published yet"
    return "\n".join([*model_lines(models, roles), roles.in_words() + unpublished])


def model_lines(models: dict[str, bytes], roles: registry.Roles) -> list[str]:
    names = {model_id: "earlier" for model_id in roles.earlier}
    names.update({roles.previous: "previous", roles.shadow: "shadow", roles.serving: "serving"})
    lines = []
    for model_id, package in sorted(models.items()):
        role = names.get(model_id, "-")
        try:
            holdout = packages.card_of(package).get("holdout") or {}
            metrics = f"accuracy {holdout['accuracy']:.3f}, logloss {holdout['logloss']:.4f}"
        except ModelError as e:
            metrics = str(e)
        except (KeyError, TypeError, ValueError, AttributeError):
            metrics = "no holdout metrics"
        lines.append(f"{model_id}\t{role}\t{metrics}")
    return lines


@app.command(
    argument("topic"),
    option("--from-beginning/--from-end", default=True, show_default=True),
    base=Command,
)
async def watch(self: AppCommand, topic: str, from_beginning: bool) -> None:
    """Print a topic's messages as `key<TAB>value` lines, following new ones until Ctrl-C; a binary
    key or value (a model package, say) as its size and SHA-256."""
    await check_reachable(settings.kafka)
    consumer = AIOKafkaConsumer(
        topic,
        **settings.kafka.client_options(),
        auto_offset_reset="earliest" if from_beginning else "latest",
        enable_auto_commit=False,
        max_partition_fetch_bytes=registry.MAX_MESSAGE_BYTES,
        fetch_max_bytes=registry.MAX_MESSAGE_BYTES,
    )
    try:
        await consumer.start()
        async for message in consumer:
            print(f"{shown(message.key)}\t{shown(message.value)}", flush=True)
    finally:
        await consumer.stop()


def shown(data: bytes | None) -> str:
    """A key or value as text, or, when binary (not UTF-8, or holding control characters), as a
    summary: `<83,264 bytes, sha256 1f0c2a9b7d3e>`."""
    if data is None:
        return ""
    try:
        text = data.decode()
    except UnicodeDecodeError:
        text = None
    if text is None or CONTROL.search(text):
        return f"<{len(data):,} bytes, sha256 {hashlib.sha256(data).hexdigest()[:12]}>"
    return text


@app.command(base=Command)
async def topology(self: AppCommand) -> None:
    """Print the agents, topics and tables and their links, as text and as a Mermaid diagram."""
    agents = describe(app)
    self.say(as_text(agents))
    self.say("\n```mermaid\n" + as_mermaid(agents) + "\n```")
