"""The JSON API under ``/v1``: classify an image, list models, show one (and its instances), show the
effective configuration."""

from __future__ import annotations

import dataclasses

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from servoscope.errors import ServoscopeError
from servoscope.pipeline.decode import media_format
from servoscope.pipeline.service import Classification
from servoscope.server.http import (
    error_response,
    int_param,
    json_response,
    priority,
    read_body,
    timeout_s,
    variant_header,
)
from servoscope.server.state import state_of
from servoscope.settings import effective
from servoscope.stages import Stage, Timing


def timings_ms(timing: Timing) -> dict[str, float]:
    return {name: round(sec * 1000, 3) for name, sec in timing.durations().items()}


def classification_json(result: Classification, timing: Timing) -> dict:
    return {
        "model": result.model,
        "version": result.version,
        "predictions": [{"label": p.label, "index": p.index, "score": p.score} for p in result.predictions],
        "batch_size": result.batch_size,
        "timings_ms": timings_ms(timing),
    }


async def classify(request: Request) -> Response:
    state = state_of(request)
    settings = state.settings
    clock = state.clock
    timing = state.arrived(request, "classify")
    try:
        named = state.accepting().get(request.path_params["name"])
        service, variant = state.rollouts.route(named, request.headers, timing)  # the variant, in a rollout
        top_k = service.check_top_k(int_param(request, "top_k", settings.default_top_k))
        media_format(request.headers.get("content-type"))  # 415 before the body is read
        deadline = timing.start + timeout_s(request, settings.request_timeout_s)
        rank = priority(request)
        timing.model = service.name
        with state.ingest():
            body = await read_body(request, state.body_rules)
        timing.end(Stage.INGEST, clock.now())
        with service.admitted(1, rank, len(body), deadline - clock.now()):
            result = await service.classify(body, top_k, timing, deadline, rank)
        timing.end(Stage.RESPOND, clock.now())
        timing.status = 200
        headers = {"Server-Timing": timing.server_timing(), **variant_header(variant)}
        response = json_response(classification_json(result, timing), headers=headers)
        state.rollouts.mirror(request.path_params["name"], [body], [result])
    except Exception as exc:
        response = state.failed([timing], exc, timing.start)
    return state.send_then_record(request, response, [timing])


async def list_models(request: Request) -> Response:
    pipeline = state_of(request).accepting()
    return json_response(
        {
            "models": [
                {
                    "name": s.name,
                    "version": s.version,
                    "classes": s.num_classes,
                    "input": s.entry.config.input.model_dump(),
                }
                for s in pipeline.services.values()
            ]
        }
    )


async def model_detail(request: Request) -> Response:
    """One served model: its configuration and its instances now (with the process ids running them)."""
    try:
        service = state_of(request).accepting().get(request.path_params["name"])
    except ServoscopeError as exc:  # answered here: the catch-all handler would also drop the connection
        return error_response(exc)
    return json_response(
        {
            "name": service.name,
            "version": service.version,
            "classes": service.num_classes,
            "config": service.entry.config.model_dump(mode="json"),
            "instances": [dataclasses.asdict(info) for info in service.instances()],
        }
    )


async def config(request: Request) -> Response:
    state = state_of(request)
    return json_response({"service": effective(state.settings), "models": state.model_configs})


inference_routes = [Route("/v1/models/{name}/classify", classify, methods=["POST"])]  # the door's too (door.py)
routes = [
    *inference_routes,
    Route("/v1/models", list_models, methods=["GET"]),
    Route("/v1/models/{name}", model_detail, methods=["GET"]),
    Route("/v1/config", config, methods=["GET"]),
]
