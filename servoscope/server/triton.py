"""Triton's model configuration and statistics extensions over HTTP, in Triton's JSON shapes:

- ``GET /v2/models/{name}[/versions/{version}]/config``: the model's ``config.toml`` as Triton's
  ``ModelConfig`` (max_batch_size, input and output with data types and dims, dynamic_batching,
  instance_group); the same document the gRPC ``ModelConfig`` call returns.
- ``GET /v2/models[/{name}[/versions/{version}]]/stats``: ``{"model_stats": [...]}`` with
  ``inference_stats`` and ``batch_stats`` (see ``telemetry/triton_stats.py`` for how servoscope's
  stages map onto Triton's fields); also the gRPC ``ModelStatistics`` call's document.

The model's input is a batch of encoded images (``TYPE_STRING``, Triton's name for BYTES), one per
row (dims ``[1]``: perf_analyzer needs a dim beyond the batch); the outputs are ``[batch, top_k]``.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from servoscope.errors import ServoscopeError, Unavailable
from servoscope.pipeline.admission import Priority
from servoscope.pipeline.service import ModelService
from servoscope.server.http import error_response, json_response
from servoscope.server.state import ServerState, state_of
from servoscope.server.v2 import INPUT_NAME, OUTPUTS
from servoscope.settings import Settings
from servoscope.telemetry.triton_stats import model_statistics

TRITON_TYPES = {"BYTES": "TYPE_STRING", "FP32": "TYPE_FP32", "INT64": "TYPE_INT64"}
GPU_PROVIDERS = frozenset({"cuda", "tensorrt"})


def model_config(service: ModelService, settings: Settings) -> dict[str, Any]:
    """The model's configuration as Triton's ``ModelConfig`` (proto field names, JSON numbers)."""
    config = service.entry.config
    batching = config.batching
    gpu = config.accelerator in GPU_PROVIDERS
    return {
        "name": service.name,
        "platform": config.engine.platform,
        "backend": "pytorch" if config.engine.name == "torch" else "onnxruntime",
        "version_policy": {"latest": {"num_versions": 1}},
        "max_batch_size": batching.max_batch_size,
        "input": [{"name": INPUT_NAME, "data_type": "TYPE_STRING", "format": "FORMAT_NONE", "dims": [1]}],
        "output": [
            {"name": name, "data_type": TRITON_TYPES[dtype], "dims": [-1], "label_filename": ""}
            for name, dtype in OUTPUTS.items()
        ],
        "dynamic_batching": {
            "preferred_batch_size": list(batching.preferred_batch_sizes),
            "max_queue_delay_microseconds": round(batching.max_queue_delay_s * 1_000_000),
            "preserve_ordering": False,
            "priority_levels": len(Priority),
            "default_priority_level": Priority.NORMAL + 1,  # Triton's levels start at 1 (highest)
            "default_queue_policy": {
                "timeout_action": "REJECT",
                "default_timeout_microseconds": round(settings.request_timeout_s * 1_000_000),
                "allow_timeout_override": True,
                "max_queue_size": batching.max_queue_size,
            },
        },
        "instance_group": [
            {
                "name": service.name,
                "kind": "KIND_GPU" if gpu else "KIND_CPU",
                "count": len(service.batcher.instances),
                "gpus": [0] if gpu else [],
            }
        ],
        "default_model_filename": "model.onnx",
        "parameters": {"description": {"string_value": config.description}} if config.description else {},
    }


def statistics(state: ServerState, name: str | None, version: str | None) -> dict[str, Any]:
    """``{"model_stats": [...]}`` for one model, or for every served model when ``name`` is None."""
    pipeline = state.accepting()
    services = [state.service(name, version)] if name else list(pipeline.services.values())
    triton = state.triton_stats
    if triton is None:
        raise Unavailable("statistics need telemetry, which is off (setting telemetry = false)", reason="telemetry_off")
    return {"model_stats": [model_statistics(s.name, s.version, triton.models.get(s.name)) for s in services]}


async def config(request: Request) -> Response:
    state = state_of(request)
    try:
        service = state.service(request.path_params["name"], request.path_params.get("version"))
        return json_response(model_config(service, state.settings))
    except ServoscopeError as exc:
        return error_response(exc)


async def stats(request: Request) -> Response:
    try:
        params = request.path_params
        return json_response(statistics(state_of(request), params.get("name"), params.get("version")))
    except ServoscopeError as exc:
        return error_response(exc)


_MODEL = "/v2/models/{name}"
_VERSIONED = "/v2/models/{name}/versions/{version}"
routes = [
    *(Route(base + "/config", config, methods=["GET"]) for base in (_MODEL, _VERSIONED)),
    *(Route(base + "/stats", stats, methods=["GET"]) for base in ("/v2/models", _MODEL, _VERSIONED)),
]
