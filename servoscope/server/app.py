"""The app factory: wires settings, pipeline and routes together, nothing more."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
from collections.abc import AsyncIterator, Callable, Mapping, Sequence

from prometheus_client import disable_created_metrics
from prometheus_client.registry import Collector
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from servoscope.clock import SYSTEM_CLOCK, Clock
from servoscope.models import repository
from servoscope.pipeline.admission import AdmissionPolicy
from servoscope.pipeline.decode import DecodeLimits
from servoscope.pipeline.runtime import RuntimeWrapper
from servoscope.pipeline.service import Pipeline, build_pipeline
from servoscope.pipeline.structure import StructureLimits
from servoscope.server import api, dashboard, grpc_server, openapi, rollout_api, triton, v2
from servoscope.server import observe as observe_routes
from servoscope.server.http import error_response, json_response
from servoscope.server.observe import Observability
from servoscope.server.rollout_metrics import RolloutCollector
from servoscope.server.state import NoObserver, ServerState
from servoscope.settings import Settings
from servoscope.telemetry import deployment
from servoscope.telemetry.gpu import GpuCollector
from servoscope.telemetry.live import LiveCollector
from servoscope.telemetry.monitor import Monitor
from servoscope.telemetry.recorder import Telemetry
from servoscope.telemetry.system import SystemCollector
from servoscope.telemetry.tracing import Tracer, provider_from_env

log = logging.getLogger(__name__)


def load_pipeline(
    settings: Settings, clock: Clock = SYSTEM_CLOCK, wrap_runtime: RuntimeWrapper | None = None
) -> Pipeline:
    """The settings' models, loaded and warmed up; ``wrap_runtime`` (the start-up seam) wraps each
    instance's runtime."""
    root = settings.model_repository
    if settings.models:
        entries = [repository.find(root, name) for name in settings.models]
    else:
        entries = repository.discover(root)
    entries = [dataclasses.replace(e, config=settings.model_overrides.apply(e.config)) for e in entries]
    if not entries:
        raise repository.ModelConfigError(f"no models in repository {root}: run `servoscope model prepare`")
    return build_pipeline(
        entries,
        settings.preprocess_workers,
        decode_limits(settings),
        admission_policy(settings),
        clock,
        settings.preprocess_nice,
        wrap_runtime,
    )


def admission_policy(settings: Settings) -> AdmissionPolicy:
    return AdmissionPolicy(settings.admission, settings.max_pending, settings.slo_p95_ms / 1000.0)


def decode_limits(settings: Settings) -> DecodeLimits:
    structure = StructureLimits(
        settings.max_image_scans,
        settings.max_image_chunks,
        settings.max_image_frames,
        settings.max_image_metadata_bytes,
    )
    return DecodeLimits(settings.max_body_bytes, settings.max_image_pixels, structure)


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return json_response({"error": exc.detail}, exc.status_code, dict(exc.headers or {}))


async def internal_error(request: Request, exc: Exception) -> Response:
    """An unexpected exception: logged (by Starlette, with its traceback), answered as a JSON 500."""
    return error_response(exc)


def make_telemetry(settings: Settings, clock: Clock, env: Mapping[str, str]) -> Telemetry | None:
    if not settings.telemetry:
        return None
    disable_created_metrics()  # no `_created` series beside every counter and histogram
    return Telemetry(clock, tracer=Tracer(provider_from_env(env)))


def observe(
    app: Starlette, telemetry: Telemetry, pipeline: Pipeline, state: ServerState, collectors: Sequence[Collector]
) -> Monitor:
    """Connect telemetry to a loaded pipeline: batch records, live gauges, background readings, and
    the ``collectors`` the caller added."""
    monitor = Monitor(telemetry, SystemCollector(), GpuCollector())
    pipeline.observe_batches(telemetry.record_batch)
    pipeline.observe_restarts(telemetry.record_restart)
    pipeline.observe_decode_fallbacks(telemetry.record_decode_fallback)
    telemetry.registry.register(
        LiveCollector(
            telemetry, pipeline.gauges, monitor.readings, lambda: state.open_requests, lambda: state.ingesting
        )
    )
    for collector in collectors:
        telemetry.registry.register(collector)
    telemetry.registry.register(RolloutCollector(state.rollouts))
    telemetry.metrics.variant_of = state.rollouts.variant_of  # the variant label of every per-model metric
    deployed = deployment.describe(state.settings, pipeline)
    app.state.observability = Observability(telemetry, monitor, pipeline, lambda: state.ingesting, deployed)
    monitor.start()
    return monitor


def create_app(
    settings: Settings,
    pipeline: Pipeline | None = None,
    clock: Clock = SYSTEM_CLOCK,
    telemetry: Telemetry | None = None,
    env: Mapping[str, str] = os.environ,
    wrap_runtime: RuntimeWrapper | None = None,
    collectors: Sequence[Collector] = (),
    delay_runtime: Callable[[float], RuntimeWrapper] | None = None,
) -> Starlette:
    """The ASGI app. Without a ``pipeline``, one is loaded from the settings at start-up (its
    runtimes wrapped by ``wrap_runtime``, the start-up seam); without ``telemetry``, one is made from
    the settings (and the OTEL_* variables in ``env``), and ``collectors`` are registered with it.
    ``delay_runtime`` makes the wrapper that slows a rollout's variant by a delay (drills only)."""
    telemetry = telemetry or make_telemetry(settings, clock, env)
    state = ServerState(settings, clock, telemetry or NoObserver())
    state.triton_stats = telemetry.triton if telemetry else None
    state.delay_runtime = delay_runtime

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        loaded = pipeline or load_pipeline(settings, clock, wrap_runtime)
        loaded.start()
        monitor = observe(app, telemetry, loaded, state, collectors) if telemetry else None
        state.model_configs = {
            name: {
                "version": s.version,
                "instances_running": len(s.batcher.instances),
                **s.entry.config.model_dump(mode="json"),
            }
            for name, s in loaded.services.items()
        }
        state.pipeline = loaded
        grpc = None
        try:
            grpc = await grpc_server.start(state, settings) if settings.grpc_port else None
            yield
        finally:
            state.draining = True
            if grpc is not None:  # open calls finish (within the shutdown timeout), new ones are refused
                await grpc[0].stop(settings.shutdown_timeout_s)
            await state.rollouts.stop()
            await loaded.stop()
            if monitor is not None:
                await monitor.stop()
            if telemetry is not None:
                telemetry.shutdown()

    app = Starlette(
        routes=[
            *api.routes,
            *triton.routes,
            *v2.routes,
            *observe_routes.routes,
            *openapi.routes,
            *dashboard.routes,
            *rollout_api.routes,
        ],
        lifespan=lifespan,
        exception_handlers={HTTPException: http_error, Exception: internal_error},
    )
    app.state.servoscope = state
    return app
