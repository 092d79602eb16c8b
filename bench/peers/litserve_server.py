"""LitServe serving the model with servoscope's code, with LitServe's own batching.

Batches of at most :data:`MAX_BATCH_SIZE`, waiting at most :data:`MAX_QUEUE_DELAY_S`
(``max_batch_size``, ``batch_timeout``), on 127.0.0.1. The layout's ``instances`` inference
worker processes (``workers_per_device`` on ``accelerator="cpu"``, whose one device is the CPU),
each with a session of ``threads`` intra-op threads; LitServe starts as many API server
processes (its default, ``num_api_servers=None``), which take turns feeding the workers.
Requests: ``POST /predict`` with JSON ``{"image": "<base64 JPEG>"}``. LitServe's API server
hands each request to its inference worker process through a queue, so ``decode_request``
receives what was pickled there: the parsed JSON, never the raw request body. Base64 JSON is
LitServe's idiomatic way to send an image (4/3 the bytes, and a decode in the worker).

    python bench/peers/litserve_server.py --host 127.0.0.1 --port 8012 --model SPEC_JSON
"""

import base64

import litserve as ls
from classifier import (
    MAX_BATCH_SIZE,
    MAX_QUEUE_DELAY_S,
    BatchClassifier,
    ModelSpec,
    Top,
    server_args,
)

REQUEST_TIMEOUT_S = 60.0


class ClassifyAPI(ls.LitAPI):
    def __init__(self, spec: ModelSpec) -> None:
        super().__init__(max_batch_size=MAX_BATCH_SIZE, batch_timeout=MAX_QUEUE_DELAY_S)
        self.model_spec = spec  # not `spec`: LitAPI has its own (an API spec)

    def setup(self, device: str) -> None:
        self.classifier = BatchClassifier(self.model_spec)

    # LitServe reads this annotation at run time to type its endpoint (a dict: a JSON body), so
    # this module leaves annotations unpostponed (no `from __future__ import annotations`).
    def decode_request(self, request: dict) -> bytes:
        return base64.b64decode(request["image"])

    def batch(self, inputs: list[bytes]) -> list[bytes]:
        return inputs

    def predict(self, images: list[bytes]) -> list[Top]:
        return self.classifier.classify(images)

    def unbatch(self, output: list[Top]) -> list[Top]:
        return output

    def encode_response(self, output: Top) -> dict[str, object]:
        return output.to_json()


def main() -> None:
    args, spec = server_args(__doc__)
    server = ls.LitServer(
        ClassifyAPI(spec), accelerator="cpu", workers_per_device=spec.instances, timeout=REQUEST_TIMEOUT_S
    )
    server.run(host=args.host, port=args.port, log_level="warning", generate_client_file=False)


if __name__ == "__main__":
    main()
