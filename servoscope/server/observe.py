"""``GET /metrics`` (Prometheus) and ``GET /v1/stats`` (rolling percentiles as JSON)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from prometheus_client.exposition import choose_encoder
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from servoscope.errors import ServoscopeError, Unavailable
from servoscope.pipeline.service import Pipeline
from servoscope.server.http import JSON, error_response
from servoscope.server.state import state_of
from servoscope.telemetry import deployment
from servoscope.telemetry.document import UNKNOWN_DEPLOYMENT, Deployment, StatsDocument
from servoscope.telemetry.monitor import Monitor
from servoscope.telemetry.recorder import Telemetry
from servoscope.telemetry.stats import stats

STATS_MAX_AGE_S = 0.5  # dashboards poll; several viewers share one computation


@dataclass
class Observability:
    telemetry: Telemetry
    monitor: Monitor
    pipeline: Pipeline
    ingesting: Callable[[], int] = lambda: 0  # requests whose bodies are still arriving
    deployed: Deployment = UNKNOWN_DEPLOYMENT  # what is running, read at start
    _cached: tuple[float, StatsDocument, bytes] | None = None

    def stats(self) -> StatsDocument:
        return self._computed()[1]

    def stats_json(self) -> bytes:
        """The document as ``/v1/stats`` answers it (serialized once per computation)."""
        return self._computed()[2]

    def _computed(self) -> tuple[float, StatsDocument, bytes]:
        now = self.telemetry.clock.now()
        if self._cached is None or now - self._cached[0] > STATS_MAX_AGE_S:
            running = deployment.refreshed(self.deployed, self.pipeline)
            doc = stats(self.telemetry, self.pipeline.gauges(), self.monitor.readings, self.ingesting(), running)
            self._cached = (now, doc, doc.model_dump_json().encode())
        return self._cached


def _observability(request: Request) -> Observability:
    found = getattr(request.app.state, "observability", None)
    if found is None:
        if not state_of(request).settings.telemetry:
            raise Unavailable("telemetry is turned off (setting telemetry = false)", reason="telemetry_off")
        raise Unavailable("the server is still starting", reason="starting")
    return found


async def metrics(request: Request) -> Response:
    try:
        registry = _observability(request).telemetry.registry
    except ServoscopeError as exc:
        return error_response(exc)
    encoder, content_type = choose_encoder(request.headers.get("accept", ""))
    return Response(encoder(registry), 200, media_type=content_type)


async def stats_json(request: Request) -> Response:
    try:
        return Response(_observability(request).stats_json(), 200, media_type=JSON)
    except ServoscopeError as exc:
        return error_response(exc)


routes = [Route("/metrics", metrics, methods=["GET"]), Route("/v1/stats", stats_json, methods=["GET"])]
