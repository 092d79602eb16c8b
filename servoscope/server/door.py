"""The door: inference requests a model cannot take now are refused from their request line and
headers alone, before an ASGI task, a route or a body read is spent on them.

Under overload most arrivals are refused (at 4× capacity, three in four), so what a refusal costs
is taken from the requests being served: their event loop and the GIL they share with preprocess
and inference threads. Through the app a refusal paid for a task, routing, middleware, request
objects, a timing record and a delivery probe — about as much event-loop time as an answer's. At
the door it is one look at the path and ``X-Priority``, the model's admission check and one write
of the same 429, ``Retry-After`` and JSON error the app sends, counted in the same metrics
(``servoscope_requests_total``, ``servoscope_refused_total`` by reason).

Only what is certain to be refused is refused here: a request the model would admit, one with a
malformed ``X-Priority``, for a model or version that is not served, or while starting or
draining goes on to the app, which admits it again (the check is the same; a v2 request's image
count is known only from its body, and one image is the least it can hold). The door also counts
every inference request for a served model on arrival — the demand, refused or not.

A client that sends the same request again on the same connection before the ``Retry-After`` of
its refusal has passed, and is refused again, gets that refusal at the end of the wait it was told
(:func:`early_retry_hold_s`, one second at most), not at once. A client fleet that ignores
``Retry-After`` and retries after a fixed 50 ms turns a few hundred waiting clients into thousands of
refusals a second, whose event-loop time is taken from the requests being served; held, each such
client costs one refusal per ``Retry-After``, as a client that honours it does. Clients that honour
it, another request on the connection and another connection are refused at once, as before.

The HTTP protocol (``server/run.py``) asks :meth:`Door.arrived` once per request.
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.routing import Route

from servoscope.errors import Overloaded
from servoscope.pipeline.admission import Priority
from servoscope.pipeline.service import ModelService
from servoscope.server import api, v2
from servoscope.server.http import raw_error, retry_after
from servoscope.server.state import ServerState
from servoscope.stages import Stage, Timing

Headers = list[tuple[bytes, bytes]]  # as the protocol parsed them: names in lower case
MAX_EARLY_RETRY_HOLD_S = 1.0  # the longest a refusal of an early retry is held


@dataclass(frozen=True, slots=True)
class Refused:
    """A request refused at the door: the whole HTTP answer, what it asks of the client, and which
    request it was (its path and body size: the same request sent again has the same)."""

    answer: bytes
    retry_after_s: int  # as written in the Retry-After header
    model: str
    signature: tuple[bytes, int]


@dataclass(frozen=True, slots=True)
class LastRefusal:
    """What a connection was last refused: which request, and when its Retry-After ends (loop time)."""

    signature: tuple[bytes, int]
    retry_at_s: float


def early_retry_hold_s(last: LastRefusal | None, signature: tuple[bytes, int], now_s: float) -> float:
    """How long to hold the refusal of ``signature`` on a connection last refused ``last``: the rest
    of the Retry-After it was told when it is the same request sent again before then (at most
    ``MAX_EARLY_RETRY_HOLD_S``), else nothing."""
    if last is None or last.signature != signature:
        return 0.0
    return min(max(0.0, last.retry_at_s - now_s), MAX_EARLY_RETRY_HOLD_S)


# The inference routes, as the app routes them: one table, the app's (api.py, v2.py).
INFERENCE_ROUTES: tuple[Route, ...] = (*api.inference_routes, *v2.inference_routes)


class Door:
    def __init__(self, state: ServerState) -> None:
        self.state = state

    def arrived(
        self, method: bytes, url: bytes, headers: Headers, may_refuse: bool, keep_alive: bool
    ) -> Refused | None:
        """A request's head has arrived: its refusal when it is refused here, else None.
        ``may_refuse`` is False while an earlier request on the connection is still being answered
        (answers must leave in order); the request is then counted only."""
        if method != b"POST":
            return None
        service = self.served(url.partition(b"?")[0].decode("latin-1"))
        if service is None:
            return None
        self.state.observer.arrived(service.name)
        refused = self.refusal(service, headers) if may_refuse else None
        if refused is None:
            return None
        answer = self.refuse(service, refused, keep_alive)
        signature = (url, int(header(headers, b"content-length") or 0))
        return Refused(answer, retry_after(refused.retry_after_s or 0.0), service.name, signature)

    def early_retry(self, model: str) -> None:
        """A refusal is held: the same request came back before its Retry-After had passed."""
        self.state.observer.early_retry(model)

    def served(self, path: str) -> ModelService | None:
        """The model an inference path names, while the service is up and serves it."""
        pipeline = self.state.pipeline
        if pipeline is None or self.state.draining:
            return None
        return pipeline.services.get(inference_target(path, pipeline.services) or "")

    def refusal(self, service: ModelService, headers: Headers) -> Overloaded | None:
        """The model's refusal, when the request is certain to be refused."""
        try:
            rank = Priority.parse(header(headers, b"x-priority"))
            upload_bytes = int(header(headers, b"content-length") or 0)
        except ValueError:
            return None  # the app answers 400
        return service.refusal(1, rank, upload_bytes)

    def refuse(self, service: ModelService, refused: Overloaded, keep_alive: bool) -> bytes:
        clock = self.state.clock
        timing = Timing(clock.now(), model=service.name, status=refused.status, error=refused.reason)
        answer = raw_error(refused.status, refused.message, refused.retry_after_s, close=not keep_alive)
        timing.end(Stage.RESPOND, clock.now())
        self.state.observer.record(timing)
        return answer


def inference_target(path: str, services: dict[str, ModelService]) -> str | None:
    """The model named by a path the app routes to an inference endpoint (:data:`INFERENCE_ROUTES`,
    by their own compiled patterns) — when it names a version, only the version served — else None."""
    for route in INFERENCE_ROUTES:
        found = route.path_regex.match(path)
        if found is not None:
            name, version = found["name"], found.groupdict().get("version")
            service = services.get(name)
            served = version is None or (service is not None and service.version == version)
            return name if served else None
    return None


def header(headers: Headers, name: bytes) -> str | None:
    for key, value in headers:
        if key == name:
            return value.decode("latin-1")
    return None
