"""NVIDIA Triton Inference Server (through PyTriton) serving the model with servoscope's code.

PyTriton starts the real ``tritonserver`` binary it bundles and binds a Python callable to a
model through Triton's Python backend; Triton's dynamic batcher forms the batches (at most
:data:`MAX_BATCH_SIZE`, waiting at most :data:`MAX_QUEUE_DELAY_S` for more) and hands each to
one of the model's instances. PyTriton's way to run several instances is to bind a list of
callables: the model gets ``instance_group { kind: KIND_CPU, count: len(list) }`` and each
callable its own handler thread; here each callable has a session of its own (the layout's
``instances``, each with ``threads`` intra-op threads). HTTP only, on
127.0.0.1; gRPC and metrics are off. Requests: Open Inference Protocol, input ``image``
(BYTES, shape ``[N, 1]``, one JPEG per row); outputs ``labels`` (BYTES) and ``scores`` (FP32),
``[N, 5]`` each.

    python bench/peers/triton_server.py --host 127.0.0.1 --port 8010 --model SPEC_JSON

Triton's Python backend stub loads ``libpython3.X.so``: the runner puts this interpreter's
library folder first on ``LD_LIBRARY_PATH``, or the stub may load another Python's library.
With more than one instance, PyTriton's proxy code is fixed first (``triton_handshake.py``):
as shipped, Triton's parallel start of the instances races a handshake and the load fails.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from types import FrameType

import numpy as np
from classifier import (
    MAX_BATCH_SIZE,
    MAX_QUEUE_DELAY_S,
    TOP_K,
    BatchClassifier,
    server_args,
)
from pytriton.decorators import batch
from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
from pytriton.triton import Triton, TritonConfig
from triton_handshake import patch


def infer_function(classifier: BatchClassifier) -> Callable[..., dict[str, np.ndarray]]:
    """PyTriton's batched callable: rows of JPEG bytes in, top-k labels and scores out."""

    @batch
    def infer(image: np.ndarray) -> dict[str, np.ndarray]:
        tops = classifier.classify([bytes(row[0]) for row in image])
        labels = np.array([[label.encode() for label in top.labels] for top in tops], dtype=np.object_)
        scores = np.array([top.scores for top in tops], dtype=np.float32)
        return {"labels": labels, "scores": scores}

    return infer


def interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # Triton.serve() stops cleanly on it


def main() -> None:
    args, spec = server_args(__doc__)
    config = TritonConfig(
        http_address=args.host, http_port=args.port, allow_grpc=False, allow_metrics=False, exit_on_error=True
    )
    signal.signal(signal.SIGTERM, interrupt)
    if spec.instances > 1:
        patch()
    with Triton(config=config) as triton:
        triton.bind(
            model_name=spec.name,
            infer_func=[infer_function(BatchClassifier(spec)) for _ in range(spec.instances)],
            inputs=[Tensor(name="image", dtype=np.bytes_, shape=(1,))],
            outputs=[
                Tensor(name="labels", dtype=np.bytes_, shape=(TOP_K,)),
                Tensor(name="scores", dtype=np.float32, shape=(TOP_K,)),
            ],
            config=ModelConfig(
                max_batch_size=MAX_BATCH_SIZE,
                batcher=DynamicBatcher(max_queue_delay_microseconds=int(MAX_QUEUE_DELAY_S * 1e6)),
            ),
            strict=True,
        )
        triton.serve()


if __name__ == "__main__":
    main()
