"""Small HTTP helpers shared by the API modules: JSON responses, errors, bounded body reads."""

from __future__ import annotations

import math
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from servoscope.errors import InvalidParameter, PayloadTooLarge, ServoscopeError, http_status

JSON = "application/json"


def json_response(content: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY), status, headers, JSON)


def error_response(exc: BaseException, headers: dict[str, str] | None = None) -> Response:
    """``{"error": message}`` with the error's status, and ``Retry-After`` on overload."""
    message = exc.message if isinstance(exc, ServoscopeError) else "internal error"
    all_headers = dict(headers or {})
    retry = getattr(exc, "retry_after_s", None)
    if retry is not None:
        all_headers["Retry-After"] = str(max(1, math.ceil(retry)))
    return json_response({"error": message}, http_status(exc), all_headers)


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, refused with 413 as soon as it is known to exceed ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise InvalidParameter(f"Content-Length is not a number: {declared!r}") from None
        if size > limit:
            raise PayloadTooLarge(f"body is {size} bytes, above the limit of {limit}")
    chunks = []
    received = 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > limit:
            raise PayloadTooLarge(f"body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def int_param(request: Request, name: str, default: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        raise InvalidParameter(f"{name} must be an integer, got {raw!r}") from None


def timeout_s(request: Request, default: float) -> float:
    """The request's own deadline from ``X-Request-Timeout`` (milliseconds), or the default."""
    raw = request.headers.get("x-request-timeout")
    if raw is None:
        return default
    try:
        value = float(raw) / 1000.0
    except ValueError:
        value = -1.0
    if not 0 < value <= 3600 or math.isnan(value):
        raise InvalidParameter(f"X-Request-Timeout must be milliseconds in (0, 3600000], got {raw!r}")
    return value
