"""The gRPC Open Inference Protocol with Triton's own gRPC client, against a real server on loopback;
each error code pinned. Raw calls (grpcio with servoscope's messages) where tritonclient hides what
is checked: trailing metadata, ``bytes_contents``."""

from __future__ import annotations

import signal
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest
import tritonclient.grpc as triton
from google.rpc import error_details_pb2, status_pb2
from tritonclient.utils import InferenceServerException

from servoscope.server.protos import grpc_service_pb2 as pb
from servoscope.stages import parse_server_timing
from support import (
    CLEAR_TOP1,
    MODEL,
    Photo,
    ServerProcess,
    classify,
    free_port,
    metric_value,
    start_server,
    top1,
    wait_for,
)
from test_overload import HOLDING_FLAGS, HeldRequest, wait_pending

INFER_METHOD = "/inference.GRPCInferenceService/ModelInfer"
READY_METHOD = "/inference.GRPCInferenceService/ServerReady"
Grpc = tuple[ServerProcess, str]  # a server, and its gRPC address
Client = triton.InferenceServerClient
Photos = dict[str, Photo]
Metadata = tuple[tuple[str, str], ...]


@pytest.fixture(scope="module")
def grpc_server(model_repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Grpc]:
    port = free_port()
    srv = start_server(model_repository, tmp_path_factory.mktemp("grpc"), ("--models", MODEL, "--grpc-port", str(port)))
    yield srv, f"127.0.0.1:{port}"
    srv.stop()


@pytest.fixture(scope="module")
def triton_client(grpc_server: tuple[ServerProcess, str]) -> Iterator[Client]:
    client = triton.InferenceServerClient(grpc_server[1])
    yield client
    client.close()


def spawn_with_grpc(spawn_server: Callable[..., ServerProcess], *args: str, env: dict[str, str] | None = None) -> Grpc:
    port = free_port()
    return spawn_server("--models", MODEL, "--grpc-port", str(port), *args, env=env), f"127.0.0.1:{port}"


def image_input(images: list[bytes]) -> triton.InferInput:
    tensor = triton.InferInput("image", [len(images)], "BYTES")
    tensor.set_data_from_numpy(np.array(images, dtype=object))
    return tensor


def raw_request(images: list[bytes], **parameters: int) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name=MODEL)
    tensor = request.inputs.add(name="image", datatype="BYTES", shape=[len(images)])
    tensor.contents.bytes_contents.extend(images)
    for key, value in parameters.items():
        request.parameters[key].int64_param = value
    return request


def raw_infer(
    address: str, request: pb.ModelInferRequest, metadata: Metadata = ()
) -> tuple[pb.ModelInferResponse, dict[str, str]]:
    with grpc.insecure_channel(address) as channel:
        call = channel.unary_unary(
            INFER_METHOD, pb.ModelInferRequest.SerializeToString, pb.ModelInferResponse.FromString
        )
        response, state = call.with_call(request, metadata=metadata, timeout=30)
        return response, dict(state.trailing_metadata())


def raw_error(address: str, request: pb.ModelInferRequest, metadata: Metadata = ()) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        raw_infer(address, request, metadata)
    return info.value


def test_health_and_metadata(triton_client: Client) -> None:
    assert triton_client.is_server_live() and triton_client.is_server_ready()
    assert triton_client.is_model_ready(MODEL) and triton_client.is_model_ready(MODEL, "1")
    assert not triton_client.is_model_ready("no_such_model")
    server = triton_client.get_server_metadata(as_json=True)
    assert server["name"] == "servoscope" and "statistics" in server["extensions"]
    model = triton_client.get_model_metadata(MODEL, as_json=True)
    assert model["versions"] == ["1"]
    assert model["inputs"] == [{"name": "image", "datatype": "BYTES", "shape": ["-1", "1"]}]


@pytest.mark.parametrize("name", CLEAR_TOP1)
def test_infer_matches_http(triton_client: Client, grpc_server: Grpc, photos: Photos, name: str) -> None:
    data = photos[name].jpeg
    result = triton_client.infer(MODEL, [image_input([data])], parameters={"top_k": 3})
    assert result.as_numpy("labels").shape == (1, 3) and result.as_numpy("scores").dtype == np.float32
    assert result.as_numpy("indices").dtype == np.int64
    with httpx.Client(base_url=grpc_server[0].url, timeout=30) as client:
        assert result.as_numpy("labels")[0, 0].decode() == top1(classify(client, data))


def test_bytes_contents_and_server_timing_trailer(grpc_server: Grpc, photos: Photos) -> None:
    request = raw_request([photos["coffee"].jpeg, photos["rocket"].jpeg], top_k=2)
    request.outputs.add(name="scores")
    response, trailer = raw_infer(grpc_server[1], request)
    assert [o.name for o in response.outputs] == ["scores"] and list(response.outputs[0].shape) == [2, 2]
    scores = np.frombuffer(response.raw_output_contents[0], dtype="<f4").reshape(2, 2)
    assert (scores[:, 0] >= scores[:, 1]).all()
    stages = parse_server_timing(trailer["server-timing"])
    assert {"ingest", "preprocess_wait", "preprocess", "batch_wait", "inference", "postprocess", "total"} <= set(stages)


