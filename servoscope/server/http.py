"""Small HTTP helpers shared by the API modules: JSON responses, errors, bounded body reads."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from uvicorn.protocols.http.httptools_impl import STATUS_LINE

from servoscope.errors import InvalidParameter, PayloadTooLarge, RequestTimeout, ServoscopeError, http_status
from servoscope.pipeline.admission import Priority
from servoscope.rollout.split import HEADER as VARIANT_HEADER

JSON = "application/json"


def json_response(content: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY), status, headers, JSON)


def retry_after(seconds: float) -> int:
    """``Retry-After`` in whole seconds, at least one."""
    return max(1, math.ceil(seconds))


def error_response(exc: BaseException, headers: dict[str, str] | None = None) -> Response:
    """``{"error": message}`` with the error's status, and ``Retry-After`` on overload."""
    message = exc.message if isinstance(exc, ServoscopeError) else "internal error"
    all_headers = dict(headers or {})
    retry = getattr(exc, "retry_after_s", None)
    if retry is not None:
        all_headers["Retry-After"] = str(retry_after(retry))
    return json_response({"error": message}, http_status(exc), all_headers)


def raw_error(status: int, message: str, retry_after_s: float | None = None, close: bool = True) -> bytes:
    """The same ``{"error": message}`` answer as a whole HTTP/1.1 response, for the HTTP protocol to
    write itself before any app runs (a refusal at the door, a head too large or too slow)."""
    body = orjson.dumps({"error": message})
    head = b"content-type: application/json\r\ncontent-length: %d\r\n" % len(body)
    if retry_after_s is not None:
        head += b"retry-after: %d\r\n" % retry_after(retry_after_s)
    if close:
        head += b"connection: close\r\n"
    return STATUS_LINE[status] + head + b"\r\n" + body


@dataclass(frozen=True, slots=True)
class BodyRules:
    """How a request body must arrive: at most ``max_bytes``, within ``timeout_s``, and — once
    ``grace_s`` has passed — at an average of ``min_rate_bytes_s`` or more since it began (Kestrel's
    MinRequestBodyDataRate, 240 B/s after 5 s; nginx's client_body_timeout is 60 s)."""

    max_bytes: int
    timeout_s: float
    min_rate_bytes_s: float = 240.0
    grace_s: float = 5.0


async def read_body(request: Request, rules: BodyRules) -> bytes:
    """The whole body, refused with 413 as soon as it is known to exceed the limit, and with 408 when
    it has not all arrived within the timeout or arrives slower than the minimum rate after the grace
    period — so a client trickling its body (slowloris), or sending chunks that never end, holds its
    connection for a bounded time, while a slow but steady upload (a phone on a poor link) arrives."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise InvalidParameter(f"Content-Length is not a number: {declared!r}") from None
        if size > rules.max_bytes:
            raise PayloadTooLarge(f"body is {size} bytes, above the limit of {rules.max_bytes}")
    loop = asyncio.get_running_loop()
    started = loop.time()
    chunks: list[bytes] = []
    received = 0
    try:
        async with asyncio.timeout(_next_byte_due(started, 0, rules)) as timer:
            async for chunk in request.stream():
                received += len(chunk)
                if received > rules.max_bytes:
                    raise PayloadTooLarge(f"body exceeds the limit of {rules.max_bytes} bytes")
                chunks.append(chunk)
                timer.reschedule(_next_byte_due(started, received, rules))
    except TimeoutError:
        elapsed = loop.time() - started
        if elapsed >= rules.timeout_s - 1e-3:
            raise RequestTimeout(
                f"the request body did not arrive within the body timeout of {rules.timeout_s:g} s"
            ) from None
        raise RequestTimeout(
            f"the request body arrives too slowly: {received} bytes in {elapsed:.1f} s, below the minimum of "
            f"{rules.min_rate_bytes_s:g} bytes/s"
        ) from None
    return b"".join(chunks)


def _next_byte_due(started: float, received: int, rules: BodyRules) -> float:
    """When more of the body must have arrived: the average rate since ``started`` may fall to the
    minimum after the grace period, and the whole body is due by the timeout."""
    by_rate = started + max(rules.grace_s, received / rules.min_rate_bytes_s)
    return min(by_rate, started + rules.timeout_s)


def int_param(request: Request, name: str, default: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        raise InvalidParameter(f"{name} must be an integer, got {raw!r}") from None


MAX_TIMEOUT_S = 3600.0
GRPC_UNITS_S = {"H": 3600.0, "M": 60.0, "S": 1.0, "m": 1e-3, "u": 1e-6, "n": 1e-9}


def timeout_s(request: Request, default: float) -> float:
    return headers_timeout_s(request.headers, default)


def headers_timeout_s(headers: Mapping[str, str], default: float) -> float:
    """The request's own deadline: ``X-Request-Timeout`` in milliseconds, or ``grpc-timeout`` in
    gRPC's form (an integer of up to 8 digits and a unit: H, M, S, m, u, n — ``250m`` is 250 ms);
    else the default."""
    raw = headers.get("x-request-timeout")
    if raw is not None:
        try:
            value = float(raw) / 1000.0
        except ValueError:
            value = -1.0
        if not 0 < value <= MAX_TIMEOUT_S or math.isnan(value):
            raise InvalidParameter(f"X-Request-Timeout must be milliseconds in (0, 3600000], got {raw!r}")
        return value
    raw = headers.get("grpc-timeout")
    if raw is not None:
        digits, unit = raw[:-1], raw[-1:]
        if not (digits.isdigit() and len(digits) <= 8 and unit in GRPC_UNITS_S) or int(digits) == 0:
            raise InvalidParameter(f"grpc-timeout must be 1-8 digits and a unit (H, M, S, m, u, n), got {raw!r}")
        return min(MAX_TIMEOUT_S, int(digits) * GRPC_UNITS_S[unit])
    return default


def priority(request: Request) -> Priority:
    return headers_priority(request.headers)


def headers_priority(headers: Mapping[str, str]) -> Priority:
    """The request's ``X-Priority`` (high, normal, low; default normal)."""
    try:
        return Priority.parse(headers.get("x-priority"))
    except ValueError as exc:
        raise InvalidParameter(f"X-Priority: {exc}") from None


def variant_header(variant: str) -> dict[str, str]:
    """The answer's ``X-Variant`` during a rollout (gRPC: trailing metadata ``x-variant``); none otherwise."""
    return {VARIANT_HEADER: variant} if variant else {}
