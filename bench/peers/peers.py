"""The servers compared, as the runner sees them: how each is started, what one request to it
looks like, and where its answer's top-1 label is.

Every peer answers with servoscope's decode, preprocessing, ONNX Runtime session and softmax
(``classifier.py``; the naive server has its own copy of the same numbers). Requests:

  servoscope  POST /v1/models/<model>/classify, raw JPEG (``Content-Type: image/jpeg``)
  naive       the same path and body (bench/naive_server.py)
  triton      POST /v2/models/<model>/infer, Open Inference Protocol with the binary tensor
              extension: a JSON header (``Inference-Header-Content-Length``) then the BYTES
              tensor ``image`` [1, 1] (length-prefixed JPEG); outputs asked for as JSON
  ray         POST /classify, raw JPEG
  litserve    POST /predict, JSON ``{"image": "<base64 JPEG>"}`` (see litserve_server.py)
"""

from __future__ import annotations

import base64
import json
import struct
import sysconfig
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from servoscope.loadgen import EncodedRequest, Endpoint, encode_request

HERE = Path(__file__).resolve().parent
JPEG = {"Content-Type": "image/jpeg"}
JSON = {"Content-Type": "application/json"}

Encode = Callable[[Endpoint, str, bytes], EncodedRequest]  # endpoint, model name, JPEG → request
Top1 = Callable[[bytes], str]  # response body → the top-1 label


@dataclass(frozen=True)
class Peer:
    name: str
    env: str | None  # its environment in venvs.ENVS; None: this interpreter
    script: Path | None  # a server of bench/peers/ run with ``--model SPEC_JSON``; None: argv given by the runner
    encode: Encode
    top1: Top1
    variables: dict[str, str] = field(default_factory=dict)  # set in the server's environment
    library_path: tuple[str, ...] = ()  # put first on its LD_LIBRARY_PATH

    def environment(self, base: Mapping[str, str]) -> dict[str, str]:
        """The server's environment: ``base`` (the runner's) with this peer's additions."""
        env = {**base, **self.variables}
        if self.library_path:
            env["LD_LIBRARY_PATH"] = ":".join([*self.library_path, *filter(None, [base.get("LD_LIBRARY_PATH")])])
        return env


def raw_jpeg(path: str) -> Encode:
    return lambda endpoint, model, image: encode_request(endpoint, "POST", path.format(model=model), image, JPEG)


def predictions_top1(body: bytes) -> str:
    return str(json.loads(body)["predictions"][0]["label"])


def triton_request(endpoint: Endpoint, model: str, image: bytes) -> EncodedRequest:
    tensor = struct.pack("<I", len(image)) + image
    header = json.dumps(
        {
            "inputs": [
                {"name": "image", "datatype": "BYTES", "shape": [1, 1], "parameters": {"binary_data_size": len(tensor)}}
            ],
            "outputs": [{"name": name, "parameters": {"binary_data": False}} for name in ("labels", "scores")],
        }
    ).encode()
    headers = {"Content-Type": "application/octet-stream", "Inference-Header-Content-Length": str(len(header))}
    return encode_request(endpoint, "POST", f"/v2/models/{model}/infer", header + tensor, headers)


def triton_top1(body: bytes) -> str:
    outputs = {o["name"]: o for o in json.loads(body)["outputs"]}
    return str(outputs["labels"]["data"][0])


def litserve_request(endpoint: Endpoint, model: str, image: bytes) -> EncodedRequest:
    body = json.dumps({"image": base64.b64encode(image).decode("ascii")}).encode()
    return encode_request(endpoint, "POST", "/predict", body, JSON)


# Triton's Python backend stub loads libpython3.X.so by name: this interpreter's library folder
# goes first, or the stub may find another Python's (the system's) and fail or misbehave.
LIBPYTHON_DIR = str(sysconfig.get_config_var("LIBDIR"))

PEERS: dict[str, Peer] = {
    "servoscope": Peer("servoscope", None, None, raw_jpeg("/v1/models/{model}/classify"), predictions_top1),
    "naive": Peer("naive", None, None, raw_jpeg("/v1/models/{model}/classify"), predictions_top1),
    "triton": Peer(
        "triton", "triton", HERE / "triton_server.py", triton_request, triton_top1, library_path=(LIBPYTHON_DIR,)
    ),
    "ray": Peer(
        "ray",
        "ray",
        HERE / "ray_server.py",
        raw_jpeg("/classify"),
        predictions_top1,
        # A local-only node on 127.0.0.1 (see ray_server.py); and no usage-stats reporting.
        {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0"},
    ),
    "litserve": Peer("litserve", "litserve", HERE / "litserve_server.py", litserve_request, predictions_top1),
}
