"""A naive image-classification server: the typical first version, as a baseline.

Starlette on uvicorn; the handler runs the whole request in the thread pool: full Pillow
decode (no DCT-domain downscaling), resize the shorter side to 256, center-crop 224,
normalize with mean 127 / std 128, ``session.run`` on a batch of 1, softmax, top-5, JSON.
Same model file and preprocessing numbers as servoscope; no batching, no admission control.

    python bench/naive_server.py --port 8001 --model-dir models/efficientnet_lite0/1
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import numpy as np
import onnxruntime as ort
import uvicorn
from PIL import Image
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

RESIZE, CROP, MEAN, STD = 256, 224, 127.0, 128.0


class Classifier:
    def __init__(self, model_dir: Path) -> None:
        self.session = ort.InferenceSession(str(model_dir / "model.onnx"), providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        self.labels = (model_dir / "labels.txt").read_text().splitlines()

    def preprocess(self, data: bytes) -> np.ndarray:
        image = Image.open(io.BytesIO(data)).convert("RGB")
        scale = RESIZE / min(image.size)
        image = image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.BILINEAR)
        left, top = (image.width - CROP) // 2, (image.height - CROP) // 2
        image = image.crop((left, top, left + CROP, top + CROP))
        pixels = (np.asarray(image, dtype=np.float32) - MEAN) / STD
        return pixels.transpose(2, 0, 1)[np.newaxis]

    def classify(self, data: bytes) -> list[dict[str, object]]:
        logits = self.session.run(None, {self.input_name: self.preprocess(data)})[0][0]
        probs = np.exp(logits - logits.max())
        probs /= probs.sum()
        top = np.argsort(-probs)[:5]
        return [{"label": self.labels[i], "index": int(i), "score": float(probs[i])} for i in top]


def create_app(classifier: Classifier) -> Starlette:
    async def classify(request: Request) -> Response:
        body = await request.body()
        predictions = await run_in_threadpool(classifier.classify, body)
        return JSONResponse({"predictions": predictions})

    async def ready(request: Request) -> Response:
        return JSONResponse({"ready": True})

    return Starlette(
        routes=[
            Route("/v1/models/{name}/classify", classify, methods=["POST"]),
            Route("/v2/health/ready", ready, methods=["GET"]),
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--model-dir", type=Path, default=Path("models/efficientnet_lite0/1"))
    args = parser.parse_args()
    uvicorn.run(
        create_app(Classifier(args.model_dir)), host=args.host, port=args.port, log_level="warning", access_log=False
    )


if __name__ == "__main__":
    main()
