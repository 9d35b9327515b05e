"""The app's own commands: `train`, `deploy`, `watch TOPIC`, `topology` (`faust -A iris_app COMMAND`)."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer
from faust.cli import AppCommand, argument, option

from . import registry
from .application import app, settings
from .samples import feature_rows
from .scoring import ModelError, checked_scorer
from .topology import as_mermaid, as_text, describe
from .training import TrainingError
from .training import train as train_model


@app.command(
    option("--max-models", type=int, default=20, show_default=True, help="AutoML's max_models."),
    option(
        "--max-runtime-secs", type=int, default=0, show_default=True, help="AutoML's time budget; 0 for none."
    ),
    option("--data", type=Path, default=Path("data/iris.csv"), show_default=True),
    option("--out", type=Path, default=None, help="Where to write the model [default: IRIS_MOJO]."),
    option("--deploy", "deploy_it", is_flag=True, help="Then publish it to iris-models and serve it."),
)
async def train(
    self: AppCommand, max_models: int, max_runtime_secs: int, data: Path, out: Path | None, deploy_it: bool
) -> None:
    """Train a model with H2O AutoML and write the leader's MOJO; with --deploy, serve it too."""
    out = out or settings.mojo
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
    option("--rollback", is_flag=True, help="Serve again the model served before this one."),
    option("--list", "list_models", is_flag=True, help="List the published models, their roles and metrics."),
)
async def deploy(
    self: AppCommand, path: Path | None, shadow: bool, promote: bool, rollback: bool, list_models: bool
) -> None:
    """Publish a model (default IRIS_MOJO) to iris-models and serve it: workers switch without a restart."""
    try:
        if list_models:
            self.say(listing(await registry.read(settings.kafka)))
        elif promote or rollback:
            published = await registry.read(settings.kafka)
            roles = published.roles.promote() if promote else published.roles.rollback()
            await registry.publish(settings, [(registry.SERVING_KEY, roles.encode())])
            self.say(f"Serving {roles.serving}")
        else:
            self.say(await publish_model(path or settings.mojo, shadow=shadow))
    except (registry.RegistryError, ModelError) as e:
        raise SystemExit(f"iris_app: deploy refused: {e}") from None


async def publish_model(folder: Path, *, shadow: bool) -> str:
    """Check a model as a worker would, publish it, and make it serve (or shadow); what was done."""
    checked_scorer(folder, feature_rows())  # the workers' own check: refuse here what they would refuse
    model_id, package = registry.pack(folder)
    published = await registry.read(settings.kafka)
    records = [(model_id.encode(), package)]
    roles = published.roles
    if roles.serving is None and not shadow and folder.resolve() != settings.mojo.resolve():
        # The workers serve IRIS_MOJO while nothing is published: publish it too, to roll back to.
        fallback_id, fallback = registry.pack(settings.mojo)
        records.append((fallback_id.encode(), fallback))
        roles = roles._replace(serving=fallback_id)
    roles = roles.with_shadow(model_id) if shadow else roles.deploy(model_id)
    await registry.publish(settings, [*records, (registry.SERVING_KEY, roles.encode())])
    return f"Published {model_id}; " + (
        f"shadowing {roles.serving}" if shadow else f"serving it (was {roles.previous})"
    )


def listing(published: registry.Registry) -> str:
    """One line per published model: id, role, holdout accuracy and logloss from its card."""
    roles = published.roles
    lines = []
    for model_id, package in sorted(published.models.items()):
        role = {roles.serving: "serving", roles.shadow: "shadow", roles.previous: "previous"}.get(
            model_id, "-"
        )
        try:
            with zipfile.ZipFile(io.BytesIO(package)) as archive:
                names = archive.namelist()
                card = orjson.loads(archive.read(registry.CARD)) if registry.CARD in names else {}
        except (zipfile.BadZipFile, orjson.JSONDecodeError) as e:
            lines.append(f"{model_id}\t{role}\tnot a model package: {e}")
            continue
        holdout = card.get("holdout", {})
        metrics = (
            f"accuracy {holdout['accuracy']:.3f}, logloss {holdout['logloss']:.4f}"
            if holdout
            else "no holdout metrics"
        )
        lines.append(f"{model_id}\t{role}\t{metrics}")
    return "\n".join(lines) or f"nothing published to {registry.TOPIC}: the workers serve IRIS_MOJO"


@app.command(
    argument("topic"),
    option("--from-beginning/--from-end", default=True, show_default=True),
)
async def watch(self: AppCommand, topic: str, from_beginning: bool) -> None:
    """Print a topic's messages as `key<TAB>value` lines, following new ones until Ctrl-C."""
    consumer = AIOKafkaConsumer(
        topic,
        **settings.kafka.client_options(),
        auto_offset_reset="earliest" if from_beginning else "latest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        async for message in consumer:
            key = message.key.decode(errors="replace") if message.key is not None else ""
            value = message.value.decode(errors="replace") if message.value is not None else ""
            print(f"{key}\t{value}", flush=True)
    finally:
        await consumer.stop()


@app.command()
async def topology(self: AppCommand) -> None:
    """Print the agents, topics and tables and their links, as text and as a Mermaid diagram."""
    agents = describe(app)
    self.say(as_text(agents))
    self.say("\n```mermaid\n" + as_mermaid(agents) + "\n```")
