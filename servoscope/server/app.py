"""The app factory: wires settings, pipeline and routes together, nothing more."""

from __future__ import annotations

import contextlib
import logging
from typing import AsyncIterator

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from servoscope.clock import SYSTEM_CLOCK, Clock
from servoscope.models import repository
from servoscope.pipeline.decode import DecodeLimits
from servoscope.pipeline.service import Pipeline, build_pipeline
from servoscope.server import api, openapi, v2
from servoscope.server.http import error_response, json_response
from servoscope.server.state import RecordSink, ServerState, discard
from servoscope.settings import Settings

log = logging.getLogger(__name__)


def load_pipeline(settings: Settings, clock: Clock = SYSTEM_CLOCK) -> Pipeline:
    root = settings.model_repository
    if settings.models:
        entries = [repository.find(root, name) for name in settings.models]
    else:
        entries = repository.discover(root)
    if not entries:
        raise repository.ModelConfigError(f"no models in repository {root}: run `servoscope model prepare`")
    limits = DecodeLimits(settings.max_body_bytes, settings.max_image_pixels)
    return build_pipeline(entries, settings.preprocess_workers, limits, settings.max_pending, clock)


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return json_response({"error": exc.detail}, exc.status_code, dict(exc.headers or {}))


async def internal_error(request: Request, exc: Exception) -> Response:
    """An unexpected exception: logged (by Starlette, with its traceback), answered as a JSON 500."""
    return error_response(exc)


def create_app(
    settings: Settings,
    pipeline: Pipeline | None = None,
    clock: Clock = SYSTEM_CLOCK,
    sink: RecordSink = discard,
) -> Starlette:
    """The ASGI app. Without a ``pipeline``, one is loaded from the settings at start-up."""
    state = ServerState(settings, clock, sink)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        loaded = pipeline or load_pipeline(settings, clock)
        loaded.start()
        state.model_configs = {
            name: {"version": s.version, **s.entry.config.model_dump(mode="json")} for name, s in loaded.services.items()
        }
        state.pipeline = loaded
        try:
            yield
        finally:
            state.draining = True
            await loaded.stop()

    app = Starlette(
        routes=[*api.routes, *v2.routes, *openapi.routes],
        lifespan=lifespan,
        exception_handlers={HTTPException: http_error, Exception: internal_error},
    )
    app.state.servoscope = state
    return app
