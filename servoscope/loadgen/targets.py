"""What a request looks like on the wire, for each kind of server the load can drive.

    v1    POST /v1/models/{model}/classify, the image as the body (servoscope's own API)
    v2    POST /v2/models/{model}/infer, the Open Inference Protocol (KServe v2) with one BYTES
          input tensor in Triton's binary tensor data extension, so any KServe/Triton-compatible
          server can be driven: a JSON header of ``Inference-Header-Content-Length`` bytes, then
          the tensor's data (each element a little-endian uint32 length and its bytes)
    raw   any method and path, the image as the body with a given (or the image's) content type

Each request is encoded once, by a pure function, and sent as many times as it is drawn.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from typing import Literal

from servoscope.loadgen.client import EncodedRequest, Endpoint, encode_request
from servoscope.loadgen.mixes import MixImage

Kind = Literal["v1", "v2", "raw"]
KINDS: tuple[Kind, ...] = ("v1", "v2", "raw")
V2_INPUT = "image"  # servoscope's input tensor name; other servers name theirs in their metadata


@dataclass(frozen=True, slots=True)
class Target:
    kind: Kind
    model: str = "efficientnet_lite0"
    path: str = ""  # raw: the path; v1/v2: derived from the model
    method: str = "POST"  # raw only
    content_type: str = ""  # raw: "" means the image's own type
    input_name: str = V2_INPUT  # v2 only

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"target must be one of {KINDS}, got {self.kind!r}")
        if self.kind == "raw" and not self.path.startswith("/"):
            raise ValueError(f"a raw target needs --path starting with '/', got {self.path!r}")
        if self.kind != "raw" and not self.model:
            raise ValueError(f"target {self.kind} needs a model name")

    @property
    def url_path(self) -> str:
        if self.kind == "v1":
            return f"/v1/models/{self.model}/classify"
        if self.kind == "v2":
            return f"/v2/models/{self.model}/infer"
        return self.path

    @property
    def sends_body(self) -> bool:
        return self.kind != "raw" or self.method.upper() not in ("GET", "HEAD", "DELETE")


def v2_body(image: bytes, input_name: str = V2_INPUT) -> tuple[bytes, int]:
    """An inference request carrying ``image`` as a one-element BYTES tensor in binary form,
    and the length of its JSON header (the ``Inference-Header-Content-Length``)."""
    tensor = struct.pack("<I", len(image)) + image
    header = {
        "inputs": [
            {"name": input_name, "datatype": "BYTES", "shape": [1], "parameters": {"binary_data_size": len(tensor)}}
        ]
    }
    head = json.dumps(header, separators=(",", ":")).encode()
    return head + tensor, len(head)


def encode(target: Target, endpoint: Endpoint, image: MixImage) -> EncodedRequest:
    """The bytes of one request to ``target`` carrying ``image``."""
    if target.kind == "v1":
        return encode_request(endpoint, "POST", target.url_path, image.data, {"Content-Type": image.content_type})
    if target.kind == "v2":
        body, head_length = v2_body(image.data, target.input_name)
        headers = {"Content-Type": "application/octet-stream", "Inference-Header-Content-Length": str(head_length)}
        return encode_request(endpoint, "POST", target.url_path, body, headers)
    if not target.sends_body:
        return encode_request(endpoint, target.method.upper(), target.url_path)
    headers = {"Content-Type": target.content_type or image.content_type}
    return encode_request(endpoint, target.method.upper(), target.url_path, image.data, headers)
