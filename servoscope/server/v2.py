"""The Open Inference Protocol (KServe v2), so Triton/KServe clients work unchanged.

Input: one ``BYTES`` tensor of encoded images (JPEG, PNG or WebP), shape ``[N, 1]`` or ``[N]``, sent either
in JSON (each element base64-encoded, since JSON cannot carry raw bytes) or in Triton's
binary tensor data extension (``Inference-Header-Content-Length``; elements length-prefixed).
Outputs, each of shape ``[N, top_k]``: ``labels`` (BYTES), ``scores`` (FP32), ``indices`` (INT64).
Request parameter ``top_k`` (default: the service's). Outputs are returned as binary data when
the request asks for it per output (``parameters.binary_data``) or for all (``binary_data_output``).
"""

from __future__ import annotations

import base64
import binascii
import struct
from typing import Any

import numpy as np
import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from servoscope import __version__
from servoscope.errors import InvalidParameter, ServoscopeError
from servoscope.pipeline.service import Classification, ModelService
from servoscope.server.http import error_response, json_response, priority, read_body, timeout_s, variant_header
from servoscope.server.inference import classify_all, per_image
from servoscope.server.state import slowest, state_of
from servoscope.stages import Timing

HEADER_LENGTH = "inference-header-content-length"
INPUT_NAME = "image"
INPUT_SHAPE = [-1, 1]  # a batch of single encoded images (shape [N] is accepted too)
OUTPUTS = {"labels": "BYTES", "scores": "FP32", "indices": "INT64"}
EXTENSIONS = ["binary_tensor_data", "model_configuration", "statistics"]  # Triton's names for them


async def server_metadata(request: Request) -> Response:
    return json_response({"name": "servoscope", "version": __version__, "extensions": EXTENSIONS})


async def live(request: Request) -> Response:
    return json_response({"live": True})


async def ready(request: Request) -> Response:
    is_ready = state_of(request).ready
    return json_response({"ready": is_ready}, 200 if is_ready else 503)


def _service(request: Request) -> ModelService:
    return state_of(request).service(request.path_params["name"], request.path_params.get("version"))


async def model_metadata(request: Request) -> Response:
    try:
        service = _service(request)
    except ServoscopeError as exc:
        return error_response(exc)
    return json_response(
        {
            "name": service.name,
            "versions": [service.version],
            "platform": service.entry.config.engine.platform,
            "inputs": [{"name": INPUT_NAME, "datatype": "BYTES", "shape": INPUT_SHAPE}],
            "outputs": [{"name": name, "datatype": dtype, "shape": [-1, -1]} for name, dtype in OUTPUTS.items()],
        }
    )


async def model_ready(request: Request) -> Response:
    try:
        _service(request)
    except ServoscopeError as exc:
        return error_response(exc)
    return json_response({"name": request.path_params["name"], "ready": True})


def split_body(body: bytes, header_length: str | None) -> tuple[dict[str, Any], bytes]:
    """The JSON header and the binary section of an inference request."""
    if header_length is None:
        head, rest = body, b""
    else:
        try:
            n = int(header_length)
        except ValueError:
            raise InvalidParameter(f"Inference-Header-Content-Length is not a number: {header_length!r}") from None
        if not 0 < n <= len(body):
            raise InvalidParameter(f"Inference-Header-Content-Length {n} does not fit a body of {len(body)} bytes")
        head, rest = body[:n], body[n:]
    try:
        parsed = orjson.loads(head)
    except orjson.JSONDecodeError as exc:
        raise InvalidParameter(f"the inference request is not valid JSON: {exc}") from None
    if not isinstance(parsed, dict):
        raise InvalidParameter("the inference request must be a JSON object")
    return parsed, rest


