"""The app's own commands: `faust -A iris_app train` and `faust -A iris_app watch TOPIC`."""

from __future__ import annotations

from pathlib import Path

from aiokafka import AIOKafkaConsumer
from faust.cli import AppCommand, argument, option

from .application import app, settings
from .topology import as_mermaid, as_text, describe
from .training import TrainingError
from .training import train as train_model


@app.command(
    option("--max-models", type=int, default=20, show_default=True, help="AutoML's max_models."),
    option(
        "--max-runtime-secs", type=int, default=0, show_default=True, help="AutoML's time budget; 0 for none."
    ),
    option("--data", type=Path, default=Path("data/iris.csv"), show_default=True),
    option("--out", type=Path, default=None, help="Where to deploy the model [default: IRIS_MOJO]."),
)
async def train(
    self: AppCommand, max_models: int, max_runtime_secs: int, data: Path, out: Path | None
) -> None:
    """Train a model with H2O AutoML and deploy the leader's MOJO (restart workers to use it)."""
    out = out or settings.mojo
    try:
        card = train_model(data, out, max_models=max_models, max_runtime_secs=max_runtime_secs)
    except TrainingError as e:
        raise SystemExit(f"iris_app: training failed: {e}") from None
    holdout = card["holdout"]
    self.say(
        f"Deployed {card['modelId']} to {out}/ — holdout accuracy {holdout['accuracy']:.3f},"
        f" logloss {holdout['logloss']:.4f}"
    )


@app.command(
    argument("topic"),
    option("--from-beginning/--from-end", default=True, show_default=True),
)
async def watch(self: AppCommand, topic: str, from_beginning: bool) -> None:
    """Print a topic's messages as `key<TAB>value` lines, following new ones until Ctrl-C."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=settings.bootstrap_servers,
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
