"""Which models a worker scores with, and the switch to others while it runs, between two batches.

At start the worker serves what `iris-models` says serves; if that model is
refused, the one served before it; else IRIS_MOJO. It scores with the shadow
model the registry names too. A deploy, shadow, promote or rollback read from the
topic is checked (its package pinned by SHA-256, unpacked into a fresh folder,
model_checks.checked_scorer) on a thread of its own; if it passes, the next batch
is scored with it (a pair of references swapped between batches: no record is
lost or scored twice by the switch); if not, the current models go on and the
refusal is logged, shown at /model/ and /health, and counted. A serving record the
registry refuses is handled alike. Only the serving and shadow models' folders
stay on disk.
"""

from __future__ import annotations

import asyncio
import logging
import re
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import jpype
import orjson

from . import metrics, packages, registry
from .model_checks import Check, checked_scorer
from .scoring import GENMODEL_JAR, ModelError, Scorer

log = logging.getLogger(__name__)


# The directory part of a path in a message: a run of non-space characters up to its last slash.
DIRECTORIES = re.compile(r"""[^\s'"(),;=\[\]]*/(?=[^\s/'"(),:;=\[\]])""")


def without_directories(message: str) -> str:
    """`message` with each path in it cut to its last part (/data/models/x/model.zip: model.zip)."""
    return DIRECTORIES.sub("", message)


def shown_card(scorer: Scorer) -> dict[str, Any]:
    """The card /model/ shows: the model's card parsed, or its id with a note if that is no JSON object."""
    try:
        card = orjson.loads(scorer.card)
    except orjson.JSONDecodeError:
        card = None
    if not isinstance(card, dict):
        return {"modelId": scorer.model_id, "note": "invalid card: not a JSON object"}
    return card


