"""Variants side by side: a model's live rollout on the server — which variant serves each request
(split by weight, ``X-Variant`` or a sticky ``X-Client-Key``), the shadow (mirrored) requests to the
canary, and the ladder the finished requests feed.

A variant is a served model (a :class:`ModelService`): another model of the repository already
served (the INT8 variant), or one loaded for the rollout under the name ``<model>@canary`` (another
``<version>/`` folder, another batching config). Its service name is the ``model`` label of every
metric and the key of ``/v1/stats``, so each variant's telemetry stands apart from the baseline's.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from servoscope.clock import Clock
from servoscope.errors import Overloaded, ServoscopeError
from servoscope.pipeline.admission import Priority
from servoscope.pipeline.service import Classification, ModelService
from servoscope.rollout.ladder import Ladder
from servoscope.rollout.observation import from_timing
from servoscope.rollout.split import HEADER, Assignment, Split, assign
from servoscope.stages import Timing

log = logging.getLogger(__name__)

BASELINE, CANARY = "baseline", "canary"
CLIENT_KEY_HEADER = "X-Client-Key"
MIRROR_DEADLINE_S = 10.0


@dataclass
class MirrorCounts:
    sent: int = 0  # mirrored requests the canary answered
    shed: int = 0  # mirrored requests not sent: the canary or the baseline was loaded, or too many in flight
    failed: int = 0  # mirrored requests the canary failed
    disagreed: int = 0


@dataclass
class Rollout:
    """One model's rollout: ``baseline`` serves what the ladder does not send to ``canary``."""

    model: str
    baseline: ModelService
    canary: ModelService
    ladder: Ladder
    clock: Clock
    mirror_share: float = 0.0
    max_mirror_in_flight: int = 4
    salt: bytes = b""
    rng: random.Random = field(default_factory=random.Random)
    mirror: MirrorCounts = field(default_factory=MirrorCounts)
    served: dict[str, int] = field(default_factory=lambda: {BASELINE: 0, CANARY: 0})
    _mirrors: set[asyncio.Task[None]] = field(default_factory=set)

    def split(self) -> Split:
        share = self.ladder.share
        return Split(((BASELINE, 1.0 - share), (CANARY, share)), self.salt)

    def assign(self, headers: Mapping[str, str]) -> Assignment:
        """``headers``: HTTP headers or gRPC metadata, looked up by lower-case name (both answer to it)."""
        return assign(
            self.split(), self.rng.random(), headers.get(HEADER.lower()), headers.get(CLIENT_KEY_HEADER.lower())
        )

    def service(self, variant: str) -> ModelService:
        return self.canary if variant == CANARY else self.baseline

    def finished(self, timing: Timing, assignment: Assignment) -> None:
        """A routed request's record, once answered: counted per variant, and judged when randomized."""
        self.served[assignment.variant] += 1
        if assignment.randomized:
            self.ladder.observe(from_timing(timing, canary=assignment.variant == CANARY))

    def maybe_mirror(self, body: bytes, answer: Classification) -> None:
        """Mirror a baseline answer's request to the canary (a share of them), at the lowest priority:
        shed — and counted — when either variant is loaded or too many mirrors are in flight."""
        if self.mirror_share <= 0.0 or not self.ladder.running or self.rng.random() >= self.mirror_share:
            return
        loaded = self.baseline.refusal(1, Priority.LOW, len(body)) or self.canary.refusal(1, Priority.LOW, len(body))
        if loaded is not None or len(self._mirrors) >= self.max_mirror_in_flight:
            self.mirror.shed += 1
            return
        task = asyncio.get_running_loop().create_task(self._mirror(body, answer))
        self._mirrors.add(task)
        task.add_done_callback(self._mirrors.discard)

    async def _mirror(self, body: bytes, answer: Classification) -> None:
        timing = Timing(self.clock.now())
        deadline = timing.start + MIRROR_DEADLINE_S
        try:
            with self.canary.admitted(1, Priority.LOW, len(body), MIRROR_DEADLINE_S):
                shadow = await self.canary.classify(body, 1, timing, deadline, Priority.LOW)
        except Overloaded:
            self.mirror.shed += 1
            return
        except ServoscopeError:
            self.mirror.failed += 1
            return
        self.mirror.sent += 1
        agree = shadow.predictions[0].index == answer.predictions[0].index
        self.mirror.disagreed += int(not agree)
        self.ladder.observe_mirror(agree)

    async def stop(self) -> None:
        for task in list(self._mirrors):
            task.cancel()
        await asyncio.gather(*self._mirrors, return_exceptions=True)

    def status(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "baseline": self.baseline.name,
            "canary": self.canary.name,
            **self.ladder.status(),
            "served": dict(self.served),
            "mirror": {"share": self.mirror_share, **vars(self.mirror)},
        }


class Rollouts:
    """The server's rollouts by model, and which of them each request in progress belongs to."""

    def __init__(self) -> None:
        self.by_model: dict[str, Rollout] = {}
        self.starting: set[str] = set()  # models whose canary is loading
        self._routed: dict[int, tuple[Rollout, Assignment]] = {}

    def route(self, service: ModelService, headers: Mapping[str, str], timing: Timing) -> tuple[ModelService, str]:
        """The variant that serves a request for ``service``'s model, and its name (no rollout: the model itself).

        Every protocol routes here — ``/v1/classify``, ``/v2/…/infer`` and gRPC ``ModelInfer`` — with its
        headers or metadata (``x-variant``, ``x-client-key``); ``timing`` is the request's (first) record,
        the one :meth:`recorded` is handed once the answer is sent."""
        rollout = self.by_model.get(service.name)
        if rollout is None:
            return service, ""
        assignment = rollout.assign(headers)
        self._routed[id(timing)] = (rollout, assignment)
        return rollout.service(assignment.variant), assignment.variant

    def variant_of(self, name: str) -> str:
        """A served model's part in a rollout (``baseline``, ``canary``), or "": its metrics' ``variant`` label."""
        for rollout in self.by_model.values():
            if name == rollout.canary.name:
                return CANARY
            if name == rollout.baseline.name:
                return BASELINE
        return ""

    def recorded(self, timing: Timing) -> None:
        """A request's record, once its answer is sent (every routed request comes here once)."""
        routed = self._routed.pop(id(timing), None)
        if routed is not None:
            routed[0].finished(timing, routed[1])

    def mirror(self, model: str, bodies: Sequence[bytes], answers: Sequence[Classification]) -> None:
        """Each image a baseline answered may be mirrored to the canary (``bodies[i]`` got ``answers[i]``)."""
        rollout = self.by_model.get(model)
        for body, answer in zip(bodies, answers):
            if rollout is not None and answer.model == rollout.baseline.name:
                rollout.maybe_mirror(body, answer)

    def get(self, model: str) -> Rollout:
        try:
            return self.by_model[model]
        except KeyError:
            raise NoRollout(f"no rollout of model {model!r}; rollouts: {sorted(self.by_model)}") from None

    async def stop(self) -> None:
        await asyncio.gather(*(r.stop() for r in self.by_model.values()))


class NoRollout(ServoscopeError):
    status = 404
    reason = "no_rollout"
