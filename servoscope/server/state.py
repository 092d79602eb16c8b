"""What the HTTP handlers share: settings, the pipeline, the clock, telemetry, readiness."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import Response

from servoscope.clock import SYSTEM_CLOCK, Clock
from servoscope.errors import InvalidParameter, ServoscopeError, Unavailable
from servoscope.pipeline.service import ModelService, Pipeline
from servoscope.rollout.variants import Rollouts
from servoscope.server.delivery import Probe, probe_of
from servoscope.server.http import BodyRules, error_response
from servoscope.settings import Settings
from servoscope.stages import Stage, Timing

if TYPE_CHECKING:
    from servoscope.pipeline.runtime import RuntimeWrapper
    from servoscope.telemetry.triton_stats import TritonStats

log = logging.getLogger(__name__)


class Observer(Protocol):
    """Where timing records go: told when an inference request arrives for a model (``arrived``),
    when a refusal is held for a client that came back before its Retry-After (``early_retry``),
    when a request's handling begins, and once its answer is sent."""

    def arrived(self, model: str) -> None: ...

    def early_retry(self, model: str) -> None: ...

    def begin(self, timing: Timing, name: str, headers: Mapping[str, str]) -> None: ...

    def record(self, timing: Timing) -> None: ...


class NoObserver:
    def arrived(self, model: str) -> None:
        pass

    def early_retry(self, model: str) -> None:
        pass

    def begin(self, timing: Timing, name: str, headers: Mapping[str, str]) -> None:
        pass

    def record(self, timing: Timing) -> None:
        pass


@dataclass
class ServerState:
    settings: Settings
    clock: Clock = SYSTEM_CLOCK
    observer: Observer = field(default_factory=NoObserver)
    pipeline: Pipeline | None = None
    draining: bool = False
    open_requests: int = 0  # inference requests arrived and not yet answered (ingesting, admitted or refused)
    model_configs: dict[str, Any] = field(default_factory=dict)
    triton_stats: TritonStats | None = None  # Triton's statistics extension (None: telemetry off)
    # slows a rollout's variant on purpose (drills); wired by the command line, None: not offered
    delay_runtime: Callable[[float], RuntimeWrapper] | None = None

    ingesting: int = 0  # inference requests whose bodies are still arriving
    rollouts: Rollouts = field(default_factory=Rollouts)  # variants served side by side (rollout/variants.py)

    @property
    def body_rules(self) -> BodyRules:
        s = self.settings
        return BodyRules(s.max_body_bytes, s.body_timeout_s, s.min_body_rate_bytes_s, s.body_grace_s)

    @contextlib.contextmanager
    def ingest(self) -> Iterator[None]:
        """Hold one of ``max_ingest`` places while a body arrives: uploads in progress are bounded on
        their own, and hold no model's admission place (a slow link does not crowd out the others)."""
        if self.ingesting >= self.settings.max_ingest:
            raise Unavailable(
                f"{self.ingesting} uploads are in progress, the limit (max_ingest)",
                retry_after_s=1.0,
                reason="ingest_limit",
            )
        self.ingesting += 1
        try:
            yield
        finally:
            self.ingesting -= 1

    @property
    def ready(self) -> bool:
        return self.pipeline is not None and not self.draining

    def accepting(self) -> Pipeline:
        """The pipeline, or 503 while starting or draining."""
        if self.draining:
            raise Unavailable("the server is shutting down", retry_after_s=1.0, reason="shutting_down")
        if self.pipeline is None:
            raise Unavailable("the server is still starting", retry_after_s=1.0, reason="starting")
        return self.pipeline

    def service(self, name: str, version: str | None = None) -> ModelService:
        """The served model ``name`` (404 when none), at ``version`` when one is named (400 when another)."""
        service = self.accepting().get(name)
        if version is not None and version != service.version:
            raise InvalidParameter(f"model {service.name!r} serves version {service.version!r}, not {version!r}")
        return service

    def arrived(self, request: Request, name: str) -> Timing:
        return self.arrived_with(request.headers, name)

    def arrived_with(self, headers: Mapping[str, str], name: str, protocol: str = "http") -> Timing:
        timing = Timing(self.clock.now(), protocol=protocol)
        self.open_requests += 1
        self.observer.begin(timing, name, headers)
        return timing

    def failed(self, timings: list[Timing], exc: Exception, start: float) -> Response:
        """The error answer for a request (its timings marked with the error)."""
        mark_failed(timings, exc)
        return error_response(exc, {"Server-Timing": slowest(timings, start).server_timing()})

    def send_then_record(self, request: Request, response: Response, timings: list[Timing]) -> Response:
        """Record the timings once the response's last byte is handed to the connection
        (``respond`` then covers the write as well) and the client has taken it (delivery)."""
        response.background = BackgroundTask(self._record, timings, probe_of(request.scope))
        return response

    async def _record(self, timings: list[Timing], probe: Probe | None) -> None:  # async: on the loop, no thread hop
        sent = self.clock.now()
        self.open_requests -= 1
        for timing in timings:
            timing.end(Stage.RESPOND, sent)
        if probe is not None:
            delivery_s = await probe.delivered(self.clock, sent)
            for timing in timings:
                timing.delivery_s = delivery_s
        for timing in timings:
            self.observer.record(timing)
            self.rollouts.recorded(timing)


def mark_failed(timings: list[Timing], exc: BaseException) -> None:
    """Mark a request's records with its error (an unexpected one is logged here)."""
    if not isinstance(exc, ServoscopeError):
        log.error("unexpected error answering a request", exc_info=exc)
    for timing in timings:
        timing.status = exc.status if isinstance(exc, ServoscopeError) else 500
        timing.error = exc.reason if isinstance(exc, ServoscopeError) else "internal"


def slowest(timings: list[Timing], start: float) -> Timing:
    return max(timings, key=lambda t: t.last) if timings else Timing(start)


def state_of(request: Request) -> ServerState:
    return request.app.state.servoscope
