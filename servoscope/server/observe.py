"""``GET /metrics`` (Prometheus) and ``GET /v1/stats`` (rolling percentiles as JSON)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from prometheus_client.exposition import choose_encoder
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from servoscope.errors import ServoscopeError, Unavailable
from servoscope.pipeline.service import Pipeline
from servoscope.server.http import error_response, json_response
from servoscope.server.state import state_of
from servoscope.telemetry.monitor import Monitor
from servoscope.telemetry.recorder import Telemetry
from servoscope.telemetry.stats import stats

STATS_MAX_AGE_S = 0.5  # dashboards poll; several viewers share one computation


@dataclass
class Observability:
    telemetry: Telemetry
    monitor: Monitor
    pipeline: Pipeline
    _cached: tuple[float, dict[str, Any]] | None = None

    def stats(self) -> dict[str, Any]:
        now = self.telemetry.clock.now()
        if self._cached is None or now - self._cached[0] > STATS_MAX_AGE_S:
            self._cached = (now, stats(self.telemetry, self.pipeline.gauges(), self.monitor.readings))
        return self._cached[1]


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
        return json_response(_observability(request).stats())
    except ServoscopeError as exc:
        return error_response(exc)


routes = [Route("/metrics", metrics, methods=["GET"]), Route("/v1/stats", stats_json, methods=["GET"])]
