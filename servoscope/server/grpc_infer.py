"""``ModelInfer`` over gRPC: the same pipeline, admission, deadlines and priorities as the HTTP
Open Inference Protocol (``server/inference.py``), and the same records.

The request: one ``BYTES`` input ``image`` of shape ``[N]`` (or ``[N, 1]``), its elements either in
``raw_input_contents[0]`` (each a 4-byte little-endian length, then the bytes: what tritonclient
and perf_analyzer send) or in ``contents.bytes_contents``. Parameter ``top_k`` (int64). Outputs in
``raw_output_contents``, one blob per output, in the order of the ``outputs`` list.
Metadata: ``x-priority`` (high, normal, low), ``x-request-timeout`` (ms) beside gRPC's own
deadline (the earlier wins), ``traceparent`` for tracing. The per-stage timings come back as
trailing metadata ``server-timing``, in the ``Server-Timing`` header's form.
"""

from __future__ import annotations

from collections.abc import Mapping

import grpc

from servoscope.errors import InvalidParameter
from servoscope.pipeline.service import Classification, ModelService
from servoscope.server.grpc_status import abort_with
from servoscope.server.http import MAX_TIMEOUT_S, headers_priority, headers_timeout_s, variant_header
from servoscope.server.inference import classify_all, per_image
from servoscope.server.protos import grpc_service_pb2 as pb
from servoscope.server.state import ServerState, mark_failed, slowest
from servoscope.server.v2 import (
    OUTPUTS,
    checked_images,
    deserialize_bytes,
    image_count,
    output_tensors,
    serialize_bytes,
)
from servoscope.stages import Stage, Timing

PROTOCOL = "grpc"


def metadata_of(context: grpc.aio.ServicerContext) -> dict[str, str]:
    """The call's text metadata, keys in lower case (binary ``-bin`` entries left out)."""
    return {k.lower(): v for k, v in (context.invocation_metadata() or ()) if isinstance(v, str)}


def deadline_s(context: grpc.aio.ServicerContext, metadata: Mapping[str, str], default: float) -> float:
    """Seconds the request may take: gRPC's deadline or ``x-request-timeout``, the earlier."""
    own = headers_timeout_s(metadata, default)
    remaining = context.time_remaining()
    return min(own, remaining, MAX_TIMEOUT_S) if remaining is not None else own


def request_images(request: pb.ModelInferRequest, max_images: int) -> list[bytes]:
    if len(request.inputs) != 1:
        count = len(request.inputs)
        raise InvalidParameter(f"expected exactly one input tensor 'image' of datatype BYTES, got {count} inputs")
    tensor = request.inputs[0]
    shape = list(tensor.shape)
    count = image_count(tensor.name, tensor.datatype, shape)
    if request.raw_input_contents:
        if len(request.raw_input_contents) != 1:
            raise InvalidParameter(f"one raw_input_contents entry per input, got {len(request.raw_input_contents)}")
        images = deserialize_bytes(request.raw_input_contents[0])
    else:
        images = list(tensor.contents.bytes_contents)
    return checked_images(images, shape, count, max_images)


def request_top_k(request: pb.ModelInferRequest, default: int) -> int:
    if "top_k" not in request.parameters:
        return default
    value = request.parameters["top_k"]
    kind = value.WhichOneof("parameter_choice")
    if kind not in ("int64_param", "uint64_param"):
        raise InvalidParameter(f"parameter top_k must be an integer, got a {kind}")
    return int(getattr(value, kind))


def requested_outputs(request: pb.ModelInferRequest) -> list[str]:
    names = [o.name for o in request.outputs] or list(OUTPUTS)
    unknown = [n for n in names if n not in OUTPUTS]
    if unknown:
        raise InvalidParameter(f"unknown outputs {unknown}; this model has {list(OUTPUTS)}")
    return names


def infer_response(
    service: ModelService, request: pb.ModelInferRequest, names: list[str], results: list[Classification]
) -> pb.ModelInferResponse:
    tensors = output_tensors(results)
    response = pb.ModelInferResponse(model_name=service.name, model_version=service.version, id=request.id)
    for name in names:
        array = tensors[name]
        response.outputs.add(name=name, datatype=OUTPUTS[name], shape=list(array.shape))
        blob = serialize_bytes(array.ravel().tolist()) if name == "labels" else array.tobytes()
        response.raw_output_contents.append(blob)
    return response


async def model_infer(
    state: ServerState, request: pb.ModelInferRequest, context: grpc.aio.ServicerContext
) -> pb.ModelInferResponse:
    settings, clock = state.settings, state.clock
    metadata = metadata_of(context)
    first = state.arrived_with(metadata, "infer", PROTOCOL)
    timings: list[Timing] = [first]
    error: Exception | None = None
    variant = ""
    try:
        named = state.service(request.model_name, request.model_version or None)
        state.observer.arrived(named.name)  # the demand, counted on arrival as the HTTP door does
        service, variant = state.rollouts.route(named, metadata, first)  # in a rollout: x-variant, x-client-key
        first.model = service.name
        deadline = first.start + deadline_s(context, metadata, settings.request_timeout_s)
        rank = headers_priority(metadata)
        images = request_images(request, settings.max_images_per_request)
        top_k = service.check_top_k(request_top_k(request, settings.default_top_k))
        names = requested_outputs(request)
        timings = per_image(first, len(images))
        results = await classify_all(service, images, timings, top_k, deadline, rank, clock)
        response = infer_response(service, request, names, results)
        state.rollouts.mirror(named.name, images, results)
    except Exception as exc:
        mark_failed(timings, exc)
        error = exc
    finally:
        trailer = (
            ("server-timing", slowest(timings, first.start).server_timing()),
            *((name.lower(), value) for name, value in variant_header(variant).items()),
        )
        record(state, timings)
    if error is not None:
        await abort_with(context, error, trailer)
    context.set_trailing_metadata(trailer)
    return response


def record(state: ServerState, timings: list[Timing]) -> None:
    """The request's records, once its answer is handed to gRPC (a call cancelled before: 499)."""
    handed = state.clock.now()
    state.open_requests -= 1
    for timing in timings:
        if timing.status == 0:
            timing.status, timing.error = 499, "cancelled"
        timing.end(Stage.RESPOND, handed)
        state.observer.record(timing)
        state.rollouts.recorded(timing)
