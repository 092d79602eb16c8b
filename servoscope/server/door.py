"""The door: inference requests a model cannot take now are refused before the app sees them.

Under overload most arrivals are refused (at 4× capacity, three in four), so what a refusal costs
is taken from the requests being served. Through the app a refusal paid for routing, middleware,
request objects, a timing record and a delivery probe — about as much event-loop time as an
answer's. Here it is one look at the path and the ``X-Priority`` header, the model's admission
check, and one small write: the same 429, ``Retry-After`` and JSON error the app sends, counted in
the same metrics (``servoscope_requests_total``, ``servoscope_refused_total`` by reason).

Only what is certain to be refused is refused here: a request the model would admit, one with a
malformed ``X-Priority``, for a model or version that is not served, or while starting or
draining, goes on to the app, which admits it again (the check is the same; a v2 request's image
count is known only from its body, and one image is the least it can hold).
"""

from __future__ import annotations

import math

import orjson

from servoscope.errors import Overloaded
from servoscope.pipeline.admission import Priority
from servoscope.pipeline.service import ModelService
from servoscope.server.state import ServerState
from servoscope.stages import Stage, Timing

Scope = dict
HEADERS = [(b"content-type", b"application/json")]


class Door:
    """A pure ASGI middleware in front of the routes: nothing is built for a refusal. It also counts
    every inference request for a served model on arrival (the demand), refused or not."""

    def __init__(self, app, state: ServerState) -> None:  # type: ignore[no-untyped-def]
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive, send) -> None:  # type: ignore[no-untyped-def]
        if scope["type"] == "http" and scope["method"] == "POST":
            service = self.served(scope["path"])
            if service is not None:
                self.state.observer.arrived(service.name)
                refused = self.refusal(service, scope)
                if refused is not None:
                    await self.refuse(service, refused, send)
                    return
        await self.app(scope, receive, send)

    def served(self, path: str) -> ModelService | None:
        """The model an inference path names, while the service is up and serves it."""
        pipeline = self.state.pipeline
        if pipeline is None or self.state.draining:
            return None
        return pipeline.services.get(inference_target(path, pipeline.services) or "")

    def refusal(self, service: ModelService, scope: Scope) -> Overloaded | None:
        """The model's refusal, when the request is certain to be refused."""
        try:
            rank = Priority.parse(header(scope, b"x-priority"))
        except ValueError:
            return None  # the app answers 400
        return service.refusal(1, rank)

    async def refuse(self, service: ModelService, refused: Overloaded, send) -> None:  # type: ignore[no-untyped-def]
        timing = Timing(self.state.clock.now(), model=service.name, status=refused.status, error=refused.reason)
        body = orjson.dumps({"error": refused.message})
        headers = [*HEADERS, (b"retry-after", b"%d" % max(1, math.ceil(refused.retry_after_s or 1))), (b"content-length", b"%d" % len(body))]
        await send({"type": "http.response.start", "status": refused.status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        timing.end(Stage.RESPOND, self.state.clock.now())
        self.state.observer.record(timing)


def inference_target(path: str, services: dict[str, ModelService]) -> str | None:
    """The model named by an inference path — ``/v1/models/{name}/classify``,
    ``/v2/models/{name}/infer`` or ``/v2/models/{name}/versions/{version}/infer`` for the version
    served — else None."""
    parts = path.split("/")
    if len(parts) == 5 and parts[2] == "models" and (parts[1], parts[4]) in (("v1", "classify"), ("v2", "infer")):
        return parts[3]
    if len(parts) == 7 and parts[1:3] == ["v2", "models"] and parts[4] == "versions" and parts[6] == "infer":
        service = services.get(parts[3])
        return parts[3] if service is not None and service.version == parts[5] else None
    return None


def header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None