def deserialize_bytes(blob: bytes) -> list[bytes]:
    """Triton's BYTES encoding: each element a little-endian uint32 length, then its bytes."""
    out, offset = [], 0
    while offset < len(blob):
        if offset + 4 > len(blob):
            raise InvalidParameter("BYTES tensor data is truncated (incomplete length prefix)")
        (n,) = struct.unpack_from("<I", blob, offset)
        offset += 4
        if offset + n > len(blob):
            raise InvalidParameter(f"BYTES element of {n} bytes runs past the end of the tensor data")
        out.append(blob[offset : offset + n])
        offset += n
    return out


def serialize_bytes(items: list[bytes]) -> bytes:
    return b"".join(struct.pack("<I", len(item)) + item for item in items)


def _flatten(data: Any) -> list[Any]:
    if isinstance(data, list):
        return [x for item in data for x in _flatten(item)]
    return [data]


def _parameters(obj: dict[str, Any], where: str) -> dict[str, Any]:
    """The ``parameters`` object of a request, input or output ({} when absent)."""
    params = obj.get("parameters")
    if params is None:
        return {}
    if not isinstance(params, dict):
        raise InvalidParameter(f"{where} parameters must be a JSON object, got {params!r}")
    return params


def _output_specs(request_json: dict[str, Any]) -> list[dict[str, Any]]:
    """The requested outputs ([] when absent: all of them)."""
    wanted = request_json.get("outputs")
    if wanted is None:
        return []
    if not isinstance(wanted, list) or not all(isinstance(o, dict) for o in wanted):
        raise InvalidParameter(f'outputs must be a list of objects like {{"name": "labels"}}, got {wanted!r}')
    return wanted


def parse_images(request_json: dict[str, Any], binary: bytes, max_images: int) -> list[bytes]:
    inputs = request_json.get("inputs")
    if not isinstance(inputs, list) or len(inputs) != 1 or not isinstance(inputs[0], dict):
        raise InvalidParameter(f"expected exactly one input tensor {INPUT_NAME!r} of datatype BYTES")
    tensor = inputs[0]
    shape = tensor.get("shape")
    count = image_count(tensor.get("name"), tensor.get("datatype"), shape)
    size = _parameters(tensor, f"input {INPUT_NAME!r}").get("binary_data_size")
    if size is not None:
        if not isinstance(size, int) or size < 0 or size > len(binary):
            raise InvalidParameter(f"binary_data_size {size!r} does not fit the {len(binary)} bytes of binary data")
        images = deserialize_bytes(binary[:size])
    else:
        images = [_b64(item) for item in _flatten(tensor.get("data"))]
    return checked_images(images, shape, count, max_images)


def image_count(name: Any, datatype: Any, shape: Any) -> int:
    """The images an input tensor holds, once its name, datatype and shape are right."""
    if name != INPUT_NAME:
        raise InvalidParameter(f"the input tensor must be named {INPUT_NAME!r}, got {name!r}")
    if datatype != "BYTES":
        raise InvalidParameter(f"input {name!r} must have datatype BYTES, got {datatype!r}")
    if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
        raise InvalidParameter(f"input shape must be a list of non-negative integers, got {shape!r}")
    return int(np.prod(shape)) if shape else 1


def checked_images(images: list[bytes], shape: list[int], count: int, max_images: int) -> list[bytes]:
    if len(images) != count:
        raise InvalidParameter(f"input shape {shape} holds {count} elements, but {len(images)} were sent")
    if not 1 <= count <= max_images:
        raise InvalidParameter(f"send between 1 and {max_images} images per request, got {count}")
    return images


