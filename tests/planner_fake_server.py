"""A servoscope server whose model is a FAKE: each batch sleeps a fixed time (for the planner's fidelity check).

    python tests/planner_fake_server.py PORT MODEL_REPOSITORY BASE_S PER_IMAGE_S MAX_BATCH DELAY_S

Everything but the model is real: HTTP, the preprocess pool, the batcher, one instance's thread.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from servoscope.pipeline.service import Pipeline
from servoscope.server.app import create_app, load_pipeline
from servoscope.server.run import serve
from servoscope.settings import Settings, load_settings


class FakeSleepRuntime:
    """FAKE: no model; a batch of n sleeps base_s + n × per_image_s on the instance's thread and
    returns zero logits for every row."""

    def __init__(self, classes: int, base_s: float, per_image_s: float) -> None:
        self.classes, self.base_s, self.per_image_s = classes, base_s, per_image_s

    def run(self, batch: np.ndarray) -> np.ndarray:
        time.sleep(self.base_s + self.per_image_s * len(batch))
        return np.zeros((len(batch), self.classes), dtype=np.float32)


def fake_pipeline(
    port: int, repository: Path, base_s: float, per_image_s: float, max_batch: int, delay_s: float
) -> tuple[Settings, Pipeline]:
    """The settings and the pipeline of the fake service: one instance, one preprocess worker."""
    settings = load_settings(
        None,
        host="127.0.0.1",
        port=port,
        model_repository=repository,
        models=("efficientnet_lite0",),
        preprocess_workers=1,
        telemetry=False,
        admission="static",
        log_level="warning",
        model_overrides={
            "instances": 1,
            "intra_op_threads": 1,
            "max_batch_size": max_batch,
            "max_queue_delay_s": delay_s,
        },
    )
    pipeline = load_pipeline(settings)
    for service in pipeline.services.values():
        for instance in service.batcher.instances:
            instance.runtime = FakeSleepRuntime(service.num_classes, base_s, per_image_s)
    return settings, pipeline


def main(port: int, repository: Path, base_s: float, per_image_s: float, max_batch: int, delay_s: float) -> None:
    settings, pipeline = fake_pipeline(port, repository, base_s, per_image_s, max_batch, delay_s)
    serve(create_app(settings, pipeline), settings)


if __name__ == "__main__":
    main(
        int(sys.argv[1]),
        Path(sys.argv[2]),
        float(sys.argv[3]),
        float(sys.argv[4]),
        int(sys.argv[5]),
        float(sys.argv[6]),
    )