def test_config_and_statistics_twins(triton_client: Client, grpc_server: Grpc) -> None:
    config = triton_client.get_model_config(MODEL, as_json=True)["config"]
    with httpx.Client(base_url=grpc_server[0].url, timeout=30) as client:
        http_config = client.get(f"/v2/models/{MODEL}/config").json()
        assert int(config["max_batch_size"]) == http_config["max_batch_size"]
        assert config["instance_group"][0]["count"] == http_config["instance_group"][0]["count"]
        assert config["input"][0] == {"name": "image", "data_type": "TYPE_STRING", "dims": ["1"]}  # defaults left out
        served = triton_client.get_inference_statistics(MODEL, as_json=True)["model_stats"][0]
        assert served["name"] == MODEL and int(served["inference_stats"]["success"]["count"]) >= 1
        metrics = client.get("/metrics").text
    served = metric_value(metrics, "servoscope_protocol_requests_total", model=MODEL, protocol="grpc", code="200")
    assert served is not None and served >= 1


def test_invalid_argument(triton_client: Client, grpc_server: Grpc, photos: Photos) -> None:
    with pytest.raises(InferenceServerException) as info:
        triton_client.infer(MODEL, [image_input([photos["coffee"].jpeg])], parameters={"top_k": 0})
    assert info.value.status() == "StatusCode.INVALID_ARGUMENT" and "top_k" in info.value.message()
    error = raw_error(grpc_server[1], raw_request([b"not an image"]))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    truncated = raw_request([])
    truncated.inputs[0].shape[:] = [1]
    truncated.raw_input_contents.append(b"\xff\x00\x00\x00abc")
    assert raw_error(grpc_server[1], truncated).code() == grpc.StatusCode.INVALID_ARGUMENT


def test_not_found(triton_client: Client, photos: Photos) -> None:
    with pytest.raises(InferenceServerException) as info:
        triton_client.infer("no_such_model", [image_input([photos["coffee"].jpeg])])
    assert info.value.status() == "StatusCode.NOT_FOUND" and "no_such_model" in info.value.message()
    with pytest.raises(InferenceServerException) as info:
        triton_client.get_model_config("no_such_model")
    assert info.value.status() == "StatusCode.NOT_FOUND"


def test_deadline_exceeded(spawn_server: Callable[..., ServerProcess], photos: Photos) -> None:
    # a 1 µs deadline (X-Request-Timeout in ms, as over HTTP) has always passed when a decode worker
    # picks the request up: the server itself answers DEADLINE_EXCEEDED, the client set no deadline
    _srv, address = spawn_with_grpc(spawn_server, "--preprocess-workers", "1")
    error = raw_error(address, raw_request([photos["coffee"].jpeg]), (("x-request-timeout", "0.001"),))
    assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED and "deadline" in error.details()
    assert "inference" not in parse_server_timing(dict(error.trailing_metadata())["server-timing"])


def test_resource_exhausted_with_retry_info(spawn_server: Callable[..., ServerProcess], photos: Photos) -> None:
    srv, address = spawn_with_grpc(
        spawn_server, *HOLDING_FLAGS, env={"SERVOSCOPE_MAX_PENDING": "10", "SERVOSCOPE_ADMISSION": "static"}
    )
    holders = [HeldRequest(srv, photos["coffee"].jpeg, "high") for _ in range(10)]
    try:
        wait_pending(srv, 10)
        error = raw_error(address, raw_request([photos["coffee"].jpeg]), (("x-priority", "high"),))
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "capacity" in error.details()
        trailer = dict(error.trailing_metadata())
        assert trailer["retry-after"] == "1"
        status = status_pb2.Status.FromString(trailer["grpc-status-details-bin"])
        retry = error_details_pb2.RetryInfo()
        assert status.code == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0] and status.details[0].Unpack(retry)
        assert retry.retry_delay.seconds + retry.retry_delay.nanos / 1e9 > 0
        with triton.InferenceServerClient(address) as client, pytest.raises(InferenceServerException) as info:
            client.infer(MODEL, [image_input([photos["coffee"].jpeg])])
        assert info.value.status() == "StatusCode.RESOURCE_EXHAUSTED"
        assert [h.finish() for h in holders] == [200] * 10
    finally:
        for holder in holders:
            holder.sock.close()
    with httpx.Client(base_url=srv.url, timeout=10) as client:
        metrics = client.get("/metrics").text
    assert metric_value(metrics, "servoscope_refused_total", model=MODEL, reason="pending_limit") == 2
    assert metric_value(metrics, "servoscope_protocol_requests_total", model=MODEL, protocol="grpc", code="429") == 2


def test_a_taken_grpc_port_is_a_clear_start_error(model_repository: Path, tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(RuntimeError, match="server exited") as info:
            start_server(model_repository, tmp_path, ("--models", MODEL, "--grpc-port", str(port)))
    assert f"cannot listen for gRPC on 127.0.0.1:{port}" in str(info.value)


def test_unavailable_while_draining(spawn_server: Callable[..., ServerProcess], photos: Photos) -> None:
    srv, address = spawn_with_grpc(spawn_server, *HOLDING_FLAGS)
    held = HeldRequest(srv, photos["coffee"].jpeg, "normal")
    try:
        wait_pending(srv, 1)
        srv.process.send_signal(signal.SIGTERM)
        with grpc.insecure_channel(address) as channel:
            ready = channel.unary_unary(
                READY_METHOD, pb.ServerReadyRequest.SerializeToString, pb.ServerReadyResponse.FromString
            )
            wait_for(lambda: not ready(pb.ServerReadyRequest(), timeout=5).ready)
        error = raw_error(address, raw_request([photos["coffee"].jpeg]))
        assert error.code() == grpc.StatusCode.UNAVAILABLE and "shutting down" in error.details()
        assert dict(error.trailing_metadata())["retry-after"] == "1"
        assert held.finish() == 200  # open when the signal came: answered
    finally:
        held.sock.close()
    assert srv.stop() == 0
