"""The gRPC Open Inference Protocol: Triton's ``inference.GRPCInferenceService`` (KServe v2's
``GRPCInferenceService`` plus Triton's model configuration and statistics calls), the service
name ``tritonclient.grpc`` and perf_analyzer call.

It runs on grpcio's asyncio server in the event loop uvicorn runs (started and stopped by the app's
lifespan), on ``settings.grpc_port`` of the same host. Served: ServerLive, ServerReady, ModelReady,
ServerMetadata, ModelMetadata, ModelInfer (``server/grpc_infer.py``), ModelConfig and
ModelStatistics; any other call is UNIMPLEMENTED. On SIGTERM readiness turns false and new
inference is refused UNAVAILABLE while the HTTP side drains; then open calls get up to
``shutdown_timeout_s`` to finish before the pipeline stops.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from google.protobuf import json_format
from google.protobuf.message import Message

from servoscope import __version__
from servoscope.errors import ServoscopeError
from servoscope.server import grpc_infer
from servoscope.server.grpc_status import abort_with
from servoscope.server.protos import grpc_service_pb2 as pb
from servoscope.server.state import ServerState
from servoscope.server.triton import model_config, statistics
from servoscope.server.v2 import EXTENSIONS, INPUT_NAME, INPUT_SHAPE, OUTPUTS
from servoscope.settings import Settings

log = logging.getLogger(__name__)

SERVICE = "inference.GRPCInferenceService"
Handler = Callable[[ServerState, Any, grpc.aio.ServicerContext], Awaitable[Message]]


async def server_live(state: ServerState, request: pb.ServerLiveRequest, context: Any) -> pb.ServerLiveResponse:
    return pb.ServerLiveResponse(live=True)


async def server_ready(state: ServerState, request: pb.ServerReadyRequest, context: Any) -> pb.ServerReadyResponse:
    return pb.ServerReadyResponse(ready=state.ready)


async def model_ready(state: ServerState, request: pb.ModelReadyRequest, context: Any) -> pb.ModelReadyResponse:
    try:
        state.service(request.name, request.version or None)
    except ServoscopeError:
        return pb.ModelReadyResponse(ready=False)
    return pb.ModelReadyResponse(ready=True)


async def server_metadata(
    state: ServerState, request: pb.ServerMetadataRequest, context: Any
) -> pb.ServerMetadataResponse:
    return pb.ServerMetadataResponse(name="servoscope", version=__version__, extensions=EXTENSIONS)


async def model_metadata(
    state: ServerState, request: pb.ModelMetadataRequest, context: Any
) -> pb.ModelMetadataResponse:
    service = state.service(request.name, request.version or None)
    tensor = pb.ModelMetadataResponse.TensorMetadata
    return pb.ModelMetadataResponse(
        name=service.name,
        versions=[service.version],
        platform=service.entry.config.engine.platform,
        inputs=[tensor(name=INPUT_NAME, datatype="BYTES", shape=INPUT_SHAPE)],
        outputs=[tensor(name=name, datatype=dtype, shape=[-1, -1]) for name, dtype in OUTPUTS.items()],
    )


async def model_config_call(state: ServerState, request: pb.ModelConfigRequest, context: Any) -> pb.ModelConfigResponse:
    service = state.service(request.name, request.version or None)
    response = pb.ModelConfigResponse()
    json_format.ParseDict(model_config(service, state.settings), response.config)
    return response


async def model_statistics(
    state: ServerState, request: pb.ModelStatisticsRequest, context: Any
) -> pb.ModelStatisticsResponse:
    document = statistics(state, request.name or None, request.version or None)
    return json_format.ParseDict(document, pb.ModelStatisticsResponse())


CALLS: dict[str, tuple[Handler, type[Message]]] = {
    "ServerLive": (server_live, pb.ServerLiveRequest),
    "ServerReady": (server_ready, pb.ServerReadyRequest),
    "ModelReady": (model_ready, pb.ModelReadyRequest),
    "ServerMetadata": (server_metadata, pb.ServerMetadataRequest),
    "ModelMetadata": (model_metadata, pb.ModelMetadataRequest),
    "ModelInfer": (grpc_infer.model_infer, pb.ModelInferRequest),
    "ModelConfig": (model_config_call, pb.ModelConfigRequest),
    "ModelStatistics": (model_statistics, pb.ModelStatisticsRequest),
}


def bound(state: ServerState, handler: Handler) -> Callable[[Any, grpc.aio.ServicerContext], Awaitable[Message]]:
    """``handler`` with the server's state, its servoscope errors answered with their status codes."""

    async def call(request: Any, context: grpc.aio.ServicerContext) -> Message:
        try:
            return await handler(state, request, context)
        except ServoscopeError as exc:
            await abort_with(context, exc)
            raise  # not reached: abort raises

    return call


def serialize(message: Message) -> bytes:
    return message.SerializeToString()


def service_handler(state: ServerState) -> grpc.GenericRpcHandler:
    return grpc.method_handlers_generic_handler(
        SERVICE,
        {
            name: grpc.unary_unary_rpc_method_handler(
                bound(state, handler), request_deserializer=request.FromString, response_serializer=serialize
            )
            for name, (handler, request) in CALLS.items()
        },
    )


async def start(state: ServerState, settings: Settings) -> tuple[grpc.aio.Server, int]:
    """The gRPC server, listening on ``settings.host:settings.grpc_port``, and the port it bound."""
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", settings.max_body_bytes),
            ("grpc.max_send_message_length", settings.max_body_bytes),
            ("grpc.so_reuseport", 0),  # a port in use is an error, not shared
        ]
    )
    server.add_generic_rpc_handlers((service_handler(state),))
    address = f"[{settings.host}]" if ":" in settings.host else settings.host
    try:
        port = server.add_insecure_port(f"{address}:{settings.grpc_port}")
    except RuntimeError:
        raise OSError(
            f"cannot listen for gRPC on {settings.host}:{settings.grpc_port}: the port is taken or not allowed "
            "(setting grpc_port, --grpc-port; 0: no gRPC)"
        ) from None
    await server.start()
    log.info("gRPC Open Inference Protocol on %s:%d", settings.host, port)
    return server, port
