"""What the HTTP handlers share: settings, the pipeline, the clock, the record sink, readiness."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from starlette.requests import Request

from servoscope.clock import SYSTEM_CLOCK, Clock
from servoscope.errors import Unavailable
from servoscope.pipeline.service import Pipeline
from servoscope.settings import Settings
from servoscope.stages import Timing

RecordSink = Callable[[Timing], None]


def discard(_: Timing) -> None:
    pass


@dataclass
class ServerState:
    settings: Settings
    clock: Clock = SYSTEM_CLOCK
    sink: RecordSink = discard
    pipeline: Pipeline | None = None
    draining: bool = False
    model_configs: dict[str, Any] = field(default_factory=dict)

    @property
    def ready(self) -> bool:
        return self.pipeline is not None and not self.draining

    def accepting(self) -> Pipeline:
        """The pipeline, or 503 while starting or draining."""
        if self.draining:
            raise Unavailable("the server is shutting down", retry_after_s=1.0)
        if self.pipeline is None:
            raise Unavailable("the server is still starting", retry_after_s=1.0)
        return self.pipeline


def state_of(request: Request) -> ServerState:
    return request.app.state.servoscope
