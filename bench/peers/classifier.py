"""The one batch handler every peer server calls: servoscope's own decode, preprocess,
ONNX Runtime session and postprocess, so peers differ only in how they serve and batch.

It runs inside each peer's own environment, which has servoscope (``--no-deps``) and just
numpy, Pillow and ONNX Runtime, so it imports nothing else of servoscope's: the runner reads
the model's ``config.toml`` and hands the numbers over as one JSON argument (:class:`ModelSpec`),
with the thread layout: ``instances`` model instances (each server's own kind: Triton model
instances, Ray Serve replicas, LitServe workers), each a :class:`BatchClassifier` whose session
has ``threads`` intra-op threads and whose batches are decoded on ``threads`` threads.

Each instance, on its first batch, leaves a small JSON file in ``census_dir``: the runner counts
them after the server stops, to check that the server really ran the instances it was given.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from servoscope.pipeline.decode import DecodeLimits
from servoscope.pipeline.postprocess import Postprocessor
from servoscope.pipeline.preprocess import PreprocessSpec, prepare
from servoscope.pipeline.runtime import OnnxModel

TOP_K = 5
MAX_BATCH_SIZE = 32  # every peer's batcher (servoscope's default bound; its CPU config may set less)
MAX_QUEUE_DELAY_S = 0.002


@dataclasses.dataclass(frozen=True, slots=True)
class ModelSpec:
    """What a peer needs to serve the model: files, tensor names, preprocessing, thread layout."""

    name: str
    model_file: str
    labels_file: str
    input_name: str
    output_name: str
    kind: str  # "logits" or "probabilities"
    size: int
    resize: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    instances: int  # model instances (sessions), each in the server's own form
    threads: int  # per instance: ONNX Runtime intra-op threads, and decode threads of its batches
    census_dir: str  # each instance's record of serving its first batch goes here ("": none)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ModelSpec:
        raw = json.loads(text)
        return cls(**{**raw, "mean": tuple(raw["mean"]), "std": tuple(raw["std"])})


@dataclasses.dataclass(frozen=True, slots=True)
class Top:
    labels: list[str]
    scores: list[float]

    def to_json(self) -> dict[str, object]:
        return {
            "predictions": [
                {"label": label, "score": score} for label, score in zip(self.labels, self.scores, strict=True)
            ]
        }


class BatchClassifier:
    """JPEG bytes, a batch at a time → top-k labels: decode+preprocess on ``threads`` threads,
    one ONNX Runtime session run on the stacked batch, softmax and top-k."""

    def __init__(self, spec: ModelSpec) -> None:
        self.spec = spec
        self.preprocess = PreprocessSpec(spec.size, spec.resize, spec.mean, spec.std)
        self.limits = DecodeLimits()
        self.model = OnnxModel(Path(spec.model_file), "cpu", spec.threads, spec.input_name, spec.output_name)
        labels = [line for line in Path(spec.labels_file).read_text().splitlines() if line.strip()]
        self.postprocess = Postprocessor(labels, spec.kind)
        self.pool = ThreadPoolExecutor(max_workers=spec.threads, thread_name_prefix="peer-decode")
        self.counted = threading.Event()

    def tensor(self, image: bytes) -> np.ndarray:
        return prepare(image, self.limits, self.preprocess).tensor

    def classify(self, images: list[bytes]) -> list[Top]:
        if not self.counted.is_set():
            self.count_in()
        batch = np.stack(list(self.pool.map(self.tensor, images)))
        rows = self.postprocess(self.model.run(batch), [TOP_K] * len(images))
        return [Top([p.label for p in row], [p.score for p in row]) for row in rows]

    def count_in(self) -> None:
        """Record, once, that this instance serves: ``<pid>-<id>.json`` in the census folder."""
        self.counted.set()
        if self.spec.census_dir:
            record = {"pid": os.getpid(), "intra_op_threads": self.spec.threads, "decode_threads": self.spec.threads}
            path = Path(self.spec.census_dir) / f"{os.getpid()}-{id(self):x}.json"
            path.write_text(json.dumps(record))


def census(folder: Path) -> list[dict[str, int]]:
    """The records of the instances that served a batch (see :meth:`BatchClassifier.count_in`)."""
    return [json.loads(path.read_text()) for path in sorted(folder.glob("*.json"))]


def server_args(doc: str | None) -> tuple[argparse.Namespace, ModelSpec]:
    """The command line every peer server takes: where to listen, and the model as ModelSpec JSON."""
    parser = argparse.ArgumentParser(description=(doc or "").splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--model", required=True, help="ModelSpec as JSON")
    args = parser.parse_args()
    return args, ModelSpec.from_json(args.model)