def _b64(item: Any) -> bytes:
    if not isinstance(item, str):
        raise InvalidParameter("in JSON, each BYTES element must be a base64-encoded string")
    try:
        return base64.b64decode(item, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidParameter("a BYTES element is not valid base64 (JSON carries images base64-encoded)") from None


def _top_k(request_json: dict[str, Any], default: int) -> int:
    value = _parameters(request_json, "request").get("top_k", default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidParameter(f"parameter top_k must be an integer, got {value!r}")
    return value


def _binary_outputs(request_json: dict[str, Any]) -> set[str]:
    """The outputs to return as binary data."""
    if _parameters(request_json, "request").get("binary_data_output"):
        return set(OUTPUTS)
    return {o.get("name") for o in _output_specs(request_json) if _parameters(o, "output").get("binary_data")}


def _requested(request_json: dict[str, Any]) -> list[str]:
    wanted = _output_specs(request_json)
    if not wanted:
        return list(OUTPUTS)
    names = [o.get("name") for o in wanted]
    unknown = [n for n in names if n not in OUTPUTS]
    if unknown:
        raise InvalidParameter(f"unknown outputs {unknown}; this model has {list(OUTPUTS)}")
    return names


def output_tensors(results: list[Classification]) -> dict[str, np.ndarray]:
    return {
        "labels": np.array([[p.label.encode() for p in r.predictions] for r in results], dtype=object),
        "scores": np.array([[p.score for p in r.predictions] for r in results], dtype=np.float32),
        "indices": np.array([[p.index for p in r.predictions] for r in results], dtype=np.int64),
    }


def infer_response(
    service: ModelService, request_json: dict[str, Any], results: list[Classification], headers: dict[str, str]
) -> Response:
    tensors = output_tensors(results)
    binary_names = _binary_outputs(request_json)
    outputs, blobs = [], []
    for name in _requested(request_json):
        array = tensors[name]
        entry: dict[str, Any] = {"name": name, "datatype": OUTPUTS[name], "shape": list(array.shape)}
        if name in binary_names:
            blob = serialize_bytes(array.ravel().tolist()) if name == "labels" else array.tobytes()
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            flat = array.ravel().tolist()
            entry["data"] = [b.decode() for b in flat] if name == "labels" else flat
        outputs.append(entry)
    body = {"model_name": service.name, "model_version": service.version, "outputs": outputs}
    if "id" in request_json:
        body["id"] = request_json["id"]
    head = orjson.dumps(body)
    if not blobs:
        return Response(head, 200, headers, "application/json")
    headers = {**headers, "Inference-Header-Content-Length": str(len(head))}
    return Response(head + b"".join(blobs), 200, headers, "application/octet-stream")


async def infer(request: Request) -> Response:
    state = state_of(request)
    settings = state.settings
    clock = state.clock
    first = state.arrived(request, "infer")
    timings: list[Timing] = [first]
    try:
        service, variant = state.rollouts.route(_service(request), request.headers, first)  # in a rollout
        first.model = service.name
        deadline = first.start + timeout_s(request, settings.request_timeout_s)
        rank = priority(request)
        with state.ingest():
            body = await read_body(request, state.body_rules)
        request_json, binary = split_body(body, request.headers.get(HEADER_LENGTH))
        images = parse_images(request_json, binary, settings.max_images_per_request)
        top_k = service.check_top_k(_top_k(request_json, settings.default_top_k))
        _requested(request_json)
        _binary_outputs(request_json)  # every field checked before any inference
        timings = per_image(first, len(images))
        results = await classify_all(service, images, timings, top_k, deadline, rank, clock)
        headers = {"Server-Timing": slowest(timings, first.start).server_timing(), **variant_header(variant)}
        response = infer_response(service, request_json, results, headers)
        state.rollouts.mirror(request.path_params["name"], images, results)
    except Exception as exc:
        response = state.failed(timings, exc, first.start)
    return state.send_then_record(request, response, timings)


_MODEL = "/v2/models/{name}"
_VERSIONED = "/v2/models/{name}/versions/{version}"
inference_routes = [Route(base + "/infer", infer, methods=["POST"]) for base in (_MODEL, _VERSIONED)]  # the door's too
routes = [
    Route("/v2", server_metadata, methods=["GET"]),
    Route("/v2/health/live", live, methods=["GET"]),
    Route("/v2/health/ready", ready, methods=["GET"]),
    *(Route(base, model_metadata, methods=["GET"]) for base in (_MODEL, _VERSIONED)),
    *(Route(base + "/ready", model_ready, methods=["GET"]) for base in (_MODEL, _VERSIONED)),
    *inference_routes,
]