def safe_name(model_id: str) -> str:
    """A folder name for a model id read from the topic, which could hold anything."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", model_id).lstrip(".") or "_"


class ModelServer:
    def __init__(self, fallback: Path, store: Path, check: Check) -> None:
        self.fallback = fallback
        self.store = store  # where published models are unpacked, each into a fresh folder
        self.check = check
        self.scorer: Scorer | None = None  # the serving model
        self.shadow: Scorer | None = None
        self.refused: dict[str, Any] | None = None
        self._cards: dict[str, dict[str, Any]] = {}  # by role: the card /model/ shows (shown_card)
        self._loader: ThreadPoolExecutor | None = None

    def scorers(self) -> tuple[Scorer, Scorer | None]:
        """The serving model and the shadow (None while there is none), as one pair for a batch."""
        return self.scorer, self.shadow

    def start(self, published: registry.Registry, fallback: Scorer | None = None) -> None:
        """Serve the published serving model, else the one served before it, else IRIS_MOJO (`fallback`
        once checked; a ModelError if it cannot serve); shadow the published shadow model."""
        shutil.rmtree(self.store, ignore_errors=True)  # what an earlier run left: nothing is trusted
        self._take("serving", fallback or checked_scorer(self.fallback, self.check))
        if published.problem is not None:
            self._refuse("the serving record", "serving", published.problem)
        roles = published.roles
        for role, model_id in self._changes(roles):
            try:
                self._take(role, self._known(model_id) or self._load(model_id, published))
            except (ModelError, registry.RegistryError) as e:
                self._refuse(model_id, role, str(e))
                refused = self.refused
                if role == "serving" and roles.previous not in (None, self.scorer.model_id):
                    try:
                        self._take(role, self._load(roles.previous, published))
                    except (ModelError, registry.RegistryError) as e:
                        self._refuse(roles.previous, role, str(e))
                    self.refused = refused  # what /model/ and /health name: the model the registry serves
        self._drop_stale_shadow(roles)
        self._forget_folders()

    async def on_change(self, published: registry.Registry) -> None:
        """Follow the registry: switch serving and shadow models when they change and pass the check."""
        if published.problem is not None:
            if (self.refused or {}).get("reason") != published.problem:
                self._refuse("the serving record", "serving", published.problem)
            return  # the roles stay as they were
        for role, model_id in self._changes(published.roles):
            try:
                scorer = self._known(model_id) or await self._load_aside(model_id, published)
            except (ModelError, registry.RegistryError) as e:
                self._refuse(model_id, role, str(e))
                continue
            self._take(role, scorer)
        self._drop_stale_shadow(published.roles)
        self._forget_folders()

    def _changes(self, roles: registry.Roles) -> list[tuple[str, str]]:
        """(role, model id) of each role the registry gives another model than this worker's, not refused."""
        changes = []
        for role, model_id in (("serving", roles.serving), ("shadow", roles.shadow)):
            current = self._in(role)
            if model_id is None or (current is not None and current.model_id == model_id):
                continue
            if self.refused is not None and self.refused["modelId"] == model_id:
                continue  # refused already: keep going, say it once
            changes.append((role, model_id))
        return changes

    def _drop_stale_shadow(self, roles: registry.Roles) -> None:
        if self.shadow is not None and (roles.shadow is None or self.shadow.model_id == self.scorer.model_id):
            self._take("shadow", None)  # withdrawn, or promoted: it serves now

    def _in(self, role: str) -> Scorer | None:
        return self.scorer if role == "serving" else self.shadow

    def _known(self, model_id: str) -> Scorer | None:
        """A model this worker scores with already (a promoted shadow, say): no second load."""
        return next((s for s in self.scorers() if s is not None and s.model_id == model_id), None)

    async def _load_aside(self, model_id: str, published: registry.Registry) -> Scorer:
        if self._loader is None:
            self._loader = ThreadPoolExecutor(
                1, "model-loader", initializer=jpype.java.lang.Thread.attachAsDaemon
            )
        return await asyncio.get_running_loop().run_in_executor(self._loader, self._load, model_id, published)

    def _load(self, model_id: str, published: registry.Registry) -> Scorer:
        """The model `model_id` of `published`, checked: its package pinned, unpacked afresh, and passing
        the model check; a ModelError or RegistryError saying why not."""
        package = published.models.get(model_id)
        if package is None:
            raise ModelError(f"{model_id} is to serve but was never published to {registry.TOPIC}")
        published.roles.check_pin(model_id, package)
        folder = packages.unpack(
            package, self.store, safe_name(model_id), self.scorer.path.parent / GENMODEL_JAR
        )
        try:
            scorer = checked_scorer(folder, self.check)
            if scorer.model_id != model_id:
                raise ModelError(f"the package published as {model_id} holds {scorer.model_id}")
        except ModelError:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        return scorer

    def _forget_folders(self) -> None:
        """Delete the unpacked folders of models no longer served or shadowed."""
        kept = {s.path.parent for s in self.scorers() if s is not None}
        for folder in self.store.glob("*") if self.store.is_dir() else ():
            if folder not in kept:
                shutil.rmtree(folder, ignore_errors=True)

    def _take(self, role: str, scorer: Scorer | None) -> None:
        """Score with `scorer` in `role` from the next batch on (a shadow of None: no shadow); one log
        line says so."""
        current = self._in(role)
        was = f" (was {current.model_id})" if current is not None else ""
        if scorer is not None:
            log.info("%s model: %s%s", role.capitalize(), scorer.model_id, was)
        elif current is not None:
            log.info("No shadow model%s", was)
        if current is not None:
            metrics.model_info.remove(current.model_id, role)
        if role == "serving":
            self.scorer = scorer
        else:
            self.shadow = scorer
        if scorer is None:
            self._cards.pop(role, None)
        else:
            self._cards[role] = shown_card(scorer)
            self.refused = None
            metrics.model_info.labels(scorer.model_id, role).set(1)

    def _refuse(self, model_id: str, role: str, reason: str) -> None:
        """Log the refusal with its whole reason; /model/ shows it without the worker's directories."""
        self.refused = {
            "modelId": model_id,
            "role": role,
            "reason": without_directories(reason),
            "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        metrics.models_refused.labels(model_id).inc()
        log.error(
            "Refused model %s as %s, still serving %s: %s", model_id, role, self.scorer.model_id, reason
        )

    def describe(self) -> bytes:
        """What /model/ answers: the serving and the shadow model's cards (null: none), the last refusal.

        Each card is the package's model.json parsed and encoded again (shown_card), never its bytes."""
        return orjson.dumps(
            {"serving": self._cards["serving"], "shadow": self._cards.get("shadow"), "refused": self.refused}
        )
