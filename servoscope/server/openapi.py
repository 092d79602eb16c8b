"""``GET /openapi.json``: the JSON API described for client generators and humans."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from servoscope import __version__
from servoscope.server.http import json_response
from servoscope.stages import STAGE_NAMES

_ERROR = {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}}


def _error_responses(*codes: int) -> dict[str, Any]:
    reasons = {
        400: "bad request: empty body, not an image, truncated image, bad parameter",
        404: "unknown model",
        413: "body above the byte limit, or image above the pixel limit",
        415: "missing or unaccepted Content-Type",
        429: "overloaded: retry after the Retry-After header",
        503: "not ready, shutting down, or a model instance's process lost twice: retry after the Retry-After header",
        504: "deadline passed before the request was served",
    }
    return {
        str(code): {"description": reasons[code], "content": {"application/json": {"schema": _ERROR}}} for code in codes
    }


SPEC: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "servoscope", "version": __version__, "description": "Image classification, every stage timed."},
    "paths": {
        "/v1/models/{name}/classify": {
            "post": {
                "summary": "Classify one image",
                "parameters": [
                    {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}},
                    {
                        "name": "top_k",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "integer", "minimum": 1, "default": 5},
                    },
                    {
                        "name": "X-Request-Timeout",
                        "in": "header",
                        "required": False,
                        "description": "deadline in milliseconds; answered 504 when it passes",
                        "schema": {"type": "number", "exclusiveMinimum": 0},
                    },
                    {
                        "name": "X-Variant",
                        "in": "header",
                        "required": False,
                        "description": "during a rollout: the variant that answers (the answer's X-Variant says which)",
                        "schema": {"type": "string", "enum": ["baseline", "canary"]},
                    },
                    {
                        "name": "X-Client-Key",
                        "in": "header",
                        "required": False,
                        "description": "during a rollout: a client's key; the same key always gets the same variant",
                        "schema": {"type": "string", "maxLength": 256},
                    },
                ],
                "requestBody": {
                    "required": True,
                    "content": {
                        media: {"schema": {"type": "string", "format": "binary"}}
                        for media in ("image/jpeg", "image/png", "image/webp")
                    },
                },
                "responses": {
                    "200": {
                        "description": "top-k predictions; the Server-Timing header carries the stage durations",
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Classification"}}},
                    },
                    **_error_responses(400, 404, 413, 415, 429, 503, 504),
                },
            }
        },
        "/v1/models": {"get": {"summary": "The served models", "responses": {"200": {"description": "models"}}}},
        "/v1/models/{name}": {
            "get": {
                "summary": "One served model: its configuration and its instances (isolation, process id, restarts)",
                "parameters": [{"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}],
                "responses": {"200": {"description": "model"}, **_error_responses(404, 503)},
            }
        },
        "/v1/config": {
            "get": {"summary": "The effective configuration", "responses": {"200": {"description": "config"}}}
        },
    },
    "components": {
        "schemas": {
            "Classification": {
                "type": "object",
                "required": ["model", "version", "predictions", "batch_size", "timings_ms"],
                "properties": {
                    "model": {"type": "string"},
                    "version": {"type": "string"},
                    "batch_size": {"type": "integer", "description": "requests in the batch that carried this one"},
                    "predictions": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["label", "index", "score"],
                            "properties": {
                                "label": {"type": "string"},
                                "index": {"type": "integer"},
                                "score": {"type": "number"},
                            },
                        },
                    },
                    "timings_ms": {
                        "type": "object",
                        "properties": {name: {"type": "number"} for name in STAGE_NAMES},
                    },
                },
            }
        }
    },
}


async def openapi(request: Request) -> Response:
    return json_response(SPEC)


routes = [Route("/openapi.json", openapi, methods=["GET"])]
