"""Which model a worker scores with, and the switch to another while it runs, between two batches.

At start the worker serves what `iris-models` says serves, else IRIS_MOJO. A
deploy, promote or rollback read from the topic is loaded and checked on a
thread of its own (scoring.checked_scorer); if it passes, the next batch is
scored with it (a reference swapped between batches: no record is lost or
scored twice by the switch); if not, the current model keeps serving and the
refusal is logged, shown at /model/ and counted.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import jpype
import orjson

from . import metrics, registry
from .scoring import GENMODEL_JAR, ModelError, Scorer, checked_scorer

log = logging.getLogger(__name__)


def safe_name(model_id: str) -> str:
    """A folder name for a model id read from the topic, which could hold anything."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", model_id).lstrip(".") or "_"


class ModelServer:
    def __init__(self, fallback: Path, store: Path, samples: Sequence[Sequence[float]]) -> None:
        self.fallback = fallback
        self.store = store  # where published models are unpacked
        self.samples = samples
        self.scorer: Scorer | None = None
        self.refused: dict[str, Any] | None = None
        self._loader: ThreadPoolExecutor | None = None

    def start(self, published: registry.Registry) -> None:
        """Serve the published serving model, or IRIS_MOJO; a ModelError if neither can serve."""
        self._serve(checked_scorer(self.fallback, self.samples))
        model_id = published.roles.serving
        if model_id is not None and model_id != self.scorer.model_id:
            try:
                self._serve(self._load(model_id, published.models.get(model_id)))
            except ModelError as e:
                self._refuse(model_id, str(e))

    async def on_change(self, published: registry.Registry) -> None:
        """Follow the registry: switch to its serving model when it is another one and passes the check."""
        model_id = published.roles.serving
        if model_id is None or model_id == self.scorer.model_id:
            return
        if self.refused is not None and self.refused["modelId"] == model_id:
            return  # refused already: keep serving, say it once
        loop = asyncio.get_running_loop()
        if self._loader is None:
            self._loader = ThreadPoolExecutor(
                1, "model-loader", initializer=jpype.java.lang.Thread.attachAsDaemon
            )
        try:
            scorer = await loop.run_in_executor(
                self._loader, self._load, model_id, published.models.get(model_id)
            )
        except ModelError as e:
            self._refuse(model_id, str(e))
            return
        previous = self.scorer.model_id
        self._serve(scorer)
        log.info("Serving %s (was %s)", model_id, previous)

    def _load(self, model_id: str, package: bytes | None) -> Scorer:
        if package is None:
            raise ModelError(f"{model_id} is to serve but was never published to {registry.TOPIC}")
        folder = registry.unpack(
            package, self.store / safe_name(model_id), self.scorer.path.parent / GENMODEL_JAR
        )
        scorer = checked_scorer(folder, self.samples)
        if scorer.model_id != model_id:
            raise ModelError(f"the package published as {model_id} holds {scorer.model_id}")
        return scorer

    def _serve(self, scorer: Scorer) -> None:
        if self.scorer is not None:
            metrics.model_info.remove(self.scorer.model_id, "serving")
        self.scorer = scorer
        self.refused = None
        metrics.model_info.labels(scorer.model_id, "serving").set(1)

    def _refuse(self, model_id: str, reason: str) -> None:
        self.refused = {
            "modelId": model_id,
            "reason": reason,
            "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        metrics.models_refused.labels(model_id).inc()
        log.error("Refused model %s, still serving %s: %s", model_id, self.scorer.model_id, reason)

    def describe(self) -> bytes:
        """What /model/ answers: the serving model's card, the shadow's (none yet), the last refusal."""
        return orjson.dumps(
            {"serving": orjson.Fragment(self.scorer.card), "shadow": None, "refused": self.refused}
        )
