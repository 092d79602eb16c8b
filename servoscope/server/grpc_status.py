"""servoscope's errors as gRPC status codes — the one table beside ``errors.py``'s HTTP statuses:

    400 bad request, 408, 413, 415   INVALID_ARGUMENT
    404 model not found              NOT_FOUND
    429 refused (overload)           RESOURCE_EXHAUSTED, with google.rpc.RetryInfo and ``retry-after``
    503 starting, draining, lost     UNAVAILABLE, with the same retry advice
    504 deadline passed              DEADLINE_EXCEEDED
    500 anything else                INTERNAL

The retry advice travels as gRPC's rich status (``grpc-status-details-bin``: a ``google.rpc.Status``
holding a ``RetryInfo``) and, for clients that read plain metadata, as ``retry-after`` in seconds.
"""

from __future__ import annotations

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2, status_pb2

from servoscope.errors import ServoscopeError, http_status
from servoscope.server.http import retry_after

Metadata = tuple[tuple[str, str | bytes], ...]

CODES: dict[int, grpc.StatusCode] = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    408: grpc.StatusCode.INVALID_ARGUMENT,
    413: grpc.StatusCode.INVALID_ARGUMENT,
    415: grpc.StatusCode.INVALID_ARGUMENT,
    404: grpc.StatusCode.NOT_FOUND,
    429: grpc.StatusCode.RESOURCE_EXHAUSTED,
    503: grpc.StatusCode.UNAVAILABLE,
    504: grpc.StatusCode.DEADLINE_EXCEEDED,
}


def status_code(exc: BaseException) -> grpc.StatusCode:
    return CODES.get(http_status(exc), grpc.StatusCode.INTERNAL)


def retry_metadata(code: grpc.StatusCode, message: str, retry_after_s: float) -> Metadata:
    """``grpc-status-details-bin`` with a RetryInfo, and ``retry-after`` in whole seconds."""
    delay = duration_pb2.Duration(seconds=int(retry_after_s), nanos=int(retry_after_s % 1 * 1e9))
    detail = any_pb2.Any()
    detail.Pack(error_details_pb2.RetryInfo(retry_delay=delay))
    status = status_pb2.Status(code=code.value[0], message=message, details=[detail])
    return (("grpc-status-details-bin", status.SerializeToString()), ("retry-after", str(retry_after(retry_after_s))))


def error_metadata(exc: BaseException, code: grpc.StatusCode) -> Metadata:
    retry = getattr(exc, "retry_after_s", None)
    return retry_metadata(code, message_of(exc), retry) if retry is not None else ()


def message_of(exc: BaseException) -> str:
    return exc.message if isinstance(exc, ServoscopeError) else "internal error"


async def abort_with(context: grpc.aio.ServicerContext, exc: BaseException, extra: Metadata = ()) -> None:
    """End the call with ``exc``'s status code and message (raises, as ``context.abort`` does)."""
    code = status_code(exc)
    await context.abort(code, message_of(exc), trailing_metadata=(*error_metadata(exc, code), *extra))
