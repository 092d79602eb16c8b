"""Run the service on uvicorn, with a drain on SIGTERM: readiness false first, in-flight answered, then exit."""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import types
from typing import Iterator

import uvicorn
from starlette.applications import Starlette

from servoscope.server.state import ServerState
from servoscope.settings import Settings

log = logging.getLogger(__name__)


class DrainingServer(uvicorn.Server):
    """uvicorn's server, but the app hears of the shutdown first, so /v2/health/ready turns 503
    and requests arriving on open connections are refused with 503 while in-flight ones finish."""

    def __init__(self, config: uvicorn.Config, state: ServerState) -> None:
        super().__init__(config)
        self.state = state

    def handle_exit(self, sig: int, frame: types.FrameType | None) -> None:
        if not self.state.draining:
            log.info("signal %d: draining (readiness false, finishing in-flight requests)", sig)
        self.state.draining = True
        super().handle_exit(sig, frame)

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """uvicorn's, without re-raising the signal once the server has stopped: uvicorn does that so
        the process dies of it (exit status -15), but a completed drain is a clean exit, status 0."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        original = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in original.items():
                signal.signal(sig, handler)


def uvicorn_config(app: Starlette, settings: Settings) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        log_level=settings.log_level,
        access_log=False,
        timeout_graceful_shutdown=int(settings.shutdown_timeout_s),
        limit_concurrency=None,
        server_header=False,
    )


def serve(app: Starlette, settings: Settings) -> None:
    server = DrainingServer(uvicorn_config(app, settings), app.state.servoscope)
    server.run()
